"""mf router: the scoring maths on a hand-computed case, training, checkpoint round trips."""

from __future__ import annotations

import json

import numpy as np
import pytest

from routellm_lc.errors import CheckpointError
from routellm_lc.routers import load_router
from routellm_lc.routers.checkpoints import ROUTELLM_MF_MODEL_NAMES, save_checkpoint
from routellm_lc.routers.mf import MatrixFactorizationRouter


class TableEmbedder:
    """A fixed text → vector table: makes the router's maths checkable by hand."""

    name = "table"

    def __init__(self, table: dict[str, list[float]]) -> None:
        self.table = {k: np.asarray(v, dtype=np.float32) for k, v in table.items()}
        self.dim = len(next(iter(self.table.values())))

    def embed(self, texts):
        return np.stack([self.table[t] for t in texts])


def _tiny_checkpoint(folder, *, names=("strong", "weak", "other"), routellm_format=False):
    # P rows already unit length; W = identity-ish projection; classifier = [1, 2].
    P = np.array([[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]])
    W = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    c = np.array([[1.0, 2.0]])
    config = {"dim": 2, "num_models": len(P), "text_dim": 3, "num_classes": 1, "use_proj": True}
    if not routellm_format:
        config |= {"model_names": list(names), "strong_model": "strong", "weak_model": "weak"}
    save_checkpoint(
        folder, config, {"P.weight": P, "text_proj.0.weight": W, "classifier.0.weight": c}, "# t\n"
    )
    return folder


def test_scores_match_hand_computation(tmp_path):
    embedder = TableEmbedder({"a": [1.0, 0.0, 0.0], "b": [0.0, 0.5, 0.5], "c": [2.0, 1.0, 0.0]})
    router = MatrixFactorizationRouter.from_pretrained(
        _tiny_checkpoint(tmp_path / "ck"), embedder=embedder
    )
    # W x: a → (1, 0), b → (0, 1), c → (2, 1)
    # s(strong) = c · (P_s ⊙ Wx) = 1*Wx0 ; s(weak) = 2*Wx1
    expected = 1 / (1 + np.exp(-np.array([1 - 0, 0 - 2, 2 - 2])))
    np.testing.assert_allclose(router.strong_win_rate(["a", "b", "c"]), expected, rtol=1e-9)
    # The full score matrix agrees: s(other, c) = 1*0.6*2 + 2*0.8*1 = 2.8
    np.testing.assert_allclose(router.model_scores(["c"])[0], [2.0, 2.0, 2.8])


def test_strong_and_weak_identities_are_configurable(tmp_path):
    embedder = TableEmbedder({"c": [2.0, 1.0, 0.0]})
    router = MatrixFactorizationRouter.from_pretrained(
        _tiny_checkpoint(tmp_path / "ck"), embedder=embedder, strong_model="other"
    )
    assert router.strong_win_rate(["c"])[0] == pytest.approx(1 / (1 + np.exp(-(2.8 - 2.0))))
    with pytest.raises(ValueError, match="not one of this mf checkpoint's models"):
        MatrixFactorizationRouter.from_pretrained(
            _tiny_checkpoint(tmp_path / "ck2"), embedder=embedder, weak_model="nope"
        )


def test_routellm_published_layout_uses_its_model_table(tmp_path):
    folder = tmp_path / "routellm" / "mf_gpt4_augmented"
    rng = np.random.default_rng(0)
    P = rng.normal(size=(64, 4))
    W = rng.normal(size=(4, 3))
    c = rng.normal(size=(1, 4))
    config = {"dim": 4, "num_models": 64, "text_dim": 3, "num_classes": 1, "use_proj": True}
    save_checkpoint(
        folder, config, {"P.weight": P, "text_proj.0.weight": W, "classifier.0.weight": c}, ""
    )
    x = np.array([0.3, -0.2, 0.9])
    router = MatrixFactorizationRouter.from_pretrained(folder, embedder=TableEmbedder({"q": x}))
    assert router.strong_model == "gpt-4-1106-preview"
    strong, weak = ROUTELLM_MF_MODEL_NAMES.index("gpt-4-1106-preview"), 36
    pn = P / np.linalg.norm(P, axis=1, keepdims=True)
    logits = (pn[[strong, weak]] * (W @ x)) @ c[0]  # RouteLLM's MFModel.forward
    expected = 1 / (1 + np.exp(-(logits[0] - logits[1])))
    assert router.strong_win_rate(["q"])[0] == pytest.approx(expected)


