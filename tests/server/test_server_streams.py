"""Streams that are odd but possible: line endings split between network reads, streams that
end (or report an error) before any of their answer, on the direct and the LiteLLM paths."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from routellm_lc.server.forwarding import Target, UpstreamFailure, _EventReader

HARD = [{"role": "user", "content": "a hard question"}]  # routed to the strong model


def _event(delta: dict, finish: str | None = None) -> bytes:
    chunk = {
        "id": "odd",
        "object": "chat.completion.chunk",
        "created": 1,
        "model": "odd",
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(chunk).encode() + b"\n\n"


ROLE = _event({"role": "assistant", "content": ""})
ANSWER = _event({"content": "Hello"}) + _event({"content": " world"}) + _event({}, "stop")
DONE = b"data: [DONE]\n\n"
ERROR = b'data: {"error": {"message": "model overloaded", "type": "server_error"}}\n\n'


def _split_line_endings(stream: bytes, ending: bytes) -> list[bytes]:
    """`stream` with `ending` for every line end, written so that each blank line's ending
    starts a new write (a CRLF arrives as CR ... then LF in the next read)."""
    stream = stream.replace(b"\n", ending)
    if ending == b"\r\n":
        return stream.replace(b"\r\n\r\n", b"\r\n\r|\n").split(b"|")
    return stream.replace(ending * 2, ending * 2 + b"|").split(b"|")


#: What the odd upstream writes for each model name, one item per network write.
SCRIPTS: dict[str, list[bytes]] = {
    "crlf": _split_line_endings(ROLE + ANSWER + DONE, b"\r\n"),
    "cr": _split_line_endings(ROLE + ANSWER + DONE, b"\r"),
    "roleonly": [ROLE],  # then a clean end: no content, no finish reason, no [DONE]
    "roleonly-done": [ROLE, DONE],
    "errorevent": [ERROR],
    "role-then-error": [ROLE, ERROR],
    "answer-then-error": [ROLE, _event({"content": "Hel"}), ERROR],
    "bom": [b"\xef\xbb\xbf", ANSWER + DONE],  # a byte-order mark opening the stream
}


class OddUpstream:
    """An OpenAI-compatible endpoint (HTTP/1.1, chunked SSE, one request per connection) that
    streams `SCRIPTS[model]`, each item in its own write."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def start(self) -> OddUpstream:
        self._thread.start()
        start = asyncio.start_server(self._handle, "127.0.0.1", 0)
        self._server = asyncio.run_coroutine_threadsafe(start, self.loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def stop(self) -> None:
        async def shut() -> None:
            assert self._server is not None
            self._server.close()

        asyncio.run_coroutine_threadsafe(shut(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(
                int(line.split(b":", 1)[1])
                for line in head.split(b"\r\n")
                if line.lower().startswith(b"content-length:")
            )
            body = json.loads(await reader.readexactly(length))
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                b"transfer-encoding: chunked\r\nconnection: close\r\n\r\n"
            )
            for piece in SCRIPTS[body["model"]]:
                writer.write(b"%x\r\n%s\r\n" % (len(piece), piece))
                await writer.drain()
                await asyncio.sleep(0.02)  # separate reads on the other side
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()


@pytest.fixture(scope="module")
def odd() -> Iterator[OddUpstream]:
    upstream = OddUpstream().start()
    yield upstream
    upstream.stop()


def start_odd(start_server, odd: OddUpstream, mode: str, forwarding: str, fallback: bool = True):
    """A server whose strong model is the odd upstream in `mode`, its weak one the backend."""
    return start_server(
        strong=f"openai/{mode}",
        strong_api_base=odd.base_url,
        forwarding=forwarding,
        fallback=fallback,
    )


def ask(server) -> httpx.Response:
    body = {"model": "router-test_keyword-0.5", "messages": HARD, "stream": True}
    return httpx.post(f"{server.base_url}/chat/completions", json=body, timeout=20)


def streamed_text(response: httpx.Response) -> str:
    text = ""
    for line in response.text.splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:]).get("choices", ()):
                text += choice["delta"].get("content") or ""
    return text


