"""`routellm-lc train` checks its options before any data is read or anything is fitted: a
mistake is one `error:` line and exit 2, never a traceback or a checkpoint that cannot load."""

from __future__ import annotations

import json
import os
import re

import pytest

from routellm_lc.cli import main
from routellm_lc.training.fit import (
    RecipeError,
    TrainingReport,
    check_sources,
    model_card,
    resolve_models,
    train_router,
)
from routellm_lc.training.sources import Battle, load_questions


def _battles(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _log(path, n=30, a="big", b="small"):
    rows = []
    for i in range(n):
        rows.append(
            {
                "prompt": f"Prove theorem {i} rigorously.",
                "model_a": a,
                "model_b": b,
                "winner": "model_a",
            }
        )
        rows.append(
            {"prompt": f"Say hello to friend {i}.", "model_a": a, "model_b": b, "winner": "tie"}
        )
    return _battles(path, rows)


def _fails(capsys, argv, message):
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's own usage errors
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert "error:" in err and message in err, err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--sources", "theoremQA"], "Unknown training source(s) 'theoremQA'; known: arena"),
        (["--epochs", "0"], "--epochs: must be at least 1"),
        (["--limit", "0"], "--limit: must be at least 1"),
        (["--holdout", "1"], "--holdout must be a share in [0, 1)"),
        (["--router", "random"], "Router 'random' cannot be trained"),
        (["--router", "sw_ranking", "--epochs", "3"], "sw_ranking has no training epochs"),
        (["--strong-model", "gpt-4o"], "does not use --strong-model: add --recipe tiers-all"),
        (["--epochs", "5"], "difficulty-length learns from per-model outcomes, not battles"),
        (["--sources", "arena_bench_v1", "alpaca_eval"], "does not use --sources alpaca_eval"),
        (["--sources", "none"], "--sources none needs --user-battles"),
        (["--user-battles", "/no/such/log.jsonl"], "Battle log /no/such/log.jsonl not found"),
    ],
)
def test_bad_options_are_refused_before_training(tmp_path, capsys, extra, message):
    _fails(capsys, ["train", *extra, "--output", str(tmp_path / "out")], message)
    assert not (tmp_path / "out").exists()


def test_an_output_folder_holding_another_routers_checkpoint_is_refused(tmp_path, capsys):
    """Training mf into a bert folder wrote its files beside bert's (tokenizer,
    router_config.json): a folder that is neither checkpoint."""
    bert = tmp_path / "ck"
    bert.mkdir()
    (bert / "config.json").write_text('{"model_type": "bert"}')
    (bert / "router_config.json").write_text('{"router": "bert", "labels": []}')
    _fails(capsys, ["train", "--output", str(bert)], "holds a bert checkpoint (router_config.json)")
    assert sorted(p.name for p in bert.iterdir()) == ["config.json", "router_config.json"]


