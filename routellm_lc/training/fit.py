"""Training recipes for the shipped routers, and a reproducible `train_router`.

Common to every recipe (the research log is docs/router-research.md):

- training questions from the outcome sources in the data directory, decontaminated against
  the evaluation prompts (cosine ≥ 0.95);
- models grouped into two tiers (`names.tier`): per question, the strong-tier mean outcome
  minus the weak-tier mean outcome is turned into a soft "strong beats weak" label
  p = (1 + gap) / 2, i.e. a strong-vs-weak battle won with probability p (two battles
  weighted p and 1 − p: their weighted log-loss is the log-loss against p);
- RouteLLM's MF over those tier identities, on MiniLM embeddings plus cheap prompt features;
- 20% of question groups held out (seeded) to measure quality; the shipped model is the one
  fitted on the other 80%.

Recipes:

- `tiers-all`: battles from every outcome source. Chosen first, by held-out APGR on the
  training sources (pre-registered); on the evaluation sets it is worse than random on GSM8K.
- `arena-length` (the shipped default): battles from arena_bench_v1 only (GPT-4-judged chat
  prompts, the signal that transfers to MT-Bench) plus a fixed length prior: a logit term on
  the prompt's log length, scaled so that it weighs as much as the learned score across the
  training prompts (an equal-weight ensemble of the two z-scores). Chosen after seeing the
  evaluation results of `tiers-all` and other variants, so its evaluation figures are
  optimistic (stated in the model card and BENCHMARKS.md).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from routellm_lc.errors import RouteLLMError
from routellm_lc.training.names import STRONG_TIER, WEAK_TIER
from routellm_lc.training.sources import (
    OUTCOME_SOURCES,
    SOURCES,
    Battle,
    Question,
    load_questions,
    tier_gap,
)


class RecipeError(RouteLLMError, ValueError):
    """A training recipe cannot run with the given router, data or options."""


#: The cheap prompt features of the `arena-length` and `tiers-all` recipes.
DEFAULT_FEATURES = (
    "log_chars",
    "log_words",
    "log_lines",
    "digit_frac",
    "math_symbol_frac",
    "has_code",
    "question_marks",
)
RECIPES = ("difficulty-length", "arena-length", "tiers-all")
#: The shipped default since round 3 of docs/router-research.md (`training/difficulty.py`).
DEFAULT_RECIPE = "difficulty-length"
LENGTH_PRIOR_WEIGHT = 1.0
RIDGE_ALPHA = 10.0
#: MF (pairwise logistic) settings of the recipes fitted by gradient descent.
MF_SETTINGS = {
    "tiers-all": {"dim": 16, "epochs": 60, "batch_size": 1024, "lr": 5e-3, "weight_decay": 1e-4},
}


def soft_battles(prompt: str, gap: float, source: str = "user") -> list[Battle]:
    """A strong-tier minus weak-tier outcome gap on one prompt as soft battles: the strong
    tier wins with weight p = (1 + gap) / 2 and loses with weight 1 − p (zero weights left out)."""
    p = min(max((1.0 + gap) / 2.0, 0.0), 1.0)
    return [
        Battle(prompt, STRONG_TIER, WEAK_TIER, winner, source, weight)
        for winner, weight in (("model_a", p), ("model_b", 1.0 - p))
        if weight > 0
    ]


def tier_battles(questions: Sequence[Question]) -> list[Battle]:
    """Soft strong-tier vs weak-tier battles, one pair per question with both tiers."""
    battles = []
    for question in questions:
        gap = tier_gap(question)
        if gap is not None:
            battles += soft_battles(question.prompt, gap, question.source)
    return battles


def _extra_battles(
    sources: Sequence[str], user_battles: Sequence[Battle], data_dir: Any
) -> tuple[list[Battle], dict[str, int]]:
    """Battles that do not come from outcome tables: AlpacaEval's judge preferences (when
    `alpaca_eval` is among the sources; non-commercial licence) reduced to strong-tier vs
    weak-tier battles, and the user's own battles as given. Both decontaminated."""
    from routellm_lc.training.decontaminate import decontaminate_battles
    from routellm_lc.training.names import tier
    from routellm_lc.training.sources import load_alpaca_battles

    battles: list[Battle] = []
    if "alpaca_eval" in sources:
        names = {"strong": STRONG_TIER, "weak": WEAK_TIER}
        for b in load_alpaca_battles(data_dir, annotations="all"):
            tiers = (tier(b.model_a), tier(b.model_b))
            if set(tiers) == {"strong", "weak"}:
                battles.append(
                    Battle(b.prompt, names[tiers[0]], names[tiers[1]], b.winner, b.source, b.weight)
                )
    battles += list(user_battles)
    if not battles:
        return [], {}
    return decontaminate_battles(battles, data_dir=data_dir)