# -- line endings ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["crlf", "cr", "bom"])
def test_cr_and_crlf_line_endings_split_between_reads_are_relayed(start_server, odd, mode):
    """sse-starlette ends lines with CRLF; the SSE spec allows CR alone too. A CRLF whose CR
    and LF arrive in different reads is one line end, not a malformed stream. A byte-order
    mark opening the stream is ignored, as the spec says (it hid the first event)."""
    response = ask(start_odd(start_server, odd, mode, "auto"))
    assert response.status_code == 200, response.text
    assert "x-routellm-fallback-from" not in response.headers
    assert streamed_text(response) == "Hello world"
    assert "\r" not in response.text and response.text.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize("ending", [b"\n", b"\r\n", b"\r"])
def test_event_reader_handles_every_line_ending_at_every_split(ending):
    stream = (ROLE + ANSWER + DONE).replace(b"\n", ending)
    target = Target("openai/odd", "odd", "http://unused", None, None)

    async def read(pieces: list[bytes]) -> bytes:
        async def chunks() -> AsyncIterator[bytes]:
            for piece in pieces:
                yield piece

        reader = _EventReader(chunks(), target)
        out = b""
        while (batch := await reader.next_batch()) is not None:
            out += batch
        assert reader.done and reader.answered
        return out

    expected = ROLE + ANSWER + DONE
    assert asyncio.run(read([bytes([b]) for b in stream])) == expected  # a byte per read
    for cut in range(1, len(stream)):
        assert asyncio.run(read([stream[:cut], stream[cut:]])) == expected


# -- streams that end or fail before their answer ------------------------------------------------


@pytest.mark.parametrize("forwarding", ["auto", "litellm"])
@pytest.mark.parametrize("mode", ["roleonly", "errorevent", "role-then-error"])
def test_a_stream_without_any_answer_falls_back(start_server, odd, fresh_backend, forwarding, mode):
    """A role-only event and then the end (LiteLLM adds a finish reason of its own), or an
    error event before any content: the chosen model failed before a byte reached the client."""
    response = ask(start_odd(start_server, odd, mode, forwarding))
    assert response.status_code == 200, response.text
    assert response.headers["x-routellm-fallback-from"] == f"openai/{mode}"
    assert streamed_text(response).startswith("[weak-model] echo: a hard question")
    assert '"error"' not in response.text


def test_a_stream_ending_with_done_before_any_answer_falls_back(start_server, odd, fresh_backend):
    response = ask(start_odd(start_server, odd, "roleonly-done", "auto"))
    assert response.headers["x-routellm-fallback-from"] == "openai/roleonly-done"
    assert streamed_text(response).startswith("[weak-model]")


@pytest.mark.parametrize("forwarding", ["auto", "litellm"])
@pytest.mark.parametrize(
    ("mode", "says"),
    [("roleonly", "ended before any of its answer"), ("errorevent", "model overloaded")],
)
def test_without_fallback_a_stream_without_any_answer_is_a_clean_502(
    start_server, odd, forwarding, mode, says
):
    response = ask(start_odd(start_server, odd, mode, forwarding, fallback=False))
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    # LiteLLM may notice a stream that ends without a finish reason first, and say so
    litellms = "ended before a finish_reason" if forwarding == "litellm" else says
    assert error["code"] == "upstream_error"
    assert says in error["message"] or litellms in error["message"], error["message"]
    assert f"openai/{mode}" in error["message"]


def test_an_error_event_after_the_answer_began_is_relayed(start_server, odd):
    """Part of the answer reached the client: the upstream's error event ends the stream."""
    response = ask(start_odd(start_server, odd, "answer-then-error", "auto"))
    assert response.status_code == 200
    assert "x-routellm-fallback-from" not in response.headers
    assert streamed_text(response) == "Hel" and "model overloaded" in response.text


def test_error_event_before_the_answer_is_an_upstream_failure():
    target = Target("openai/odd", "odd", "http://unused", None, None)

    async def first_batch() -> None:
        async def chunks() -> AsyncIterator[bytes]:
            yield ROLE + ERROR

        await _EventReader(chunks(), target).next_batch()

    with pytest.raises(UpstreamFailure, match="model overloaded") as caught:
        asyncio.run(first_batch())
    assert caught.value.kind == "error_event" and caught.value.status == 502
