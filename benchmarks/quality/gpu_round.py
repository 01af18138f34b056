"""Round 20 of docs/router-research.md, the GPU round: RouteLLM's `bert` method as
`routellm-lc train --router bert` runs it, and round 18's fine-tuned encoder for 3 epochs, each
on the leave-source-out criterion, with the evaluation figures logged.

Three steps, so that the fine-tuning can run on a GPU machine that has no data directory and
the evaluation labels never leave this one:

    .venv/bin/python benchmarks/quality/gpu_round.py export --out PKG         # here (~1 min)
    python benchmarks/quality/gpu_round.py fit --package PKG --out SCORES     # on the GPU
    .venv/bin/python benchmarks/quality/gpu_round.py score --package PKG --scores SCORES

`export` writes the decontaminated training prompts with their labels, the exact battles
`routellm-lc train --router bert` fits (its 80% split, seed 0) and the evaluation *prompts*;
`fit` runs the eight fine-tunes (fits of 583 s in all on one H100, 11 min with scoring, in two calls with
`--only` to resume; hours on 2 CPU cores) and writes
only scores; `score` computes every APGR with the project's metric code. Settings are the
pre-registered ones; nothing here is tuned.
"""

from __future__ import annotations

import argparse
import json
import lzma
import time
from pathlib import Path

import numpy as np

EVALS = ("mt-bench", "gsm8k", "mmlu")
FT_EPOCHS = 3


def _write_json(path: Path, value: object) -> None:
    path.write_bytes(lzma.compress(json.dumps(value).encode()))


def _read_json(path: Path) -> object:
    return json.loads(lzma.decompress(path.read_bytes()))


def export(data_dir: str | None, out: Path) -> None:
    from router_research import Study

    from routellm_lc.evals.benchmarks import load_benchmark
    from routellm_lc.training.fit import split_questions, tier_battles
    from routellm_lc.training.sources import OUTCOME_SOURCES, tier_gap

    study = Study(data_dir)
    gap = [tier_gap(q) for q in study.qs]
    questions, _, held = split_questions(OUTCOME_SOURCES, data_dir, seed=0, holdout=0.2)
    train = [q for q, h in zip(questions, held, strict=True) if not h]
    battles = tier_battles(train)  # what `train --router bert` fits, in its order
    out.mkdir(parents=True, exist_ok=True)
    _write_json(
        out / "package.json.xz",
        {
            "prompts": [q.prompt for q in study.qs],
            "src": study.src.tolist(),
            "dom": study.dom.tolist(),
            "diff": study.targets["diff"].tolist(),
            "gap": [float("nan") if g is None else g for g in gap],
            "command_prompts": [q.prompt for q in questions],
            "command_held": held.tolist(),
            "command_battles": [[b.prompt, b.winner, b.source, b.weight] for b in battles],
            "eval_prompts": {name: load_benchmark(name, data_dir).prompts for name in EVALS},
        },
    )
    print(f"wrote {out / 'package.json.xz'}: {len(study.qs)} questions, {len(battles)} battles")


def _loso_masks(src: np.ndarray) -> dict[str, np.ndarray]:
    from router_research import LOSO

    return {name: ~np.isin(src, held) for name, held in LOSO.items()}


def fit(package: Path, out: Path, device: str, only: list[str] | None = None) -> None:
    import torch
    from finetune_round import demeaned_target, fine_tune

    from routellm_lc.routers.bert import BertRouter
    from routellm_lc.training.fit import soft_battles
    from routellm_lc.training.names import STRONG_TIER, WEAK_TIER
    from routellm_lc.training.sources import Battle

    data = _read_json(package)
    prompts = data["prompts"]
    src, dom = np.array(data["src"]), np.array(data["dom"])
    diff, gap = np.array(data["diff"]), np.array(data["gap"])
    evals = [p for name in EVALS for p in data["eval_prompts"][name]]
    out.mkdir(parents=True, exist_ok=True)
    scores: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    print(f"device {device}: {torch.cuda.get_device_name() if 'cuda' in device else 'cpu'}")

    def bert(battles: list) -> BertRouter:
        return BertRouter(STRONG_TIER, WEAK_TIER, device=device).fit(battles, progress=True)

    def timed(name: str, make, score_sets: dict[str, list[str]]) -> None:
        if only and name not in only:
            return
        started = time.perf_counter()
        model = make()
        seconds[name] = time.perf_counter() - started
        for key, texts in score_sets.items():
            score = model.strong_win_rate if hasattr(model, "strong_win_rate") else model.score
            scores[f"{name}/{key}"] = np.asarray(score(texts), dtype=np.float64)
        print(f"{name}: fit {seconds[name]:.0f} s", flush=True)
        np.savez_compressed(out / "scores.npz", **scores)  # what is done survives a time limit
        (out / "seconds.json").write_text(json.dumps(seconds, indent=2))

    command = [
        Battle(prompt, STRONG_TIER, WEAK_TIER, winner, source, weight)
        for prompt, winner, source, weight in data["command_battles"]
    ]
    timed(
        "bert-command",
        lambda: bert(command),
        {"command": data["command_prompts"], "eval": evals},
    )
    for vname, mask in _loso_masks(src).items():
        rows = [i for i in np.flatnonzero(mask) if np.isfinite(gap[i])]
        battles = [b for i in rows for b in soft_battles(prompts[i], float(gap[i]), str(src[i]))]
        timed(f"bert-loso-{vname}", lambda battles=battles: bert(battles), {"train": prompts})
    for vname, mask in _loso_masks(src).items():
        y, w = demeaned_target(diff, dom, src, mask)
        timed(
            f"ft3-loso-{vname}",
            lambda y=y, w=w, mask=mask: fine_tune(
                prompts, y, w, mask, epochs=FT_EPOCHS, device=device
            ),
            {"train": prompts},
        )
    everything = np.ones(len(prompts), bool)
    y, w = demeaned_target(diff, dom, src, everything)
    timed(
        "ft3-full",
        lambda: fine_tune(prompts, y, w, everything, epochs=FT_EPOCHS, device=device),
        {"train": prompts, "eval": evals},
    )
    print(f"wrote {out / 'scores.npz'} ({len(scores)} arrays)")