def test_output_file_and_card_eval_without_figures_are_refused(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    _fails(capsys, ["train", "--output", str(tmp_path / "file")], "is a file")
    evals = tmp_path / "evals"
    evals.mkdir()
    row = {"routers": {"mf": {"apgr": None, "cpt50": None}}}
    (evals / "gsm8k.json").write_text(json.dumps(row))
    argv = ["train", "--card-eval", str(evals), "--output", str(tmp_path / "out")]
    _fails(capsys, argv, "no APGR/CPT(50%) figure for mf")


def test_battle_logs_that_are_not_utf8_are_refused(tmp_path, capsys):
    log = tmp_path / "log.jsonl"
    log.write_bytes('{"prompt": "caf\u00e9"}\n'.encode("latin-1"))
    argv = ["train", "--user-battles", str(log), "--sources", "none", "--output", str(tmp_path)]
    _fails(capsys, argv, "is not UTF-8 text")


def test_strong_and_weak_models_must_be_in_the_battles(tmp_path, capsys):
    log = _log(tmp_path / "log.jsonl")
    argv = ["train", "--user-battles", str(log), "--sources", "none"]
    _fails(
        capsys,
        [*argv, "--strong-model", "gpt-4o", "--output", str(tmp_path / "o")],
        "--strong-model 'gpt-4o' is not a model of the training battles",
    )
    with pytest.raises(RecipeError, match="'strong-tier' is not a model"):
        resolve_models("tiers-all", (), [Battle("p", "big", "small", "tie")], "strong-tier", None)


def test_default_models_with_only_your_battles_are_yours():
    battles = [Battle(f"p{i}", "small", "big", "model_b") for i in range(3)]
    battles.append(Battle("q", "small", "big", "model_a"))
    assert resolve_models("tiers-all", (), battles, None, None) == ("big", "small")
    assert resolve_models("tiers-all", (), battles, None, "big") == ("small", "big")
    assert resolve_models("tiers-all", ("faithful_cot",), battles, None, None) == (
        "strong-tier",
        "weak-tier",
    )
    three = [*battles, Battle("r", "big", "third", "tie")]
    with pytest.raises(RecipeError, match="hold 3 models"):
        resolve_models("tiers-all", (), three, None, None)


def test_source_names_and_licences_follow_what_was_read():
    assert check_sources(["theoremqa", "theoremqa"]) == ["theoremqa"]
    with pytest.raises(RecipeError, match="known: arena_bench_v1"):
        check_sources(["theoremQA"])
    report = TrainingReport("difficulty-length", ["faithful_cot"], 0, 0.2, 1, 1, {})
    assert "license: apache-2.0" in model_card("mf", report, "routellm-lc train")
    with pytest.raises(RecipeError, match="holdout must be a share"):
        train_router("mf", recipe="tiers-all", holdout=-0.1)
    with pytest.raises(RecipeError, match="ignore strong_model"):
        train_router("mf", strong_model="x")


def test_missing_training_source_folder_is_named(tmp_path, capsys):
    from routellm_lc.data import MissingDataError

    (tmp_path / "arena_bench_v1").mkdir()
    with pytest.raises(MissingDataError, match="no theoremqa/ folder"):
        load_questions(["theoremqa"], tmp_path)
    argv = ["train", "--data-dir", str(tmp_path), "--output", str(tmp_path / "o")]
    _fails(capsys, argv, "no mmlu_pro_nonmmlu/ folder")
    argv = ["train", "--data-dir", str(tmp_path), "--output", str(tmp_path / "o")]
    assert main(argv) == 2
    assert "Or choose among the sources present with --sources arena_bench_v1" in (
        capsys.readouterr().err
    )


def test_user_battles_alone_count_after_decontamination_and_are_measured(
    tmp_path, data_dir, capsys
):
    import csv

    with open(data_dir / "routellm_evals" / "gsm8k_responses.csv", encoding="utf-8") as fh:
        gsm8k = [row["prompt"] for _, row in zip(range(5), csv.DictReader(fh), strict=False)]
    log = _log(tmp_path / "log.jsonl", n=40)
    with open(log, "a") as fh:  # five near-copies of evaluation prompts: dropped
        for prompt in gsm8k:
            fh.write(
                json.dumps(
                    {"prompt": prompt, "model_a": "big", "model_b": "small", "winner": "model_a"}
                )
                + "\n"
            )
    out = tmp_path / "mine"
    argv = ["train", "--user-battles", str(log), "--sources", "none", "--epochs", "40"]
    assert main([*argv, "--data-dir", str(data_dir), "--output", str(out)]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["decontaminated"] == {"user": 5}
    assert printed["user_battles"] == 64  # 80 kept, 16 on held-out prompts
    assert printed["heldout_apgr"]["user battles"] > 0.6
    card = (out / "README.md").read_text()
    assert "64 of your battles from the 80% training split" in card and "--sources none" in card
    assert "Held out: 16 of your battles" in card and "to measure the router on" in card
    from routellm_lc.routers import load_router

    assert load_router("mf", checkpoint=str(out)).strong_model == "big"


def test_your_battles_beside_the_sources_without_your_pair_are_warned_about(
    tmp_path, data_dir, capsys
):
    """`train --user-battles my_logs.jsonl` (the README's example) trained a router scoring the
    two tiers: the user's models never reached its scores, and nothing said so."""
    log = _log(tmp_path / "log.jsonl", n=10, a="my-big", b="my-small")
    argv = ["train", "--user-battles", str(log), "--sources", "faithful_cot", "--limit", "80"]
    argv += ["--epochs", "2", "--data-dir", str(data_dir)]
    assert main([*argv, "--output", str(tmp_path / "tiers")]) == 0
    err = capsys.readouterr().err
    assert "warning: None of your 16 training battles involves strong-tier or weak-tier" in err
    assert "--strong-model and --weak-model" in err
    assert "None of your 16 training battles" in (tmp_path / "tiers" / "README.md").read_text()
    card = (tmp_path / "tiers" / "README.md").read_text()  # the tiers: measured on the source
    assert re.search(r"\| faithful_cot \| -?\d\.\d{3} \|", card)
    pair = ["--strong-model", "my-big", "--weak-model", "my-small"]
    assert main([*argv, *pair, "--output", str(tmp_path / "mine")]) == 0
    assert "None of your" not in capsys.readouterr().err
    # the sources' held-out questions measure the tiers: no figure for your pair on them
    card = (tmp_path / "mine" / "README.md").read_text()
    assert "faithful_cot: its held-out questions measure the strong tier against the weak " in card
    assert "and this router scores my-big vs my-small" in card
    assert "| faithful_cot | " not in card


def _eval_json(folder, cache_key, apgr=0.61, cpt50=42.0):
    folder.mkdir(exist_ok=True)
    row = {"routers": {"mf": {"apgr": apgr, "cpt50": cpt50, "cache_key": cache_key}}}
    (folder / "mt-bench.json").write_text(json.dumps(row))
    return folder


def test_card_eval_figures_go_on_the_card_only_for_the_checkpoint_that_eval_scored(
    tmp_path, capsys
):
    from routellm_lc.evals.harness import router_identity
    from routellm_lc.routers import load_router

    log = _log(tmp_path / "log.jsonl")
    argv = ["train", "--user-battles", str(log), "--sources", "none", "--epochs", "2"]
    first = tmp_path / "first"
    assert main([*argv, "--output", str(first)]) == 0
    key = router_identity(load_router("mf", checkpoint=str(first)), str(first))
    assert key.startswith("mf:")

    # The same seeded command again, with an eval of the first checkpoint: the same weights,
    # so its figures are copied onto the card.
    same = tmp_path / "same"
    evals = _eval_json(tmp_path / "evals", key)
    assert main([*argv, "--card-eval", str(evals), "--output", str(same)]) == 0
    card = (same / "README.md").read_text()
    assert "0.610" in card and "42.0%" in card

    # Another seed trains other weights: the figures are refused, the checkpoint is kept with
    # a card that does not claim them.
    other = tmp_path / "other"
    capsys.readouterr()
    code = main([*argv, "--seed", "1", "--card-eval", str(evals), "--output", str(other)])
    assert code == 2
    err = capsys.readouterr().err
    assert "from another checkpoint" in err and key in err and "Traceback" not in err
    assert (other / "model.safetensors").is_file()
    assert "0.610" not in (other / "README.md").read_text()


def test_card_eval_rows_without_a_checkpoint_identity_are_refused(tmp_path, capsys):
    evals = tmp_path / "evals"
    evals.mkdir()
    (evals / "mmlu.json").write_text(json.dumps({"routers": {"mf": {"apgr": 0.6, "cpt50": 40}}}))
    argv = ["train", "--card-eval", str(evals), "--output", str(tmp_path / "out")]
    _fails(capsys, argv, "does not say which mf checkpoint it scored")
    assert not (tmp_path / "out").exists()


def test_an_output_that_cannot_be_created_is_refused_before_any_data_is_read(tmp_path, capsys):
    """Training takes minutes: a checkpoint folder under a file (or in a folder this user
    cannot write) fails at once, before the data directory is even looked at."""
    (tmp_path / "x.txt").write_text("x")
    argv = ["train", "--data-dir", str(tmp_path / "no-data"), "--output"]
    _fails(capsys, [*argv, str(tmp_path / "x.txt" / "ck")], "cannot be created: ")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_an_unwritable_output_folder_is_refused_before_training(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        argv = ["train", "--data-dir", str(tmp_path / "no-data"), "--output"]
        _fails(capsys, [*argv, str(locked / "ck")], "is not writable")
    finally:
        locked.chmod(0o700)


def test_card_eval_refuses_a_csv_that_shares_a_builtin_benchmarks_name(tmp_path, capsys):
    """`eval --benchmark mmlu.csv` writes mmlu.json too: its figures (your CSV's) used to go on
    the card as RouteLLM's MMLU, beside RouteLLM's best MMLU router."""
    csv_path = tmp_path / "mmlu.csv"
    lines = ["prompt,gpt-4-1106-preview,mistralai/Mixtral-8x7B-Instruct-v0.1"]
    lines += [f"question {'word ' * n},{n % 3 != 0},{n % 2 == 0}" for n in range(1, 13)]
    csv_path.write_text("\n".join(lines) + "\n")
    evals = tmp_path / "evals"
    argv = ["eval", "--benchmark", str(csv_path), "--routers", "mf", "--bootstrap", "0"]
    assert main([*argv, "--output", str(evals), "--no-cache"]) == 0
    assert json.loads((evals / "mmlu.json").read_text())["csv"] == str(csv_path)
    capsys.readouterr()
    argv = ["train", "--card-eval", str(evals), "--output", str(tmp_path / "out")]
    _fails(capsys, argv, "holds the figures of your CSV")
    assert not (tmp_path / "out").exists()
