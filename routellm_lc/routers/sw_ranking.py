"""`sw_ranking`: RouteLLM's similarity-weighted Bradley–Terry (Elo) router, vectorised.

For a prompt x, every training battle i is weighted by how similar its prompt is to x:
w_i = 10 · 10^(sim_i / max_j sim_j), sim = cosine of the prompt embeddings (RouteLLM's
`get_weightings`). A Bradley–Terry model is then fitted on the weighted battles, over *tiers*
of models rather than single models (RouteLLM clusters its models into 10 tiers by global
rating): P(tier a beats tier b) = σ(θ_a − θ_b), a tie counting as half a win for each side.
The strong model's win rate is σ(θ_strong − θ_weak), which is RouteLLM's Elo formula
1 / (1 + 10^((R_weak − R_strong) / 400)) with R = 1000 + 400 θ / ln 10.

RouteLLM refits a scikit-learn logistic regression per prompt. Here the fit is reduced to
per-tier-pair weighted win counts (one matrix product for a batch of prompts) and solved by a
few Newton steps run for all prompts of a batch at once, warm-started at the global ratings.
Battles between two models of the same tier carry no information about tier gaps and are left
out (RouteLLM's design matrix gives them a stray −ln 10 entry instead).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routellm_lc.errors import CheckpointError
from routellm_lc.routers import checkpoints as ckpt
from routellm_lc.routers.base import Router, battle_weights, register_router

ELO_SCALE = 400.0
ELO_BASE = 10.0
ELO_INIT = 1000.0
_OUTCOMES = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}
_TENSORS = (
    "prompt_embeddings",
    "battle_prompt",
    "battle_model_a",
    "battle_model_b",
    "battle_outcome",
    "battle_weight",
)
#: Similarity rows × battles handled per chunk (bounds memory for large batches).
_CHUNK_CELLS = 4_000_000
_EINSUM_MAX_QUERIES = 4


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def _field(record: Any, name: str, default: Any = None) -> Any:
    if isinstance(record, Mapping):
        return record.get(name, default)
    return getattr(record, name, default)


def _normalise_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def similarity_weights(similarities: np.ndarray) -> np.ndarray:
    """RouteLLM's battle weights 10 · 10^(sim / max sim), row by row.

    A prompt unlike every battle (max similarity ≤ 0) would flip the ordering; it gets
    uniform weights instead.
    """
    sims = np.asarray(similarities, dtype=np.float64)
    top = sims.max(axis=-1, keepdims=True)
    safe = np.where(top > 0, top, 1.0)
    return np.where(top > 0, 10.0 * 10.0 ** (sims / safe), 10.0)


def bradley_terry(
    wins: np.ndarray,
    totals: np.ndarray,
    pair_a: np.ndarray,
    pair_b: np.ndarray,
    num_players: int,
    *,
    l2: float = 0.0,
    start: np.ndarray | None = None,
    max_iter: int = 50,
    tol: float = 1e-9,
) -> np.ndarray:
    """Weighted Bradley–Terry ratings for many independent problems at once.

    `totals[q, p]` is the weight of the battles of pair p = (pair_a[p], pair_b[p]) in problem q,
    `wins[q, p]` the part of it won by pair_a[p] (ties count half). Maximises
    Σ_p wins·log σ(θ_a − θ_b) + (totals − wins)·log σ(θ_b − θ_a) − l2/2 ‖θ‖² by damped Newton
    steps. Returns θ of shape (Q, num_players) in natural-log units (only differences matter
    when l2 = 0: the solution is the one nearest the start).
    """
    wins = np.atleast_2d(np.asarray(wins, dtype=np.float64))
    totals = np.atleast_2d(np.asarray(totals, dtype=np.float64))
    n_problems = totals.shape[0]
    incidence = np.zeros((len(pair_a), num_players))
    incidence[np.arange(len(pair_a)), pair_a] = 1.0
    incidence[np.arange(len(pair_b)), pair_b] = -1.0
    theta = np.zeros((n_problems, num_players))
    if start is not None:
        theta += np.asarray(start, dtype=np.float64)
    diagonal = np.arange(num_players)
    # A tiny jitter keeps the Hessian invertible along the rating-shift direction (l2 = 0)
    # and for players without battles; the gradient is orthogonal to both, so it is exact.
    jitter = 1e-10 * max(float(totals.mean()), 1e-12)
    for _ in range(max_iter):
        gap = theta[:, pair_a] - theta[:, pair_b]
        prob = _sigmoid(gap)
        gradient = (totals * prob - wins) @ incidence + l2 * theta
        curvature = totals * prob * (1.0 - prob)
        hessian = np.zeros((n_problems, num_players, num_players))
        hessian[:, pair_a, pair_b] = -curvature
        hessian[:, pair_b, pair_a] = -curvature
        hessian[:, diagonal, diagonal] = curvature @ np.abs(incidence) + l2 + jitter
        step = np.linalg.solve(hessian, gradient[..., None])[..., 0]
        largest = np.abs(step).max(axis=1, keepdims=True)
        step *= np.minimum(1.0, 4.0 / np.maximum(largest, 1e-300))  # damp wild first steps
        theta -= step
        if float(largest.max()) < tol:
            break
    return theta


def to_elo(theta: np.ndarray) -> np.ndarray:
    """Natural-log BT ratings → RouteLLM's Elo scale (400 points = a factor 10 in odds)."""
    return ELO_INIT + ELO_SCALE * np.asarray(theta) / math.log(ELO_BASE)


