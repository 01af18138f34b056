"""`RouteLLMChat.decide`'s own cost, without any embedding: a router that returns a constant.

Routing latency on a busy or slow VM is mostly the embedder's, and its jitter hides the
routing core's own cost; this isolates it. Compare two trees by running the script with each
on `PYTHONPATH` (e.g. a `git archive <commit> routellm_lc | tar -x -C /tmp/old`):

    .venv/bin/python benchmarks/decide_overhead.py --label HEAD
    PYTHONPATH=/tmp/old .venv/bin/python benchmarks/decide_overhead.py --label old
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")


def main() -> None:
    from routellm_lc.chat_model import RouteLLMChat
    from routellm_lc.routers.base import Router

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--label", default="this tree")
    args = parser.parse_args()

    class Constant(Router):
        name = "constant"

        def strong_win_rate(self, prompts):
            return np.full(len(prompts), 0.3)

    chat = RouteLLMChat(router=Constant(), strong="openai/strong", weak="openai/weak")
    for _ in range(200):
        chat.decide(["warm-up"])
    times = np.empty(args.calls)
    for i in range(args.calls):
        start = time.perf_counter()
        chat.decide([f"prompt {i}"])
        times[i] = time.perf_counter() - start
    print(
        f"{args.label}: decide p50 {np.percentile(times, 50) * 1e6:.1f} µs, "
        f"p99 {np.percentile(times, 99) * 1e6:.1f} µs, mean {times.mean() * 1e6:.1f} µs "
        f"over {args.calls} calls"
    )


if __name__ == "__main__":
    main()
