"""Server overhead: the local backend called directly, through routellm-lc's server and through
RouteLLM's own server, in one run; then a 5,000-request load run and a fault run.

    .venv/bin/python benchmarks/server_overhead.py                 # everything (~5 min)
    .venv/bin/python benchmarks/server_overhead.py --skip-routellm --requests 500

Every server runs as its own process in front of one backend process
(`python -m routellm_lc.testing.backend`), one server at a time; the load generator is a
closed-loop aiohttp client (as in ../shared/notes/peer-server.md): `concurrency` workers each
send the next request when their previous one has answered. Prompts are unique per request
(no embedding cache hits), max_tokens 16; one more cell streams (SSE, whole stream timed). Each cell: `--warmup` requests, then `--requests`
timed ones. RSS: the server process (and its children), sampled after each cell, max.

RouteLLM runs from its own virtual environment (`--routellm-python`, default
.cache/routellm-venv/bin/python): `python3 -m venv .cache/routellm-venv`, then
`pip install torch==2.13.0`, then `pip install "routellm[serve]==0.2.0"`.

Results: printed as Markdown and written to `--out` (JSON).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import psutil
from fastapi import FastAPI, Request
from starlette.responses import Response

from routellm_lc.server.schemas import ChatCompletionRequest

REPO = Path(__file__).resolve().parents[1]
PROMPTS = [
    "What is the capital of France?",
    "Write a Python function that checks whether a string is a palindrome.",
    "Explain the difference between TCP and UDP in two sentences.",
    "Prove that the square root of 2 is irrational.",
    "Give me three ideas for a birthday party.",
    "Summarise the causes of the First World War.",
    "How do I reverse a linked list in C?",
    "Translate 'good morning' into Spanish, French and German.",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_http(url: str, timeout: float = 180.0, proc: Process | None = None) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.proc.poll() is not None:
            raise RuntimeError(f"the server exited; see {proc.log_path}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except Exception:
            time.sleep(0.25)
    raise RuntimeError(f"{url} did not come up within {timeout:.0f} s")


class Process:
    """A server subprocess; its log goes to a file under .cache/bench."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str] | None = None) -> None:
        log_dir = REPO / ".cache" / "bench"
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"{name}.log"
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            argv,
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
            cwd="/tmp",
        )

    def rss_mb(self) -> float:
        try:
            proc = psutil.Process(self.proc.pid)
            procs = [proc, *proc.children(recursive=True)]
            return sum(p.memory_info().rss for p in procs) / 2**20
        except psutil.Error:
            return float("nan")

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.log.close()


# --------------------------------------------------------------------------- load generation


@dataclass
class Cell:
    target: str
    concurrency: int
    requests: int
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list, repr=False)
    errors: int = 0
    lost: int = 0
    statuses: dict[str, int] = field(default_factory=dict)
    rss_mb: float = float("nan")

    @property
    def throughput(self) -> float:
        return len(self.latencies_ms) / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("latencies_ms")
        data.update(
            throughput=round(self.throughput, 1),
            p50_ms=round(self.pct(0.50), 2),
            p99_ms=round(self.pct(0.99), 2),
            mean_ms=round(statistics.fmean(self.latencies_ms), 2) if self.latencies_ms else None,
        )
        return data


def body_for(model: str, index: int, stream: bool = False) -> bytes:
    prompt = f"{PROMPTS[index % len(PROMPTS)]} (request {index})"
    body: dict[str, Any] = {
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": 16,
    }
    if stream:
        body["stream"] = True
    return json.dumps(body).encode()