def score(data_dir: str | None, package: Path, scores_dir: Path) -> None:
    from router_research import Study, apgr, cdf, row

    from routellm_lc.evals.benchmarks import load_benchmark
    from routellm_lc.training.fit import heldout_quality, split_questions
    from routellm_lc.training.sources import OUTCOME_SOURCES

    data = _read_json(package)
    scores: dict[str, np.ndarray] = {}
    seconds: dict[str, float] = {}
    for part in sorted(scores_dir.glob("**/scores.npz")):  # resumed runs: one folder each
        scores.update(np.load(part))
        seconds.update(json.loads((part.parent / "seconds.json").read_text()))
    study = Study(data_dir)
    assert [q.prompt for q in study.qs] == data["prompts"], "package from another data dir"
    length = np.log([max(len(p), 1) for p in data["prompts"]])
    bench, offset = {}, 0
    for name in EVALS:
        b = load_benchmark(name, data_dir)
        assert b.prompts == data["eval_prompts"][name]
        bench[name] = (slice(offset, offset + len(b.prompts)), b.prompts, b.strong, b.weak)
        offset += len(b.prompts)

    def evaluate(s_eval: np.ndarray, ref: np.ndarray, ref_len: np.ndarray) -> tuple[dict, dict]:
        alone, combined = {}, {}
        for name, (part, prompts, strong, weak) in bench.items():
            s = s_eval[part]
            blen = np.log([max(len(p), 1) for p in prompts])
            alone[name] = apgr(s, strong, weak)
            combined[name] = apgr(cdf(s, ref) + cdf(blen, ref_len), strong, weak)
        return alone, combined

    masks = _loso_masks(study.src)
    table = {}
    for kind in ("bert", "ft3"):
        alone, combined = {}, {}
        for vname, (idx, strong, weak) in study.vsets.items():
            s = scores[f"{kind}-loso-{vname}/train"]
            mask = masks[vname]
            alone[vname] = apgr(s[idx], strong, weak)
            combined[vname] = apgr(
                cdf(s[idx], s[mask]) + cdf(length[idx], length[mask]), strong, weak
            )
        table[kind] = (alone, combined)

    questions, _, held = split_questions(OUTCOME_SOURCES, data_dir, seed=0, holdout=0.2)
    assert [q.prompt for q in questions] == data["command_prompts"]
    command = scores["bert-command/command"]
    train_len = np.log([max(len(q.prompt), 1) for q in questions])[~held]
    bert_eval = evaluate(scores["bert-command/eval"], command[~held], train_len)
    ft_ref = scores["ft3-full/train"]
    ft_eval = evaluate(scores["ft3-full/eval"], ft_ref, length)

    by_prompt = dict(zip(data["command_prompts"], command, strict=True))

    class Fixed:
        def strong_win_rate(self, prompts: list[str]) -> np.ndarray:
            return np.array([by_prompt[p] for p in prompts])

    held_q = [q for q, h in zip(questions, held, strict=True) if h]
    print("held-out APGR of the command's bert:", heldout_quality(Fixed(), held_q))
    print("fit seconds:", json.dumps(seconds, indent=1))
    print(
        "| variant | LOSO V-chat | LOSO V-math | LOSO V-mcq | LOSO mean | MT-Bench | GSM8K | MMLU |"
    )
    print("|---|---|---|---|---|---|---|---|")
    print(row("R20-bert (the command's fit)", table["bert"][0], bert_eval[0]))
    print(row("R20-bert + F(len)", table["bert"][1], bert_eval[1]))
    print(row("R20-ft3 (3 epochs) alone", table["ft3"][0], ft_eval[0]))
    print(row("R20-ft3 + F(len)", table["ft3"][1], ft_eval[1]))
    exact = {"bert": bert_eval, "ft3": ft_eval}
    for name, (alone, combined) in table.items():
        print(
            f"  {name} evaluation, 4 decimals: alone {_rounded(exact[name][0])}, "
            f"+F(len) {_rounded(exact[name][1])}"
        )
        print(
            f"  LOSO mean {name}: alone {np.mean(list(alone.values())):.5f}, "
            f"+F(len) {np.mean(list(combined.values())):.5f}"
        )


def _rounded(values: dict[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in values.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("export")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("fit")
    p.add_argument("--package", type=Path, required=True, help="PKG/package.json.xz")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--device", default="cuda")
    p.add_argument("--only", nargs="+", help="fit only these (e.g. ft3-full), to resume")
    p = sub.add_parser("score")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--package", type=Path, required=True)
    p.add_argument("--scores", type=Path, required=True)
    args = parser.parse_args()
    if args.step == "export":
        export(args.data_dir, args.out)
    elif args.step == "fit":
        fit(args.package, args.out, args.device, args.only)
    else:
        score(args.data_dir, args.package, args.scores)


if __name__ == "__main__":
    main()
