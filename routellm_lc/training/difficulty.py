"""Recipe `difficulty-length`: the shipped default `mf` router (research: docs/router-research.md).

Why this recipe. The evaluation traffic (MT-Bench, GSM8K, MMLU) is *easy* for both models
(the weak one answers ~2/3 correctly), and there the strong model's gain rises with a
prompt's difficulty. The training sources are much harder, so per-question strong-minus-weak
gaps there point the wrong way; instead we learn difficulty itself:

1. target: 1 − the question's mean outcome over *every* model that answered it (the data
   holds ~100 models, so this is a low-noise difficulty label);
2. *within-source* (fixed-effects) ridge regression on [MiniLM embedding, cheap prompt
   features]: target and inputs are demeaned inside each source (faithful_cot: each
   sub-dataset), so the model learns what makes a question harder than its siblings, never
   which whole domain is hard (that does not transfer); every source weighs the same;
3. combine that difficulty score with log prompt length, the one signal known to transfer
   to word problems and exam questions: by default (`combine="cdf"`, round 10 of the
   research log) as the sum of their empirical CDFs over the training prompts, so neither
   part's pull is unbounded; `combine="z"` is round 3's sum of z-scores (the default until
   round 10).

The difficulty score is written as an exact RouteLLM-layout `mf` checkpoint (dim 1: P = [[1],
[−1]], classifier = [0.5], so the strong-minus-weak direction is the projection row). With
"cdf" the checkpoint stores both parts' training quantiles (`score_cdfs`); with "z" the length
weight is folded into the projection and the centring constant is the `logit_bias`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from routellm_lc.training.fit import TrainingReport

from routellm_lc.training.fit import DEFAULT_FEATURES, RecipeError
from routellm_lc.training.names import STRONG_TIER as STRONG
from routellm_lc.training.names import WEAK_TIER as WEAK
from routellm_lc.training.sources import OUTCOME_SOURCES, Question, load_questions

RECIPE = "difficulty-length"
#: The other recipes' features plus four that count structure (numbers, sentences, choices).
FEATURES = (
    *DEFAULT_FEATURES,
    "log_numbers",
    "log_sentences",
    "log_choice_lines",
    "max_number_digits",
)
LENGTH_FEATURE = "log_chars"
ALPHA = 10.0
LENGTH_WEIGHT = 1.0
COMBINE = "cdf"
CDF_POINTS = 1001  # quantile levels stored per part (error in a quantile ≤ 0.001)
#: Validation pairs (see the research log): the exact evaluation pair on arena prompts, a
#: GSM8K-like pair on faithful_cot's easier maths, an MMLU-like pair on MMLU-Pro's easier half.
VALIDATION = {
    "V-chat": ("arena_bench_v1", None, "gpt-4-1106-preview", "mixtral-8x7b-instruct-v0.1"),
    "V-math": ("faithful_cot", ("SVAMP", "AQUA", "date"), "gpt-4", "gpt-3.5-turbo"),
    "V-mcq": ("mmlu_pro_nonmmlu", None, "gpt-4o", "mixtral-8x7b-instruct-v0.1"),
}
MCQ_WEAK_LEVEL = 2 / 3


@dataclass
class DifficultyFit:
    """The fitted linear score and what it was fitted on."""

    coef: np.ndarray  # over [embedding, standardised features]
    feature_mean: np.ndarray
    feature_std: np.ndarray
    n_train: int
    bias: float = 0.0
    heldout: dict[str, float] = field(default_factory=dict)
    cdfs: dict[str, np.ndarray] = field(default_factory=dict)
    """combine="cdf": training quantiles of each part ("projection" = x · coef, and the
    standardised length feature); empty for combine="z"."""

    def score(self, x: np.ndarray) -> np.ndarray:
        """The router's ranking score for input rows x (monotone in its strong win rate)."""
        if not self.cdfs:
            return x @ self.coef + self.bias
        from routellm_lc.routers.mf import quantile_of

        length = x[:, x.shape[1] - len(FEATURES) + FEATURES.index(LENGTH_FEATURE)]
        return quantile_of(x @ self.coef, self.cdfs["projection"]) + quantile_of(
            length, self.cdfs[LENGTH_FEATURE]
        )


def difficulty(question: Question) -> float | None:
    """1 − mean outcome over every model on the question (None without outcomes)."""
    if not question.outcomes:
        return None
    return 1.0 - float(np.mean(list(question.outcomes.values())))


def domain(question: Question) -> str:
    """The fixed-effect group: the source, or faithful_cot's sub-dataset."""
    if question.source == "faithful_cot" and question.subset:
        return f"{question.source}:{question.subset}"
    return question.source


