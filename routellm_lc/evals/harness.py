"""Score benchmarks with routers, compute RouteLLM's metrics, write JSON and plots.

Scoring is the only expensive step, so scores are cached on disk (`cache_dir()/scores`),
keyed by the router's identity (its `cache_key` attribute when it sets one — `mf` sets
"mf:<hash of its checkpoint>:<strong, weak model, embedder>" — else its checkpoint path and
modification time), the benchmark name and a hash of the exact prompt list. A router object
built with settings it does not report in a `cache_key` has no identity and is never cached,
nor is a scoring run that left any prompt unscored. The `random` router is never cached: it is
scored afresh with seeds 0-9 and its curve averaged over the 10 runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from routellm_lc.errors import RouteLLMError
from routellm_lc.evals import metrics
from routellm_lc.evals.benchmarks import Benchmark, BenchmarkError
from routellm_lc.files import atomic_write
from routellm_lc.routers.base import Router, as_probabilities, router_label

BATCH_SIZE = 256
BOOTSTRAP_RESAMPLES = 1000
RANDOM_RUNS = 10
RANDOM_ROUTER = "random"


class RouterLoadError(RouteLLMError, RuntimeError):
    """A router named for evaluation could not be built."""


@dataclass
class LoadedRouter:
    """A router ready to score, with what identifies its scores in the cache."""

    name: str
    router: Router | None
    checkpoint: str | None = None
    identity: str | None = ""
    """The cache identity of its scores (`router_identity`); None: never cached."""
    extra: dict[str, Any] = field(default_factory=dict)


def load_routers(
    names: Sequence[str],
    checkpoints: dict[str, str] | None = None,
    loader: Callable[..., Router] | None = None,
    device: str | None = None,
) -> list[LoadedRouter]:
    """Build every named router up front, so a bad name fails before any scoring starts.
    `device` goes to the routers that run a torch model (`bert`, `causal_llm`); None leaves
    them on their default ("auto": a GPU when there is one)."""
    from routellm_lc.routers.base import device_option

    if loader is None:
        from routellm_lc.routers import load_router as loader
    checkpoints = dict(checkpoints or {})
    unknown = sorted(set(checkpoints) - set(names))
    if unknown:
        raise RouterLoadError(
            f"--checkpoint given for router(s) not in --routers: {', '.join(unknown)}."
        )
    loaded, failures = [], []
    for name in dict.fromkeys(names):
        checkpoint = checkpoints.get(name)
        if name == RANDOM_ROUTER:
            loaded.append(LoadedRouter(name, None, checkpoint, "random"))
            continue
        try:
            router = loader(name, checkpoint=checkpoint, **device_option(name, device))
        except Exception as exc:  # any failure to build a router is reported the same way
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
            continue
        loaded.append(LoadedRouter(name, router, checkpoint, router_identity(router, checkpoint)))
    if failures:
        raise RouterLoadError("Could not load router(s):\n  " + "\n  ".join(failures))
    return loaded


def router_identity(
    router: Router, checkpoint: str | None, settings: Mapping[str, Any] | None = None
) -> str | None:
    """What makes this router's scores reusable: its own cache key, else its checkpoint (a
    router loaded by name with nothing else). `settings`: keyword arguments it was built with
    besides the checkpoint; a router without a `cache_key` that says how they change its
    scores then has no identity (None: its scores are never cached)."""
    key = getattr(router, "cache_key", None)
    if key:
        return str(key)
    if settings:
        return None
    kind = f"{type(router).__module__}.{type(router).__qualname__}"
    if checkpoint is None:
        return f"{kind}:default"
    path = Path(checkpoint)
    if path.exists():
        # A folder's own mtime misses files rewritten in place: take the newest file's.
        files = [p for p in path.iterdir() if p.is_file()] if path.is_dir() else [path]
        newest = max((p.stat().st_mtime_ns for p in files), default=path.stat().st_mtime_ns)
        return f"{kind}:{path.resolve()}:{newest}"
    return f"{kind}:{checkpoint}"  # a Hub id


class ScoreCache:
    """Router scores on disk, one `.npz` per (router identity, benchmark, prompt list)."""

    def __init__(self, root: str | os.PathLike[str] | None = None) -> None:
        if root is None:
            from routellm_lc.embeddings import cache_dir

            root = cache_dir() / "scores"
        self.root = Path(root)

    @staticmethod
    def key(identity: str, benchmark: str, prompts: Sequence[str]) -> str:
        digest = hashlib.sha256()
        for prompt in prompts:
            digest.update(prompt.encode("utf-8"))
            digest.update(b"\0")
        return f"{identity}|{benchmark}|{len(prompts)}|{digest.hexdigest()}"

    def _path(self, key: str) -> Path:
        return self.root / f"{hashlib.sha256(key.encode()).hexdigest()[:32]}.npz"

    def load(self, key: str) -> np.ndarray | None:
        path = self._path(key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as stored:
                if str(stored["key"]) != key:
                    return None
                return np.asarray(stored["scores"], dtype=np.float64)
        except (OSError, ValueError, KeyError):
            return None  # a truncated or foreign file: score again

    def save(self, key: str, scores: np.ndarray) -> None:
        values = np.asarray(scores, dtype=np.float64)
        atomic_write(self._path(key), lambda file: np.savez(file, key=np.array(key), scores=values))


def validate_batch_size(batch_size: int) -> int:
    """A batch size of at least one prompt, or `RouteLLMError` (0 would never advance, a
    negative one would skip every prompt)."""
    if isinstance(batch_size, bool) or not isinstance(batch_size, int | np.integer):
        raise RouteLLMError(f"batch_size must be a whole number, got {batch_size!r}.")
    if batch_size < 1:
        raise RouteLLMError(f"batch_size must be at least 1, got {batch_size}.")
    return int(batch_size)


def score_prompts(
    router: Router,
    prompts: Sequence[str],
    batch_size: int = BATCH_SIZE,
    desc: str | None = None,
    progress: bool = True,
    store: bool = True,
) -> np.ndarray:
    """`router.strong_win_rate` over `prompts` in batches, with a progress bar. With `store`,
    routers that embed read and fill the on-disk embedding store (`stored_embeddings`)."""
    from tqdm.auto import tqdm

    from routellm_lc.embeddings import stored_embeddings

    batch_size = validate_batch_size(batch_size)
    name = router_label(router)
    scores = np.full(len(prompts), np.nan, dtype=np.float64)
    with (
        stored_embeddings() if store else contextlib.nullcontext(),
        tqdm(total=len(prompts), desc=desc, unit="prompt", disable=not progress) as bar,
    ):
        for start in range(0, len(prompts), batch_size):
            batch = list(prompts[start : start + batch_size])
            out = router.strong_win_rate(batch)
            scores[start : start + len(batch)] = as_probabilities(out, len(batch), name)
            bar.update(len(batch))
    return scores


def cached_scores(
    loaded: LoadedRouter,
    benchmark_name: str,
    prompts: Sequence[str],
    cache: ScoreCache | None,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
) -> tuple[np.ndarray, bool]:
    """Scores from the cache when present, else computed (and stored). Returns (scores, hit)."""
    assert loaded.router is not None
    if loaded.identity is None:
        cache = None  # nothing identifies these scores: never reuse them
    key = ScoreCache.key(f"{loaded.name}|{loaded.identity}", benchmark_name, prompts)
    if cache is not None:
        hit = cache.load(key)
        if hit is not None and hit.shape == (len(prompts),) and np.isfinite(hit).all():
            return hit, True
    scores = score_prompts(  # no score cache (--no-cache): no embedding store either
        loaded.router,
        prompts,
        batch_size,
        f"{loaded.name} on {benchmark_name}",
        progress,
        store=cache is not None,
    )
    # Only a complete, finite result is stored: a partial one would poison later runs.
    if cache is not None and scores.shape == (len(prompts),) and np.isfinite(scores).all():
        cache.save(key, scores)
    return scores, False


def random_curve(
    benchmark: Benchmark, runs: int = RANDOM_RUNS, n_bins: int = metrics.N_BINS
) -> tuple[metrics.Curve, list]:
    """The random router's curve averaged pointwise over seeds 0..runs-1, and per-run APGRs."""
    from routellm_lc.routers import load_router

    curves = []
    for seed in range(runs):
        scores = load_router(RANDOM_ROUTER, seed=seed).strong_win_rate(benchmark.prompts)
        curves.append(metrics.threshold_curve(scores, benchmark.strong, benchmark.weak, n_bins))
    per_run = [metrics.apgr(c, benchmark.strong_quality, benchmark.weak_quality) for c in curves]
    return metrics.mean_curve(curves), per_run


