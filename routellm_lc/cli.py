"""`routellm-lc`: route | serve | train | eval | calibrate | data.

Each subcommand lives in `routellm_lc/commands/<name>.py` with `register(subparsers)`; the
modules import nothing heavy at top level, so `routellm-lc --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS = ("route", "serve", "train", "eval", "calibrate", "data")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="routellm-lc",
        description="Cost-aware LLM routing: score prompts, serve, train, evaluate, calibrate, fetch data.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"routellm_lc.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"routellm_lc.commands.{name}":
                raise
            continue
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from routellm_lc.errors import RouteLLMError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except RouteLLMError as exc:
        print(f"routellm-lc {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
