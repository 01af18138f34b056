"""Server soak: memory and errors of a server under sustained load, round after round.

    .venv/bin/python benchmarks/server_soak.py                      # ~6 min
    .venv/bin/python benchmarks/server_soak.py --rounds 4 --per-round 2000 --skip-routellm

Each target server runs as its own process in front of one local backend (as in
server_overhead.py, whose process and load-generator helpers this reuses): `--rounds` rounds of
`--per-round` requests at concurrency `--concurrency`, unique prompts (so every request is
scored, none from the embedding cache), alternating plain and streamed (SSE) rounds. After each
round: the server's RSS (with its children), throughput, status counts and requests lost. A
leak shows as RSS that keeps growing round after round; the first rounds grow while caches and
allocator pools fill (the embedding cache holds at most 10,000 prompts).

Targets: routellm-lc's server with `mf` (the bundled checkpoint) and RouteLLM 0.2.0's own
server with its `random` router (it has no local `mf`: its embeddings come from OpenAI's API),
from `--routellm-python` as in server_overhead.py. Results: printed as Markdown and written to
`--out` (JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import server_overhead as so  # noqa: E402 - a sibling script, not a package


def soak(
    name: str, proc: so.Process, health: str, url: str, model: str, args: argparse.Namespace
) -> dict[str, Any]:
    so.wait_http(health, proc=proc)
    asyncio.run(so.closed_loop(url, model, 8, 50, start_index=99_000_000))  # warm-up
    rounds = [{"round": "start", "rss_mb": round(proc.rss_mb(), 1)}]
    print(f"  {name}: after warm-up rss {rounds[0]['rss_mb']:.0f} MB", flush=True)
    for index in range(args.rounds):
        stream = index % 2 == 1
        seconds, _, statuses, lost, samples = asyncio.run(
            so.closed_loop(
                url,
                model,
                args.concurrency,
                args.per_round,
                start_index=10_000_000 * (index + 1),
                stream=stream,
            )
        )
        statuses.pop("max_ms", None)
        row = {
            "round": index,
            "stream": stream,
            "requests": args.per_round,
            "req_per_s": round(args.per_round / seconds, 1),
            "statuses": statuses,
            "lost": lost,
            "rss_mb": round(proc.rss_mb(), 1),
            **({"error_samples": samples} if samples else {}),
        }
        rounds.append(row)
        print(
            f"  {name} round {index} ({'stream' if stream else 'json'}): "
            f"{row['req_per_s']:.0f} req/s, {statuses}, lost {lost}, rss {row['rss_mb']:.0f} MB",
            flush=True,
        )
    return {"target": name, "model": model, "rounds": rounds}


def growth(result: dict[str, Any]) -> dict[str, float]:
    """RSS growth over the first half of the rounds and over the second half (MB)."""
    rss = [r["rss_mb"] for r in result["rounds"]]
    middle = len(rss) // 2
    return {
        "first_half_mb": round(rss[middle] - rss[0], 1),
        "second_half_mb": round(rss[-1] - rss[middle], 1),
    }


def markdown(results: dict[str, Any]) -> str:
    lines = [
        "| target | requests | errors | lost | RSS after warm-up | RSS at the end | growth, 1st half | growth, 2nd half |",
        "|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for result in results["targets"]:
        rounds = result["rounds"][1:]
        errors = sum(v for r in rounds for k, v in r["statuses"].items() if k != "200")
        grow = growth(result)
        lines.append(
            f"| {result['target']} | {sum(r['requests'] for r in rounds):,} | {errors} | "
            f"{sum(r['lost'] for r in rounds)} | {result['rounds'][0]['rss_mb']:.0f} MB | "
            f"{result['rounds'][-1]['rss_mb']:.0f} MB | {grow['first_half_mb']:+.0f} MB | "
            f"{grow['second_half_mb']:+.0f} MB |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--per-round", type=int, default=5000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--skip-routellm", action="store_true")
    parser.add_argument(
        "--routellm-python", default=str(so.REPO / ".cache" / "routellm-venv" / "bin" / "python")
    )
    parser.add_argument("--out", default=str(so.REPO / ".cache" / "bench" / "server_soak.json"))
    args = parser.parse_args(argv)
    mf = so.mf_checkpoint_args()
    if mf is None:
        parser.error("no mf checkpoint: run benchmarks/routing_latency.py first")
    backend_port = so.free_port()
    backend = so.backend_process(backend_port)
    backend_url = f"http://127.0.0.1:{backend_port}/v1"
    so.wait_http(f"{backend_url}/models")
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_avg_at_start": os.getloadavg(),
        "mf_checkpoint": mf[1],
        "targets": [],
    }
    plan = [
        (
            "ours-mf",
            "router-mf-0.5",
            lambda p: so.ours("soak-ours-mf", "mf", backend_url, p, *mf[0]),
        )
    ]
    if not args.skip_routellm:
        plan.append(("routellm-random", "router-random-0.5", lambda p: so.routellm(args.routellm_python, backend_url, p)))  # fmt: skip
    try:
        for name, model, start in plan:
            port = so.free_port()
            proc = start(port)
            base = f"http://127.0.0.1:{port}"
            health = f"{base}/docs" if name.startswith("routellm") else f"{base}/health"
            try:
                result = soak(name, proc, health, f"{base}/v1/chat/completions", model, args)
                result["growth"] = growth(result)
                results["targets"].append(result)
            finally:
                proc.stop()
    finally:
        backend.stop()
    so.save(results, args.out, markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