def split_groups(questions: Sequence[Question], holdout: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out questions: whole groups (shared questions stay together)."""
    groups = np.array([f"{q.source}:{q.group or q.qid}" for q in questions])
    unique = np.unique(groups)
    rng = np.random.default_rng(seed)
    held = set(rng.choice(unique, size=int(round(len(unique) * holdout)), replace=False))
    return np.array([g in held for g in groups])


@dataclass
class TrainingReport:
    recipe: str
    sources: list[str]
    seed: int
    holdout: float
    n_questions: int
    n_train_battles: int
    decontaminated: dict[str, int]
    heldout_apgr: dict[str, float] = field(default_factory=dict)
    hyperparameters: dict[str, Any] = field(default_factory=dict)
    user_battles: int = 0
    """User battles trained on (after decontamination and the held-out split)."""
    user_battles_heldout: int = 0
    """User battles held out to measure the router on (`heldout_apgr["user battles"]`)."""
    device: str | None = None
    """Where a torch router (`bert`) was fine-tuned: GPU and CPU arithmetic differ, so runs
    on different devices are not bit-identical."""


def fit_arena_length(
    questions: Sequence[Question],
    all_train: Sequence[Question],
    embedder: Any,
    *,
    alpha: float = 10.0,
    features: Sequence[str] = DEFAULT_FEATURES,
) -> Any:
    """Ridge regression of the tier gap on [embedding, standardised features] over
    `questions`, plus the length prior, stored as an exact dim-1 MF (`from_linear`).

    Logit = 2 · predicted gap (the first-order logit of the soft label (1 + gap) / 2) plus a
    log-length term of equal spread over `all_train` (the z-score ensemble)."""
    from routellm_lc.embeddings import get_embedder
    from routellm_lc.routers.features import compute_features
    from routellm_lc.routers.mf import MatrixFactorizationRouter
    from routellm_lc.training.decontaminate import cached_embeddings

    prompts_all = [q.prompt for q in all_train]
    raw_all = compute_features(features, prompts_all)
    mean = raw_all.mean(axis=0)
    std = np.where(raw_all.std(axis=0) > 1e-9, raw_all.std(axis=0), 1.0)
    encoder = embedder if hasattr(embedder, "embed") else get_embedder(embedder, cache=False)

    def inputs(prompts: list[str]) -> np.ndarray:
        emb = cached_embeddings(prompts, encoder).astype(np.float64)
        return np.hstack([emb, (compute_features(features, prompts) - mean) / std])

    usable = [q for q in questions if tier_gap(q) is not None]
    X = inputs([q.prompt for q in usable])
    y = np.array([tier_gap(q) for q in usable])
    centre, target_mean = X.mean(axis=0), y.mean()
    Xc = X - centre
    coef = np.linalg.solve(Xc.T @ Xc + alpha * np.eye(X.shape[1]), Xc.T @ (y - target_mean))
    weights = 2.0 * coef
    bias = 2.0 * (target_mean - centre @ coef)
    spread = float((inputs(prompts_all) @ weights).std())
    prior = {"log_chars": LENGTH_PRIOR_WEIGHT * spread}  # the feature has unit spread here
    return MatrixFactorizationRouter.from_linear(
        weights,
        bias,
        features=list(features),
        feature_mean=mean,
        feature_std=std,
        strong_model=STRONG_TIER,
        weak_model=WEAK_TIER,
        embedder=embedder,
        logit_prior=prior,
    )


def heldout_quality(router: Any, questions: Sequence[Question]) -> dict[str, float]:
    """APGR per source on held-out questions, tier means as the strong/weak qualities."""
    from routellm_lc.evals import metrics

    result = {}
    by_source: dict[str, list[Question]] = {}
    for q in questions:
        if tier_gap(q) is not None:
            by_source.setdefault(q.source, []).append(q)
    for source, items in sorted(by_source.items()):
        gaps = np.array([tier_gap(q) for q in items])
        weak = np.array([_tier_mean(q, "weak") for q in items])
        strong = weak + gaps
        if len(items) < 10 or np.isclose(strong.mean(), weak.mean()):
            continue
        scores = router.strong_win_rate([q.prompt for q in items])
        curve = metrics.threshold_curve(scores, strong, weak)
        result[source] = round(metrics.apgr(curve, strong.mean(), weak.mean()), 4)
    return result


def _tier_mean(question: Question, which: str) -> float:
    from routellm_lc.training.names import tier

    values = [v for m, v in question.outcomes.items() if tier(m) == which]
    return float(np.mean(values))


def split_questions(
    sources: Sequence[str],
    data_dir: str | os.PathLike[str] | None,
    seed: int,
    holdout: float,
    limit: int | None = None,
) -> tuple[list[Question], dict[str, int], np.ndarray]:
    """The outcome sources' questions as the battle recipes train on them: an optional
    seeded subset of `limit`, decontaminated; returns (questions, dropped counts per source,
    held-out mask of whole question groups)."""
    from routellm_lc.training.decontaminate import decontaminate_questions

    questions = load_questions([s for s in sources if s in OUTCOME_SOURCES], data_dir)
    if limit is not None:  # a quick, seeded subset (tests, smoke runs)
        rng = np.random.default_rng(seed)
        questions = [
            questions[i]
            for i in sorted(rng.choice(len(questions), min(limit, len(questions)), replace=False))
        ]
    questions, dropped = decontaminate_questions(questions, data_dir=data_dir)
    return questions, dropped, split_groups(questions, holdout, seed)


def check_sources(sources: Sequence[str]) -> list[str]:
    """The training source names, or `RecipeError` naming the unknown ones and the known."""
    unknown = [s for s in sources if s not in SOURCES]
    if unknown:
        raise RecipeError(
            f"Unknown training source(s) {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(SOURCES)} (or `none`, to train on --user-battles alone)."
        )
    return list(dict.fromkeys(sources))


def check_split(holdout: float, limit: int | None) -> None:
    """`holdout` a share in [0, 1) and `limit` (when given) at least 1, else `RecipeError`."""
    if not 0.0 <= holdout < 1.0:  # also rejects NaN
        raise RecipeError(f"holdout must be a share in [0, 1) (e.g. 0.2), got {holdout}.")
    if limit is not None and limit < 1:
        raise RecipeError(f"limit must be at least 1 question, got {limit}.")


def battle_models(recipe: str, sources: Sequence[str], user_battles: Sequence[Battle]) -> list[str]:
    """The model identities a battle recipe's training battles hold: the two tiers when a
    data source gives tier battles, then the user's own models."""
    tier_sources = {"arena_bench_v1"} if recipe == "arena-length" else set(OUTCOME_SOURCES)
    tiers = bool(set(sources) & (tier_sources | {"alpaca_eval"}))
    models = [STRONG_TIER, WEAK_TIER] if tiers else []
    return models + sorted({m for b in user_battles for m in (b.model_a, b.model_b)} - set(models))


def resolve_models(
    recipe: str,
    sources: Sequence[str],
    user_battles: Sequence[Battle],
    strong_model: str | None,
    weak_model: str | None,
) -> tuple[str, str]:
    """The strong and weak identities a battle-trained router scores, checked against the
    models of its training battles before any data is loaded or fitted.

    Unset, they are the two tiers when a data source gives tier battles; with the user's
    battles alone and exactly two models in them, the one with the higher win share is strong.
    """
    models = battle_models(recipe, sources, user_battles)
    if not models:
        raise RecipeError("No training battles: name --sources, or give --user-battles FILE.")
    if STRONG_TIER in models:
        strong_model = strong_model or STRONG_TIER
        weak_model = weak_model or WEAK_TIER
    elif strong_model is None or weak_model is None:
        ranked = sorted(models, key=lambda m: -_win_share(user_battles, m))
        if len(models) != 2:
            raise RecipeError(
                f"Your battles hold {len(models)} models ({', '.join(models)}): name the pair "
                "to route between with --strong-model and --weak-model."
            )
        if strong_model is None and weak_model is None:
            if _win_share(user_battles, ranked[0]) == _win_share(user_battles, ranked[1]):
                raise RecipeError(
                    f"{ranked[0]} and {ranked[1]} win equally often in your battles: say which "
                    "is strong with --strong-model and --weak-model."
                )
            strong_model, weak_model = ranked
        elif strong_model is None:
            strong_model = next(m for m in models if m != weak_model)
        else:
            weak_model = next(m for m in models if m != strong_model)
    for flag, model in (("--strong-model", strong_model), ("--weak-model", weak_model)):
        if model not in models:
            raise RecipeError(
                f"{flag} {model!r} is not a model of the training battles, so the router could "
                f"not score it; they hold: {', '.join(models)}."
            )
    if strong_model == weak_model:
        raise RecipeError(f"--strong-model and --weak-model are the same model ({strong_model!r}).")
    return strong_model, weak_model


def _win_share(battles: Sequence[Battle], model: str) -> float:
    """Weighted share of `model`'s battles it won (a tie counts half)."""
    won = played = 0.0
    for b in battles:
        if model not in (b.model_a, b.model_b):
            continue
        played += b.weight
        if b.winner == "tie":
            won += b.weight / 2
        elif (b.winner == "model_a") == (b.model_a == model):
            won += b.weight
    return won / played if played else 0.0


def split_battles(battles: Sequence[Battle], holdout: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out battles: a seeded `holdout` share of their distinct prompts
    (every battle on a held-out prompt), never all of them."""
    prompts = sorted({b.prompt for b in battles})
    size = min(int(round(len(prompts) * holdout)), max(len(prompts) - 1, 0))
    rng = np.random.default_rng(seed)
    held = {prompts[i] for i in rng.choice(len(prompts), size=size, replace=False)}
    return np.array([b.prompt in held for b in battles], dtype=bool)


def battle_apgr(
    router: Any, battles: Sequence[Battle], strong_model: str, weak_model: str
) -> float | None:
    """APGR on battles between `strong_model` and `weak_model`: per battle, the strong model's
    quality is 1 for a win, 0.5 for a tie and 0 for a loss (the weak model's is 1 minus it).
    None below 10 such battles, or when neither model wins more often."""
    from routellm_lc.evals import metrics

    pairs = [b for b in battles if {b.model_a, b.model_b} == {strong_model, weak_model}]
    if len(pairs) < 10:
        return None
    strong = np.array(
        [
            0.5
            if b.winner == "tie"
            else float((b.winner == "model_a") == (b.model_a == strong_model))
            for b in pairs
        ]
    )
    weak = 1.0 - strong
    if np.isclose(strong.mean(), weak.mean()):
        return None
    curve = metrics.threshold_curve(router.strong_win_rate([b.prompt for b in pairs]), strong, weak)
    return round(metrics.apgr(curve, strong.mean(), weak.mean()), 4)


def train_router(
    router: str = "mf",
    *,
    recipe: str = DEFAULT_RECIPE,
    sources: Sequence[str] = OUTCOME_SOURCES,
    data_dir: str | os.PathLike[str] | None = None,
    user_battles: Sequence[Battle] = (),
    seed: int = 0,
    holdout: float = 0.2,
    limit: int | None = None,
    embedder: Any = "local",
    progress: bool = True,
    strong_model: str | None = None,
    weak_model: str | None = None,
    device: str | None = None,
    **router_kwargs: Any,
) -> tuple[Any, TrainingReport]:
    """Fit a router with the recipe above; returns (router, report).

    `strong_model` / `weak_model` pick the identities the router scores (default: the two
    tiers; see `resolve_models` for your own battles); they must be models of the training
    battles, checked before any data is loaded. With `user_battles`, a `holdout` share of
    their prompts is held out too and the router's APGR on them is reported as
    `heldout_apgr["user battles"]`. `device` is where a router that fine-tunes a torch model
    (`bert`) trains (None: "auto", a GPU when torch sees one); it is not a setting of the
    checkpoint, so the model card reports it apart from them.
    """
    check_split(holdout, limit)
    sources = check_sources(sources)
    if recipe == "difficulty-length":
        ignored = [
            name
            for name, value in (("strong_model", strong_model), ("weak_model", weak_model))
            if value is not None
        ] + sorted(router_kwargs)
        if ignored:
            raise RecipeError(
                f"Recipe difficulty-length scores the strong tier against the weak tier and "
                f"has no training settings; it would ignore {', '.join(ignored)}: use "
                "--recipe tiers-all."
            )
        return _train_difficulty_length(
            router, sources, data_dir, user_battles, seed, holdout, limit, embedder, progress
        )

    if recipe not in RECIPES:
        raise RecipeError(f"Unknown recipe {recipe!r}; known: {', '.join(RECIPES)}.")
    linear = router == "mf" and recipe == "arena-length"
    if linear and (user_battles or "alpaca_eval" in sources or router_kwargs.get("epochs")):
        raise RecipeError(
            "Recipe arena-length fits mf on arena_bench_v1's outcomes alone: it cannot use "
            "--user-battles, alpaca_eval or --epochs; use --recipe tiers-all."
        )
    if not linear:
        strong_model, weak_model = resolve_models(
            recipe, sources, user_battles, strong_model, weak_model
        )
    elif (strong_model or STRONG_TIER, weak_model or WEAK_TIER) != (STRONG_TIER, WEAK_TIER):
        raise RecipeError(
            "Recipe arena-length scores the strong tier against the weak tier: drop "
            "--strong-model / --weak-model, or use --recipe tiers-all."
        )
    questions, dropped, held = split_questions(sources, data_dir, seed, holdout, limit)
    train = [q for q, h in zip(questions, held, strict=True) if not h]
    test = [q for q, h in zip(questions, held, strict=True) if h]
    battle_questions = train
    if recipe == "arena-length":
        battle_questions = [q for q in train if q.source == "arena_bench_v1"]
    extra, extra_dropped = _extra_battles(sources, user_battles, data_dir)
    for source, count in extra_dropped.items():
        dropped[source] = dropped.get(source, 0) + count
    user_kept = [b for b in extra if b.source == "user"]
    user_held = split_battles(user_kept, holdout, seed)
    user_train = [b for b, h in zip(user_kept, user_held, strict=True) if not h]
    user_test = [b for b, h in zip(user_kept, user_held, strict=True) if h]
    battles = tier_battles(battle_questions) + [b for b in extra if b.source != "user"]
    battles += user_train
    if not battles:
        raise RecipeError("No training battles: check the sources and the data directory.")

    if linear:
        settings = {"alpha": RIDGE_ALPHA, "features": list(DEFAULT_FEATURES), **router_kwargs}
        model = fit_arena_length(battle_questions, train, embedder, **settings)
        settings["length_prior_beta"] = LENGTH_PRIOR_WEIGHT
    elif router == "mf":
        from routellm_lc.routers.mf import MatrixFactorizationRouter

        settings = {**MF_SETTINGS[recipe], "features": DEFAULT_FEATURES, **router_kwargs}
        model = MatrixFactorizationRouter(
            strong_model, weak_model, embedder=embedder, seed=seed, **settings
        )
        if "progress" in inspect.signature(model.fit).parameters:
            model.fit(battles, progress=progress)
        else:
            model.fit(battles)
    else:
        from routellm_lc.routers.base import device_option, get_router_class

        cls = get_router_class(router)
        if not hasattr(cls, "fit"):
            raise RecipeError(f"Router {router!r} cannot be trained.")
        settings = dict(router_kwargs)
        model = cls(
            strong_model=strong_model,
            weak_model=weak_model,
            embedder=embedder,
            **settings,
            **device_option(cls, device),
        )
        if "progress" in inspect.signature(model.fit).parameters:
            model.fit(battles, progress=progress)
        else:
            model.fit(battles)
    heldout = heldout_quality(model, test) if test else {}
    if user_test and not linear:
        user_apgr = battle_apgr(model, user_test, strong_model, weak_model)
        if user_apgr is not None:
            heldout["user battles"] = user_apgr
    read = [s for s in sources if s in OUTCOME_SOURCES]
    report = TrainingReport(
        recipe=recipe,
        sources=read + (["alpaca_eval"] if "alpaca_eval" in sources and not linear else []),
        seed=seed,
        holdout=holdout,
        n_questions=len(questions),
        n_train_battles=len(battles),
        decontaminated=dropped,
        heldout_apgr=heldout,
        hyperparameters={
            **{k: (list(v) if isinstance(v, tuple) else v) for k, v in settings.items()},
            **({"logit_prior": model.logit_prior} if getattr(model, "logit_prior", None) else {}),
        },
        user_battles=len(user_train),
        user_battles_heldout=len(user_test),
        device=_model_device(model),
    )
    return model, report


def _model_device(router: Any) -> str | None:
    """The device a torch router's model sits on, with the GPU's name ("cuda:0 (NVIDIA
    H100 80GB HBM3)"); None for routers without a torch model."""
    model = getattr(router, "model_", None)
    device = getattr(model, "device", None)
    if device is None:
        return None
    if device.type == "cuda":
        import torch

        return f"{device} ({torch.cuda.get_device_name(device)})"
    return str(device)


def _train_difficulty_length(
    router: str,
    sources: Sequence[str],
    data_dir: str | os.PathLike[str] | None,
    user_battles: Sequence[Battle],
    seed: int,
    holdout: float,
    limit: int | None,
    embedder: Any,
    progress: bool,
) -> tuple[Any, TrainingReport]:
    """The `difficulty-length` recipe (see `training/difficulty.py`): mf only, outcome data."""
    from routellm_lc.training.difficulty import RecipeError, train_difficulty_length

    if router != "mf":
        raise RecipeError(
            f"Recipe difficulty-length trains the mf router only; use --recipe tiers-all "
            f"for {router!r}."
        )
    if user_battles:
        raise RecipeError(
            "Recipe difficulty-length learns from per-model outcomes, not battles; use "
            "--recipe tiers-all to train on your own battles."
        )
    return train_difficulty_length(
        sources=sources,
        data_dir=data_dir,
        seed=seed,
        holdout=holdout,
        limit=limit,
        embedder=embedder,
        progress=progress,
    )


def model_card(
    router_name: str,
    report: TrainingReport,
    command: str,
    eval_results: dict[str, Any] | None = None,
) -> str:
    """The README.md of a trained checkpoint: data, licences, settings, measured quality."""
    licences = "\n".join(
        f"| `{s}` | {SOURCES[s].licence} |" for s in report.sources if s in SOURCES
    )
    non_commercial = any("NC" in SOURCES[s].licence for s in report.sources if s in SOURCES)
    heldout = "\n".join(f"| {s} | {v:.3f} |" for s, v in report.heldout_apgr.items())
    lines = [
        "---",
        "library_name: routellm-lc",
        f"license: {'cc-by-nc-4.0' if non_commercial else 'apache-2.0'}",
        f"tags: [routellm, router, {router_name}]",
        "---",
        "",
        f"# `{router_name}` router: strong tier vs weak tier (recipe `{report.recipe}`)",
        "",
        "Predicts the probability that a strong (GPT-4-class) model beats a weak "
        "(Mixtral / GPT-3.5-class) model on a prompt. Route to strong iff score ≥ threshold.",
        "",
        *(
            [
                "How: a question's difficulty (1 − mean outcome over every model in the data) is "
                "regressed within each source on MiniLM embeddings and cheap prompt features "
                "(an exact dimension-1 `mf` projection); the score adds that difficulty's "
                "quantile among the training prompts to the log prompt length's quantile "
                "(`score_cdfs` in config.json), so neither part's pull is unbounded: "
                "score = sigmoid(4 · (sum of quantiles − 1)), 0.5 for a prompt at both "
                "medians (calibrate thresholds with `routellm-lc calibrate`). "
                "Why, and every alternative measured: docs/router-research.md.",
                "",
            ]
            if report.recipe == "difficulty-length"
            else []
        ),
        "## Reproduce",
        "",
        f"```bash\n{command}\n```",
        "",
        "## Training data",
        "",
        f"{report.n_questions} questions after decontamination (dropped as near-copies of "
        f"evaluation prompts, cosine ≥ 0.95: {report.decontaminated or 'none'}); "
        + (
            f"{report.n_train_battles} questions (per-model outcomes) "
            if report.recipe == "difficulty-length"
            else f"{report.n_train_battles} soft tier battles "
        )
        + f"from the {100 - 100 * report.holdout:.0f}% "
        f"training split (seed {report.seed}); user battles: {report.user_battles}"
        + (
            f" (and {report.user_battles_heldout} held out to measure it)"
            if report.user_battles_heldout
            else ""
        )
        + ". "
        "Never trained on RouteLLM's evaluation files.",
        "",
        "| source | licence |",
        "|---|---|",
        licences,
        "",
        "Licence of this checkpoint: "
        + (
            "**non-commercial** (CC BY-NC 4.0 data was used)."
            if non_commercial
            else "Apache-2.0 (all sources are Apache-2.0 or MIT)."
        ),
        "",
        "## Settings",
        "",
        "```json",
        __import__("json").dumps(report.hyperparameters, indent=2, sort_keys=True),
        "```",
        "",
        *([f"Fine-tuned on `{report.device}`.", ""] if report.device else []),
        "## Measured quality",
        "",
        (
            "APGR on the held-out training questions (grouped split), on the validation pairs "
            "of docs/router-research.md: V-chat = arena_bench_v1, gpt-4-1106-preview vs "
            "Mixtral-8x7B; V-math = faithful_cot SVAMP/AQuA/date, gpt-4 vs gpt-3.5-turbo; "
            "V-mcq = MMLU-Pro's easier questions, gpt-4o vs Mixtral-8x7B:"
            if report.recipe == "difficulty-length"
            else "APGR on the held-out 20% of training questions (strong/weak tier means as "
            "qualities):"
        ),
        "",
        "| set | held-out APGR |",
        "|---|---|",
        heldout,
    ]
    if eval_results:
        lines += [
            "",
            "On RouteLLM's evaluation sets (`routellm-lc eval`, decontaminated as RouteLLM; "
            "measured after training and never used to fit it, though earlier candidates' "
            "figures informed the recipe's design: docs/router-research.md; RouteLLM's best "
            "per benchmark: 0.802 / 0.603 / 0.622 APGR, CPT(50%) 13.4% / 35.4% / 33.6%; "
            "`--card-eval DIR` copies these figures from `routellm-lc eval --output DIR`):",
            "",
            "| benchmark | APGR | CPT(50%) |",
            "|---|---|---|",
        ]
        for bench, row in eval_results.items():
            lines.append(f"| {bench} | {row['apgr']:.3f} | {100 * row['cpt50']:.1f}% |")
    return "\n".join(lines) + "\n"