def test_fit_learns_who_wins_and_round_trips(tmp_path):
    embedder = TableEmbedder({"hard": [1.0, 0.0], "easy": [0.0, 1.0]})
    battles = []
    for _ in range(40):
        battles.append(
            {"prompt": "hard", "model_a": "big", "model_b": "small", "winner": "model_a"}
        )
        battles.append({"prompt": "easy", "model_a": "small", "model_b": "big", "winner": "tie"})
    router = MatrixFactorizationRouter(
        "big", "small", embedder=embedder, dim=4, epochs=150, lr=0.05
    )
    router.fit(battles)
    hard, easy = router.strong_win_rate(["hard", "easy"])
    assert hard > 0.9
    assert abs(easy - 0.5) < 0.1
    router.save_pretrained(tmp_path / "out")
    config = json.loads((tmp_path / "out" / "config.json").read_text())
    assert config["model_names"] == ["big", "small"] and (tmp_path / "out" / "README.md").exists()
    again = MatrixFactorizationRouter.from_pretrained(tmp_path / "out", embedder=embedder)
    np.testing.assert_allclose(again.strong_win_rate(["hard", "easy"]), [hard, easy], rtol=1e-6)


def test_refitting_a_loaded_router_drops_its_checkpoint_identity(tmp_path, monkeypatch):
    """`fit` on a loaded router kept the checkpoint's `cache_key`: calibration (and eval)
    then answered from the old weights' cached scores, a threshold for another router."""
    from routellm_lc.calibrate import calibrate_threshold

    monkeypatch.setenv("ROUTELLM_LC_CACHE", str(tmp_path / "cache"))
    embedder = TableEmbedder({"hard": [1.0, 0.0], "easy": [0.0, 1.0]})

    def battles(winner_on_hard):
        rows = [{"prompt": "hard", "model_a": "big", "model_b": "small", "winner": winner_on_hard}]
        rows.append({"prompt": "easy", "model_a": "small", "model_b": "big", "winner": "tie"})
        return rows * 40

    MatrixFactorizationRouter("big", "small", embedder=embedder, dim=4, epochs=150, lr=0.05).fit(
        battles("model_a")
    ).save_pretrained(tmp_path / "ck")
    router = MatrixFactorizationRouter.from_pretrained(
        tmp_path / "ck", embedder=embedder, epochs=150, lr=0.05
    )
    sample = ["hard"] * 3 + ["easy"] * 7
    before = calibrate_threshold(router, sample, 0.3)
    assert router.cache_key is not None  # a loaded checkpoint: its scores are cached
    assert np.mean(router.strong_win_rate(sample) >= before) == pytest.approx(0.3)
    router.fit(battles("model_b"))  # now the small model wins the hard prompt
    assert router.cache_key is None
    hard, easy = router.strong_win_rate(["hard", "easy"])
    assert hard < easy
    after = calibrate_threshold(router, sample, 0.3)
    assert after == calibrate_threshold(router, sample, 0.3, use_cache=False)
    assert after != pytest.approx(before)


def test_features_are_appended_and_standardised(tmp_path):
    embedder = TableEmbedder({"x" * 10: [1.0, 0.0], "x" * 1000: [1.0, 0.0]})
    battles = [
        {"prompt": "x" * 1000, "model_a": "big", "model_b": "small", "winner": "model_a"},
        {"prompt": "x" * 10, "model_a": "big", "model_b": "small", "winner": "model_b"},
    ] * 30
    router = MatrixFactorizationRouter(
        "big", "small", embedder=embedder, dim=2, epochs=200, lr=0.05, features=["log_chars"]
    ).fit(battles)
    short, long = router.strong_win_rate(["x" * 10, "x" * 1000])
    assert long > 0.8 > 0.2 > short  # identical embeddings: only the length feature separates
    router.save_pretrained(tmp_path / "f")
    again = MatrixFactorizationRouter.from_pretrained(tmp_path / "f", embedder=embedder)
    np.testing.assert_allclose(again.strong_win_rate(["x" * 10]), [short], rtol=1e-6)


