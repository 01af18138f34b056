"""`routellm-lc eval`: RouteLLM's APGR / CPT metrics for routers on benchmarks."""

from __future__ import annotations

import argparse
import sys

from routellm_lc.commands import add_device_argument, positive_int


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate routers on MT-Bench, MMLU, GSM8K or a CSV (APGR, CPT, plots)",
        description="Score each benchmark with each router and compute RouteLLM's metrics "
        "(APGR, CPT 20/50/80%, the optimal curve). Writes OUTPUT/<benchmark>.json and "
        "OUTPUT/<benchmark>.png and prints a table. Scores are cached on disk.",
    )
    parser.add_argument(
        "--benchmark",
        action="extend",
        nargs="+",
        required=True,
        metavar="NAME",
        help="mt-bench, mmlu, gsm8k or a CSV path (prompt column + one column per model); "
        "repeat or list several",
    )
    parser.add_argument(
        "--routers", nargs="+", required=True, metavar="ROUTER", help="e.g. mf sw_ranking random"
    )
    parser.add_argument(
        "--checkpoint",
        action="extend",
        nargs="+",
        default=[],
        metavar="ROUTER=PATH",
        help="checkpoint folder or Hub id per router (one or more, or repeat the flag; "
        "default: bundled)",
    )
    parser.add_argument("--output", required=True, help="folder for the .json and .png files")
    parser.add_argument("--data-dir", help="data folder holding routellm_evals/")
    parser.add_argument(
        "--limit",
        type=positive_int,
        help="evaluate a seeded stratified subset of N prompts per benchmark",
    )
    parser.add_argument("--seed", type=int, default=0, help="seed for --limit (default: 0)")
    parser.add_argument(
        "--strong-model",
        help="CSV column of the strong model (default: gpt-4-1106-preview)",
    )
    parser.add_argument(
        "--weak-model",
        help="CSV column of the weak model (default: mistralai/Mixtral-8x7B-Instruct-v0.1)",
    )
    parser.add_argument(
        "--batch-size", type=positive_int, default=256, help="prompts per router call (≥ 1)"
    )
    parser.add_argument("--no-cache", action="store_true", help="re-score, ignoring the cache")
    # RouteLLM's evaluate: --config (its router config) and --overwrite-cache [ROUTER ...]
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="RouteLLM's router config (config.example.yaml): each router's checkpoint_path "
        "(--checkpoint wins)",
    )
    parser.add_argument(
        "--overwrite-cache",
        nargs="*",
        metavar="ROUTER",
        help="RouteLLM's spelling: re-score (here: every router, as --no-cache)",
    )
    # RouteLLM's evaluate: --num-results, --random-iters and --parallel
    parser.add_argument(
        "--num-results",
        type=positive_int,
        default=10,
        metavar="N",
        help="threshold bins per curve, RouteLLM's (N + 1 points; default: 10, the metrics' "
        "definition: APGR and CPT at another N are not comparable with published figures)",
    )
    parser.add_argument(
        "--random-iters",
        type=positive_int,
        default=10,
        metavar="N",
        help="runs the random router's curve averages (default: 10)",
    )
    parser.add_argument(
        "--parallel",
        type=int,
        metavar="N",
        help="RouteLLM's worker processes: not used; routers score in batches (--batch-size)",
    )
    add_device_argument(parser)
    parser.add_argument(
        "--bootstrap",
        type=int,
        default=1000,
        metavar="N",
        help="paired bootstrap resamples of the prompts for APGR's SD and 95%% interval and "
        "each router pair's difference (default: 1000; 0 turns it off)",
    )
    parser.set_defaults(func=run)


def parse_checkpoints(values: list[str]) -> dict[str, str]:
    from routellm_lc.errors import RouteLLMError

    checkpoints = {}
    for value in values:
        name, sep, path = value.partition("=")
        if not sep or not name or not path:
            raise RouteLLMError(f"--checkpoint expects ROUTER=PATH, got {value!r}.")
        checkpoints[name] = path
    return checkpoints


def _checkpoints(args: argparse.Namespace) -> dict[str, str]:
    """`--checkpoint` pairs over the `--config` file's (RouteLLM's router config); the file's
    entries for routers not evaluated are left out."""
    checkpoints = parse_checkpoints(args.checkpoint)
    if not args.config:
        return checkpoints
    from routellm_lc.server.config import routellm_config_checkpoints

    from_file = routellm_config_checkpoints(args.config)
    return {**{r: p for r, p in from_file.items() if r in args.routers}, **checkpoints}


def run(args: argparse.Namespace) -> int:
    from routellm_lc.errors import RouteLLMError
    from routellm_lc.evals.harness import format_paired, format_table, pair_notes, run_eval

    if args.bootstrap < 0:
        raise RouteLLMError(f"--bootstrap must be 0 or more, got {args.bootstrap}.")
    if args.parallel is not None:
        print(
            f"note: --parallel {args.parallel} is RouteLLM's; routellm-lc scores each router in "
            "batches in one process (--batch-size)",
            file=sys.stderr,
        )
    if args.num_results != 10:
        print(
            f"note: --num-results {args.num_results}: curves of {args.num_results + 1} points; "
            "APGR and CPT are defined with 10, so these are not comparable with RouteLLM's "
            "published figures or the model cards'",
            file=sys.stderr,
        )

    results = run_eval(
        benchmarks=args.benchmark,
        router_names=args.routers,
        output=args.output,
        checkpoints=_checkpoints(args),
        data_dir=args.data_dir,
        limit=args.limit,
        seed=args.seed,
        strong_model=args.strong_model,
        weak_model=args.weak_model,
        use_cache=not args.no_cache and args.overwrite_cache is None,
        batch_size=args.batch_size,
        progress=True,
        bootstrap=args.bootstrap,
        device=args.device,
        num_results=args.num_results,
        random_iters=args.random_iters,
    )
    for name, result in results.items():
        print(
            f"{name}: {result['n_prompts']} prompts; strong {result['strong']['quality']:.4f}, "
            f"weak {result['weak']['quality']:.4f}"
        )
    print(format_table(results))
    for line in format_paired(results):
        print(line)
    print(f"wrote {', '.join(f'{n}.json/.png' for n in results)} to {args.output}")
    for note in pair_notes(results):
        print(note, file=sys.stderr)
    return 0