def evaluate_benchmark(
    benchmark: Benchmark,
    routers: Sequence[LoadedRouter],
    cache: ScoreCache | None = None,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
    bootstrap: int = BOOTSTRAP_RESAMPLES,
    n_bins: int = metrics.N_BINS,
    random_runs: int = RANDOM_RUNS,
) -> dict[str, Any]:
    """Metrics for every router on one benchmark, as written to `<benchmark>.json`.

    `n_bins` (RouteLLM's `--num-results`): each curve has n_bins + 1 threshold points;
    `random_runs` (its `--random-iters`): how many seeds `random`'s curve averages.
    With `bootstrap` > 0, every scored router (not `random`, whose spread is its runs)
    also gets `apgr_sd` and `apgr_ci95` from that many paired resamples of the prompts (seed
    0), and `paired` holds each pair's APGR difference with its bootstrap SD and interval.
    """
    strong_q, weak_q = benchmark.strong_quality, benchmark.weak_quality
    scale = benchmark.quality_scale
    results: dict[str, Any] = {}
    scored: dict[str, np.ndarray] = {}
    for loaded in routers:
        if loaded.router is None:  # random
            curve, per_run = random_curve(benchmark, random_runs, n_bins)
            entry = metrics.summarize(curve, strong_q, weak_q, scale)
            entry.update(runs=len(per_run), apgr_runs=per_run, cached=False)
        else:
            scores, hit = cached_scores(
                loaded, benchmark.name, benchmark.prompts, cache, batch_size, progress
            )
            curve = metrics.threshold_curve(scores, benchmark.strong, benchmark.weak, n_bins)
            entry = metrics.summarize(curve, strong_q, weak_q, scale)
            entry.update(checkpoint=loaded.checkpoint, cache_key=loaded.identity, cached=hit)
            pair = [getattr(loaded.router, a, None) for a in ("strong_model", "weak_model")]
            if all(isinstance(model, str) for model in pair):
                entry["scored_pair"] = pair  # what the router's scores predict
            scored[loaded.name] = scores
        results[loaded.name] = entry
    paired = []
    if bootstrap > 0 and scored:
        draws = metrics.bootstrap_apgr(
            scored, benchmark.strong, benchmark.weak, bootstrap, n_bins=n_bins
        )
        for name, values in draws.items():
            interval = metrics.spread(values)
            results[name].update(apgr_sd=interval["sd"], apgr_ci95=interval["ci95"])
        names = list(draws)
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                interval = metrics.spread(draws[a] - draws[b])
                diff = results[a]["apgr"] - results[b]["apgr"]
                paired.append({"a": a, "b": b, "apgr_diff": diff, **interval})
    optimal = metrics.summarize(
        metrics.optimal_curve(benchmark.strong, benchmark.weak), strong_q, weak_q, scale
    )
    return {
        "benchmark": benchmark.name,
        "csv": benchmark.csv,
        "n_prompts": len(benchmark),
        "strong": {"model": benchmark.strong_model, "quality": strong_q},
        "weak": {"model": benchmark.weak_model, "quality": weak_q},
        "routers": results,
        "optimal": optimal,
        "bootstrap": bootstrap if scored else 0,
        "paired": paired,
        "num_results": n_bins,
        "random_iters": random_runs,
    }


