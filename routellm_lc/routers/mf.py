"""`mf`: RouteLLM's matrix-factorisation router, scored in numpy, trained with torch.

Each model m has a learned vector P[m] (L2-normalised); a prompt embedding x is projected by
W; the model's quality on the prompt is s(m, x) = c · (P̂[m] ⊙ W x). The strong model's win
rate is sigmoid(s(strong, x) − s(weak, x)) — RouteLLM's `MFModel.pred_win_rate`.

For a fixed (strong, weak) pair that collapses to sigmoid(x · v) with
v = Wᵀ (c ⊙ (P̂[strong] − P̂[weak])), so scoring is one embedding plus one dot product.

Extensions (ours): a checkpoint may append cheap prompt features (length, digits…, see
`features.py`) to the embedding, standardised with stored means/stds; and it may combine
*parts* through their empirical CDFs instead of adding logits (`score_cdfs`): each part (the
learned score x · v under the name "projection", or a standardised feature by its name) is
mapped to its quantile among the training prompts, and the strong win rate is
sigmoid(cdf_scale · (Σ quantiles − parts / 2) + logit_bias). Every part's pull is bounded, so
one extreme value (a pasted 5,000-word document's length) cannot override the others.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from routellm_lc.errors import CheckpointError
from routellm_lc.routers import checkpoints as ckpt
from routellm_lc.routers.base import Router, battle_weights, register_router
from routellm_lc.routers.features import FEATURES, compute_features

DEFAULT_CHECKPOINT = "mf_default"
_WINNERS = {"model_a": 1.0, "model_b": 0.0, "tie": 0.5, "tie (bothbad)": 0.5}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # overflow-free logistic


def _normalise_rows(matrix: np.ndarray) -> np.ndarray:
    return matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)


def _field(record: Any, name: str, default: Any = None) -> Any:
    if isinstance(record, Mapping):
        return record.get(name, default)
    return getattr(record, name, default)


@register_router("mf")
class MatrixFactorizationRouter(Router):
    """RouteLLM's `mf` router.

    Constructor arguments only store settings (scikit-learn style); `fit` learns `P_`,
    `text_proj_`, `classifier_`; `from_pretrained` loads them from a Hub-layout checkpoint.

    Args:
        strong_model / weak_model: which model identities play strong and weak when scoring
            (names from the checkpoint's `model_names`).
        embedder: embedder spec or instance (see `routellm_lc.embeddings.get_embedder`).
        dim: latent dimension. features: prompt-feature names appended to the embedding.
        logit_prior, logit_bias: a fixed additive logit on standardised features, a constant.
        score_cdfs, cdf_scale: combine parts through their training quantiles (see the
            module docstring); empty: the plain logit.
        epochs, batch_size, lr, weight_decay, noise, seed: training settings (RouteLLM adds
            Gaussian noise of scale `noise` to the prompt embeddings while training).
    """

    def __init__(
        self,
        strong_model: str | None = None,
        weak_model: str | None = None,
        *,
        embedder: Any = "local",
        dim: int = 128,
        use_proj: bool = True,
        features: Sequence[str] = (),
        logit_prior: Mapping[str, float] | None = None,
        logit_bias: float = 0.0,
        score_cdfs: Mapping[str, Sequence[float]] | None = None,
        cdf_scale: float = 4.0,
        epochs: int = 30,
        batch_size: int = 256,
        lr: float = 3e-3,
        weight_decay: float = 1e-5,
        noise: float = 0.0,
        seed: int = 0,
    ) -> None:
        self.strong_model = strong_model
        self.weak_model = weak_model
        self.embedder = embedder
        self.dim = dim
        self.use_proj = use_proj
        self.features = tuple(features)
        self.logit_prior = dict(logit_prior or {})
        self.logit_bias = float(logit_bias)
        self.score_cdfs = {
            k: np.asarray(v, dtype=np.float64) for k, v in (score_cdfs or {}).items()
        }
        self.cdf_scale = float(cdf_scale)
        self._cdf_tables: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.noise = noise
        self.seed = seed
        self._checkpoint_id: str | None = None
        self._direction: np.ndarray | None = None

    @property
    def cache_key(self) -> str | None:
        """What identifies this router's scores in the score cache (`evals.harness`): the
        checkpoint's content hash and the settings chosen at load time that change the scores
        (strong and weak model, embedder). None for a router not loaded from a checkpoint."""
        if self._checkpoint_id is None:
            return None
        return ckpt.scoring_key(
            "mf",
            self._checkpoint_id,
            strong=self.strong_model,
            weak=self.weak_model,
            embedder=ckpt.embedder_label(self.embedder),
        )

    # -- scoring ---------------------------------------------------------------------------
    @property
    def model_names_(self) -> list[str]:
        self._check_fitted()
        return list(self._model_names)

    def _check_fitted(self) -> None:
        if not hasattr(self, "P_"):
            raise RuntimeError("This mf router is not trained: call fit() or from_pretrained().")

    def _embedder(self) -> Any:
        from routellm_lc.embeddings import for_scoring, get_embedder

        if not hasattr(self, "_embedder_obj"):
            self._embedder_obj = get_embedder(self.embedder)
        return for_scoring(self._embedder_obj)

    def prompt_inputs(self, prompts: Sequence[str]) -> np.ndarray:
        """The model's input rows: embedding, then standardised features."""
        x = self._embedder().embed(prompts).astype(np.float64)
        if self.features:
            raw = compute_features(self.features, prompts)
            x = np.hstack([x, (raw - self.feature_mean_) / self.feature_std_])
        return x

    def _index(self, model: str | None, role: str) -> int:
        if model is None:
            raise ValueError(f"mf router needs a {role} model name to score.")
        names = self._model_names
        if model in names:
            return names.index(model)
        lowered = [n.lower() for n in names]
        if model.lower() in lowered:
            return lowered.index(model.lower())
        raise ValueError(
            f"{role} model {model!r} is not one of this mf checkpoint's models: {', '.join(names)}."
        )

    def direction(
        self, strong_model: str | None = None, weak_model: str | None = None
    ) -> np.ndarray:
        """v such that strong win rate = sigmoid(x · v) for input rows x."""
        self._check_fitted()
        strong = self._index(strong_model or self.strong_model, "strong")
        weak = self._index(weak_model or self.weak_model, "weak")
        p = _normalise_rows(self.P_)
        gap = self.classifier_ * (p[strong] - p[weak])
        direction = self.text_proj_.T @ gap if self.use_proj else gap.copy()
        return direction + self._prior_vector(len(direction))

    def _prior_vector(self, size: int) -> np.ndarray:
        """A fixed additive logit term on standardised features (e.g. a length prior):
        part of the checkpoint, not learned by `fit`."""
        prior = np.zeros(size)
        offset = size - len(self.features)
        for name, weight in self.logit_prior.items():
            if name not in self.features:
                raise CheckpointError(f"logit_prior names {name!r}, which is not in features.")
            prior[offset + self.features.index(name)] = float(weight)
        return prior

    def _scoring_inputs(self, prompts: Sequence[str]) -> np.ndarray:
        """`prompt_inputs`, refused when the embedder's width does not fit the weights (an
        embedder whose width could not be checked at load: `st:`, `litellm:`)."""
        x = self.prompt_inputs(prompts)
        width = self.text_proj_.shape[1] if self.use_proj else self.P_.shape[1]
        if x.shape[1] != width:
            raise ckpt.embedding_width_error(
                self.embedder,
                x.shape[1] - len(self.features),
                width - len(self.features),
                "This mf router",
            )
        return x

    def model_scores(self, prompts: Sequence[str]) -> np.ndarray:
        """(n_prompts, n_models) matrix of s(m, x): every model's quality on every prompt."""
        self._check_fitted()
        x = self._scoring_inputs(prompts)
        projected = x @ self.text_proj_.T if self.use_proj else x
        return projected @ (_normalise_rows(self.P_) * self.classifier_).T

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        if self._direction is None:
            self._direction = self.direction()
        x = self._scoring_inputs(prompts)
        if not self.score_cdfs:
            return _sigmoid(x @ self._direction + self.logit_bias)
        if self._cdf_tables is None:
            self._cdf_tables = {k: _cdf_table(g) for k, g in self.score_cdfs.items()}
        total = np.zeros(len(x))
        for part, (values, levels) in self._cdf_tables.items():
            total += np.interp(self._part_values(part, x), values, levels)
        centred = total - len(self.score_cdfs) / 2
        return _sigmoid(self.cdf_scale * centred + self.logit_bias)

    def _part_values(self, part: str, x: np.ndarray) -> np.ndarray:
        if part == "projection":
            return x @ self._direction
        if part in self.features:
            return x[:, x.shape[1] - len(self.features) + self.features.index(part)]
        raise CheckpointError(
            f"score_cdfs names {part!r}: neither 'projection' nor one of the features."
        )

    # -- training --------------------------------------------------------------------------
    def fit(self, battles: Sequence[Any], *, progress: bool = False) -> MatrixFactorizationRouter:
        """Learn from battles: records with prompt, model_a, model_b, winner
        ("model_a" | "model_b" | "tie" | "tie (bothbad)", Chatbot Arena's tie in which both
        answers were bad) and an optional weight.

        Pairwise logistic loss: P(a beats b) = sigmoid(s(a, x) − s(b, x)); ties (both kinds)
        are 0.5 targets.
        """
        import torch

        # New weights are no longer the loaded checkpoint's: its cached scores must not answer
        # for them (calibration, eval), so the router has no identity until saved and loaded.
        self._checkpoint_id = None
        prompts = [str(_field(b, "prompt")) for b in battles]
        if not prompts:
            raise ValueError("fit() needs at least one battle.")
        models = sorted(
            {str(_field(b, "model_a")) for b in battles}
            | {str(_field(b, "model_b")) for b in battles}
        )
        index = {m: i for i, m in enumerate(models)}
        try:
            targets = np.array([_WINNERS[str(_field(b, "winner"))] for b in battles])
        except KeyError as exc:
            raise ValueError(
                f"Unknown battle winner {exc.args[0]!r}: use model_a, model_b, tie or "
                "tie (bothbad)."
            ) from None
        weights = battle_weights(_field(b, "weight") for b in battles)
        a = np.array([index[str(_field(b, "model_a"))] for b in battles])
        b_ = np.array([index[str(_field(b, "model_b"))] for b in battles])

        unique, inverse = np.unique(np.array(prompts, dtype=object), return_inverse=True)
        self._model_names = models
        if self.features:
            raw = compute_features(self.features, list(unique))
            self.feature_mean_ = raw.mean(axis=0)
            self.feature_std_ = np.where(raw.std(axis=0) > 1e-9, raw.std(axis=0), 1.0)
        inputs = self.prompt_inputs(list(unique))

        generator = torch.Generator().manual_seed(self.seed)
        torch.manual_seed(self.seed)
        text_dim = inputs.shape[1]
        dim = self.dim if self.use_proj else text_dim
        P = torch.nn.Parameter(torch.randn(len(models), dim, generator=generator) * 0.1)
        W = torch.nn.Parameter(torch.randn(dim, text_dim, generator=generator) / np.sqrt(text_dim))
        c = torch.nn.Parameter(torch.randn(dim, generator=generator) / np.sqrt(dim))
        params = [P, W, c] if self.use_proj else [P, c]
        optimiser = torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)

        X = torch.tensor(inputs, dtype=torch.float32)
        tensors = [torch.tensor(v) for v in (inverse, a, b_)]
        y = torch.tensor(targets, dtype=torch.float32)
        w = torch.tensor(weights / weights.mean(), dtype=torch.float32)
        n = len(battles)
        epochs = range(self.epochs)
        if progress:
            from tqdm.auto import tqdm

            epochs = tqdm(epochs, desc="mf fit", unit="epoch")
        for _ in epochs:
            order = torch.randperm(n, generator=generator)
            for start in range(0, n, self.batch_size):
                rows = order[start : start + self.batch_size]
                q, ia, ib = (t[rows] for t in tensors)
                x = X[q]
                if self.noise:
                    x = x + self.noise * torch.randn(x.shape, generator=generator)
                h = x @ W.T if self.use_proj else x
                pn = torch.nn.functional.normalize(P, dim=1)
                logits = ((pn[ia] - pn[ib]) * h) @ c
                loss = torch.nn.functional.binary_cross_entropy_with_logits(
                    logits, y[rows], weight=w[rows]
                )
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        self.P_ = P.detach().numpy().astype(np.float64)
        self.text_proj_ = W.detach().numpy().astype(np.float64)
        self.classifier_ = c.detach().numpy().astype(np.float64)
        self._direction = None
        self._cdf_tables = None
        return self

    @classmethod
    def from_linear(
        cls,
        weights: np.ndarray,
        bias: float,
        *,
        features: Sequence[str],
        feature_mean: np.ndarray,
        feature_std: np.ndarray,
        strong_model: str,
        weak_model: str,
        embedder: Any = "local",
        logit_prior: Mapping[str, float] | None = None,
    ) -> MatrixFactorizationRouter:
        """A linear scorer sigmoid(x · weights + bias) in MF form (dim 1, exact).

        With P̂[strong] = 1, P̂[weak] = −1 and c = 1/2, the MF direction is
        Wᵀ (c ⊙ (P̂[strong] − P̂[weak])) = W[0]: the weights themselves.
        """
        router = cls(
            strong_model,
            weak_model,
            embedder=embedder,
            dim=1,
            features=features,
            logit_prior=logit_prior,
            logit_bias=bias,
        )
        router._model_names = [strong_model, weak_model]
        router.P_ = np.array([[1.0], [-1.0]])
        router.classifier_ = np.array([0.5])
        router.text_proj_ = np.asarray(weights, dtype=np.float64).reshape(1, -1)
        router.feature_mean_ = np.asarray(feature_mean, dtype=np.float64)
        router.feature_std_ = np.asarray(feature_std, dtype=np.float64)
        return router

    # -- checkpoints -----------------------------------------------------------------------
    def config(self) -> dict[str, Any]:
        self._check_fitted()
        config: dict[str, Any] = {
            "router": "mf",
            "format_version": ckpt.FORMAT_VERSION,
            "dim": int(self.P_.shape[1]),
            "num_models": len(self._model_names),
            "text_dim": int(self.text_proj_.shape[1]) if self.use_proj else int(self.P_.shape[1]),
            "num_classes": 1,
            "use_proj": self.use_proj,
            "model_names": list(self._model_names),
            "strong_model": self.strong_model,
            "weak_model": self.weak_model,
            "embedder": self.embedder if isinstance(self.embedder, str) else self._embedder().name,
            "features": list(self.features),
        }
        if self.logit_prior:
            config["logit_prior"] = dict(self.logit_prior)
        if self.logit_bias:
            config["logit_bias"] = self.logit_bias
        if self.score_cdfs:
            config["score_cdfs"] = {k: v.tolist() for k, v in self.score_cdfs.items()}
            config["cdf_scale"] = self.cdf_scale
        if self.features:
            config["feature_mean"] = self.feature_mean_.tolist()
            config["feature_std"] = self.feature_std_.tolist()
        return config

    def save_pretrained(self, folder: str | Path, model_card: str | None = None) -> Path:
        """Write a Hub-layout checkpoint (RouteLLM's tensor names, so both load the same way)."""
        tensors = {"P.weight": self.P_, "classifier.0.weight": self.classifier_[None, :]}
        if self.use_proj:
            tensors["text_proj.0.weight"] = self.text_proj_
        card = model_card or _default_card(self.config())
        return ckpt.save_checkpoint(folder, self.config(), tensors, card)

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
    ) -> MatrixFactorizationRouter:
        """Load our checkpoints or RouteLLM's published ones (`routellm/mf_gpt4_augmented`).

        RouteLLM's format has no model names or embedder in its config: its 64-model id table
        and OpenAI's text-embedding-3-small (through LiteLLM) are used, with gpt-4-1106-preview
        as strong and mixtral-8x7b-instruct-v0.1 as weak unless overridden.
        """
        folder = ckpt.resolve_checkpoint(
            checkpoint or DEFAULT_CHECKPOINT,
            ("config.json", "model.safetensors"),
            revision=revision,
            token=token,
        )
        ckpt.check_router_type(folder, "mf")
        config = ckpt.read_config(folder)
        ckpt.require_keys(config, ("dim", "num_models", "text_dim", "use_proj"), folder)
        tensors = ckpt.load_tensors(folder)
        routellm_format = "model_names" not in config and "router" not in config
        if not routellm_format:  # ours: it names its models and the pair it scores
            ckpt.require_keys(config, ("model_names",), folder)
            if not (strong_model or config.get("strong_model")) or not (
                weak_model or config.get("weak_model")
            ):
                raise ckpt.config_error(
                    folder,
                    "strong_model/weak_model",
                    "is missing: the checkpoint does not say which pair it scores (pass "
                    "strong_model= and weak_model= to load it)",
                )
        if routellm_format:
            names = list(ckpt.ROUTELLM_MF_MODEL_NAMES)
            defaults = (
                ckpt.ROUTELLM_STRONG_MODEL,
                ckpt.ROUTELLM_WEAK_MODEL,
                ckpt.ROUTELLM_EMBEDDER,
            )
        else:
            names = ckpt.config_names(config["model_names"], "model_names", folder)
            defaults = (
                config.get("strong_model"),
                config.get("weak_model"),
                None if embedder else ckpt.checkpoint_embedder(config, folder),
            )
        router = cls(
            strong_model=strong_model or defaults[0],
            weak_model=weak_model or defaults[1],
            embedder=embedder or defaults[2],
            **_settings_from_config(config, folder),
            **kwargs,
        )
        router._load_state(config, tensors, names, folder)
        router._checkpoint_id = ckpt.checkpoint_identity(folder)
        width = router.text_proj_.shape[1] if router.use_proj else router.P_.shape[1]
        ckpt.check_embedder(router.embedder, width - len(router.features), folder)
        router.direction()  # validates strong/weak names now, not on the first request
        return router

    def _load_state(
        self,
        config: Mapping[str, Any],
        tensors: Mapping[str, np.ndarray],
        names: list[str],
        folder: Path,
    ) -> None:
        expected = ["P.weight", "classifier.0.weight"] + (
            ["text_proj.0.weight"] if self.use_proj else []
        )
        missing = [k for k in expected if k not in tensors]
        if missing:
            raise CheckpointError(
                f"{folder / 'model.safetensors'} is missing tensor(s): {', '.join(missing)}."
            )
        P = np.asarray(tensors["P.weight"], dtype=np.float64)
        classifier = np.asarray(tensors["classifier.0.weight"], dtype=np.float64)
        dim = self.dim
        num_models = ckpt.config_whole(config["num_models"], "num_models", folder)
        text_dim = ckpt.config_whole(config["text_dim"], "text_dim", folder)
        problems = []
        if (text_dim if self.use_proj else dim) <= len(self.features):
            problems.append(f"text_dim={text_dim} leaves no room for an embedding and features")
        if P.shape != (num_models, dim):
            problems.append(f"P.weight has shape {P.shape}, config says ({num_models}, {dim})")
        if classifier.shape not in ((1, dim), (dim,)):
            problems.append(
                f"classifier.0.weight has shape {classifier.shape}, expected (1, {dim})"
            )
        if self.use_proj:
            proj = np.asarray(tensors["text_proj.0.weight"], dtype=np.float64)
            if proj.shape != (dim, text_dim):
                problems.append(
                    f"text_proj.0.weight has shape {proj.shape}, expected ({dim}, {text_dim})"
                )
            self.text_proj_ = proj
        if len(names) != num_models:
            problems.append(f"{len(names)} model names for num_models={num_models}")
        if problems:
            raise CheckpointError(
                f"Malformed mf checkpoint at {folder}: " + "; ".join(problems) + "."
            )
        if self.features:
            ckpt.require_keys(config, ("feature_mean", "feature_std"), folder)
            n = len(self.features)
            mean = ckpt.config_vector(config["feature_mean"], "feature_mean", folder, length=n)
            std = ckpt.config_vector(config["feature_std"], "feature_std", folder, length=n)
            if not (std > 0).all():
                raise ckpt.config_error(folder, "feature_std", "must hold positive values")
            self.feature_mean_, self.feature_std_ = mean, std
        self.P_ = P
        self.classifier_ = classifier.reshape(-1)
        self._model_names = names
        self._direction = None
        self._cdf_tables = None


