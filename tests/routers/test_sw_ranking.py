"""sw_ranking router: weights, weighted Bradley–Terry against hand and reference fits, tiers,
batching, checkpoint round trips and errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from routellm_lc.errors import CheckpointError
from routellm_lc.routers import load_router
from routellm_lc.routers import sw_ranking as sw
from routellm_lc.routers.sw_ranking import SWRankingRouter, cluster_tiers, similarity_weights


class TableEmbedder:
    """A fixed text → vector table: makes the router's maths checkable by hand."""

    name = "table"

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = {k: np.asarray(v, dtype=np.float32) for k, v in table.items()}
        self.dim = len(next(iter(self.table.values())))

    def embed(self, texts):
        return np.stack([self.table[t] for t in texts])


TABLE = {
    "p1": [1.0, 0.0],
    "p2": [0.0, 1.0],
    "p3": [0.6, 0.8],
    "q1": [1.0, 0.0],
    "q2": [0.0, 2.0],  # not unit length: cosine similarity must not care
    "q3": [0.8, 0.6],
}


def _battle(prompt, a, b, winner, weight=1.0):
    return {"prompt": prompt, "model_a": a, "model_b": b, "winner": winner, "weight": weight}


TWO_MODEL_BATTLES = [
    _battle("p1", "gpt4", "mixtral", "model_a"),  # strong wins
    _battle("p2", "gpt4", "mixtral", "model_b"),  # weak wins
    _battle("p3", "mixtral", "gpt4", "tie"),  # tie, sides swapped
    _battle("p2", "mixtral", "gpt4", "model_b"),  # strong wins, sides swapped
]


def test_weights_are_routellms_10_times_10_to_the_relative_similarity():
    sims = np.array([[1.0, 0.0, 0.6], [0.5, 0.25, -0.5]])
    expected = [[100.0, 10.0, 10 * 10**0.6], [100.0, 10 * 10**0.5, 10 * 10**-1.0]]
    np.testing.assert_allclose(similarity_weights(sims), expected)
    # Nothing similar at all: uniform weights rather than an inverted ordering.
    np.testing.assert_allclose(similarity_weights(np.array([[-0.2, -0.4]])), [[10.0, 10.0]])


def test_two_models_win_rate_is_the_weighted_share_of_strong_wins():
    # With two players the Bradley–Terry MLE is closed-form: σ(θs − θw) = Σ w·y / Σ w.
    router = SWRankingRouter("gpt4", "mixtral", embedder=TableEmbedder(TABLE))
    router.fit(TWO_MODEL_BATTLES)
    w_p3 = 10 * 10**0.6  # cos(q1, p3) = 0.6, max = 1
    q1 = (100 * 1 + 10 * 0 + w_p3 * 0.5 + 10 * 1) / (100 + 10 + w_p3 + 10)
    # q2 = (0, 2): sims p1 0, p2 1, p3 0.8 → weights 10, 100, 10·10^0.8 (p2 twice)
    w = [10.0, 100.0, 10 * 10**0.8, 100.0]
    q2 = (w[0] * 1 + w[1] * 0 + w[2] * 0.5 + w[3] * 1) / sum(w)
    np.testing.assert_allclose(
        router.strong_win_rate(["q1", "q2"]), [q1, q2], rtol=1e-6
    )  # float32 embeddings
    # Elo form: 1 / (1 + 10^((R_weak − R_strong) / 400)) with the fitted ratings.
    elo = router.tier_ratings(["q1"])[0]
    strong, weak = router.tier_labels_.index("gpt4"), router.tier_labels_.index("mixtral")
    assert 1 / (1 + 10 ** ((elo[weak] - elo[strong]) / 400)) == pytest.approx(q1, rel=1e-6)