def split_groups(questions: Sequence[Question], holdout: float, seed: int) -> np.ndarray:
    """True for held-out questions; questions sharing a group stay on one side."""
    groups = np.array([f"{q.source}:{q.group or q.qid}" for q in questions])
    unique = np.unique(groups)
    rng = np.random.default_rng(seed)
    held = set(rng.choice(unique, size=int(round(len(unique) * holdout)), replace=False))
    return np.array([g in held for g in groups])


def _source_weights(sources: np.ndarray) -> np.ndarray:
    """Every source gets the same total weight; mean weight 1."""
    weights = np.zeros(len(sources))
    for source in np.unique(sources):
        mask = sources == source
        weights[mask] = 1.0 / mask.sum()
    return weights * len(sources) / weights.sum()


def _demean(
    x: np.ndarray, y: np.ndarray, w: np.ndarray, groups: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    xc, yc = x.copy(), y.copy()
    for g in np.unique(groups):
        mask = groups == g
        xc[mask] -= np.average(x[mask], axis=0, weights=w[mask])
        yc[mask] -= np.average(y[mask], weights=w[mask])
    return xc, yc


def fixed_effects_ridge(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, sources: np.ndarray, alpha: float
) -> np.ndarray:
    """Weighted ridge on group-demeaned inputs and targets (no intercept: it is absorbed)."""
    w = _source_weights(sources)
    xc, yc = _demean(x, y, w, groups)
    sw = np.sqrt(w)[:, None]
    a = (xc * sw).T @ (xc * sw) + alpha * np.eye(x.shape[1])
    return np.linalg.solve(a, (xc * sw).T @ (yc * sw[:, 0]))


def _inputs(
    prompts: Sequence[str], embeddings: np.ndarray, mean: np.ndarray, std: np.ndarray
) -> np.ndarray:
    from routellm_lc.routers.features import compute_features

    raw = compute_features(FEATURES, prompts)
    return np.hstack([embeddings.astype(np.float64), (raw - mean) / std])


def fit_difficulty_length(
    prompts: Sequence[str],
    embeddings: np.ndarray,
    targets: np.ndarray,
    groups: np.ndarray,
    sources: np.ndarray,
    *,
    alpha: float = ALPHA,
    length_weight: float = LENGTH_WEIGHT,
    combine: str = COMBINE,
) -> DifficultyFit:
    """The recipe's score: F(fixed-effects difficulty) + F(length) with F each part's training
    CDF (combine="cdf"), or z(difficulty) + length_weight · z(length) (combine="z")."""
    from routellm_lc.routers.features import compute_features

    if combine not in ("cdf", "z"):
        raise RecipeError(f"combine must be 'cdf' or 'z', got {combine!r}.")
    if combine == "cdf" and length_weight != LENGTH_WEIGHT:
        raise RecipeError("length_weight applies to combine='z' (the CDF parts weigh the same).")
    raw = compute_features(FEATURES, prompts)
    mean = raw.mean(axis=0)
    std = np.where(raw.std(axis=0) > 1e-9, raw.std(axis=0), 1.0)
    x = _inputs(prompts, embeddings, mean, std)
    coef = fixed_effects_ridge(x, targets, groups, sources, alpha)
    score = x @ coef
    if combine == "cdf":
        levels = np.linspace(0.0, 1.0, CDF_POINTS)
        length = x[:, embeddings.shape[1] + FEATURES.index(LENGTH_FEATURE)]
        cdfs = {
            "projection": np.quantile(score, levels),
            LENGTH_FEATURE: np.quantile(length, levels),
        }
        return DifficultyFit(coef, mean, std, len(prompts), 0.0, cdfs=cdfs)
    logit = (coef / score.std()) * 1.0
    length_col = embeddings.shape[1] + FEATURES.index(LENGTH_FEATURE)
    logit[length_col] += length_weight  # the standardised length feature is already a z-score
    bias = -score.mean() / score.std()  # the standardised length already averages 0
    return DifficultyFit(logit, mean, std, len(prompts), float(bias))


def to_mf_router(fit: DifficultyFit, embedder: Any = "local") -> Any:
    """The fitted logit as an exact `mf` router (dim 1, RouteLLM tensor layout)."""
    from routellm_lc.routers.mf import MatrixFactorizationRouter

    router = MatrixFactorizationRouter(
        STRONG, WEAK, embedder=embedder, dim=1, use_proj=True, features=FEATURES
    )
    router.P_ = np.array([[1.0], [-1.0]])
    router.classifier_ = np.array([0.5])
    router.text_proj_ = fit.coef[None, :].astype(np.float64)
    router.feature_mean_ = fit.feature_mean
    router.feature_std_ = fit.feature_std
    router.logit_bias = fit.bias
    router.score_cdfs = dict(fit.cdfs)
    router._model_names = [STRONG, WEAK]
    router._direction = None
    router._cdf_tables = None
    return router


def validation_sets(
    questions: Sequence[Question],
) -> dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Index, strong and weak outcomes of each validation pair among `questions`.

    V-mcq keeps MMLU-Pro's easier questions: those whose mean outcome over the *other* models
    reaches the lowest cut at which the weak model scores ≥ 2/3 (its level on MMLU)."""
    result = {}
    for name, (source, subsets, strong, weak) in VALIDATION.items():
        idx = [
            i
            for i, q in enumerate(questions)
            if q.source == source
            and (subsets is None or q.subset in subsets)
            and strong in q.outcomes
            and weak in q.outcomes
        ]
        if name == "V-mcq" and idx:
            others = np.array(
                [
                    np.mean(
                        [v for m, v in questions[i].outcomes.items() if m not in (strong, weak)]
                        or [0.0]
                    )
                    for i in idx
                ]
            )
            weak_out = np.array([questions[i].outcomes[weak] for i in idx])
            for cut in np.linspace(0, 1, 101):
                if (others >= cut).any() and weak_out[others >= cut].mean() >= MCQ_WEAK_LEVEL:
                    idx = [i for i, keep in zip(idx, others >= cut, strict=True) if keep]
                    break
        if len(idx) >= 10:
            result[name] = (
                np.array(idx),
                np.array([questions[i].outcomes[strong] for i in idx]),
                np.array([questions[i].outcomes[weak] for i in idx]),
            )
    return result


def validation_apgr(scores: np.ndarray, questions: Sequence[Question]) -> dict[str, float]:
    """APGR of `scores` (one per question) on each validation pair present in `questions`."""
    from routellm_lc.evals import metrics

    out = {}
    for name, (idx, strong, weak) in validation_sets(questions).items():
        if np.isclose(strong.mean(), weak.mean()):
            continue
        curve = metrics.threshold_curve(scores[idx], strong, weak)
        out[name] = round(metrics.apgr(curve, strong.mean(), weak.mean()), 4)
    return out


def train_difficulty_length(
    *,
    sources: Sequence[str] = OUTCOME_SOURCES,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    holdout: float = 0.2,
    limit: int | None = None,
    alpha: float = ALPHA,
    length_weight: float = LENGTH_WEIGHT,
    combine: str = COMBINE,
    embedder: Any = "local",
    progress: bool = True,
) -> tuple[Any, TrainingReport]:
    """Load, decontaminate, split (grouped, seeded), fit on the training part, measure on the
    held-out part; returns (mf router, report). Deterministic: no random step but the split."""
    from routellm_lc.training.decontaminate import cached_embeddings, decontaminate_questions

    questions = load_questions([s for s in sources if s in OUTCOME_SOURCES], data_dir)
    if limit is not None:
        rng = np.random.default_rng(seed)
        chosen = rng.choice(len(questions), min(limit, len(questions)), replace=False)
        questions = [questions[i] for i in sorted(chosen)]
    questions, dropped = decontaminate_questions(questions, data_dir=data_dir, embedder=None)
    questions = [q for q in questions if difficulty(q) is not None]
    held = split_groups(questions, holdout, seed)
    train = [q for q, h in zip(questions, held, strict=True) if not h]
    test = [q for q, h in zip(questions, held, strict=True) if h]
    if not train:
        raise RecipeError(
            "No training questions with per-model outcomes: check --sources and the data directory."
        )
    prompts = [q.prompt for q in train]
    embeddings = cached_embeddings(prompts, None, progress=progress)
    fit = fit_difficulty_length(
        prompts,
        embeddings,
        np.array([difficulty(q) for q in train]),
        np.array([domain(q) for q in train]),
        np.array([q.source for q in train]),
        alpha=alpha,
        length_weight=length_weight,
        combine=combine,
    )
    router = to_mf_router(fit, embedder)
    heldout: dict[str, float] = {}
    if test:
        test_x = _inputs(
            [q.prompt for q in test],
            cached_embeddings([q.prompt for q in test], None, progress=progress),
            fit.feature_mean,
            fit.feature_std,
        )
        heldout = validation_apgr(fit.score(test_x), test)
    from routellm_lc.training.fit import TrainingReport

    report = TrainingReport(
        recipe=RECIPE,
        sources=[s for s in sources if s in OUTCOME_SOURCES],  # the sources read (licences)
        seed=seed,
        holdout=holdout,
        n_questions=len(questions),
        n_train_battles=len(train),  # here: training questions (no battles)
        decontaminated=dropped,
        heldout_apgr=heldout,
        hyperparameters={
            "target": "1 - mean outcome over all models (difficulty)",
            "regression": "within-source ridge, sources equally weighted",
            "alpha": alpha,
            "combine": (
                "F(difficulty) + F(log length), F = training CDF"
                if combine == "cdf"
                else f"z(difficulty) + {length_weight} * z(log length)"
            ),
            "features": list(FEATURES),
            "embedder": "local (all-MiniLM-L6-v2)",
        },
        strong_model=STRONG,
        weak_model=WEAK,
        limit=limit,
    )
    return router, report
