"""`routellm-lc train`: fit a router from the data directory, write a Hub-layout checkpoint."""

from __future__ import annotations

import argparse
import inspect
import json
import shlex
import sys
from pathlib import Path

from routellm_lc.commands import add_device_argument, positive_int

#: `--sources none`: no data source, train on --user-battles alone.
NO_SOURCES = "none"


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "train",
        help="train a router and write a checkpoint with a model card",
        description="Train a router on the training sources (never the evaluation sets) and "
        "write a Hub-layout checkpoint folder (config.json, model.safetensors, README.md).",
    )
    parser.add_argument("--router", default="mf", help="mf (default), sw_ranking or bert")
    parser.add_argument(
        "--sources",
        nargs="+",
        default=None,
        help="training sources (default: all outcome sources: arena_bench_v1, "
        "mmlu_pro_nonmmlu, zeroeval_math_l5, theoremqa, faithful_cot; alpaca_eval adds "
        "non-commercial battles); `none`: train on --user-battles alone",
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
        help="training recipe (default: difficulty-length for mf, tiers-all for the others "
        "and whenever --user-battles is given; see docs/router-research.md)",
    )
    parser.add_argument(
        "--strong-model",
        default=None,
        help="model identity scored as strong, one of the training battles' models (default: "
        "strong-tier; with --sources none and two models in your battles, the one that wins "
        "more often)",
    )
    parser.add_argument(
        "--weak-model", default=None, help="model identity scored as weak (default: weak-tier)"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--holdout",
        type=float,
        default=0.2,
        help="share of question groups (and of your battles' prompts) held out, in [0, 1)",
    )
    parser.add_argument(
        "--limit",
        type=positive_int,
        default=None,
        help="train on a seeded subset: at most N questions of the outcome sources, and the "
        "battles on at most N prompts each of alpaca_eval and of --user-battles",
    )
    parser.add_argument(
        "--epochs", type=positive_int, default=None, help="training epochs (mf tiers-all, bert)"
    )
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


def _card_eval(folder: str, router: str) -> tuple[dict[str, dict[str, float]], dict[str, str]]:
    """({benchmark: {apgr, cpt50 (fraction)}}, {benchmark: the scored checkpoint's identity})
    from `routellm-lc eval` JSON files in `folder`, read before training: a folder without
    usable figures is an error, not a card without."""
    from pathlib import Path

    from routellm_lc.training.fit import RecipeError

    if not Path(folder).is_dir():
        raise RecipeError(f"--card-eval {folder} is not a folder (an `eval --output` folder).")
    results, identities = {}, {}
    for name in ("mt-bench", "gsm8k", "mmlu"):
        path = Path(folder) / f"{name}.json"
        if not path.is_file():
            continue
        try:
            result = json.loads(path.read_text(encoding="utf-8"))
            row = result["routers"].get(router)
        except (ValueError, KeyError, AttributeError, TypeError) as exc:
            raise RecipeError(f"--card-eval: {path} is not an eval result ({exc}).") from None
        if result.get("csv"):
            raise RecipeError(
                f"--card-eval: {path} holds the figures of your CSV {result['csv']}, not of "
                f"RouteLLM's {name} benchmark; the card shows RouteLLM's three benchmarks only."
            )
        if result.get("limit") is not None:
            raise RecipeError(
                f"--card-eval: {path} scored a sample of {result['limit']} prompts (--limit), "
                f"not the whole {name} benchmark; evaluate without --limit for the card."
            )
        if result.get("num_results", 10) != 10:
            raise RecipeError(
                f"--card-eval: {path} was evaluated with --num-results "
                f"{result['num_results']}; the card's APGR and CPT are defined with 10."
            )
        if not row:
            continue
        if not all(isinstance(row.get(k), int | float) for k in ("apgr", "cpt50")):
            raise RecipeError(
                f"--card-eval: {path} has no APGR/CPT(50%) figure for {router} (null: the "
                "strong and weak qualities were equal); the card would have nothing to show."
            )
        if not isinstance(row.get("cache_key"), str):
            raise RecipeError(
                f"--card-eval: {path} does not say which {router} checkpoint it scored (no "
                "cache_key): its figures cannot be matched to the checkpoint being trained."
            )
        results[name] = {"apgr": row["apgr"], "cpt50": row["cpt50"] / 100}
        identities[name] = row["cache_key"]
    if not results:
        raise RecipeError(
            f"--card-eval: no mt-bench/gsm8k/mmlu.json in {folder} with a row for {router}."
        )
    return results, identities


def _check_card_eval(router: str, output: str, folder: str, identities: dict[str, str]) -> None:
    """The figures of `--card-eval` belong on the card only if that eval scored exactly the
    checkpoint just written: the eval's identity of it (content hash and load settings) must
    equal the written folder's, as `routellm-lc eval --checkpoint` would record it."""
    from routellm_lc.evals.harness import router_identity
    from routellm_lc.routers import load_router
    from routellm_lc.training.fit import RecipeError

    written = router_identity(load_router(router, checkpoint=output), output)
    other = {name: key for name, key in identities.items() if key != written}
    if other:
        listed = "; ".join(f"{name}.json scored {key}" for name, key in sorted(other.items()))
        raise RecipeError(
            f"--card-eval: the figures in {folder} are from another checkpoint ({listed}), "
            f"not the one written to {output} ({written}). The checkpoint is saved with a card "
            f"without them; run `routellm-lc eval --routers {router} --checkpoint "
            f"{router}={output} --output DIR` and train again with --card-eval DIR."
        )