def _routellm_reference(battles, embeddings, query, strong, weak):
    """RouteLLM's compute_elo_mle_with_tie: sklearn logistic regression on duplicated
    battles (a tie = one win each), sample weights 10·10^(sim/max sim), Elo scale 400."""
    linear_model = pytest.importorskip("sklearn.linear_model")
    models = sorted({b["model_a"] for b in battles} | {b["model_b"] for b in battles})
    sims = np.array([embeddings[b["prompt"]] @ query for b in battles]) / np.array(
        [np.linalg.norm(embeddings[b["prompt"]]) * np.linalg.norm(query) for b in battles]
    )
    weights = 10 * 10 ** (sims / sims.max())
    rows, targets = [], []
    for copy in range(2):
        for b in battles:
            x = np.zeros(len(models))
            x[models.index(b["model_a"])] = math.log(10)
            x[models.index(b["model_b"])] = -math.log(10)
            rows.append(x)
            win = b["winner"] == "model_a" or (b["winner"] == "tie" and copy == 0)
            targets.append(1.0 if win else 0.0)
    lr = linear_model.LogisticRegression(fit_intercept=False, C=np.inf, tol=1e-12)
    lr.set_params(max_iter=10_000)
    lr.fit(np.array(rows), np.array(targets), sample_weight=np.concatenate([weights, weights]))
    elo = 400 * lr.coef_[0] + 1000
    gap = elo[models.index(strong)] - elo[models.index(weak)]
    return 1 / (1 + 10 ** (-gap / 400))


def test_model_names_match_case_insensitively_as_in_mf():
    router = SWRankingRouter("GPT4", "Mixtral", embedder=TableEmbedder(TABLE))
    router.fit(TWO_MODEL_BATTLES)
    exact = SWRankingRouter("gpt4", "mixtral", embedder=TableEmbedder(TABLE)).fit(TWO_MODEL_BATTLES)
    np.testing.assert_allclose(router.strong_win_rate(["q1"]), exact.strong_win_rate(["q1"]))
    with pytest.raises(ValueError, match="'claude' is not one of this sw_ranking router's models"):
        SWRankingRouter("claude", "mixtral", embedder=TableEmbedder(TABLE)).fit(
            TWO_MODEL_BATTLES
        ).strong_win_rate(["q1"])


def test_three_models_match_routellms_logistic_regression():
    battles = [
        _battle("p1", "gpt4", "mixtral", "model_a"),
        _battle("p2", "gpt4", "mixtral", "model_b"),
        _battle("p3", "gpt4", "llama", "model_a"),
        _battle("p1", "llama", "mixtral", "tie"),
        _battle("p2", "mixtral", "llama", "model_a"),
        _battle("p3", "llama", "gpt4", "model_a"),
        _battle("p1", "mixtral", "gpt4", "tie"),
    ]
    router = SWRankingRouter("gpt4", "mixtral", embedder=TableEmbedder(TABLE)).fit(battles)
    got = router.strong_win_rate(["q1", "q2", "q3"])
    for score, query in zip(got, ["q1", "q2", "q3"], strict=True):
        expected = _routellm_reference(battles, TABLE, np.array(TABLE[query]), "gpt4", "mixtral")
        assert score == pytest.approx(expected, abs=1e-5)
    # A different pair of the same fit: llama vs mixtral.
    router.strong_model = "llama"
    expected = _routellm_reference(battles, TABLE, np.array(TABLE["q2"]), "llama", "mixtral")
    assert router.strong_win_rate(["q2"])[0] == pytest.approx(expected, abs=1e-5)


def test_tiers_pool_models_and_ignore_same_tier_battles():
    battles = [
        _battle("p1", "gpt4", "claude", "model_a"),  # same tier: no information on the gap
        _battle("p1", "gpt4", "mixtral", "model_a"),
        _battle("p2", "claude", "mixtral", "model_b"),
        _battle("p3", "mixtral", "claude", "tie"),
    ]
    tiers = {"gpt4": "top", "claude": "top", "mixtral": "low"}
    router = SWRankingRouter("claude", "mixtral", embedder=TableEmbedder(TABLE), tiers=tiers)
    router.fit(battles)
    assert router.tier_labels_ == ["low", "top"]
    w = [100.0, 10.0, 10 * 10**0.6]  # q1 against p1, p2, p3
    expected = (w[0] * 1 + w[1] * 0 + w[2] * 0.5) / sum(w)
    assert router.strong_win_rate(["q1"])[0] == pytest.approx(expected, rel=1e-6)
    with pytest.raises(ValueError, match="tiers has no entry for model"):
        SWRankingRouter("a", "b", embedder=TableEmbedder(TABLE), tiers={"gpt4": 0}).fit(battles)