def cluster_tiers(ratings: Mapping[str, float], num_tiers: int) -> dict[str, int]:
    """RouteLLM's `compute_tiers`: split models sorted by rating (best first) into
    `num_tiers` contiguous groups minimising the sum of within-group rating variances.
    Tier 0 is the best."""
    names = sorted(ratings, key=lambda m: -ratings[m])
    values = np.array([ratings[m] for m in names], dtype=np.float64)
    n = len(values)
    k = max(1, min(int(num_tiers), n))
    cost = np.zeros((n, n))  # cost[i, j] = variance of values[i..j]
    for i in range(n):
        for j in range(i + 1, n):
            cost[i, j] = np.var(values[i : j + 1])
    best = np.full((k, n), np.inf)  # best[t, j]: values[0..j] in t + 1 groups
    split = np.zeros((k, n), dtype=int)
    best[0] = cost[0]
    for t in range(1, k):
        for j in range(t, n):
            candidates = best[t - 1, t - 1 : j] + cost[t : j + 1, j]
            split[t, j] = t - 1 + int(np.argmin(candidates))
            best[t, j] = candidates.min()
    tiers = np.zeros(n, dtype=int)
    end = n - 1
    for t in range(k - 1, 0, -1):
        start = split[t, end] + 1
        tiers[start : end + 1] = t
        end = start - 1
    return {name: int(tier) for name, tier in zip(names, tiers, strict=True)}


