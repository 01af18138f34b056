"""`routellm-lc calibrate`: the threshold that sends a target share of calls to the strong model."""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys

from routellm_lc.commands import add_device_argument, refuse_checkpoint


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "calibrate",
        help="find the threshold that sends a share of calls to the strong model",
        description="Score a prompt sample with a router and print the threshold at which "
        "the given share of it goes to the strong model (RouteLLM's rule: the (1 - share) "
        "quantile of the scores). Default sample: the bundled training prompts.",
    )
    # RouteLLM's calibrate_threshold spells these --routers and --strong-model-pct
    parser.add_argument(
        "--router",
        "--routers",
        nargs="+",
        default=["mf"],
        help="router name(s) (default: mf); each gets its own threshold on the same sample",
    )
    parser.add_argument(
        "--strong-pct",
        "--strong-model-pct",
        required=True,
        help="target share of strong-model calls, between 0 and 1 (0.2 or 20%%)",
    )
    parser.add_argument(
        "--prompts",
        metavar="FILE",
        help='your own sample: .jsonl/.json (one object with a "prompt" field per line); any '
        "other file (.txt): one prompt per line",
    )
    parser.add_argument("--checkpoint", help="checkpoint folder or Hub id (default: bundled)")
    # RouteLLM's calibrate_threshold: --config (its router config) and --task
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="RouteLLM's router config (config.example.yaml): each router's checkpoint_path",
    )
    parser.add_argument(
        "--task",
        choices=["calibrate", "generate"],
        default="calibrate",
        help="RouteLLM's: only calibrate (scores are cached on the first run by themselves)",
    )
    parser.add_argument("--data-dir", help="data folder for the default sample")
    parser.add_argument("--no-cache", action="store_true", help="re-score, ignoring the cache")
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per router (threshold, strong_pct, measured_share, "
        "n_prompts, ...)",
    )
    add_device_argument(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from routellm_lc.calibrate import calibrate, read_prompt_file, validate_strong_pct
    from routellm_lc.errors import RouteLLMError

    if args.task == "generate":
        raise RouteLLMError(
            "--task generate is RouteLLM's step that scores its Arena battles dataset ahead of "
            "time; here calibrate scores its sample and caches the scores on the first run: "
            "run --task calibrate (the default)."
        )
    strong_pct = validate_strong_pct(args.strong_pct)  # fail before loading anything
    routers = list(dict.fromkeys(args.router))
    if args.checkpoint and len(routers) > 1:
        raise RouteLLMError(
            "--checkpoint names one router's checkpoint: calibrate that router alone."
        )
    checkpoints: dict[str, str] = {}
    if args.config:
        from routellm_lc.server.config import routellm_config_checkpoints

        checkpoints = routellm_config_checkpoints(args.config)
    if args.checkpoint:
        checkpoints[routers[0]] = args.checkpoint
    for router in routers:
        refuse_checkpoint(router, checkpoints.get(router))
    prompts = read_prompt_file(args.prompts) if args.prompts else None
    for router in routers:
        result = calibrate(
            router,
            strong_pct,
            prompts=prompts,
            checkpoint=checkpoints.get(router),
            data_dir=args.data_dir,
            use_cache=not args.no_cache,
            progress=True,
            device=args.device,
        )
        print(json.dumps(dataclasses.asdict(result)) if args.json else result, flush=True)
        if result.note:
            print(f"note: {result.note}", file=sys.stderr)
    return 0
