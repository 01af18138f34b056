"""Score benchmarks with routers, compute RouteLLM's metrics, write JSON and plots.

Scoring is the only expensive step, so scores are cached on disk (`cache_dir()/scores`),
keyed by the router's identity (its `cache_key` attribute when it sets one — `mf` sets
"mf:<hash of its checkpoint>" — else its checkpoint path and modification time), the
benchmark name and a hash of the exact prompt list. The `random` router is never cached:
it is scored afresh with seeds 0-9 and its curve averaged over the 10 runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from routellm_lc.errors import RouteLLMError
from routellm_lc.evals import metrics
from routellm_lc.evals.benchmarks import Benchmark
from routellm_lc.routers.base import Router

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
    identity: str = ""
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


def router_identity(router: Router, checkpoint: str | None) -> str:
    """What makes this router's scores reusable: its own cache key, else its checkpoint."""
    key = getattr(router, "cache_key", None)
    if key:
        return str(key)
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
        self.root.mkdir(parents=True, exist_ok=True)
        path = self._path(key)
        partial = path.with_name(path.name + f".{os.getpid()}.tmp.npz")
        np.savez(partial, key=np.array(key), scores=np.asarray(scores, dtype=np.float64))
        partial.replace(path)


def score_prompts(
    router: Router,
    prompts: Sequence[str],
    batch_size: int = BATCH_SIZE,
    desc: str | None = None,
    progress: bool = True,
) -> np.ndarray:
    """`router.strong_win_rate` over `prompts` in batches, with a progress bar."""
    from tqdm.auto import tqdm

    scores = np.empty(len(prompts), dtype=np.float64)
    with tqdm(total=len(prompts), desc=desc, unit="prompt", disable=not progress) as bar:
        for start in range(0, len(prompts), batch_size):
            batch = list(prompts[start : start + batch_size])
            out = np.asarray(router.strong_win_rate(batch), dtype=np.float64).reshape(-1)
            if out.shape != (len(batch),):
                raise RouteLLMError(
                    f"{desc or 'router'}: strong_win_rate returned {out.shape[0]} scores for "
                    f"{len(batch)} prompts."
                )
            scores[start : start + len(batch)] = out
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
    key = ScoreCache.key(f"{loaded.name}|{loaded.identity}", benchmark_name, prompts)
    if cache is not None:
        hit = cache.load(key)
        if hit is not None and hit.shape == (len(prompts),):
            return hit, True
    scores = score_prompts(
        loaded.router, prompts, batch_size, f"{loaded.name} on {benchmark_name}", progress
    )
    if cache is not None:
        cache.save(key, scores)
    return scores, False


def random_curve(benchmark: Benchmark, runs: int = RANDOM_RUNS) -> tuple[metrics.Curve, list]:
    """The random router's curve averaged pointwise over seeds 0..runs-1, and per-run APGRs."""
    from routellm_lc.routers import load_router

    curves = []
    for seed in range(runs):
        scores = load_router(RANDOM_ROUTER, seed=seed).strong_win_rate(benchmark.prompts)
        curves.append(metrics.threshold_curve(scores, benchmark.strong, benchmark.weak))
    per_run = [metrics.apgr(c, benchmark.strong_quality, benchmark.weak_quality) for c in curves]
    return metrics.mean_curve(curves), per_run


def evaluate_benchmark(
    benchmark: Benchmark,
    routers: Sequence[LoadedRouter],
    cache: ScoreCache | None = None,
    batch_size: int = BATCH_SIZE,
    progress: bool = True,
    bootstrap: int = BOOTSTRAP_RESAMPLES,
) -> dict[str, Any]:
    """Metrics for every router on one benchmark, as written to `<benchmark>.json`.

    With `bootstrap` > 0, every scored router (not `random`, whose spread is its 10 runs)
    also gets `apgr_sd` and `apgr_ci95` from that many paired resamples of the prompts (seed
    0), and `paired` holds each pair's APGR difference with its bootstrap SD and interval.
    """
    strong_q, weak_q = benchmark.strong_quality, benchmark.weak_quality
    results: dict[str, Any] = {}
    scored: dict[str, np.ndarray] = {}
    for loaded in routers:
        if loaded.router is None:  # random
            curve, per_run = random_curve(benchmark)
            entry = metrics.summarize(curve, strong_q, weak_q)
            entry.update(runs=len(per_run), apgr_runs=per_run, cached=False)
        else:
            scores, hit = cached_scores(
                loaded, benchmark.name, benchmark.prompts, cache, batch_size, progress
            )
            curve = metrics.threshold_curve(scores, benchmark.strong, benchmark.weak)
            entry = metrics.summarize(curve, strong_q, weak_q)
            entry.update(checkpoint=loaded.checkpoint, cache_key=loaded.identity, cached=hit)
            scored[loaded.name] = scores
        results[loaded.name] = entry
    paired = []
    if bootstrap > 0 and scored:
        draws = metrics.bootstrap_apgr(scored, benchmark.strong, benchmark.weak, bootstrap)
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
        metrics.optimal_curve(benchmark.strong, benchmark.weak), strong_q, weak_q
    )
    return {
        "benchmark": benchmark.name,
        "n_prompts": len(benchmark),
        "strong": {"model": benchmark.strong_model, "quality": strong_q},
        "weak": {"model": benchmark.weak_model, "quality": weak_q},
        "routers": results,
        "optimal": optimal,
        "bootstrap": bootstrap if scored else 0,
        "paired": paired,
    }


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
) -> dict[str, dict[str, Any]]:
    """Evaluate routers on benchmarks; write `<output>/<benchmark>.json` and `.png` for each.
    `device`: torch device of the routers that run a model (`bert`, `causal_llm`)."""
    from routellm_lc.evals.benchmarks import STRONG_MODEL, WEAK_MODEL, load_benchmark
    from routellm_lc.evals.plots import plot_benchmark

    if not router_names:
        raise RouterLoadError("No routers to evaluate: pass --routers NAME [NAME ...].")
    loaded_benchmarks = [
        load_benchmark(spec, data_dir, strong_model or STRONG_MODEL, weak_model or WEAK_MODEL)
        for spec in benchmarks
    ]
    routers = load_routers(router_names, checkpoints, device=device)
    cache = ScoreCache() if use_cache else None
    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    all_results: dict[str, dict[str, Any]] = {}
    for benchmark in loaded_benchmarks:
        if limit is not None:
            benchmark = benchmark.stratified_sample(limit, seed=seed)
        result = evaluate_benchmark(benchmark, routers, cache, batch_size, progress, bootstrap)
        result["limit"] = limit
        result["seed"] = seed if limit is not None else None
        (output / f"{benchmark.name}.json").write_text(
            json.dumps(_json_safe(result), indent=2) + "\n", encoding="utf-8"
        )
        plot_benchmark(result, output / f"{benchmark.name}.png")
        all_results[benchmark.name] = result
    return all_results


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
            apgr = f"{entry['apgr']:.3f}" + (f"±{sd:.3f}" if sd is not None else "")
            row.append(f"{apgr}  {entry['cpt50']:5.1f}%")
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
