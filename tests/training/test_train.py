"""`routellm-lc train`: a small seeded run learns something real (beats random on held-out
training questions), is reproducible, and writes a loadable Hub-layout checkpoint."""

from __future__ import annotations

import json

import numpy as np
import pytest

from routellm_lc.cli import main
from routellm_lc.routers import load_router
from routellm_lc.training.fit import heldout_quality, split_groups, train_router
from routellm_lc.training.sources import load_questions

SOURCES = ("mmlu_pro_nonmmlu",)


class _Random:
    def __init__(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def strong_win_rate(self, prompts):
        return self.rng.random(len(prompts))


def _train_small(data_dir):
    return train_router(
        "mf",
        recipe="tiers-all",
        sources=SOURCES,
        data_dir=data_dir,
        seed=0,
        limit=3000,
        epochs=30,
        progress=False,
    )


@pytest.fixture(scope="module")
def small_run(data_dir):
    return _train_small(data_dir)


def test_small_training_run_beats_random_on_heldout_questions(small_run, data_dir):
    router, report = small_run
    assert set(report.heldout_apgr) == set(SOURCES)
    learned = np.mean(list(report.heldout_apgr.values()))
    # The same held-out questions, scored by the random router (10 seeds, as RouteLLM does).
    questions = load_questions(SOURCES, data_dir)
    rng = np.random.default_rng(0)
    picked = sorted(rng.choice(len(questions), 3000, replace=False))
    questions = [questions[i] for i in picked]
    held = split_groups(questions, 0.2, 0)
    test = [q for q, h in zip(questions, held, strict=True) if h]
    random_apgr = np.mean(
        [np.mean(list(heldout_quality(_Random(s), test).values())) for s in range(10)]
    )
    assert abs(random_apgr - 0.5) < 0.03
    assert learned > random_apgr + 0.03, (learned, random_apgr, report.heldout_apgr)


def test_training_is_reproducible(small_run, data_dir):
    router, _ = small_run
    again, _ = _train_small(data_dir)
    prompts = ["What is 2 + 2?", "Derive the Navier-Stokes equations from first principles."]
    np.testing.assert_allclose(router.strong_win_rate(prompts), again.strong_win_rate(prompts))


def test_train_cli_writes_a_checkpoint_with_a_model_card(tmp_path, data_dir, capsys):
    out = tmp_path / "ck"
    code = main(
        [
            "train",
            "--recipe",
            "tiers-all",
            "--sources",
            "faithful_cot",
            "--limit",
            "600",
            "--epochs",
            "5",
            "--data-dir",
            str(data_dir),
            "--output",
            str(out),
        ]
    )
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["n_train_battles"] > 0
    card = (out / "README.md").read_text()
    assert "faithful_cot" in card and "MIT" in card and "held-out APGR" in card
    router = load_router("mf", checkpoint=str(out))
    scores = router.strong_win_rate(["hello", "Solve x^2 - 5x + 6 = 0 and explain each step."])
    assert scores.shape == (2,) and np.all((scores >= 0) & (scores <= 1))


def test_arena_length_recipe_is_a_linear_mf_with_a_length_prior(data_dir, tmp_path):
    router, report = train_router(
        "mf",
        recipe="arena-length",
        sources=("arena_bench_v1",),
        data_dir=data_dir,
        seed=0,
        progress=False,
    )
    assert report.recipe == "arena-length" and report.n_train_battles > 300
    assert router.logit_prior["log_chars"] > 0
    router.save_pretrained(tmp_path / "ck")
    again = load_router("mf", checkpoint=str(tmp_path / "ck"))
    prompts = ["hi", "Write a merge sort in Rust and prove its complexity. " * 5]
    np.testing.assert_allclose(again.strong_win_rate(prompts), router.strong_win_rate(prompts))
    # The length prior makes a much longer prompt of the same kind score higher.
    short, long = again.strong_win_rate(["Explain recursion.", "Explain recursion. " * 40])
    assert long > short


def test_the_shipped_default_checkpoint_loads_offline_with_its_model_card():
    router = load_router("mf")
    scores = router.strong_win_rate(["hello", "Prove that sqrt(2) is irrational."])
    assert scores.shape == (2,) and np.all((scores > 0) & (scores < 1))
    from routellm_lc.routers.checkpoints import BUNDLED_DIR

    card = (BUNDLED_DIR / "mf_default" / "README.md").read_text()
    assert "routellm-lc train" in card and "arena_bench_v1" in card


def test_train_on_a_users_own_battle_log(tmp_path, data_dir, capsys):
    log = tmp_path / "battles.jsonl"
    rows = []
    for i in range(30):
        rows.append(
            {
                "prompt": f"Prove theorem {i} about prime gaps rigorously.",
                "model_a": "big",
                "model_b": "small",
                "winner": "model_a",
            }
        )
        rows.append(
            {
                "prompt": f"Say hello to friend number {i}.",
                "model_a": "big",
                "model_b": "small",
                "winner": "tie",
            }
        )
    log.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "mine"
    args = ["train", "--recipe", "tiers-all", "--sources", "faithful_cot", "--limit", "100"]
    args += ["--user-battles", str(log), "--strong-model", "big", "--weak-model", "small"]
    args += ["--epochs", "60", "--data-dir", str(data_dir), "--output", str(out)]
    assert main(args) == 0
    router = load_router("mf", checkpoint=str(out))
    assert router.strong_model == "big"
    hard, easy = router.strong_win_rate(
        ["Prove theorem 99 about prime gaps rigorously.", "Say hello to friend number 99."]
    )
    assert hard > 0.75 and abs(easy - 0.5) < 0.15
    assert "--user-battles" in (out / "README.md").read_text()


def test_alpaca_eval_battles_are_used_only_when_asked_and_marked_non_commercial(data_dir):
    from routellm_lc.training.fit import TrainingReport, _extra_battles, model_card

    battles, _ = _extra_battles(("faithful_cot",), (), data_dir)
    assert battles == []
    battles, _ = _extra_battles(("alpaca_eval",), (), data_dir)
    assert battles and {(b.model_a, b.model_b) for b in battles} <= {
        ("strong-tier", "weak-tier"),
        ("weak-tier", "strong-tier"),
    }
    report = TrainingReport("tiers-all", ["faithful_cot", "alpaca_eval"], 0, 0.2, 1, 1, {})
    card = model_card("mf", report, "routellm-lc train ...")
    assert "license: cc-by-nc-4.0" in card and "non-commercial" in card