def test_missing_and_malformed_checkpoints_say_what_is_wrong(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_router("mf", checkpoint=str(tmp_path / "nowhere"))
    folder = _tiny_checkpoint(tmp_path / "ck")
    (folder / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="missing model.safetensors"):
        load_router("mf", checkpoint=str(folder))
    folder = _tiny_checkpoint(tmp_path / "ck2")
    (folder / "config.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_router("mf", checkpoint=str(folder))
    folder = _tiny_checkpoint(tmp_path / "ck3")
    config = json.loads((folder / "config.json").read_text())
    config["num_models"] = 5
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="P.weight has shape"):
        load_router("mf", checkpoint=str(folder))


def test_cdf_parts_are_summed_as_training_quantiles(tmp_path):
    """score_cdfs: each part's value is placed among its stored training quantiles (linear in
    between, clamped outside, a repeated value at its highest level) and the quantiles summed:
    score = sigmoid(cdf_scale · (Σ − parts/2) + logit_bias). Hand-computed on the tiny model,
    whose projection part x · v is a → 1, b → −2, c → 0 (the logits of the first test)."""
    folder = _tiny_checkpoint(tmp_path / "ck")
    config = json.loads((folder / "config.json").read_text())
    config |= {
        "features": ["log_chars"],
        "feature_mean": [0.0],
        "feature_std": [1.0],
        "text_dim": 4,
        "score_cdfs": {"projection": [-2.0, 0.0, 0.0, 2.0, 4.0], "log_chars": [0.0, 1.0, 3.0]},
        "cdf_scale": 2.0,
    }
    (folder / "config.json").write_text(json.dumps(config))
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(folder / "model.safetensors"))
    tensors["text_proj.0.weight"] = np.hstack([tensors["text_proj.0.weight"], np.zeros((2, 1))])
    save_file(tensors, str(folder / "model.safetensors"))
    embedder = TableEmbedder({"a": [1.0, 0.0, 0.0], "b": [0.0, 0.5, 0.5], "c": [2.0, 1.0, 0.0]})
    router = MatrixFactorizationRouter.from_pretrained(folder, embedder=embedder)
    # projection quantiles (levels 0, .25, .5, .75, 1): a = 1 → halfway .5→.75 = 0.625;
    # b = −2 → 0; c = 0 (repeated in the grid) → its highest level 0.5.
    # log_chars of "a"/"b"/"c" is log(1 + 1) = 0.693 → levels (0, .5, 1) at (0, 1, 3): 0.347.
    length_q = np.log(2.0) / 1.0 * 0.5
    sums = np.array([0.625, 0.0, 0.5]) + length_q
    expected = 1 / (1 + np.exp(-2.0 * (sums - 1.0)))
    np.testing.assert_allclose(router.strong_win_rate(["a", "b", "c"]), expected, rtol=1e-6)
    config["score_cdfs"]["nonsense"] = [0.0, 1.0]
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(CheckpointError, match="score_cdfs names"):
        MatrixFactorizationRouter.from_pretrained(folder, embedder=embedder)


def test_cache_key_follows_the_strong_and_weak_models_and_embedder(tmp_path):
    """The eval harness and calibration cache scores under `cache_key`: one folder loaded
    with another strong/weak pair or embedder scores differently, so its key differs."""
    folder = _tiny_checkpoint(tmp_path / "ck")
    embedder = TableEmbedder({"c": [2.0, 1.0, 0.0]})
    base = MatrixFactorizationRouter.from_pretrained(folder, embedder=embedder)
    again = MatrixFactorizationRouter.from_pretrained(folder, embedder=embedder)
    other = MatrixFactorizationRouter.from_pretrained(
        folder, embedder=embedder, strong_model="other"
    )
    swapped = MatrixFactorizationRouter.from_pretrained(
        folder, embedder=embedder, strong_model="weak", weak_model="strong"
    )
    renamed = TableEmbedder({"c": [2.0, 1.0, 0.0]})
    renamed.name = "another-table"  # same width (a 384-d "local" no longer loads on 3-d weights)
    another = MatrixFactorizationRouter.from_pretrained(folder, embedder=renamed)
    assert base.cache_key == again.cache_key and base.cache_key.startswith("mf:")
    assert len({base.cache_key, other.cache_key, swapped.cache_key, another.cache_key}) == 4
    assert MatrixFactorizationRouter("strong", "weak").cache_key is None  # not from a checkpoint


def test_calibration_scores_are_not_shared_across_strong_weak_pairs(tmp_path, monkeypatch):
    from routellm_lc.calibrate import calibrate_threshold

    monkeypatch.setenv("ROUTELLM_LC_CACHE", str(tmp_path / "cache"))
    folder = _tiny_checkpoint(tmp_path / "ck")
    rng = np.random.default_rng(0)
    table = {f"p{i}": rng.normal(size=3).tolist() for i in range(50)}
    prompts = list(table)
    first = calibrate_threshold(
        "mf", prompts, 0.2, checkpoint=str(folder), embedder=TableEmbedder(table)
    )
    second = calibrate_threshold(
        "mf",
        prompts,
        0.2,
        checkpoint=str(folder),
        embedder=TableEmbedder(table),
        strong_model="weak",
        weak_model="strong",
    )
    swapped = MatrixFactorizationRouter.from_pretrained(
        folder, embedder=TableEmbedder(table), strong_model="weak", weak_model="strong"
    )
    share = np.mean(swapped.strong_win_rate(prompts) >= second)
    assert share == pytest.approx(0.2, abs=0.021) and first != second


