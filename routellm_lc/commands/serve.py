"""`routellm-lc serve`: the OpenAI-compatible server for plain OpenAI clients."""

from __future__ import annotations

import argparse
import logging
import sys

from routellm_lc.commands import add_device_argument, port_number


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="serve an OpenAI-compatible API that routes every call",
        description="Serve POST /v1/chat/completions with model names "
        "'router-<router>-<threshold>': each request is scored by the router and forwarded to "
        "the strong or the weak model. Flags override the --config file (YAML or JSON with the "
        "same names, underscores for dashes). Server keys also come from "
        "$ROUTELLM_LC_SERVER_KEYS (comma-separated).",
    )
    add = parser.add_argument
    add("--config", help="YAML or JSON file of settings (the flags' names, e.g. api_base)")
    add("--routers", nargs="+", help="routers to serve (default: mf)")
    add(
        "--checkpoint",
        action="extend",
        nargs="+",
        metavar="ROUTER=PATH",
        help="checkpoint folder or Hub id per router (one or more, or repeat the flag)",
    )
    add(
        "--threshold",
        type=float,
        help="threshold of the ids in /v1/models, and of router-<r> ids (with --strong-share: "
        "the controller's starting one; default 0.5)",
    )
    add(
        "--strong-share",
        type=float,
        metavar="S",
        help="target share of strong-model calls (0 < S < 1): 'router-<router>' then routes "
        "with a strong-share controller per router, starting at --threshold",
    )
    add(
        "--controller-state",
        metavar="PATH",
        help="JSON file of the controllers' state: loaded at start-up if it exists, saved every "
        "10 s when it changed and on shutdown (needs --strong-share)",
    )
    add(
        "--price",
        action="append",
        metavar="MODEL=IN,OUT",
        help="price of a model in USD per million input and output tokens, for /metrics' "
        "cost accounting (repeatable; e.g. my-llama=0.2,0.6)",
    )
    add_device_argument(parser)
    # RouteLLM's openai_server spells three of these --strong-model, --weak-model, --base-url
    add(
        "--strong",
        "--strong-model",
        help="strong model, a LiteLLM string (default: openai/gpt-4o; LangChain's openai:gpt-4o too)",
    )
    add("--weak", "--weak-model", help="weak model, a LiteLLM string (default: openai/gpt-4o-mini)")
    add("--api-base", "--base-url", help="OpenAI-compatible base URL for both models")
    add("--api-key", help="upstream API key for both models")
    add("--strong-api-base", help="base URL for the strong model only")
    add("--weak-api-base", help="base URL for the weak model only")
    add("--strong-api-key", help="API key for the strong model only")
    add("--weak-api-key", help="API key for the weak model only")
    add(
        "--server-key",
        action="append",
        dest="server_keys",
        metavar="KEY",
        help="bearer key clients must send (repeatable; none: no auth)",
    )
    add("--host", help="interface to bind (default 127.0.0.1: this machine only)")
    add("--port", type=port_number, help="port, 0 to 65535 (default 6060)")
    add("--route-on", choices=["last_user", "conversation"], help="what the router scores")
    add("--timeout", type=float, help="seconds per upstream call (default 60)")
    add("--connect-timeout", type=float, help="seconds to connect upstream (default 5)")
    add(
        "--graceful-timeout",
        type=float,
        metavar="S",
        help="seconds a shutdown waits for requests and streams in flight (default: as long as "
        "they take); set it below your container's grace period",
    )
    add("--max-retries", type=int, help="LiteLLM retries for non-OpenAI providers (default 0)")
    add(
        "--passthrough-field",
        action="append",
        dest="passthrough_fields",
        metavar="NAME",
        help="a request field beyond OpenAI's that non-OpenAI providers get through LiteLLM "
        "(repeatable; default: top_k; other unknown fields get 400 for them)",
    )
    add("--no-fallback", action="store_const", const=False, dest="fallback",
        help="do not retry a failed call on the other model")  # fmt: skip
    add("--forwarding", choices=["auto", "litellm"], help="auto: direct relay for OpenAI APIs")
    add("--max-body-bytes", type=int, help="larger request bodies get 413 (default 4 MiB)")
    add("--access-log", action="store_const", const=True, help="log every request")
    # RouteLLM's openai_server flags: --verbose (its per-request log) and --workers
    add("--verbose", action="store_const", const=True, dest="access_log",
        help="the same as --access-log (RouteLLM's spelling)")  # fmt: skip
    add("--workers", type=int, metavar="N",
        help="RouteLLM's uvicorn workers: not used; one process serves (see the README)")  # fmt: skip
    add(
        "--log-level",
        type=str.lower,
        choices=["critical", "error", "warning", "info", "debug", "trace"],
        help="server log level (default warning; fallbacks are logged as warnings)",
    )
    parser.set_defaults(func=run)


def _checkpoints(values: list[str] | None) -> dict[str, str] | None:
    from routellm_lc.server.config import parse_checkpoints

    return parse_checkpoints(values, "--checkpoint") if values else None


def _prices(values: list[str] | None) -> dict[str, dict[str, float]] | None:
    from routellm_lc.server.config import parse_prices

    return parse_prices(values, "--price") if values else None


def run(args: argparse.Namespace) -> int:
    from routellm_lc.server.config import ServerConfig
    from routellm_lc.server.runner import serve

    config = ServerConfig.from_sources(
        args.config,
        routers=args.routers,
        checkpoints=_checkpoints(args.checkpoint),
        threshold=args.threshold,
        strong_share=args.strong_share,
        controller_state=args.controller_state,
        prices=_prices(args.price),
        device=args.device,
        strong=args.strong,
        weak=args.weak,
        api_base=args.api_base,
        api_key=args.api_key,
        strong_api_base=args.strong_api_base,
        weak_api_base=args.weak_api_base,
        strong_api_key=args.strong_api_key,
        weak_api_key=args.weak_api_key,
        server_keys=args.server_keys,
        host=args.host,
        port=args.port,
        route_on=args.route_on,
        timeout=args.timeout,
        connect_timeout=args.connect_timeout,
        graceful_timeout=args.graceful_timeout,
        max_retries=args.max_retries,
        passthrough_fields=args.passthrough_fields,
        fallback=args.fallback,
        forwarding=args.forwarding,
        max_body_bytes=args.max_body_bytes,
        access_log=args.access_log,
        log_level=args.log_level,
    )
    # uvicorn's "trace" is level 5, below DEBUG: the logging module has no TRACE of its own
    level = 5 if config.log_level == "trace" else getattr(logging, config.log_level.upper())
    logging.basicConfig(level=level)
    if args.workers and args.workers > 1:
        print(
            f"note: --workers {args.workers} is RouteLLM's; routellm-lc serves from one process "
            "(its event loop relays requests while one worker thread scores them in batches): "
            "run more processes behind a load balancer to use more cores",
            file=sys.stderr,
        )
    auth = f"{len(config.server_keys)} key(s)" if config.server_keys else "none"
    share = f"; strong share {config.strong_share:g}" if config.strong_share is not None else ""

    def announce(url: str) -> None:  # once the routers passed their start-up check
        print(
            f"routellm-lc serve: routers {', '.join(config.routers)}; strong {config.strong}, "
            f"weak {config.weak}{share}; auth {auth}; {url}",
            flush=True,
        )

    serve(config, announce=announce)
    return 0
