"""`routellm-lc`: route | serve | train | eval | calibrate | data.

Each subcommand lives in `routellm_lc/commands/<name>.py` with `register(subparsers)`; the
modules import nothing heavy at top level, so `routellm-lc --help` is instant.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

COMMANDS = ("route", "serve", "train", "eval", "calibrate", "data")
PACKAGE = "routellm-lc"
#: Exit status of a run whose output pipe closed early (`routellm-lc route ... | head -1`):
#: 128 + SIGPIPE, what a shell reports for a program killed by it.
BROKEN_PIPE_EXIT = 141


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(PACKAGE)
    except PackageNotFoundError:  # imported from a source tree that was never installed
        return "unknown (not installed)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="routellm-lc",
        description="Cost-aware LLM routing: score prompts, serve, train, evaluate, calibrate, fetch data.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
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


def _os_error(exc: OSError) -> str:
    """`OSError` in words: "<file>: <reason>" rather than "[Errno 20] ..."."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.filename is not None:
        where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "")
        return f"{where}: {reason}"
    return reason


def _quiet_stdout() -> None:
    """After a broken pipe: point stdout at /dev/null, so that the interpreter's final flush
    of what is still buffered does not fail again (Python's documented recipe)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):  # no real stdout (an embedding host)
        pass


def main(argv: Sequence[str] | None = None) -> int:
    from routellm_lc.errors import RouteLLMError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = int(args.func(args) or 0)
        sys.stdout.flush()  # a closed pipe shows here, inside the handlers below
        return code
    except BrokenPipeError:  # the reader went away (`| head`): stop quietly
        _quiet_stdout()
        return BROKEN_PIPE_EXIT
    except RouteLLMError as exc:
        print(f"routellm-lc {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # a file or folder the command could not read or write
        print(f"routellm-lc {args.command}: error: {_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
