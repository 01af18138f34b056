"""What the torch routers (`bert`, `causal_llm`) cost per device: one-prompt scoring latency
and batch throughput on the CPU and on a GPU, in one run (the CPU is the anchor).

    python benchmarks/device_scoring.py [--devices cpu cuda] [--prompts 200] [--json out.json]

Scoring cost depends on a model's shape, not on its weights, so the checkpoints are stand-ins
of the real shapes, built here: `bert` = the bundled MiniLM with an untrained 3-label head (as
in `routing_latency.py`); `causal_llm` = randomly initialised Llama models of SmolLM2-135M's
and of Llama-3-8B's shape (RouteLLM's `causal_llm_gpt4_augmented`), in bfloat16, saved and
loaded through `load_router` like a real checkpoint, with the MiniLM WordPiece tokenizer and the
plain prompt format. Llama-3-8B's shape is skipped on the CPU (seconds per prompt) and where
the GPU has less than 24 GB. Prompts: real user prompts from the training sources
(`routing_latency.training_prompts`), never the evaluation sets.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).resolve().parent))
from routing_latency import (  # noqa: E402
    bert_standin,
    data_dir,
    emit,
    latencies_ms,
    summary,
    throughput,
    training_prompts,
)

#: Llama shapes of the two LLM classifiers (their configs' sizes; weights random).
SHAPES = {
    "smollm2-135m": dict(
        hidden_size=576,
        intermediate_size=1536,
        num_hidden_layers=30,
        num_attention_heads=9,
        num_key_value_heads=3,
        vocab_size=49152,
        tie_word_embeddings=True,
    ),
    "llama3-8b": dict(
        hidden_size=4096,
        intermediate_size=14336,
        num_hidden_layers=32,
        num_attention_heads=32,
        num_key_value_heads=8,
        vocab_size=128256,
        tie_word_embeddings=False,
    ),
    "tiny": dict(  # a smoke test of this script
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        vocab_size=31000,
        tie_word_embeddings=True,
    ),
}


def llm_standin(shape: str, root: Path) -> Path:
    """A bfloat16 Llama of `shape` with random weights (seed 0), saved with MiniLM's tokenizer."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from routellm_lc.embeddings import _bundled_model_path

    folder = root / f"causal_llm_{shape}"
    if (folder / "config.json").is_file():
        return folder
    config = LlamaConfig(max_position_embeddings=8192, **SHAPES[shape])
    torch.manual_seed(0)
    where = "cuda" if torch.cuda.is_available() else "cpu"  # random init is fast on a GPU
    with torch.device(where):
        model = LlamaForCausalLM._from_config(config, dtype=torch.bfloat16)
    model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(str(_bundled_model_path())).save_pretrained(folder)
    del model
    return folder


def measure(router: Any, prompts: list[str], rounds: int = 3) -> dict[str, Any]:
    router.strong_win_rate(prompts[:8])  # warm-up: kernels, allocator, tokenizer caches
    single = summary(latencies_ms(lambda p: router.strong_win_rate([p]), prompts))
    rates = [throughput(router.strong_win_rate, prompts) for _ in range(rounds)]
    return {"one_prompt": single, "batch_prompts_per_s": round(max(rates), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", nargs="+", default=["cpu", "cuda"])
    parser.add_argument("--prompts", type=int, default=200)
    parser.add_argument("--shapes", nargs="+", default=["smollm2-135m", "llama3-8b"])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--work", default=None, help="folder for the stand-in checkpoints")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)

    import torch
    import transformers

    from routellm_lc.routers import load_router, resolve_device

    devices = [resolve_device(d) for d in args.devices]  # an absent GPU fails here
    prompts = training_prompts(data_dir(args.data_dir))
    random.Random(0).shuffle(prompts)
    prompts = prompts[: args.prompts]
    work = Path(args.work or Path(__file__).resolve().parents[1] / ".cache" / "bench")
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {
            "cpu_cores": os.cpu_count(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None,
            "python": platform.python_version(),
            "torch": torch.__version__,
            "transformers": transformers.__version__,
            "torch_threads": torch.get_num_threads(),
        },
        "prompts": len(prompts),
        "routers": {},
    }
    checkpoints = {"bert (MiniLM)": ("bert", bert_standin()[0], {})}
    for shape in args.shapes:
        options = {"prompt_format": "plain", "dtype": "bfloat16"}
        checkpoints[f"causal_llm ({shape}, bf16)"] = (
            "causal_llm",
            None,
            options | {"shape": shape},
        )
    for label, (name, folder, options) in checkpoints.items():
        for device in devices:
            shape = options.get("shape")
            if shape == "llama3-8b" and (
                device == "cpu" or torch.cuda.get_device_properties(device).total_memory < 24e9
            ):
                continue
            if shape:
                folder = str(llm_standin(shape, work))
            kwargs = {k: v for k, v in options.items() if k != "shape"}
            started = time.perf_counter()
            router = load_router(name, checkpoint=folder, device=device, **kwargs)
            load_s = time.perf_counter() - started
            row = measure(router, prompts) | {"load_s": round(load_s, 1)}
            results["routers"].setdefault(label, {})[device] = row
            print(f"{label} on {device}: {json.dumps(row)}", flush=True)
            del router
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
    for by_device in results["routers"].values():
        cpu, gpu = by_device.get("cpu"), next((v for k, v in by_device.items() if k != "cpu"), None)
        if cpu and gpu:
            by_device["gpu_vs_cpu"] = {
                "one_prompt_p50_speed-up": round(
                    cpu["one_prompt"]["p50_ms"] / gpu["one_prompt"]["p50_ms"], 1
                ),
                "batch_speed-up": round(gpu["batch_prompts_per_s"] / cpu["batch_prompts_per_s"], 1),
            }
    emit(results, args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
