"""Running the app: `serve` (the CLI's blocking entry point) and `ServerThread` (tests, notebooks).

`serve` loads the routers before the port opens (a bad router name or checkpoint fails with a
clear message, not a crashed lifespan), then freezes the start-up heap out of the garbage
collector (`gc.freeze()`): imports leave ~600k long-lived objects, and full collections over
them paused RouteLLM's server for ~300 ms. uvloop and httptools are used when installed; no
access log unless asked for.
"""

from __future__ import annotations

import gc
import importlib.util
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from routellm_lc.server.config import ServerConfig, ServerConfigError

log = logging.getLogger("routellm_lc.server")


def _uvicorn_config(app: Any, config: ServerConfig, *, fast_loop: bool = True) -> Any:
    import uvicorn

    has = importlib.util.find_spec
    uvicorn_config = uvicorn.Config(
        app,
        host=config.host,
        port=config.port,
        loop="uvloop" if fast_loop and has("uvloop") else "asyncio",
        http="httptools" if has("httptools") else "h11",
        access_log=config.access_log,
        log_level=config.log_level,
        lifespan="on",
        backlog=2048,
        timeout_keep_alive=30,
        timeout_graceful_shutdown=config.graceful_timeout,
        server_header=False,
    )
    if config.access_log:  # asked for explicitly: one line per request at any log level
        logging.getLogger("uvicorn.access").setLevel(logging.INFO)
    return uvicorn_config


def load_routing(config: ServerConfig) -> Any:
    """Load and warm the served routers (the slow part of start-up)."""
    from routellm_lc.server.routing import RoutingService

    routing = RoutingService.from_config(config)
    timings = routing.load()
    for name, seconds in timings.items():
        mode = "inline" if routing.slots[name].inline else "worker thread"
        log.info("router %s ready: %.3f ms per prompt (%s)", name, seconds * 1000, mode)
    return routing


def serve(config: ServerConfig, *, announce: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted (blocks). `announce` gets the API's base URL once the routers
    are loaded and checked and the port is bound (with `port=0`, the free port taken)."""
    import uvicorn

    from routellm_lc.server.app import create_app

    routing = load_routing(config)
    app = create_app(config, routing=routing)
    try:  # a passthrough field LiteLLM would take as its own option: an error before the URL
        app.state.routellm.check_litellm_options()
    except BaseException:
        routing.close()
        raise
    settings = _uvicorn_config(app, config)
    server = uvicorn.Server(settings)
    try:
        sock = settings.bind_socket()  # a port in use ends here, as uvicorn's start-up would
    except SystemExit:  # uvicorn logs the OSError (not at --log-level critical) and exits
        routing.close()
        raise ServerConfigError(
            f"Cannot listen on {config.host}:{config.port}: the port is in use, or the address "
            "is not one of this machine's (choose another with --host / --port)."
        ) from None
    # listening at once: a client that connects as soon as the URL is announced waits in the
    # backlog while the app starts up, instead of being refused
    sock.listen(settings.backlog)
    # Before the announcement: a Ctrl-C sent as soon as the URL is printed, landing in a
    # collection's finaliser, would be printed and dropped ("Exception ignored in ...").
    gc.collect()
    gc.freeze()
    if announce is not None:
        announce(f"http://{config.host}:{sock.getsockname()[1]}/v1")
    server.run(sockets=[sock])


class ServerThread:
    """The server on its own event loop in a daemon thread (for tests and notebooks).

    ```python
    with ServerThread(ServerConfig(routers=["random"], port=0, ...)) as server:
        client = openai.OpenAI(base_url=server.base_url, api_key="-")
    ```
    `port=0` picks a free port; `base_url` ends in `/v1`.
    """

    def __init__(self, config: ServerConfig, *, fast_loop: bool = False) -> None:
        from routellm_lc.server.app import create_app

        self.config = config
        self.app = create_app(config)
        self._uvicorn_config = _uvicorn_config(self.app, config, fast_loop=fast_loop)
        self._server: Any = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        servers = getattr(self._server, "servers", None) or []
        for server in servers:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return self.config.port

    @property
    def base_url(self) -> str:
        return f"http://{self.config.host}:{self.port}/v1"

    def start(self) -> ServerThread:
        import uvicorn

        self._server = uvicorn.Server(self._uvicorn_config)
        self._thread = threading.Thread(target=self._server.run, daemon=True, name="routellm-lc")
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the routellm-lc server did not start (see the log)")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(10)
        self._server = None
        self._thread = None

    def __enter__(self) -> ServerThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