def _settings_from_config(config: Mapping[str, Any], folder: Path) -> dict[str, Any]:
    """The constructor settings a checkpoint's config.json holds, each checked at load: a
    malformed one would otherwise load and fail (or score wrong) on every request."""
    features = ckpt.config_names(config.get("features") or [], "features", folder)
    unknown = [f for f in features if f not in FEATURES]
    if unknown:
        raise ckpt.config_error(
            folder, "features", f"names unknown feature(s) {unknown}; known: {sorted(FEATURES)}"
        )
    if "num_classes" in config:  # RouteLLM's MFModel: one output, the model's quality
        num_classes = ckpt.config_whole(config["num_classes"], "num_classes", folder)
        if num_classes != 1:
            raise ckpt.config_error(
                folder,
                "num_classes",
                f"is {num_classes}; the mf router scores with one classifier output (a model's "
                "quality on the prompt, as RouteLLM's MFModel), so it must be 1",
            )
    if not isinstance(config["use_proj"], bool):
        raise ckpt.config_error(
            folder, "use_proj", f"must be true or false, got {config['use_proj']!r}"
        )
    prior = config.get("logit_prior") or {}
    cdfs = config.get("score_cdfs") or {}
    for key, table in (("logit_prior", prior), ("score_cdfs", cdfs)):
        if not isinstance(table, Mapping):
            raise ckpt.config_error(folder, key, f"must map names to values, got {table!r}")
    if stray := [name for name in prior if name not in features]:
        raise ckpt.config_error(folder, "logit_prior", f"names {stray}, which are not features")
    if stray := [p for p in cdfs if p != "projection" and p not in features]:
        raise ckpt.config_error(
            folder, "score_cdfs", f"names {stray}, which are neither 'projection' nor features"
        )
    grids = {}
    for part, grid in cdfs.items():
        grids[part] = ckpt.config_vector(grid, f"score_cdfs.{part}", folder, min_length=2)
        if (np.diff(grids[part]) < 0).any():
            raise ckpt.config_error(folder, f"score_cdfs.{part}", "must be sorted ascending")
    return {
        "dim": ckpt.config_whole(config["dim"], "dim", folder),
        "use_proj": config["use_proj"],
        "features": features,
        "logit_prior": {
            name: ckpt.config_number(w, f"logit_prior.{name}", folder) for name, w in prior.items()
        },
        "logit_bias": ckpt.config_number(config.get("logit_bias", 0.0), "logit_bias", folder),
        "score_cdfs": grids,
        "cdf_scale": ckpt.config_number(config.get("cdf_scale", 4.0), "cdf_scale", folder),
    }


def _cdf_table(grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(values, levels) for `np.interp` from a part's training quantiles at evenly spaced
    levels 0..1. A value repeated in the grid (a discrete feature) keeps its highest level, as
    an empirical CDF does."""
    levels = np.linspace(0.0, 1.0, len(grid))
    unique, first_from_end = np.unique(grid[::-1], return_index=True)
    return unique, levels[len(grid) - 1 - first_from_end]


def quantile_of(values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Where `values` fall among the training values summarised by `grid`: linear between
    grid points, clamped outside."""
    return np.interp(values, *_cdf_table(grid))


def _default_card(config: Mapping[str, Any]) -> str:
    return (
        "---\nlibrary_name: routellm-lc\ntags: [routellm, router, mf]\n---\n\n"
        "# mf router checkpoint\n\n"
        f"Matrix-factorisation router over {config['num_models']} models "
        f"(strong: {config.get('strong_model')}, weak: {config.get('weak_model')}), "
        f"embedder `{config.get('embedder')}`.\n"
    )