def test_a_checkpoint_whose_pair_shares_a_tier_is_refused(tmp_path):
    """Loaded, it scored 0.5 for every prompt: the router could never tell the pair apart."""
    battles = [
        _battle("p1", "gpt4", "mixtral", "model_a"),
        _battle("p2", "claude", "mixtral", "tie"),
    ]
    tiers = {"gpt4": "top", "claude": "top", "mixtral": "low"}
    router = SWRankingRouter("gpt4", "mixtral", embedder=TableEmbedder(TABLE), tiers=tiers)
    router.fit(battles).save_pretrained(tmp_path / "sw")
    embedder = TableEmbedder(TABLE)
    load_router("sw_ranking", checkpoint=str(tmp_path / "sw"), embedder=embedder)
    with pytest.raises(CheckpointError, match="put gpt4 and claude in one tier"):
        load_router(
            "sw_ranking", checkpoint=str(tmp_path / "sw"), embedder=embedder, weak_model="claude"
        )
    # nor does training write one
    same = SWRankingRouter("gpt4", "claude", embedder=TableEmbedder(TABLE), tiers=tiers)
    with pytest.raises(ValueError, match="gpt4 and claude are in one tier"):
        same.fit(battles)


def test_cluster_tiers_splits_sorted_ratings_into_least_variance_groups():
    ratings = {"a": 1300.0, "b": 1290.0, "c": 1000.0, "d": 990.0, "e": 700.0}
    assert cluster_tiers(ratings, 3) == {"a": 0, "b": 0, "c": 1, "d": 1, "e": 2}
    assert cluster_tiers(ratings, 1) == dict.fromkeys(ratings, 0)
    assert sorted(cluster_tiers(ratings, 9).values()) == [0, 1, 2, 3, 4]


def test_num_tiers_clusters_models_by_their_global_rating():
    battles = []
    for prompt in ("p1", "p2", "p3"):
        battles += [
            _battle(prompt, "gpt4", "mixtral", "model_a"),
            _battle(prompt, "claude", "mixtral", "model_a"),
            _battle(prompt, "gpt4", "claude", "tie"),
            _battle(prompt, "mixtral", "gpt4", "tie"),
            _battle(prompt, "mixtral", "claude", "tie"),
        ]
    router = SWRankingRouter("gpt4", "mixtral", embedder=TableEmbedder(TABLE), num_tiers=2)
    router.fit(battles)
    assert router.tiers_ == {"claude": 0, "gpt4": 0, "mixtral": 1}
    ratings = router.model_ratings()
    assert ratings["gpt4"] == pytest.approx(ratings["claude"]) and ratings["gpt4"] > 1000


def test_batches_match_single_prompts_and_chunking(monkeypatch):
    rng = np.random.default_rng(0)
    names = [f"t{i}" for i in range(40)]
    table = {n: rng.normal(size=8).tolist() for n in names}
    models = ["m0", "m1", "m2", "m3"]
    battles = [
        _battle(names[i % 30], *rng.choice(models, 2, replace=False), winner)
        for i, winner in enumerate(rng.choice(["model_a", "model_b", "tie"], 200))
    ]
    router = SWRankingRouter("m0", "m3", embedder=TableEmbedder(table), l2=1e-3).fit(battles)
    queries = names[25:]
    batch = router.strong_win_rate(queries)
    one_by_one = [router.strong_win_rate([q])[0] for q in queries]
    np.testing.assert_allclose(batch, one_by_one, rtol=1e-6)  # float32 BLAS
    monkeypatch.setattr(sw, "_CHUNK_CELLS", 400)  # two queries per chunk
    np.testing.assert_allclose(router.strong_win_rate(queries), batch, rtol=1e-6)
    assert batch.shape == (15,) and np.all((batch > 0) & (batch < 1))
    assert len(np.unique(np.round(batch, 8))) > 5  # the weighting makes scores prompt-specific
    assert router.strong_win_rate([]).shape == (0,)


def test_l2_keeps_ratings_finite_when_one_side_never_loses():
    battles = [_battle(p, "gpt4", "mixtral", "model_a") for p in ("p1", "p2", "p3")]
    router = SWRankingRouter("gpt4", "mixtral", embedder=TableEmbedder(TABLE), l2=0.1)
    score = router.fit(battles).strong_win_rate(["q1"])[0]
    assert 0.8 < score < 1.0