async def closed_loop(
    url: str,
    model: str,
    concurrency: int,
    requests: int,
    *,
    start_index: int = 0,
    stream: bool = False,
    headers: dict[str, str] | None = None,
    timeout_s: float = 30.0,
) -> tuple[float, list[float], dict[str, int], int, list[dict[str, Any]]]:
    """`concurrency` workers share `requests`; returns (seconds, latencies of 200s, status
    counts, lost (no response), details of the first non-200 answers)."""
    counter = iter(range(start_index, start_index + requests))
    latencies: list[float] = []
    statuses: dict[str, int] = {}
    lost = 0
    samples: list[dict[str, Any]] = []
    every_ms: list[float] = []  # every answered request, errors included (to spot hangs)
    hdrs = {"content-type": "application/json", "authorization": "Bearer bench", **(headers or {})}
    connector = aiohttp.TCPConnector(limit=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=timeout_s)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:

        async def worker() -> None:
            nonlocal lost
            for index in counter:
                started = time.perf_counter()
                try:
                    async with session.post(
                        url, data=body_for(model, index, stream), headers=hdrs
                    ) as response:
                        payload = await response.read()
                        status = response.status
                        fallback = response.headers.get("x-routellm-fallback-from")
                except Exception as exc:  # no answer at all: lost
                    lost += 1
                    statuses[type(exc).__name__] = statuses.get(type(exc).__name__, 0) + 1
                    continue
                elapsed = (time.perf_counter() - started) * 1000
                key = str(status) + ("+fallback" if fallback else "")
                if stream and status == 200 and b'"error"' in payload:
                    key += "+stream_error_event"
                statuses[key] = statuses.get(key, 0) + 1
                if status == 200 and "stream_error" not in key:
                    latencies.append(elapsed)
                elif len(samples) < 3:
                    samples.append(
                        {"status": status, "ms": round(elapsed, 1), "body": payload[-300:].decode()}
                    )
                every_ms.append(elapsed)

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
    statuses["max_ms"] = round(max(every_ms), 1) if every_ms else 0
    return seconds, latencies, statuses, lost, samples


def run_cell(
    name: str,
    url: str,
    model: str,
    concurrency: int,
    requests: int,
    warmup: int,
    offset: int,
    stream: bool = False,
) -> Cell:
    asyncio.run(
        closed_loop(url, model, min(concurrency, 16), warmup, start_index=offset, stream=stream)
    )
    seconds, latencies, statuses, lost, _ = asyncio.run(
        closed_loop(url, model, concurrency, requests, start_index=offset + warmup, stream=stream)
    )
    statuses.pop("max_ms", None)
    errors = sum(v for k, v in statuses.items() if k != "200")
    return Cell(name, concurrency, requests, seconds, latencies, errors, lost, statuses)


# --------------------------------------------------------------------------- servers


def backend_process(port: int) -> Process:
    argv = [sys.executable, "-m", "routellm_lc.testing.backend", "--port", str(port)]
    return Process("backend", argv)


