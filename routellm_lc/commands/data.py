"""`routellm-lc data`: list the data folders and fetch the verbatim ones from their origin."""

from __future__ import annotations

import argparse
import os


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "data",
        help="list the data folders; fetch routellm_evals and arena_bench_v1 from their origins",
        description="`list`: every data folder, where it comes from, and whether the data "
        "directory has it. `fetch`: download routellm_evals or arena_bench_v1 from its origin at "
        "pinned commits, checking every file's hash.",
    )
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the data folders and their origins")
    listing.add_argument("--data-dir", help="data folder (default: $ROUTELLM_LC_DATA, ../shared)")
    listing.set_defaults(func=run_list)
    fetching = actions.add_parser("fetch", help="download folders from their origin")
    fetching.add_argument("names", nargs="+", metavar="FOLDER", help="e.g. routellm_evals")
    fetching.add_argument(
        "--into",
        default=os.environ.get("ROUTELLM_LC_DATA"),
        help="the data directory to fill (default: $ROUTELLM_LC_DATA)",
    )
    fetching.add_argument("--base-url", help="a mirror of GitHub's raw-file host")
    fetching.add_argument("--timeout", type=float, default=60.0, help="seconds per file")
    fetching.set_defaults(func=run_fetch)


def run_list(args: argparse.Namespace) -> int:
    from routellm_lc.data import DataDirError, data_dir
    from routellm_lc.fetch import DERIVED, origins

    try:
        root = data_dir(args.data_dir)
    except DataDirError:
        root = None
    rows = [
        (name, "fetch", f"{o.repository} ({o.licence}, {o.role})") for name, o in origins().items()
    ]
    rows += [(name, "derived", where) for name, where in DERIVED.items()]
    print(f"data directory: {root or 'not found'}")
    for name, how, where in rows:
        present = "present" if root and (root / name).is_dir() else "missing"
        print(f"{name:18} {present:8} {how:8} {where}")
    return 0


def run_fetch(args: argparse.Namespace) -> int:
    from routellm_lc.fetch import FetchError, fetch

    if not args.into:
        raise FetchError("Say where to put the data: --into DIR (or set $ROUTELLM_LC_DATA).")
    for name in args.names:
        report = fetch(name, args.into, base_url=args.base_url, timeout=args.timeout)
        print(
            f"{name}: {len(report.downloaded)} downloaded, {len(report.kept)} already present "
            f"and verified -> {report.folder}"
        )
        for file, same in report.derived.items():
            print(
                f"  {file}: derived, "
                + (
                    "identical to the table the bundled checkpoints were trained on"
                    if same
                    else "WARNING: differs from the table the bundled checkpoints were "
                    "trained on (training on it will not reproduce their figures)"
                )
            )
    return 0
