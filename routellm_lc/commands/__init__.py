"""The CLI's subcommands, one module each; flags several of them share live here."""

from __future__ import annotations

import argparse

DEVICE_HELP = (
    "torch device of the routers that run a model (bert, causal_llm): auto (default: a GPU "
    "when torch sees one, else the CPU), cpu, cuda, cuda:N or mps; mf, sw_ranking and random "
    "ignore it"
)


def add_device_argument(parser: argparse.ArgumentParser, help: str = DEVICE_HELP) -> None:
    parser.add_argument("--device", default=None, metavar="DEVICE", help=help)


def positive_int(text: str) -> int:
    """argparse type: a whole number of at least 1 (a bad value is a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def port_number(text: str) -> int:
    """argparse type: a TCP port, 0 to 65535 (0: any free port)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {value}")
    return value


def refuse_checkpoint(router: str, checkpoint: str | None) -> None:
    """`--router random --checkpoint X` would silently ignore X: refuse it, as `calibrate`
    does (the random router has no weights)."""
    from routellm_lc.errors import RouteLLMError

    if router == "random" and checkpoint:
        raise RouteLLMError("The random router has no checkpoint: drop --checkpoint.")