def check_model_columns(
    benchmarks: Sequence[str], strong_model: str | None, weak_model: str | None
) -> None:
    """`--strong-model` / `--weak-model` name a CSV benchmark's columns; the built-in
    benchmarks always score RouteLLM's pair, so with no CSV among `benchmarks` another pair
    would be silently ignored: a `BenchmarkError` instead (RouteLLM's pair itself, as RouteLLM's
    `evaluate --strong-model gpt-4-1106-preview` names it, is accepted)."""
    from routellm_lc.evals.benchmarks import BUILTIN_BENCHMARKS, STRONG_MODEL, WEAK_MODEL

    given = [  # RouteLLM's own pair, as its evaluate command spells it, is what they score
        flag
        for flag, value, pair in (
            ("--strong-model", strong_model, STRONG_MODEL),
            ("--weak-model", weak_model, WEAK_MODEL),
        )
        if value is not None and value != pair
    ]
    if given and all(spec in BUILTIN_BENCHMARKS for spec in benchmarks):
        raise BenchmarkError(
            f"{' and '.join(given)} name{'s' if len(given) == 1 else ''} the columns of a CSV "
            f"benchmark; {', '.join(dict.fromkeys(benchmarks))} always score"
            f"{'s' if len(set(benchmarks)) == 1 else ''} RouteLLM's pair ({STRONG_MODEL} vs "
            f"{WEAK_MODEL}): drop {' and '.join(given)}, or evaluate a CSV of your own "
            "outcomes (--benchmark FILE.csv)."
        )


