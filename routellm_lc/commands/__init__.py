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
