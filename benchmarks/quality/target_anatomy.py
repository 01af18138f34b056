"""What the quality targets are made of: the evaluation sets' strong-weak gap by MMLU subject
and MT-Bench category, the APGR of routing by the *true* per-group gap (an oracle), and where
the shipped `mf` router ranks the groups that hold most of the gap.

    .venv/bin/python benchmarks/quality/target_anatomy.py [--data-dir DIR]

Analysis only (docs/router-research.md, "What the targets need"): it reads the evaluation
labels, so nothing it prints may be used to choose or fit a router. About 90 s on 2 cores
(scoring MMLU with the shipped router; embeddings cached).
"""

from __future__ import annotations

import argparse
import csv
import json

import numpy as np
from scipy.stats import rankdata

from routellm_lc import load_router
from routellm_lc.data import data_dir as resolve_data_dir
from routellm_lc.evals import metrics
from routellm_lc.evals.benchmarks import EVALS_FOLDER, Benchmark, load_benchmark


def apgr(scores: np.ndarray, bench: Benchmark, keep: np.ndarray | None = None) -> float:
    keep = np.ones(len(scores), bool) if keep is None else keep
    strong, weak = bench.strong[keep], bench.weak[keep]
    return metrics.apgr(
        metrics.threshold_curve(scores[keep], strong, weak), strong.mean(), weak.mean()
    )


def group_oracle(groups: np.ndarray, bench: Benchmark) -> tuple[float, dict[str, float]]:
    """APGR of scoring each prompt by its group's true mean gain, ties inside a group broken
    at random (mean over 10 seeds, as RouteLLM averages its random router), and the gains."""
    gain = bench.strong - bench.weak
    mean = {g: float(gain[groups == g].mean()) for g in np.unique(groups)}
    base = np.array([mean[g] for g in groups])
    runs = [
        apgr(base + 1e-9 * np.random.default_rng(i).random(len(base)), bench) for i in range(10)
    ]
    return float(np.mean(runs)), mean


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    folder = resolve_data_dir(args.data_dir) / EVALS_FOLDER
    router = load_router("mf")

    mmlu = load_benchmark("mmlu", args.data_dir)
    subject = {}
    for path in sorted((folder / "mmlu_responses").glob("mmlu_*.csv")):
        with open(path, newline="", encoding="utf-8") as handle:
            subject.update(
                {row["prompt"]: path.stem.removeprefix("mmlu_") for row in csv.DictReader(handle)}
            )
    subjects = np.array([subject[p] for p in mmlu.prompts])
    oracle, gap = group_oracle(subjects, mmlu)
    length = np.log([len(p) for p in mmlu.prompts])
    scores = np.asarray(router.strong_win_rate(mmlu.prompts))
    total = (mmlu.strong - mmlu.weak).sum()
    print(
        f"MMLU: subject oracle APGR {oracle:.3f}; shipped mf {apgr(scores, mmlu):.3f}; "
        f"length {apgr(length, mmlu):.3f}"
    )
    top = sorted(gap, key=gap.get, reverse=True)[:8]
    share = sum((mmlu.strong - mmlu.weak)[subjects == s].sum() for s in top) / total
    print(f"the 8 subjects with the largest gain hold {share:.0%} of the total gap:")
    pct, len_pct = rankdata(scores) / len(scores), rankdata(length) / len(length)
    print(
        "| subject | prompts | weak | gain | share of gap | mf score percentile | length percentile |"
    )
    print("|---|---|---|---|---|---|---|")
    for s in top:
        m = subjects == s
        print(
            f"| {s} | {m.sum()} | {mmlu.weak[m].mean():.2f} | {gap[s]:+.3f} | "
            f"{(mmlu.strong - mmlu.weak)[m].sum() / total:.0%} | {pct[m].mean():.2f} | {len_pct[m].mean():.2f} |"
        )
    rest = subjects != "moral_scenarios"
    print(
        f"without moral_scenarios: shipped mf {apgr(scores, mmlu, rest):.3f}, length {apgr(length, mmlu, rest):.3f}"
    )

    mt = load_benchmark("mt-bench", args.data_dir)
    with open(folder / "mt_bench_question.jsonl", encoding="utf-8") as handle:
        category = {q["turns"][0]: q["category"] for q in map(json.loads, handle) if q}
    cats = np.array([category[p] for p in mt.prompts])
    oracle, gap = group_oracle(cats, mt)
    print(f"MT-Bench: category oracle APGR {oracle:.3f}; per-category gain (judge points):")
    for c in sorted(gap, key=gap.get, reverse=True):
        print(f"  {c}: {gap[c]:+.2f} ({(cats == c).sum()} prompts)")


if __name__ == "__main__":
    main()