def run_eval(
    benchmarks: Sequence[str],
    router_names: Sequence[str],
    output: str | os.PathLike[str],
    checkpoints: dict[str, str] | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    limit: int | None = None,
    seed: int = 0,
    strong_model: str | None = None,
    weak_model: str | None = None,
    use_cache: bool = True,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
    bootstrap: int = BOOTSTRAP_RESAMPLES,
    device: str | None = None,
    num_results: int = metrics.N_BINS,
    random_iters: int = RANDOM_RUNS,
) -> dict[str, dict[str, Any]]:
    """Evaluate routers on benchmarks; write `<output>/<benchmark>.json` and `.png` for each.
    `device`: torch device of the routers that run a model (`bert`, `causal_llm`);
    `num_results`, `random_iters`: as RouteLLM's `evaluate` (curve points − 1, `random`'s
    runs); its defaults, 10 and 10, are the metric definitions' (APGR and CPT at another
    `num_results` are not comparable with published figures)."""
    from routellm_lc.evals.benchmarks import STRONG_MODEL, WEAK_MODEL, load_benchmark
    from routellm_lc.evals.plots import plot_benchmark

    if not router_names:
        raise RouterLoadError("No routers to evaluate: pass --routers NAME [NAME ...].")
    check_model_columns(benchmarks, strong_model, weak_model)
    batch_size = validate_batch_size(batch_size)
    for flag, value in (("num_results", num_results), ("random_iters", random_iters)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise RouteLLMError(f"{flag} must be a whole number of at least 1, got {value!r}.")
    from routellm_lc.data import check_output_dir

    output = check_output_dir(output, "--output", "the .json and .png results")
    specs = list(dict.fromkeys(benchmarks))  # the same benchmark twice is evaluated once
    loaded_benchmarks = [
        load_benchmark(spec, data_dir, strong_model or STRONG_MODEL, weak_model or WEAK_MODEL)
        for spec in specs
    ]
    _check_distinct_names(specs, loaded_benchmarks)
    routers = load_routers(router_names, checkpoints, device=device)
    cache = ScoreCache() if use_cache else None
    output.mkdir(parents=True, exist_ok=True)
    all_results: dict[str, dict[str, Any]] = {}
    for benchmark in loaded_benchmarks:
        if limit is not None:
            benchmark = benchmark.stratified_sample(limit, seed=seed)
        result = evaluate_benchmark(
            benchmark, routers, cache, batch_size, progress, bootstrap, num_results, random_iters
        )
        result["limit"] = limit
        result["seed"] = seed if limit is not None else None
        (output / f"{benchmark.name}.json").write_text(
            json.dumps(_json_safe(result), indent=2) + "\n", encoding="utf-8"
        )
        plot_benchmark(result, output / f"{benchmark.name}.png")
        all_results[benchmark.name] = result
    return all_results


def pair_notes(results: Mapping[str, Mapping[str, Any]]) -> list[str]:
    """Lines to print beside the table: a benchmark whose "strong" model scores below its
    "weak" one (columns swapped? APGR reads the same either way: (AUC − weak) / (strong −
    weak) is unchanged when a router ranks the other way round on swapped columns); and each
    router whose scores predict another pair than the one a CSV benchmark's columns name (a
    checkpoint trained on your battles between other models): its figures there rank prompts
    for its own pair. The tiers stand for any strong/weak pair: no note."""
    from routellm_lc.training.names import STRONG_TIER, WEAK_TIER

    notes = []
    for name, result in results.items():
        strong, weak = result["strong"], result["weak"]
        if strong["quality"] < weak["quality"]:
            notes.append(
                f"warning: {name}: the strong model {strong['model']} scores below the weak "
                f"model {weak['model']} ({strong['quality']:.4g} < {weak['quality']:.4g}). "
                "Every router's APGR reads as it would with the two swapped, so a high APGR "
                "here means it routes the hard prompts to the worse model; check "
                "--strong-model / --weak-model."
            )
        if not result.get("csv"):
            continue
        columns = [strong["model"], weak["model"]]
        for router, entry in result["routers"].items():
            pair = entry.get("scored_pair")
            if pair and pair != columns and pair != [STRONG_TIER, WEAK_TIER]:
                notes.append(
                    f"note: {router} scores {pair[0]} vs {pair[1]} (its checkpoint's pair), not "
                    f"{name}'s columns {columns[0]} vs {columns[1]}: its figures there measure "
                    "how well that pair's predictions route this one."
                )
    return notes


def _check_distinct_names(specs: Sequence[str], benchmarks: Sequence[Benchmark]) -> None:
    """Results are written to `<output>/<benchmark name>.json`: two CSVs with the same file
    name would overwrite each other's results, so they are refused before any scoring."""
    seen: dict[str, str] = {}
    for spec, benchmark in zip(specs, benchmarks, strict=True):
        if benchmark.name in seen:
            raise RouteLLMError(
                f"Benchmarks {seen[benchmark.name]} and {spec} are both named "
                f"{benchmark.name!r} (results go to <output>/{benchmark.name}.json): rename "
                "one of the files, or evaluate them in separate runs."
            )
        seen[benchmark.name] = spec


def _number(value: Any, spec: str) -> str:
    """A metric for the table; "null" where it is undefined (NaN), as in the JSON."""
    if value is None or not np.isfinite(value):
        return "null"
    return format(value, spec)


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """Router × benchmark table of APGR (± its bootstrap SD when measured) and CPT(50%), the
    optimal router last."""
    names = list(dict.fromkeys(r for res in results.values() for r in res["routers"]))
    header = ["router"] + [f"{b} APGR  CPT50" for b in results]
    rows = []
    for name in [*names, "optimal"]:
        row = [name]
        for res in results.values():
            entry = res["optimal"] if name == "optimal" else res["routers"].get(name)
            if entry is None:
                row.append("")
                continue
            sd = entry.get("apgr_sd")
            apgr = _number(entry["apgr"], ".3f")
            if sd is not None and apgr != "null":
                apgr += f"±{_number(sd, '.3f')}"
            cpt50 = _number(entry["cpt50"], "5.1f")
            row.append(f"{apgr}  {cpt50}" + ("%" if cpt50 != "null" else ""))
        rows.append(row)
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    top = "  ".join(cell.ljust(w) for cell, w in zip(header, widths, strict=True))
    return "\n".join([top, "-" * len(top), *lines])


def format_paired(results: dict[str, dict[str, Any]]) -> list[str]:
    """One line per router pair and benchmark: the APGR difference and its bootstrap interval."""
    lines = []
    for bench, res in results.items():
        for pair in res.get("paired", []):
            low, high = pair["ci95"]
            if not np.isfinite(pair["apgr_diff"]):
                lines.append(f"{bench}: {pair['a']} - {pair['b']} APGR null (no strong-weak gap)")
                continue
            lines.append(
                f"{bench}: {pair['a']} - {pair['b']} APGR {pair['apgr_diff']:+.3f} "
                f"(bootstrap SD {pair['sd']:.3f}, 95% interval {low:+.3f} to {high:+.3f})"
            )
    return lines


def _json_safe(value: Any) -> Any:
    """NaN → null (JSON has no NaN); numpy scalars → Python numbers."""
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value
