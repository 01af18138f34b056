"""Controller overhead: what a routed `chat.completions.create` adds over calling LiteLLM
directly, for routellm-lc's `Controller` and for RouteLLM's own, in one run.

    .venv/bin/python benchmarks/controller_overhead.py [--requests 300] [--json out.json]

One backend process (`python -m routellm_lc.testing.backend`, no latency) answers everything.
Each controller runs in its own virtual environment's Python (RouteLLM's: `--routellm-python`,
default .cache/routellm-venv/bin/python, set up as in benchmarks/server_overhead.py), and in
that process the timed calls alternate: LiteLLM's `completion` straight to the weak model,
then the controller's `chat.completions.create(model="router-<router>-1", ...)`, which routes
to the same weak model. So each overhead is measured against the same LiteLLM, in the same
process, at the same moment. Prompts are unique per request (no embedding cache hits).

Routers: `random` in both (RouteLLM's others need the Hugging Face Hub or OpenAI's embedding
API, which this machine cannot reach), and routellm-lc's bundled `mf` (local embedding and
scoring: RouteLLM's `mf` makes an OpenAI embedding call per prompt instead).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

#: Runs inside each venv: argv = [kind, router, base_url, requests, warmup]; prints JSON.
WORKER = r"""
import json, os, statistics, sys, time
os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
kind, router, base, n, warmup = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
import litellm
if kind == "routellm":
    from routellm.controller import Controller
    client = Controller(routers=[router], strong_model="openai/strong-model",
                        weak_model="openai/weak-model", config={}, api_base=base, api_key="x")
else:
    from routellm_lc import Controller
    client = Controller(routers=[router], strong_model="openai/strong-model",
                        weak_model="openai/weak-model", api_base=base, api_key="x", max_retries=0)
TOPICS = ["What is the capital of France?", "Prove that the square root of 2 is irrational.",
          "Write a Python function that checks whether a string is a palindrome.",
          "Give me three ideas for a birthday party."]
direct, routed = [], []
for i in range(warmup + n):
    messages = [{"role": "user", "content": f"{TOPICS[i % 4]} (request {i})"}]
    t = time.perf_counter()
    litellm.completion(model="openai/weak-model", messages=messages, api_base=base,
                       api_key="x", max_tokens=16, timeout=60, max_retries=0)
    d = time.perf_counter() - t
    t = time.perf_counter()
    r = client.chat.completions.create(model=f"router-{router}-1", messages=messages,
                                       max_tokens=16)
    c = time.perf_counter() - t
    assert r.choices[0].message.content.startswith("[weak-model]"), r
    if i >= warmup:
        direct.append(d * 1000)
        routed.append(c * 1000)
def pct(v, q):
    v = sorted(v)
    return v[min(len(v) - 1, int(q * len(v)))]
added = [c - d for c, d in zip(routed, direct)]
print(json.dumps({
    "direct_p50_ms": statistics.median(direct), "direct_p99_ms": pct(direct, 0.99),
    "controller_p50_ms": statistics.median(routed), "controller_p99_ms": pct(routed, 0.99),
    "added_p50_ms": statistics.median(added),
    "litellm": __import__("importlib.metadata").metadata.version("litellm"),
}))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"backend did not start on port {port}")


def run_cell(python: str, kind: str, router: str, base: str, requests: int, warmup: int) -> dict:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1"}
    if kind == "routellm":  # RouteLLM builds an OpenAI client at import: it needs some key
        env.setdefault("OPENAI_API_KEY", "unused")
    args = [python, "-c", WORKER, kind, router, base, str(requests), str(warmup)]
    done = subprocess.run(args, capture_output=True, text=True, env=env, cwd="/tmp", timeout=900)
    if done.returncode != 0:
        raise RuntimeError(f"{kind}/{router} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument(
        "--routellm-python", default=str(REPO / ".cache" / "routellm-venv" / "bin" / "python")
    )
    parser.add_argument("--skip-routellm", action="store_true")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()

    port = free_port()
    backend = subprocess.Popen(
        [sys.executable, "-m", "routellm_lc.testing.backend", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        cwd=REPO,
    )
    try:
        wait_for(port)
        base = f"http://127.0.0.1:{port}/v1"
        cells = [("routellm-lc", sys.executable, "ours", r) for r in ("random", "mf")]
        if not args.skip_routellm:
            cells.insert(0, ("RouteLLM", args.routellm_python, "routellm", "random"))
        results = []
        for label, python, kind, router in cells:
            row = run_cell(python, kind, router, base, args.requests, args.warmup)
            row.update(controller=label, router=router)
            results.append(row)
            print(
                f"{label:12} {router:7} direct p50 {row['direct_p50_ms']:.2f} ms, controller "
                f"p50 {row['controller_p50_ms']:.2f} ms (p99 {row['controller_p99_ms']:.2f}), "
                f"added p50 {row['added_p50_ms']:+.2f} ms (litellm {row['litellm']})",
                flush=True,
            )
    finally:
        backend.terminate()
        backend.wait(timeout=10)
    out = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.node()} ({os.cpu_count()} CPUs)",
        "requests": args.requests,
        "cells": results,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
