"""Fixtures for the graph/tracing tests: a deterministic keyword router, a routed chat model on
the local backend, and a local HTTP server that captures what the real `langsmith` client sends."""

from __future__ import annotations

import email.parser
import email.policy
import json
import threading
from collections.abc import Sequence
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import numpy as np
import pytest

from routellm_lc.chat_model import RouteLLMChat
from routellm_lc.routers.base import Router

STRONG, WEAK = "openai/strong", "openai/weak"


class KeywordRouter(Router):
    """Scores 0.9 when a prompt mentions one of `hard_words`, else 0.1 (0.5 for "medium")."""

    name = "keyword"

    def __init__(self, hard_words: Sequence[str] = ("hard", "prove")) -> None:
        self.hard_words = tuple(hard_words)

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        def score(prompt: str) -> float:
            text = prompt.lower()
            if any(word in text for word in self.hard_words):
                return 0.9
            return 0.5 if "medium" in text else 0.1

        return np.array([score(p) for p in prompts])


@pytest.fixture
def make_chat(fresh_backend):
    def make(**overrides: Any) -> RouteLLMChat:
        params: dict[str, Any] = {
            "strong": STRONG,
            "weak": WEAK,
            "router": KeywordRouter(),
            "threshold": 0.5,
            "api_base": fresh_backend.base_url,
            "api_key": "test-key",
            "timeout": 10,
            "max_retries": 0,
        }
        return RouteLLMChat(**{**params, **overrides})

    return make


# -- LangSmith capture ---------------------------------------------------------------------------
class CapturedRuns:
    """Runs received by the capture server, merged per run id (create + update + parts)."""

    def __init__(self) -> None:
        self.runs: dict[str, dict[str, Any]] = {}
        self.paths: list[str] = []
        self.url = ""  # set by the fixture once the server listens
        self.lock = threading.Lock()

    def add(self, operation: str, run: dict[str, Any]) -> None:
        with self.lock:
            merged = self.runs.setdefault(str(run["id"]), {})
            for key, value in run.items():
                if value is not None or key not in merged:
                    merged[key] = value

    def add_part(self, run_id: str, field: str, value: Any) -> None:
        with self.lock:
            self.runs.setdefault(run_id, {"id": run_id})[field] = value

    def named(self, name: str) -> list[dict[str, Any]]:
        return [r for r in self.runs.values() if r.get("name") == name]

    def children(self, run_id: str) -> list[dict[str, Any]]:
        return [r for r in self.runs.values() if str(r.get("parent_run_id")) == str(run_id)]


def _decode(body: bytes, headers: Any) -> bytes:
    if "zstd" in (headers.get("Content-Encoding") or ""):
        import zstandard

        return zstandard.ZstdDecompressor().decompressobj().decompress(body)
    return body


def _handler(captured: CapturedRuns) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: Any) -> None:  # keep test output clean
            pass

        def _reply(self, status: int, payload: Any) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:
            # /info without feature flags: the client falls back to plain (uncompressed) parts.
            self._reply(200, {"version": "0.0-capture"} if self.path.endswith("/info") else {})

        def _body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return _decode(self.rfile.read(length), self.headers)

        def do_POST(self) -> None:
            body = self._body()
            captured.paths.append(self.path)
            path = self.path.split("?")[0]
            if path.endswith("/runs/multipart"):
                self._multipart(body)
            elif path.endswith("/runs/batch"):
                batch = json.loads(body)
                for op in ("post", "patch"):
                    for run in batch.get(op) or []:
                        captured.add(op, run)
            elif path.endswith("/runs"):
                captured.add("post", json.loads(body))
            self._reply(200, {})

        def do_PATCH(self) -> None:
            body = self._body()
            captured.paths.append(self.path)
            run = json.loads(body)
            run.setdefault("id", self.path.rstrip("/").rsplit("/", 1)[-1])
            captured.add("patch", run)
            self._reply(200, {})

        def _multipart(self, body: bytes) -> None:
            head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
            message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
            for part in message.iter_parts():
                name = part.get_param("name", header="content-disposition")
                value = json.loads(part.get_payload(decode=True) or b"null")
                operation, run_id, *field = name.split(".")
                if operation not in ("post", "patch"):
                    continue  # attachments, feedback
                if field:
                    captured.add_part(run_id, field[0], value)
                else:
                    captured.add(operation, {**value, "id": run_id})

    return Handler


@pytest.fixture
def langsmith_capture():
    """A local LangSmith-compatible endpoint recording every run the client sends."""
    captured = CapturedRuns()
    server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(captured))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    captured.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield captured
    server.shutdown()
    server.server_close()