def ours(name: str, router: str, backend: str, port: int, *extra: str) -> Process:
    argv = [
        sys.executable, "-m", "routellm_lc.cli", "serve", "--routers", router,
        "--strong", "openai/strong-model", "--weak", "openai/weak-model",
        "--api-base", backend, "--api-key", "any", "--port", str(port), *extra,
    ]  # fmt: skip
    return Process(name, argv, {"HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO)})


def routellm(python: str, backend: str, port: int) -> Process:
    argv = [
        python, "-m", "routellm.openai_server", "--routers", "random",
        "--strong-model", "openai/strong-model", "--weak-model", "openai/weak-model",
        "--base-url", backend, "--api-key", "any", "--port", str(port),
    ]  # fmt: skip
    env = {"OPENAI_API_KEY": "any", "LITELLM_LOCAL_MODEL_COST_MAP": "True", "HF_HUB_OFFLINE": "1"}
    return Process("routellm", argv, env)


startup: dict[str, dict[str, float]] = {}  # per server: seconds to healthy, first request


def measure_target(
    name: str,
    proc: Process | None,
    url: str,
    model: str,
    args: argparse.Namespace,
    health: str | None,
) -> list[Cell]:
    if health:
        started = time.perf_counter()
        wait_http(health, proc=proc)
        up_s = time.perf_counter() - started
        first = asyncio.run(closed_loop(url, model, 1, 1, start_index=999_999))
        first_ms = (first[0]) * 1000
        print(f"  {name}: up in {up_s:.1f} s, first request {first_ms:.0f} ms", flush=True)
        startup[name] = {"up_s": round(up_s, 2), "first_request_ms": round(first_ms, 1)}
    cells = []
    plan = [(c, False) for c in args.concurrency]
    if args.stream_concurrency:
        plan.append((args.stream_concurrency, True))
    for index, (concurrency, stream) in enumerate(plan):
        offset = 1_000_000 * (index + 1)
        label = f"{name} (stream)" if stream else name
        cell = run_cell(label, url, model, concurrency, args.requests, args.warmup, offset, stream)
        cell.rss_mb = proc.rss_mb() if proc else float("nan")
        print(
            f"  {label:22} c={concurrency:<3} {cell.throughput:8.0f} req/s  "
            f"p50 {cell.pct(0.5):7.2f} ms  p99 {cell.pct(0.99):7.2f} ms  "
            f"errors {cell.errors}  lost {cell.lost}  rss {cell.rss_mb:.0f} MB",
            flush=True,
        )
        cells.append(cell)
    return cells


STAND_IN = REPO / ".cache" / "bench" / "mf_synthetic"


def mf_checkpoint_args() -> tuple[list[str], str] | None:
    """Flags for `serve` (the bundled checkpoint, else the same-shape stand-in that
    benchmarks/routing_latency.py trains), and a description; None if neither exists."""
    if (REPO / "routellm_lc" / "checkpoints" / "mf_default" / "config.json").is_file():
        return [], "bundled mf_default"
    if (STAND_IN / "config.json").is_file():
        # The stand-in records its embedder as "local:model:onnx", which `get_embedder` does
        # not resolve in a fresh process; it is the bundled MiniLM ONNX model, i.e. "local".
        copy = STAND_IN.with_name("mf_synthetic_server")
        shutil.copytree(STAND_IN, copy, dirs_exist_ok=True)
        config = json.loads((copy / "config.json").read_text())
        config["embedder"] = "local"
        (copy / "config.json").write_text(json.dumps(config, indent=2))
        return ["--checkpoint", f"mf={copy}"], "same-shape stand-in (routing_latency.py's)"
    return None


# --------------------------------------------------------------------------- fault run


def control(backend_root: str, action: str, payload: dict[str, Any]) -> None:
    import urllib.request

    request = urllib.request.Request(
        f"{backend_root}/_control/{action}",
        data=json.dumps(payload).encode(),
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=5):
        pass


def fault_run(backend_port: int, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Each backend fault, 40 requests at concurrency 8 through our server (timeout 1 s)."""
    root = f"http://127.0.0.1:{backend_port}"
    port = free_port()
    server = ours("ours-faults", "random", f"{root}/v1", port, "--timeout", "1")
    refused_port = free_port()
    refused = ours(
        "ours-refused", "random", f"http://127.0.0.1:{refused_port}/v1", free_port(),
        "--timeout", "1",
    )  # fmt: skip
    scenarios: list[tuple[str, dict[str, Any] | None, bool, Process]] = [
        ("strong 503 (always)", {"kind": "status", "status": 503, "times": None,
                                 "model": "strong-model"}, False, server),
        ("both 500 (always)", {"kind": "status", "status": 500, "times": None}, False, server),
        ("timeout, both (30 s sleep, 1 s limit)", {"kind": "timeout", "sleep_s": 30,
                                                   "times": None}, False, server),
        ("malformed JSON, both", {"kind": "malformed", "times": None}, False, server),
        ("connection dropped before answer, both", {"kind": "drop", "times": None},
         False, server),
        ("stream dropped after 2 chunks, both", {"kind": "drop", "after_chunks": 2,
                                                 "times": None}, True, server),
        ("malformed stream event, both", {"kind": "malformed", "times": None}, True, server),
        ("connection refused (no backend)", None, False, refused),
    ]  # fmt: skip
    results = []
    try:
        for proc in (server, refused):
            wait_http(f"http://127.0.0.1:{_port_of(proc)}/health")
        for label, fault, stream, proc in scenarios:
            control(root, "reset", {})
            if fault is not None:
                control(root, "fail", fault)
            url = f"http://127.0.0.1:{_port_of(proc)}/v1/chat/completions"
            started = time.perf_counter()
            seconds, _, statuses, lost, samples = asyncio.run(
                closed_loop(url, "router-random-0.5", 8, 40, stream=stream, timeout_s=15)
            )
            wall = time.perf_counter() - started
            results.append(
                {"scenario": label, "statuses": statuses, "lost": lost, "wall_s": round(wall, 2),
                 "sample": samples[:1]}
            )  # fmt: skip
            print(f"  {label:42} {statuses}  lost {lost}  {wall:.1f} s", flush=True)
    finally:
        control(root, "reset", {})
        server.stop()
        refused.stop()
    return results


def _port_of(proc: Process) -> int:
    argv = proc.proc.args
    return int(argv[argv.index("--port") + 1])


# --------------------------------------------------------------------------- request parsing


def parsing_microbench(rounds: int = 5000) -> dict[str, float]:
    """µs per request through a bare FastAPI app (no network): the server's way (raw body,
    orjson, `ChatCompletionRequest`'s validator on the dict) vs FastAPI's (a typed body
    parameter: json.loads, validation, model construction)."""
    validate = ChatCompletionRequest.__pydantic_validator__.validate_python
    app = FastAPI()

    @app.post("/raw")
    async def raw(request: Request) -> Response:
        validate(orjson.loads(await request.body()))
        return Response(b"{}", media_type="application/json")

    @app.post("/typed")
    async def typed(body: ChatCompletionRequest) -> Response:
        return Response(b"{}", media_type="application/json")

    tool = {
        "type": "function",
        "function": {
            "name": "f",
            "parameters": {
                "type": "object",
                "properties": {"a": {"type": "object", "properties": {"b": {"type": "array"}}}},
            },
        },
    }
    payload = json.dumps({"model": "router-mf-0.5", "max_tokens": 16, "tools": [tool],
                          "messages": [{"role": "system", "content": "Be brief."},
                                       {"role": "user", "content": PROMPTS[1]}]}).encode()  # fmt: skip

    async def call(path: str) -> None:
        scope = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.4"},
                 "http_version": "1.1", "method": "POST", "path": path, "raw_path": path.encode(),
                 "root_path": "", "scheme": "http", "query_string": b"", "server": ("x", 80),
                 "client": ("y", 1), "headers": [(b"content-type", b"application/json"),
                 (b"content-length", str(len(payload)).encode())]}  # fmt: skip
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": payload, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start" and message["status"] != 200:
                raise RuntimeError(f"{path}: HTTP {message['status']}")

        await app(scope, receive, send)

    async def timed(path: str) -> float:
        for _ in range(200):
            await call(path)
        started = time.perf_counter()
        for _ in range(rounds):
            await call(path)
        return (time.perf_counter() - started) / rounds * 1e6

    async def both() -> dict[str, float]:
        results = {"raw_orjson_validator_us": [], "fastapi_typed_body_us": []}
        for _ in range(3):  # interleaved, best of 3
            results["raw_orjson_validator_us"].append(await timed("/raw"))
            results["fastapi_typed_body_us"].append(await timed("/typed"))
        return {k: round(min(v), 1) for k, v in results.items()}

    return asyncio.run(both())


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    parser.add_argument(
        "--stream-concurrency", type=int, default=16, help="a streamed cell (0: none)"
    )
    parser.add_argument("--load", type=int, default=5000, help="requests in the load run @64")
    parser.add_argument("--skip-routellm", action="store_true")
    parser.add_argument("--skip-faults", action="store_true")
    parser.add_argument("--only", nargs="+", help="targets: direct ours-random routellm ours-mf")
    parser.add_argument(
        "--routellm-python", default=str(REPO / ".cache" / "routellm-venv" / "bin" / "python")
    )
    parser.add_argument("--out", default=str(REPO / ".cache" / "bench" / "server_overhead.json"))
    args = parser.parse_args(argv)
    wanted = set(args.only or ["direct", "ours-random", "routellm", "ours-mf"])
    if args.skip_routellm:
        wanted.discard("routellm")
    mf = mf_checkpoint_args()
    if mf is None:
        print("  (no mf checkpoint: skipping ours-mf; run benchmarks/routing_latency.py first)")
        wanted.discard("ours-mf")
    mf_flags, mf_description = mf or ([], "none")

    backend_port = free_port()
    backend = backend_process(backend_port)
    backend_url = f"http://127.0.0.1:{backend_port}/v1"
    wait_http(f"{backend_url}/models")
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "load_avg_at_start": os.getloadavg(),
        "requests": args.requests,
        "warmup": args.warmup,
        "mf_checkpoint": mf_description,
        "cells": [],
    }
    try:
        if "direct" in wanted:
            url = f"{backend_url}/chat/completions"
            cells = measure_target("direct", None, url, "weak-model", args, None)
            results["cells"] += [c.summary() for c in cells]
        plan = [
            ("ours-random", "router-random-0.5", lambda p: ours("ours-random", "random",
                                                                backend_url, p)),
            ("routellm", "router-random-0.5", lambda p: routellm(args.routellm_python,
                                                                 backend_url, p)),
            ("ours-mf", "router-mf-0.5", lambda p: ours("ours-mf", "mf", backend_url, p,
                                                        *mf_flags)),
        ]  # fmt: skip
        for name, model, start in plan:
            if name not in wanted:
                continue
            port = free_port()
            proc = start(port)
            try:
                base = f"http://127.0.0.1:{port}"
                health = f"{base}/health" if name != "routellm" else f"{base}/docs"
                cells = measure_target(
                    name, proc, f"{base}/v1/chat/completions", model, args, health
                )
                results["cells"] += [c.summary() for c in cells]
                if name == ("ours-mf" if "ours-mf" in wanted else "ours-random") and args.load:
                    load = run_cell(f"{name} load", f"{base}/v1/chat/completions", model, 64,
                                    args.load, args.warmup, 9_000_000)  # fmt: skip
                    load.rss_mb = proc.rss_mb()
                    results["load"] = load.summary()
                    print(f"  load {args.load} @64 via {name}: {load.summary()}", flush=True)
            finally:
                proc.stop()
        if not args.skip_faults:
            results["faults"] = fault_run(backend_port, args)
        results["parsing"] = parsing_microbench()
        print(f"  request parsing, µs per request in-process: {results['parsing']}")
    finally:
        backend.stop()
    results["startup"] = startup
    save(results, args.out, markdown(results))
    return 0


def save(results: dict[str, Any], out: str, table: str) -> None:
    """Write `results` (with the load average at the end) to `out` as JSON; print `table`."""
    results["load_avg_at_end"] = os.getloadavg()
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(results, indent=2))
    print(table)
    print(f"\nwritten to {out}")


def markdown(results: dict[str, Any]) -> str:
    cells = results["cells"]
    by = {(c["target"], c["concurrency"]): c for c in cells}
    lines = [
        "| target | concurrency | req/s | p50 ms | p99 ms | errors | server RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in cells:
        rss = "–" if c["rss_mb"] != c["rss_mb"] else f"{c['rss_mb']:.0f}"
        lines.append(
            f"| {c['target']} | {c['concurrency']} | {c['throughput']:,.0f} | {c['p50_ms']} | "
            f"{c['p99_ms']} | {c['errors']} | {rss} |"
        )
    notes = []
    for suffix in ("", " (stream)"):
        for concurrency in sorted({c["concurrency"] for c in cells}):
            direct, mine, peer = (
                by.get((t + suffix, concurrency)) for t in ("direct", "ours-random", "routellm")
            )
            what = f"c={concurrency}{suffix}"
            if direct and mine:
                added = mine["p50_ms"] - direct["p50_ms"]
                notes.append(f"- {what}: ours-random adds {added:.2f} ms at p50 over direct")
            if mine and peer and peer["throughput"]:
                ratio = mine["throughput"] / peer["throughput"]
                notes.append(f"- {what}: ours-random / RouteLLM throughput = {ratio:.1f}×")
    return "\n".join(lines + [""] + notes)


if __name__ == "__main__":
    raise SystemExit(main())
