"""`routellm-lc train`: fit a router from the data directory, write a Hub-layout checkpoint."""

from __future__ import annotations

import argparse
import json
import shlex
import sys

from routellm_lc.commands import add_device_argument


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a router and write a checkpoint with a model card",
        description="Train a router on the training sources (never the evaluation sets) and "
        "write a Hub-layout checkpoint folder (config.json, model.safetensors, README.md).",
    )
    parser.add_argument("--router", default="mf", help="mf (default), sw_ranking or bert")
    parser.add_argument(
        "--sources", nargs="+", default=None, help="training sources (default: all outcome sources)"
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="data directory (default: $ROUTELLM_LC_DATA or ../shared/data)",
    )
    parser.add_argument(
        "--user-battles",
        default=None,
        help="your own battles, JSONL (prompt, model_a, model_b, winner)",
    )
    parser.add_argument(
        "--recipe",
        default=None,
        choices=("difficulty-length", "arena-length", "tiers-all"),
        help="training recipe (default: difficulty-length for mf, tiers-all for the others; "
        "see docs/router-research.md)",
    )
    parser.add_argument(
        "--strong-model",
        default=None,
        help="model identity scored as strong (default: the strong tier; with --user-battles, "
        "one of your models)",
    )
    parser.add_argument("--weak-model", default=None, help="model identity scored as weak")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--holdout", type=float, default=0.2, help="share of question groups held out"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="train on a seeded subset of N questions"
    )
    parser.add_argument("--epochs", type=int, default=None)
    add_device_argument(
        parser,
        help="where bert fine-tunes: auto (default: a GPU when torch sees one, else the CPU), "
        "cpu, cuda, cuda:N or mps; the mf and sw_ranking recipes run on the CPU",
    )
    parser.add_argument("--output", required=True, help="checkpoint folder to write")
    parser.add_argument(
        "--card-eval",
        default=None,
        metavar="DIR",
        help="an earlier `routellm-lc eval --output DIR` of this checkpoint (its row for "
        "--router): its APGR/CPT figures are copied into the model card (they never affect "
        "training)",
    )
    parser.set_defaults(func=run)


def _reproduce_command(args: argparse.Namespace) -> str:
    """The command line that rebuilds this checkpoint (data dir from $ROUTELLM_LC_DATA)."""
    parts = ["routellm-lc", "train", "--router", args.router, "--recipe", args.recipe]
    parts += ["--seed", str(args.seed), "--holdout", str(args.holdout)]
    if args.sources:
        parts += ["--sources", *args.sources]
    if args.limit is not None:
        parts += ["--limit", str(args.limit)]
    if args.epochs:
        parts += ["--epochs", str(args.epochs)]
    if args.user_battles:
        parts += ["--user-battles", args.user_battles]
    if args.strong_model:
        parts += ["--strong-model", args.strong_model]
    if args.weak_model:
        parts += ["--weak-model", args.weak_model]
    parts += ["--output", args.output]
    return " ".join(shlex.quote(p) for p in parts)


def _card_eval(folder: str, router: str) -> dict[str, dict[str, float]]:
    """{benchmark: {apgr, cpt50 (fraction)}} from `routellm-lc eval` JSON files in `folder`."""
    from pathlib import Path

    results = {}
    for name in ("mt-bench", "gsm8k", "mmlu"):
        path = Path(folder) / f"{name}.json"
        if path.is_file():
            row = json.loads(path.read_text())["routers"].get(router)
            if row:
                results[name] = {"apgr": row["apgr"], "cpt50": row["cpt50"] / 100}
    return results


def run(args: argparse.Namespace) -> int:
    from routellm_lc.training.fit import model_card, train_router
    from routellm_lc.training.sources import OUTCOME_SOURCES, load_user_battles

    if args.recipe is None:
        args.recipe = "difficulty-length" if args.router == "mf" else "tiers-all"
    if args.device:
        from routellm_lc.routers.base import get_router_class, resolve_device

        if get_router_class(args.router).uses_device:
            resolve_device(args.device)  # a missing GPU fails before the data loads
        else:
            print(
                f"note: --device applies to bert; {args.router} trains on the CPU",
                file=sys.stderr,
            )
    user = load_user_battles(args.user_battles) if args.user_battles else ()
    extra = {"epochs": args.epochs} if args.epochs else {}
    if args.strong_model:
        extra["strong_model"] = args.strong_model
    if args.weak_model:
        extra["weak_model"] = args.weak_model
    sources = tuple(args.sources) if args.sources else OUTCOME_SOURCES
    router, report = train_router(
        args.router,
        recipe=args.recipe,
        sources=sources,
        data_dir=args.data_dir,
        user_battles=user,
        seed=args.seed,
        holdout=args.holdout,
        limit=args.limit,
        device=args.device,
        **extra,
    )
    command = _reproduce_command(args)
    evals = _card_eval(args.card_eval, args.router) if args.card_eval else None
    router.save_pretrained(args.output, model_card=model_card(args.router, report, command, evals))
    print(
        json.dumps(
            {
                "output": args.output,
                "heldout_apgr": report.heldout_apgr,
                "n_train_battles": report.n_train_battles,
                "decontaminated": report.decontaminated,
                **({"device": report.device} if report.device else {}),
            },
            indent=2,
        )
    )
    return 0
