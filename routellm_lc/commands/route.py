"""`routellm-lc route`: score prompts with a router and show each decision (no LLM is called)."""

from __future__ import annotations

import argparse
import json
import sys
import time

from routellm_lc.commands import add_device_argument, refuse_checkpoint


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser(
        "route",
        help="score prompts and show the routing decision",
        description="Score each prompt with a router and print score, threshold, route and "
        "decision latency. Local: no API key, no network (with the bundled default router).",
    )
    parser.add_argument(
        "prompts", nargs="*", help="prompts to route ('-' reads stdin, one per line)"
    )
    parser.add_argument(
        "--file",
        help='a file of prompts, UTF-8: one per line, or .jsonl/.json with a "prompt" field '
        "per line (as calibrate --prompts)",
    )
    parser.add_argument("--router", default="mf", help="router name (default: mf)")
    parser.add_argument("--checkpoint", help="checkpoint folder or Hub id (default: bundled)")
    parser.add_argument("--threshold", default="0.5", help="cost threshold in [0, 1]")
    parser.add_argument("--strong", default=None, help="strong model name shown in the output")
    parser.add_argument("--weak", default=None, help="weak model name shown in the output")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    add_device_argument(parser)
    parser.set_defaults(func=run)


def _stdin_prompts() -> list[str]:
    from routellm_lc.calibrate import text_lines
    from routellm_lc.errors import RouteLLMError

    stream = getattr(sys.stdin, "buffer", None)  # bytes: decoded strictly, whatever the locale
    try:
        text = stream.read().decode("utf-8-sig") if stream is not None else sys.stdin.read()
        lines = text_lines(text)
    except UnicodeDecodeError as exc:
        raise RouteLLMError(
            f"standard input is not UTF-8 text (byte {exc.start}: {exc.reason}); send UTF-8."
        ) from None
    return [line for line in lines if line.strip()]


def _read_prompts(args: argparse.Namespace) -> list[str]:
    """The prompts of the arguments, stdin ('-') and --file (calibrate's reader: a missing,
    folder or non-UTF-8 file is one clear error). Blank lines of a file or stdin are
    skipped; a blank prompt given as an argument is an error, as RouteLLMChat's."""
    from routellm_lc.calibrate import read_prompt_file
    from routellm_lc.errors import EmptyPromptError

    prompts: list[str] = []
    for number, prompt in enumerate(args.prompts, 1):
        if prompt == "-":
            prompts += _stdin_prompts()
        elif not prompt.strip():
            raise EmptyPromptError(
                f"Prompt {number} is empty: there is nothing to route on (give some text)."
            )
        else:
            prompts.append(prompt)
    if args.file:
        prompts += read_prompt_file(args.file)  # a blank .jsonl prompt: an error naming its line
    return prompts


def run(args: argparse.Namespace) -> int:
    from routellm_lc.chat_model import shared_router
    from routellm_lc.decision import decide, validate_threshold
    from routellm_lc.errors import EmptyPromptError
    from routellm_lc.models import default_strong_model, default_weak_model

    threshold = validate_threshold(args.threshold)
    refuse_checkpoint(args.router, args.checkpoint)
    prompts = _read_prompts(args)
    if not prompts:
        raise EmptyPromptError("No prompts given: pass them as arguments, with --file, or '-'.")
    started = time.perf_counter()
    router = shared_router(args.router, args.checkpoint, device=args.device)
    load_ms = (time.perf_counter() - started) * 1000
    strong = args.strong or default_strong_model()
    weak = args.weak or default_weak_model()
    router.strong_win_rate(["warm-up"])  # first call builds sessions; not a routing decision
    for prompt in prompts:
        (decision,) = decide(router, [prompt], threshold, strong_model=strong, weak_model=weak)
        if args.json:
            print(json.dumps({"prompt": prompt, **decision.to_dict()}))
        else:
            shown = prompt if len(prompt) <= 60 else prompt[:57] + "..."
            print(
                f"{decision.route:6}  score={decision.score:.4f}  threshold={threshold:g}  "
                f"model={decision.model}  latency={decision.latency_ms:.2f} ms  | {shown}"
            )
    if not args.json:
        print(f"(router {args.router!r} loaded in {load_ms:.0f} ms)", file=sys.stderr)
    return 0