def test_checkpoint_round_trip(tmp_path):
    embedder = TableEmbedder(TABLE)
    tiers = {"gpt4": "top", "mixtral": "low"}
    router = SWRankingRouter("gpt4", "mixtral", embedder=embedder, tiers=tiers)
    router.fit(TWO_MODEL_BATTLES)
    router.save_pretrained(tmp_path / "ck")
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert config["models"] == ["gpt4", "mixtral"] and config["tiers"] == tiers
    assert config["strong_model"] == "gpt4" and config["num_battles"] == 4
    assert "sw_ranking" in (tmp_path / "ck" / "README.md").read_text()
    from safetensors.numpy import load_file

    stored = load_file(str(tmp_path / "ck" / "model.safetensors"))
    assert stored["prompt_embeddings"].dtype == np.float16
    assert stored["prompt_embeddings"].shape == (3, 2)

    again = load_router("sw_ranking", checkpoint=str(tmp_path / "ck"), embedder=embedder)
    assert isinstance(again, SWRankingRouter) and again.cache_key.startswith("sw_ranking:")
    # float16 embeddings: equal to the in-memory router to float16 precision
    np.testing.assert_allclose(
        again.strong_win_rate(["q1", "q2", "q3"]),
        router.strong_win_rate(["q1", "q2", "q3"]),
        atol=1e-3,
    )


def test_bad_checkpoints_and_names_give_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="no bundled checkpoint"):
        load_router("sw_ranking")
    with pytest.raises(CheckpointError, match="not found"):
        SWRankingRouter.from_pretrained(str(tmp_path / "nowhere"))
    embedder = TableEmbedder(TABLE)
    router = SWRankingRouter("gpt4", "mixtral", embedder=embedder).fit(TWO_MODEL_BATTLES)
    router.save_pretrained(tmp_path / "ck")
    with pytest.raises(ValueError, match="not one of this sw_ranking router's models"):
        SWRankingRouter.from_pretrained(tmp_path / "ck", embedder=embedder, weak_model="nope")

    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(tmp_path / "ck" / "model.safetensors"))
    del tensors["battle_outcome"]
    save_file(tensors, str(tmp_path / "ck" / "model.safetensors"))
    with pytest.raises(CheckpointError, match="missing tensor.*battle_outcome"):
        SWRankingRouter.from_pretrained(tmp_path / "ck", embedder=embedder)
    (tmp_path / "ck" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match=r"incomplete: missing model\.safetensors"):
        SWRankingRouter.from_pretrained(tmp_path / "ck", embedder=embedder)
    with pytest.raises(ValueError, match="Unknown battle winner"):
        SWRankingRouter("a", "b", embedder=embedder).fit([_battle("p1", "a", "b", "draw")])


def test_cache_key_follows_the_settings_that_change_the_scores(tmp_path):
    embedder = TableEmbedder(TABLE)
    router = SWRankingRouter("gpt4", "mixtral", embedder=embedder)
    router.fit(TWO_MODEL_BATTLES)
    assert router.cache_key is None  # not loaded from a checkpoint: nothing identifies it
    router.save_pretrained(tmp_path / "ck")
    folder = str(tmp_path / "ck")
    base = load_router("sw_ranking", checkpoint=folder, embedder=embedder)
    same = load_router("sw_ranking", checkpoint=folder, embedder=embedder)
    swapped = load_router(
        "sw_ranking",
        checkpoint=folder,
        embedder=embedder,
        strong_model="mixtral",
        weak_model="gpt4",
    )
    fewer_steps = load_router("sw_ranking", checkpoint=folder, embedder=embedder, max_iter=2)
    assert base.cache_key == same.cache_key
    assert len({base.cache_key, swapped.cache_key, fewer_steps.cache_key}) == 3
    base.fit(TWO_MODEL_BATTLES[:-1])  # other battles: not the checkpoint's scores any more
    assert base.cache_key is None
    mode = (tmp_path / "ck" / "model.safetensors").stat().st_mode & 0o777
    assert mode == 0o666 & ~_umask()


def _umask() -> int:
    import os

    mask = os.umask(0o022)
    os.umask(mask)
    return mask