def _sources(args: argparse.Namespace) -> tuple[str, ...]:
    from routellm_lc.training.fit import RecipeError, check_sources
    from routellm_lc.training.sources import OUTCOME_SOURCES

    if not args.sources:
        return OUTCOME_SOURCES
    if NO_SOURCES in args.sources:
        if len(args.sources) > 1:
            raise RecipeError("--sources none trains on --user-battles alone: name no others.")
        if not args.user_battles:
            raise RecipeError("--sources none needs --user-battles FILE (nothing to train on).")
        return ()
    return tuple(check_sources(args.sources))


def _check_options(args: argparse.Namespace, sources: tuple[str, ...]) -> None:
    """Refuse options the chosen router and recipe would silently ignore (they would also be
    recorded in the card's reproduce command), before any data is read."""
    from routellm_lc.data import check_output_dir
    from routellm_lc.routers.base import get_router_class
    from routellm_lc.training.fit import RecipeError

    cls = get_router_class(args.router)  # an unknown name: its own clear error
    if args.router != "mf" and not hasattr(cls, "fit"):
        raise RecipeError(
            f"Router {args.router!r} cannot be trained: train mf, sw_ranking or bert."
        )
    if not 0.0 <= args.holdout < 1.0:
        raise RecipeError(f"--holdout must be a share in [0, 1) (e.g. 0.2), got {args.holdout}.")
    given = {
        "--strong-model": args.strong_model,
        "--weak-model": args.weak_model,
        "--epochs": args.epochs,
        "--user-battles": args.user_battles,
    }
    recipe_fixed = args.recipe == "difficulty-length" or (args.router, args.recipe) == (
        "mf",
        "arena-length",
    )
    if recipe_fixed:
        ignored = [flag for flag, value in given.items() if value is not None]
        ignored += ["--sources alpaca_eval"] if "alpaca_eval" in sources else []
        if ignored:
            raise RecipeError(
                f"--router {args.router} --recipe {args.recipe} learns from per-model "
                "outcomes, not battles, and scores the strong tier against the weak tier; it "
                f"does not use {', '.join(ignored)}: add --recipe tiers-all to train on battles "
                "(and your own model names)."
            )
    takes_epochs = args.router == "mf" or "epochs" in inspect.signature(cls).parameters
    if args.epochs is not None and not takes_epochs:
        raise RecipeError(f"--router {args.router} has no training epochs: drop --epochs.")
    # Before any data is read: training takes minutes, its checkpoint must have a place to go.
    output = check_output_dir(args.output, "--output", "the checkpoint")
    _check_no_other_checkpoint(output, args.router)


def _check_no_other_checkpoint(output: Path, router: str) -> None:
    """Refuse an output folder holding another router's checkpoint: the new files would be
    written beside the old ones (a bert's tokenizer and router_config.json next to an mf's
    weights), a folder that is neither, uploaded as it is."""
    from routellm_lc.routers.checkpoints import declared_router
    from routellm_lc.training.fit import RecipeError

    found = declared_router(output) if output.is_dir() else None
    if found is not None and found[0] != router:
        raise RecipeError(
            f"--output {output} holds a {found[0]} checkpoint ({found[1]}): training {router} "
            "there would mix the two. Name another folder, or empty this one."
        )


def run(args: argparse.Namespace) -> int:
    from routellm_lc.data import MissingDataError, data_dir, present_folders
    from routellm_lc.training.fit import model_card, train_router
    from routellm_lc.training.sources import SOURCES, load_user_battles

    if args.recipe is None:
        if args.router == "mf" and not args.user_battles:
            args.recipe = "difficulty-length"
        else:
            args.recipe = "tiers-all"
            if args.router == "mf":
                print(
                    "note: training on battles (--user-battles): recipe tiers-all",
                    file=sys.stderr,
                )
    sources = _sources(args)
    _check_options(args, sources)
    evals, identities = _card_eval(args.card_eval, args.router) if args.card_eval else (None, {})
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
    try:
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
            strong_model=args.strong_model,
            weak_model=args.weak_model,
            **extra,
        )
    except MissingDataError as exc:
        if exc.folder not in SOURCES:
            raise
        root = data_dir(args.data_dir)
        present = [name for name in present_folders(root) if name in SOURCES]
        instead = (
            f"choose among the sources present with --sources {' '.join(present)}"
            if present
            else "train on your own battles alone with --user-battles FILE --sources none "
            "(the data directory still needs routellm_evals/: training prompts are checked "
            "against the evaluation prompts; `routellm-lc data fetch routellm_evals` gets it)"
        )
        raise MissingDataError(f"{exc} Or {instead}.", exc.folder) from None
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    command = _reproduce_command(args)
    # Saved with a card without the eval figures first: they are added only once the written
    # checkpoint is shown to be the one that eval scored.
    router.save_pretrained(args.output, model_card=model_card(args.router, report, command, None))
    if evals:
        _check_card_eval(args.router, args.output, args.card_eval, identities)
        card = model_card(args.router, report, command, evals)
        (Path(args.output).expanduser() / "README.md").write_text(card, encoding="utf-8")
    print(
        json.dumps(
            {
                "output": args.output,
                "heldout_apgr": report.heldout_apgr,
                "n_train_battles": report.n_train_battles,
                "user_battles": report.user_battles,
                "decontaminated": report.decontaminated,
                **({"device": report.device} if report.device else {}),
            },
            indent=2,
        )
    )
    return 0