@register_router("sw_ranking")
class SWRankingRouter(Router):
    """RouteLLM's `sw_ranking` router.

    Constructor arguments only store settings; `fit` stores the battles (prompt embeddings,
    model ids, outcomes) and the tiers; scoring refits weighted Bradley–Terry ratings per prompt.

    Args:
        strong_model / weak_model: the models whose tiers are compared when scoring.
        embedder: embedder spec or instance (see `routellm_lc.embeddings.get_embedder`).
        tiers: model → tier label. None: RouteLLM's clustering into `num_tiers` tiers by
            global rating when `num_tiers` is set, else every model is its own tier.
        num_tiers: number of tiers for the clustering (RouteLLM uses 10).
        l2: ridge penalty on the ratings, relative to a per-prompt total battle weight equal to
            the number of battles (0 = RouteLLM's unpenalised fit; > 0 keeps ratings finite
            when one side never loses).
        max_iter: Newton steps per fit (converges in a handful from the global ratings).
    """

    def __init__(
        self,
        strong_model: str | None = None,
        weak_model: str | None = None,
        *,
        embedder: Any = "local",
        tiers: Mapping[str, Any] | None = None,
        num_tiers: int | None = None,
        l2: float = 0.0,
        max_iter: int = 50,
    ) -> None:
        self.strong_model = strong_model
        self.weak_model = weak_model
        self.embedder = embedder
        self.tiers = dict(tiers) if tiers is not None else None
        self.num_tiers = num_tiers
        self.l2 = l2
        self.max_iter = max_iter
        self._checkpoint_id: str | None = None

    @property
    def cache_key(self) -> str | None:
        """What identifies this router's scores in the score cache (`evals.harness`): the
        checkpoint's content hash and the settings that change the scores (strong and weak
        model, embedder, l2, max_iter). None for a router not loaded from a checkpoint."""
        if self._checkpoint_id is None:
            return None
        return ckpt.scoring_key(
            "sw_ranking",
            self._checkpoint_id,
            strong=self.strong_model,
            weak=self.weak_model,
            embedder=ckpt.embedder_label(self.embedder),
            l2=self.l2,
            max_iter=self.max_iter,
        )

    # -- training --------------------------------------------------------------------------
    def fit(self, battles: Sequence[Any]) -> SWRankingRouter:
        """Store battles: records with prompt, model_a, model_b, winner ("model_a" |
        "model_b" | "tie" | "tie (bothbad)") and an optional weight."""
        self._checkpoint_id = None  # not the loaded checkpoint's battles any more (see mf)
        if not battles:
            raise ValueError("fit() needs at least one battle.")
        prompts = [str(_field(b, "prompt")) for b in battles]
        side_a = [str(_field(b, "model_a")) for b in battles]
        side_b = [str(_field(b, "model_b")) for b in battles]
        try:
            outcomes = np.array([_OUTCOMES[str(_field(b, "winner"))] for b in battles])
        except KeyError as exc:
            raise ValueError(
                f"Unknown battle winner {exc.args[0]!r}: use model_a, model_b, tie or "
                "tie (bothbad)."
            ) from None
        weights = battle_weights(_field(b, "weight") for b in battles)
        models = sorted(set(side_a) | set(side_b))
        index = {m: i for i, m in enumerate(models)}
        unique, battle_prompt = np.unique(np.array(prompts, dtype=object), return_inverse=True)

        self.models_ = models
        self.prompt_embeddings_ = _normalise_rows(self._embedder().embed(list(unique)))
        self.battle_prompt_ = battle_prompt.astype(np.int64)
        self.battle_model_a_ = np.array([index[m] for m in side_a], dtype=np.int64)
        self.battle_model_b_ = np.array([index[m] for m in side_b], dtype=np.int64)
        self.battle_outcome_ = outcomes
        self.battle_weight_ = weights
        self.tiers_ = self._resolve_tiers()
        self._prepare()
        if self._pair_in_one_tier():
            raise ValueError(
                f"sw_ranking: {self.strong_model} and {self.weak_model} are in one tier, so "
                "every prompt would score 0.5: name a strong and a weak model of different "
                "tiers (or use fewer models per tier)."
            )
        return self

    def _pair_in_one_tier(self) -> bool:
        """Whether the named strong and weak models (both known) share a tier."""
        try:
            strong = self._tier(self.strong_model, "strong")
            weak = self._tier(self.weak_model, "weak")
        except ValueError:  # a name not (yet) given or known: scoring says so
            return False
        return strong == weak

    def _resolve_tiers(self) -> dict[str, Any]:
        if self.tiers is not None:
            missing = [m for m in self.models_ if m not in self.tiers]
            if missing:
                raise ValueError(f"tiers has no entry for model(s): {', '.join(missing)}.")
            return {m: self.tiers[m] for m in self.models_}
        if self.num_tiers is None:
            return {m: m for m in self.models_}
        ratings = self.model_ratings()
        return cluster_tiers(ratings, self.num_tiers)

    def model_ratings(self) -> dict[str, float]:
        """Global (unweighted) Elo rating of every model, each model on its own."""
        self._check_fitted()
        a, b = self.battle_model_a_, self.battle_model_b_
        keep = a != b
        theta = self._solve_global(a[keep], b[keep], len(self.models_), keep)
        return dict(zip(self.models_, to_elo(theta).tolist(), strict=True))

    def _solve_global(
        self, a: np.ndarray, b: np.ndarray, num_players: int, keep: np.ndarray
    ) -> np.ndarray:
        weight = self.battle_weight_[keep]
        outcome = self.battle_outcome_[keep]
        if len(a) == 0:
            return np.zeros(num_players)
        pairs, pair_a, pair_b, flipped = _canonical_pairs(a, b)
        won = np.where(flipped, 1.0 - outcome, outcome) * weight
        totals = np.bincount(pairs, weights=weight, minlength=len(pair_a))
        wins = np.bincount(pairs, weights=won, minlength=len(pair_a))
        scale = len(weight) / max(totals.sum(), 1e-300)
        return bradley_terry(
            wins * scale,
            totals * scale,
            pair_a,
            pair_b,
            num_players,
            l2=self.l2,
            max_iter=self.max_iter,
        )[0]

    # -- scoring ---------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "battle_outcome_"):
            raise RuntimeError(
                "This sw_ranking router has no battles: call fit() or from_pretrained()."
            )

    def _embedder(self) -> Any:
        from routellm_lc.embeddings import for_scoring, get_embedder

        if not hasattr(self, "_embedder_obj"):
            self._embedder_obj = get_embedder(self.embedder)
        return for_scoring(self._embedder_obj)

    def _prepare(self) -> None:
        """Group battles by tier pair once; compute the global ratings used as warm start."""
        labels = sorted({str(t) for t in self.tiers_.values()})
        self.tier_labels_ = labels
        tier_of_model = np.array([labels.index(str(self.tiers_[m])) for m in self.models_])
        ta = tier_of_model[self.battle_model_a_]
        tb = tier_of_model[self.battle_model_b_]
        keep = ta != tb
        pairs, pair_a, pair_b, flipped = _canonical_pairs(ta[keep], tb[keep])
        order = np.argsort(pairs, kind="stable")
        outcome = self.battle_outcome_[keep]
        self._pair_a, self._pair_b = pair_a, pair_b
        self._pair_starts = np.searchsorted(pairs[order], np.arange(len(pair_a)))
        self._battle_prompt = self.battle_prompt_[keep][order]
        self._battle_weight = self.battle_weight_[keep][order]
        self._battle_won = np.where(flipped, 1.0 - outcome, outcome)[order]
        self._tier_of_model = tier_of_model
        self._global_theta = self._solve_global(ta[keep], tb[keep], len(labels), keep)

    def _tier(self, model: str | None, role: str) -> int:
        if model is None:
            raise ValueError(f"sw_ranking router needs a {role} model name to score.")
        lowered = [m.lower() for m in self.models_]
        if model in self.models_:  # exact first, then case-insensitively, as mf matches names
            index = self.models_.index(model)
        elif model.lower() in lowered:
            index = lowered.index(model.lower())
        else:
            raise ValueError(
                f"{role} model {model!r} is not one of this sw_ranking router's models: "
                f"{', '.join(self.models_)}."
            )
        return int(self._tier_of_model[index])

    def tier_ratings(self, prompts: Sequence[str]) -> np.ndarray:
        """(n_prompts, n_tiers) Elo ratings of every tier, fitted on the battles weighted by
        similarity to each prompt (columns in the order of `tier_labels_`)."""
        self._check_fitted()
        if len(prompts) == 0:
            return np.empty((0, len(self.tier_labels_)))
        queries = _normalise_rows(self._embedder().embed(list(prompts)))
        if queries.shape[1] != self.prompt_embeddings_.shape[1]:
            raise ckpt.embedding_width_error(
                self.embedder,
                queries.shape[1],
                self.prompt_embeddings_.shape[1],
                "This sw_ranking router",
            )
        n_battles = max(len(self._battle_prompt), 1)
        chunk = max(1, _CHUNK_CELLS // n_battles)
        thetas = [
            self._weighted_ratings(queries[start : start + chunk])
            for start in range(0, len(queries), chunk)
        ]
        return to_elo(np.vstack(thetas))

    def _weighted_ratings(self, queries: np.ndarray) -> np.ndarray:
        num_tiers = len(self.tier_labels_)
        if len(self._pair_a) == 0:
            return np.zeros((len(queries), num_tiers))
        weights = similarity_weights(_similarities(queries, self.prompt_embeddings_))
        per_battle = weights[:, self._battle_prompt] * self._battle_weight
        totals = np.add.reduceat(per_battle, self._pair_starts, axis=1)
        wins = np.add.reduceat(per_battle * self._battle_won, self._pair_starts, axis=1)
        scale = per_battle.shape[1] / np.maximum(totals.sum(axis=1, keepdims=True), 1e-300)
        return bradley_terry(
            wins * scale,
            totals * scale,
            self._pair_a,
            self._pair_b,
            num_tiers,
            l2=self.l2,
            start=self._global_theta,
            max_iter=self.max_iter,
        )

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        strong = self._tier(self.strong_model, "strong")
        weak = self._tier(self.weak_model, "weak")
        elo = self.tier_ratings(prompts)
        gap = (elo[:, strong] - elo[:, weak]) / ELO_SCALE
        return 1.0 / (1.0 + ELO_BASE ** (-gap))

    # -- checkpoints -----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        self._check_fitted()
        return {
            "router": "sw_ranking",
            "format_version": ckpt.FORMAT_VERSION,
            "models": list(self.models_),
            "tiers": {m: self.tiers_[m] for m in self.models_},
            "strong_model": self.strong_model,
            "weak_model": self.weak_model,
            "embedder": self.embedder if isinstance(self.embedder, str) else self._embedder().name,
            "embedding_dim": int(self.prompt_embeddings_.shape[1]),
            "num_battles": len(self.battle_outcome_),
            "num_prompts": len(self.prompt_embeddings_),
            "l2": self.l2,
            "elo": {"scale": ELO_SCALE, "base": ELO_BASE, "init": ELO_INIT},
        }

    def save_pretrained(self, folder: str | Path, model_card: str | None = None) -> Path:
        """Write config.json, model.safetensors (float16 embeddings, int32 ids) and README.md."""
        config = self.config()
        folder = Path(folder).expanduser()
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        tensors = {
            "prompt_embeddings": self.prompt_embeddings_.astype(np.float16),
            "battle_prompt": self.battle_prompt_.astype(np.int32),
            "battle_model_a": self.battle_model_a_.astype(np.int32),
            "battle_model_b": self.battle_model_b_.astype(np.int32),
            "battle_outcome": self.battle_outcome_.astype(np.float32),
            "battle_weight": self.battle_weight_.astype(np.float32),
        }
        ckpt.write_safetensors(
            folder / "model.safetensors", {k: np.ascontiguousarray(v) for k, v in tensors.items()}
        )
        (folder / "README.md").write_text(model_card or _default_card(config), encoding="utf-8")
        return folder

    @classmethod
    def from_pretrained(
        cls,
        checkpoint: str | Path | None = None,
        *,
        strong_model: str | None = None,
        weak_model: str | None = None,
        embedder: Any = None,
        revision: str | None = None,
        token: str | bool | None = None,
        **kwargs: Any,
    ) -> SWRankingRouter:
        """Load a checkpoint folder written by `save_pretrained` (local path or Hub id)."""
        if checkpoint is None:
            raise CheckpointError(
                "sw_ranking has no bundled checkpoint: give it one, a folder or Hub id "
                "(`checkpoint=` in Python; on the command line `--checkpoint`, in `eval` and "
                "`serve` `--checkpoint sw_ranking=`), or train one (`routellm-lc train --router "
                "sw_ranking --output DIR`, or SWRankingRouter(strong, weak).fit(battles))."
            )
        folder = ckpt.resolve_checkpoint(
            checkpoint, ("config.json", "model.safetensors"), revision=revision, token=token
        )
        ckpt.check_router_type(folder, "sw_ranking")
        config = ckpt.read_config(folder)
        ckpt.require_keys(config, ("models", "tiers", "embedding_dim"), folder)
        tensors = ckpt.load_tensors(folder)
        if not isinstance(config["tiers"], Mapping):
            raise ckpt.config_error(folder, "tiers", "must map each model to its tier")
        router = cls(
            strong_model=strong_model or config.get("strong_model"),
            weak_model=weak_model or config.get("weak_model"),
            embedder=embedder or ckpt.checkpoint_embedder(config, folder),
            tiers=config["tiers"],
            l2=ckpt.config_number(config.get("l2", 0.0), "l2", folder, minimum=0.0),
            **kwargs,
        )
        router._load_state(config, tensors, folder)
        router._checkpoint_id = ckpt.checkpoint_identity(folder)
        ckpt.check_embedder(router.embedder, router.prompt_embeddings_.shape[1], folder)
        # validate names now, not on first request; a pair in one tier is never told apart
        router._tier(router.strong_model, "strong")
        router._tier(router.weak_model, "weak")
        if router._pair_in_one_tier():
            raise ckpt.config_error(
                folder,
                "tiers",
                f"put {router.strong_model} and {router.weak_model} in one tier: every prompt "
                "would score 0.5 (name a strong and a weak model of different tiers)",
            )
        return router

    def _load_state(
        self, config: Mapping[str, Any], tensors: Mapping[str, np.ndarray], folder: Path
    ) -> None:
        path = folder / "model.safetensors"
        missing = [k for k in _TENSORS if k not in tensors]
        if missing:
            raise CheckpointError(f"{path} is missing tensor(s): {', '.join(missing)}.")
        models = ckpt.config_names(config["models"], "models", folder)
        embedding_dim = ckpt.config_whole(config["embedding_dim"], "embedding_dim", folder)
        embeddings = np.asarray(tensors["prompt_embeddings"], dtype=np.float32)
        flat = [k for k in _TENSORS[1:] if np.ndim(tensors[k]) != 1]
        if flat:
            raise CheckpointError(f"{path}: {', '.join(flat)} must be 1-d (one value a battle).")
        ids = {k: np.asarray(tensors[k]).astype(np.int64) for k in _TENSORS[1:4]}
        outcome = np.asarray(tensors["battle_outcome"], dtype=np.float64)
        weight = np.asarray(tensors["battle_weight"], dtype=np.float64)
        n_battles = len(outcome)
        problems = []
        if embeddings.ndim != 2 or embeddings.shape[1] != embedding_dim:
            problems.append(
                f"prompt_embeddings has shape {embeddings.shape}, config says (n, {embedding_dim})"
            )
        for name in (*_TENSORS[1:4], "battle_weight"):
            if len(tensors[name]) != n_battles:
                problems.append(f"{name} has {len(tensors[name])} rows for {n_battles} battles")
        if n_battles and ids["battle_prompt"].max(initial=0) >= len(embeddings):
            problems.append("battle_prompt points past prompt_embeddings")
        for side in ("battle_model_a", "battle_model_b"):
            if n_battles and ids[side].max(initial=0) >= len(models):
                problems.append(f"{side} points past the {len(models)} models in config.json")
        if negative := [k for k in _TENSORS[1:4] if ids[k].min(initial=0) < 0]:
            problems.append(f"{', '.join(negative)} hold negative ids")
        if not ((outcome >= 0) & (outcome <= 1)).all():
            problems.append("battle_outcome holds values outside [0, 1]")
        if (weight < 0).any():
            problems.append("battle_weight holds negative weights")
        absent = [m for m in models if m not in self.tiers]
        if absent:
            problems.append(f"tiers has no entry for {', '.join(absent)}")
        if problems:
            raise CheckpointError(
                f"Malformed sw_ranking checkpoint at {folder}: " + "; ".join(problems) + "."
            )
        self.models_ = models
        self.prompt_embeddings_ = _normalise_rows(embeddings)
        self.battle_prompt_ = ids["battle_prompt"]
        self.battle_model_a_ = ids["battle_model_a"]
        self.battle_model_b_ = ids["battle_model_b"]
        self.battle_outcome_ = outcome
        self.battle_weight_ = weight
        self.tiers_ = {m: self.tiers[m] for m in models}
        self._prepare()


def _similarities(queries: np.ndarray, prompts: np.ndarray) -> np.ndarray:
    """Cosine similarities of unit rows. A few queries go through einsum's single-threaded
    loop: threaded BLAS gemv stalls when the cores are busy (measured here under load:
    12 ms vs 0.05 ms for 1 × 2,400 × 384); larger batches are faster through BLAS."""
    if len(queries) <= _EINSUM_MAX_QUERIES:
        return np.einsum("qd,nd->qn", queries, prompts)
    return queries @ prompts.T


def _canonical_pairs(
    a: np.ndarray, b: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Map battles to unordered pairs (low, high): (pair index per battle, pair lows, pair
    highs, whether the battle's sides were swapped to get there)."""
    flipped = a > b
    low, high = np.where(flipped, b, a), np.where(flipped, a, b)
    keys, pairs = np.unique(np.stack([low, high], axis=1), axis=0, return_inverse=True)
    return pairs.reshape(-1), keys[:, 0], keys[:, 1], flipped


def _default_card(config: Mapping[str, Any]) -> str:
    tiers = len({str(t) for t in config["tiers"].values()})
    return (
        "---\nlibrary_name: routellm-lc\ntags: [routellm, router, sw_ranking]\n---\n\n"
        "# sw_ranking router checkpoint\n\n"
        f"Similarity-weighted Bradley–Terry (Elo) router over {config['num_battles']} battles "
        f"({config['num_prompts']} prompts) between {len(config['models'])} models in {tiers} "
        f"tiers (strong: {config.get('strong_model')}, weak: {config.get('weak_model')}), "
        f"embedder `{config.get('embedder')}`.\n"
    )
