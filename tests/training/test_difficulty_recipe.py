"""Recipe `difficulty-length` (the shipped default): a small run learns real signal on held-out
training questions, the exported mf checkpoint is exactly the fitted linear score, and the
shipped checkpoint is the one the documented command produces."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

from routellm_lc.routers import load_router
from routellm_lc.routers.mf import MatrixFactorizationRouter
from routellm_lc.training import difficulty as recipe
from routellm_lc.training.sources import load_questions

SOURCES = ("mmlu_pro_nonmmlu", "faithful_cot")
LIMIT = 4000
SHIPPED = Path(recipe.__file__).parents[1] / "checkpoints" / "mf_default"


@pytest.fixture(scope="module")
def small_run(data_dir):
    router, report = recipe.train_difficulty_length(
        sources=SOURCES, data_dir=data_dir, limit=LIMIT, seed=0, progress=False
    )
    questions = load_questions(SOURCES, data_dir)
    rng = np.random.default_rng(0)
    questions = [questions[i] for i in sorted(rng.choice(len(questions), LIMIT, replace=False))]
    questions = [q for q in questions if recipe.difficulty(q) is not None]
    held = recipe.split_groups(questions, 0.2, 0)
    test = [q for q, h in zip(questions, held, strict=True) if h]
    return router, report, test


def test_scores_rank_heldout_difficulty_within_each_domain(small_run):
    """What the recipe learns: harder-than-its-siblings questions score higher."""
    router, _, test = small_run
    scores = router.strong_win_rate([q.prompt for q in test])
    target = np.array([recipe.difficulty(q) for q in test])
    domains = np.array([recipe.domain(q) for q in test])
    for name in np.unique(domains):  # compare within a domain only
        mask = domains == name
        scores[mask] -= scores[mask].mean()
        target[mask] -= target[mask].mean()
    rho = spearmanr(scores, target).correlation
    assert rho > 0.1, rho


def test_small_run_beats_random_on_heldout_validation_pairs(small_run):
    router, report, test = small_run
    assert set(report.heldout_apgr) == {"V-math", "V-mcq"}
    learned = np.mean(list(report.heldout_apgr.values()))
    rng = np.random.default_rng(0)
    random_apgr = np.mean(
        [
            np.mean(list(recipe.validation_apgr(rng.random(len(test)), test).values()))
            for _ in range(10)
        ]
    )
    assert abs(random_apgr - 0.5) < 0.04, random_apgr
    assert learned > random_apgr + 0.03, (report.heldout_apgr, random_apgr)


def _toy_fit(combine: str):
    rng = np.random.default_rng(0)
    prompts = [("word " * int(n)).strip() + f" {i}?" for i, n in enumerate(rng.integers(1, 60, 80))]
    embeddings = rng.normal(size=(len(prompts), 8))
    embeddings /= np.linalg.norm(embeddings, axis=1, keepdims=True)
    target = rng.random(len(prompts))
    domains = np.array(["a", "b"] * 40)
    fit = recipe.fit_difficulty_length(
        prompts, embeddings, target, domains, domains, combine=combine
    )

    class Table:  # an embedder that returns the fixed embeddings above
        name, dim = "table", 8

        def embed(self, texts):
            return np.stack([embeddings[prompts.index(t)] for t in texts]).astype(np.float32)

    return prompts, embeddings, fit, Table


def test_mf_export_of_the_cdf_combination(tmp_path):
    """combine="cdf" (the default): the router's score is sigmoid(4 · (F(x · coef) + F(length)
    − 1)) with F the empirical CDF over the training prompts, up to the stored grid's
    resolution, and it survives a save/load round trip."""
    prompts, embeddings, fit, Table = _toy_fit("cdf")
    router = recipe.to_mf_router(fit, Table())
    inputs = recipe._inputs(prompts, embeddings, fit.feature_mean, fit.feature_std)
    semantic = inputs @ fit.coef
    length = inputs[:, 8 + recipe.FEATURES.index(recipe.LENGTH_FEATURE)]

    def ecdf(v):  # exact: share of training prompts at or below v
        return np.searchsorted(np.sort(v), v, side="right") / len(v)

    exact = ecdf(semantic) + ecdf(length)
    scores = router.strong_win_rate(prompts)
    from_router = np.log(scores / (1 - scores)) / router.cdf_scale + 1.0  # Σ quantiles
    n = len(prompts)
    assert np.abs(from_router - exact).max() <= 2.0 / n + 1e-3
    np.testing.assert_allclose(from_router, fit.score(inputs), atol=1e-5)  # float32 embeddings
    assert spearmanr(from_router, exact).correlation > 0.99
    assert set(router.score_cdfs) == {"projection", recipe.LENGTH_FEATURE}
    # A very long prompt cannot push the score past its share: the length part is at most 1.
    assert scores.max() < 1 / (1 + np.exp(-router.cdf_scale)) + 1e-12
    router.embedder = "local"
    router.save_pretrained(tmp_path / "ck")
    config = json.loads((tmp_path / "ck" / "config.json").read_text())
    assert len(config["score_cdfs"]["projection"]) == recipe.CDF_POINTS
    loaded = MatrixFactorizationRouter.from_pretrained(tmp_path / "ck", embedder=Table())
    np.testing.assert_allclose(loaded.strong_win_rate(prompts), scores, rtol=1e-5)  # float32


def test_mf_export_is_exactly_the_fitted_linear_score(tmp_path):
    """combine="z": dim-1 mf (P = ±1, classifier 0.5) reproduces sigmoid(inputs · coef), bias
    included, and survives a save/load round trip."""
    prompts, embeddings, fit, Table = _toy_fit("z")
    router = recipe.to_mf_router(fit, Table())
    assert router.score_cdfs == {}
    inputs = recipe._inputs(prompts, embeddings, fit.feature_mean, fit.feature_std)
    logit = inputs @ fit.coef + fit.bias
    np.testing.assert_allclose(router.strong_win_rate(prompts), 1 / (1 + np.exp(-logit)), 1e-6)
    assert abs(logit.mean()) < 1e-6  # centred over the training prompts (logit_bias)
    router.embedder = "local"  # the config records the embedder spec
    router.save_pretrained(tmp_path / "ck")
    loaded = MatrixFactorizationRouter.from_pretrained(tmp_path / "ck", embedder=Table())
    np.testing.assert_allclose(loaded.strong_win_rate(prompts), router.strong_win_rate(prompts))


def test_shipped_default_is_the_documented_recipe():
    card = (SHIPPED / "README.md").read_text()
    config = json.loads((SHIPPED / "config.json").read_text())
    assert "routellm-lc train --router mf --recipe difficulty-length --seed 0" in card
    assert config["features"] == list(recipe.FEATURES) and config["dim"] == 1
    router = load_router("mf")
    assert router.strong_model == recipe.STRONG and router.weak_model == recipe.WEAK


def test_documented_command_reproduces_the_shipped_checkpoint(data_dir, tmp_path):
    """Deterministic recipe: re-running it gives the shipped weights (to float precision)."""
    from safetensors.numpy import load_file

    router, _ = recipe.train_difficulty_length(data_dir=data_dir, seed=0, progress=False)
    router.save_pretrained(tmp_path / "ck")
    ours = load_file(str(tmp_path / "ck" / "model.safetensors"))
    shipped = load_file(str(SHIPPED / "model.safetensors"))
    for key in shipped:
        np.testing.assert_allclose(ours[key], shipped[key], rtol=1e-3, atol=1e-6)
    ours_cdfs = json.loads((tmp_path / "ck" / "config.json").read_text())["score_cdfs"]
    shipped_cdfs = json.loads((SHIPPED / "config.json").read_text())["score_cdfs"]
    assert set(ours_cdfs) == set(shipped_cdfs)
    for part, grid in shipped_cdfs.items():
        np.testing.assert_allclose(ours_cdfs[part], grid, rtol=1e-3, atol=1e-6)


def test_train_cli_defaults_mf_to_difficulty_length(data_dir, tmp_path, capsys):
    from routellm_lc.cli import main

    out = tmp_path / "ck"
    argv = ["train", "--router", "mf", "--sources", *SOURCES, "--limit", "2000"]
    assert main([*argv, "--data-dir", str(data_dir), "--output", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert set(printed["heldout_apgr"]) == {"V-math", "V-mcq"}
    card = (out / "README.md").read_text()
    assert "recipe `difficulty-length`" in card and "Apache-2.0" in card
    assert "routellm-lc train --router mf --recipe difficulty-length --seed 0" in card
    scores = load_router("mf", checkpoint=str(out)).strong_win_rate(["2+2?", "Prove P != NP."])
    assert scores.shape == (2,) and np.all((scores > 0) & (scores < 1))


def test_difficulty_length_refuses_other_routers_and_battles(data_dir, tmp_path, capsys):
    from routellm_lc.cli import main

    out = str(tmp_path / "ck")
    common = ["--data-dir", str(data_dir), "--output", out, "--recipe", "difficulty-length"]
    assert main(["train", "--router", "sw_ranking", *common]) == 2
    assert "trains the mf router only" in capsys.readouterr().err
    battles = tmp_path / "b.jsonl"
    battles.write_text('{"prompt": "hi", "model_a": "a", "model_b": "b", "winner": "tie"}\n')
    assert main(["train", "--router", "mf", *common, "--user-battles", str(battles)]) == 2
    assert "not battles" in capsys.readouterr().err