def test_whole_sample_scoring_reuses_embeddings_stored_on_disk(tmp_path, monkeypatch):
    """`eval` and `calibrate` score thousands of prompts: those decontamination (or an earlier
    run) embedded come from the on-disk store; calls outside the scoring are left alone."""
    import threading

    from routellm_lc.evals.harness import score_prompts
    from routellm_lc.training.decontaminate import cached_embeddings

    monkeypatch.setenv("ROUTELLM_LC_CACHE", str(tmp_path / "cache"))

    class Counting(TableEmbedder):
        def __init__(self, table):
            super().__init__(table)
            self.embedded: list[str] = []

        def embed(self, texts):
            self.embedded += list(texts)
            return super().embed(texts)

    table = {"a": [1.0, 0.0, 0.0], "b": [0.0, 0.5, 0.5], "c": [2.0, 1.0, 0.0]}
    embedder = Counting(table)
    router = MatrixFactorizationRouter.from_pretrained(
        _tiny_checkpoint(tmp_path / "ck"), embedder=embedder
    )
    cached_embeddings(["a", "b"], embedder, progress=False)  # as decontamination does
    embedder.embedded.clear()
    direct = router.strong_win_rate(["a", "b", "c"])
    assert embedder.embedded == ["a", "b", "c"]  # outside a whole-sample scoring: as always
    embedder.embedded.clear()
    seen_elsewhere = []

    class Watching(Counting):
        def embed(self, texts):
            if not seen_elsewhere:  # a call served by another thread meanwhile
                worker = threading.Thread(target=lambda: seen_elsewhere.append(router._embedder()))
                worker.start()
                worker.join()
            return super().embed(texts)

    embedder.__class__ = Watching
    scores = score_prompts(router, ["a", "b", "c"], progress=False)
    np.testing.assert_allclose(scores, direct, rtol=1e-6)
    assert embedder.embedded == ["c"]  # a and b came from the store
    assert seen_elsewhere == [embedder]  # the other thread got the plain embedder
    embedder.embedded.clear()
    score_prompts(router, ["a", "b", "c"], progress=False)
    assert embedder.embedded == []  # c is stored now too


def test_the_embedding_store_finds_keys_ending_in_a_nul_byte(tmp_path):
    """NumPy's "S16" keys drop trailing NUL bytes: 1 prompt in 256 was never found again."""
    import hashlib

    from routellm_lc.embeddings import StoredEmbedder
    from routellm_lc.training.decontaminate import EmbeddingStore

    texts = [f"prompt {i}" for i in range(2000)]
    nul = [t for t in texts if hashlib.sha256(t.encode()).digest()[15] == 0]
    assert nul  # about 8 of 2000
    store = EmbeddingStore("table", root=tmp_path)
    store.put(texts, np.ones((len(texts), 3), dtype=np.float32))
    vectors, missing = EmbeddingStore("table", root=tmp_path).get(nul)
    assert missing == [] and vectors is not None and vectors.shape == (len(nul), 3)

    class Empty(TableEmbedder):
        def embed(self, texts):
            return np.empty((0, self.dim), dtype=np.float32) if not texts else super().embed(texts)

    assert StoredEmbedder(Empty({"a": [1.0, 0.0, 0.0]})).embed([]).shape == (0, 3)


def test_scoring_without_the_score_cache_leaves_no_embeddings_on_disk(tmp_path, monkeypatch):
    """`eval --no-cache` (`use_cache=False` in calibrate): the prompts' embeddings are not
    written to (or read from) the on-disk store either."""
    from routellm_lc.evals.harness import LoadedRouter, cached_scores

    monkeypatch.setenv("ROUTELLM_LC_CACHE", str(tmp_path / "cache"))
    embedder = TableEmbedder({"a": [1.0, 0.0, 0.0], "b": [0.0, 0.5, 0.5]})
    router = MatrixFactorizationRouter.from_pretrained(
        _tiny_checkpoint(tmp_path / "ck"), embedder=embedder
    )
    loaded = LoadedRouter("mf", router, None, "mf:identity")
    cached_scores(loaded, "bench", ["a", "b"], None, progress=False)
    assert not (tmp_path / "cache" / "embeddings").exists()
