"""`routellm-lc eval` end to end: JSON, plot, table, the score cache and load errors."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
import pytest

from routellm_lc.cli import main
from routellm_lc.routers import Router, register_router


@register_router("test_prompt_length")
class PromptLengthRouter(Router):
    """Longer prompt → higher score. Deterministic, and counts its calls."""

    calls = 0

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        type(self).calls += 1
        return np.array([min(len(p), 1000) / 1000 for p in prompts])


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTELLM_LC_CACHE", str(tmp_path / "cache"))
    PromptLengthRouter.calls = 0


def _oracle_csv(path):
    # 20 prompts of length 1..20; the strong model is right exactly on the 10 longest, the
    # weak model never. Length routing is then the oracle: quality k/20 with the k longest
    # strong, up to 0.5 at half the calls, then flat. AUC = .125 + .25, APGR = .375/.5 = .75.
    lines = ["prompt,gpt-4-1106-preview,mistralai/Mixtral-8x7B-Instruct-v0.1"]
    lines += [f"{'x' * n},{n > 10},False" for n in range(1, 21)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_eval_on_a_csv_writes_json_png_and_table(tmp_path, capsys):
    csv_path = _oracle_csv(tmp_path / "toy.csv")
    out = tmp_path / "out"
    argv = ["eval", "--benchmark", str(csv_path), "--routers", "test_prompt_length", "random"]
    assert main([*argv, "--output", str(out)]) == 0
    result = json.loads((out / "toy.json").read_text())
    assert result["n_prompts"] == 20
    assert result["strong"] == {"model": "gpt-4-1106-preview", "quality": 0.5}
    assert result["weak"]["quality"] == 0.0
    length = result["routers"]["test_prompt_length"]
    assert length["apgr"] == pytest.approx(0.75)
    assert result["optimal"]["apgr"] == pytest.approx(0.75)
    assert length["cpt50"] == pytest.approx(25.0)  # quality 0.25 with the 5 longest strong
    assert [p["strong_pct"] for p in length["curve"]] == [0, *range(10, 101, 10)]
    assert result["routers"]["random"]["runs"] == 10
    assert (out / "toy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    low, high = length["apgr_ci95"]
    assert result["bootstrap"] == 1000 and length["apgr_sd"] > 0 and low <= 0.75 <= high
    assert "apgr_sd" not in result["routers"]["random"]  # its spread is its 10 runs
    assert result["paired"] == []  # one scored router: nothing to pair
    table = capsys.readouterr().out
    assert f"test_prompt_length  0.750±{length['apgr_sd']:.3f}   25.0%" in table
    assert "optimal" in table


def test_eval_warns_when_the_strong_column_scores_below_the_weak_one(tmp_path, capsys):
    """Columns swapped by mistake: APGR reads the same for a router that now routes the hard
    prompts to the worse model, and nothing said so."""
    csv_path = _oracle_csv(tmp_path / "toy.csv")
    argv = ["eval", "--benchmark", str(csv_path), "--routers", "test_prompt_length"]
    argv += ["--bootstrap", "0", "--no-cache"]
    assert main([*argv, "--output", str(tmp_path / "right")]) == 0
    assert "warning:" not in capsys.readouterr().err
    swapped = ["--strong-model", "mistralai/Mixtral-8x7B-Instruct-v0.1"]
    swapped += ["--weak-model", "gpt-4-1106-preview"]
    assert main([*argv, *swapped, "--output", str(tmp_path / "swapped")]) == 0
    err = capsys.readouterr().err
    assert "warning: toy: the strong model mistralai/Mixtral-8x7B-Instruct-v0.1 scores below" in err
    assert "check --strong-model / --weak-model" in err
    right = json.loads((tmp_path / "right" / "toy.json").read_text())
    wrong = json.loads((tmp_path / "swapped" / "toy.json").read_text())
    apgr = [r["routers"]["test_prompt_length"]["apgr"] for r in (right, wrong)]
    assert apgr[0] == pytest.approx(apgr[1])  # why the warning is needed


@register_router("test_short_first")
class ShortFirstRouter(Router):
    """The reverse of PromptLengthRouter: shorter prompt → higher score."""

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        return np.array([1 - min(len(p), 1000) / 1000 for p in prompts])


def test_eval_compares_routers_on_paired_resamples(tmp_path, capsys):
    csv_path = _oracle_csv(tmp_path / "toy.csv")
    argv = ["eval", "--benchmark", str(csv_path), "--routers", "test_prompt_length"]
    argv += ["test_short_first", "--output", str(tmp_path / "out"), "--bootstrap", "200"]
    assert main(argv) == 0
    result = json.loads((tmp_path / "out" / "toy.json").read_text())
    routers = result["routers"]
    # Short-first sends the 10 losing prompts strong first: quality 0 until half the calls,
    # then rises to 0.5 — AUC 0.125, APGR 0.25; the oracle is 0.75.
    assert routers["test_short_first"]["apgr"] == pytest.approx(0.25)
    (pair,) = result["paired"]
    assert (pair["a"], pair["b"]) == ("test_prompt_length", "test_short_first")
    assert pair["apgr_diff"] == pytest.approx(0.5)
    assert pair["ci95"][0] > 0 and pair["sd"] > 0  # the oracle wins on every resample
    assert result["bootstrap"] == 200
    out = capsys.readouterr().out
    assert "toy: test_prompt_length - test_short_first APGR +0.500 (bootstrap SD" in out


def test_bootstrap_zero_turns_the_intervals_off(tmp_path, capsys):
    csv_path = _oracle_csv(tmp_path / "toy.csv")
    argv = ["eval", "--benchmark", str(csv_path), "--routers", "test_prompt_length"]
    assert main([*argv, "--output", str(tmp_path / "out"), "--bootstrap", "0"]) == 0
    result = json.loads((tmp_path / "out" / "toy.json").read_text())
    assert result["bootstrap"] == 0 and result["paired"] == []
    assert "apgr_sd" not in result["routers"]["test_prompt_length"]
    assert "test_prompt_length  0.750   25.0%" in capsys.readouterr().out
    assert main([*argv, "--output", str(tmp_path / "out"), "--bootstrap", "-1"]) == 2


def test_eval_on_a_real_benchmark_subset_and_the_cache(data_dir, tmp_path):
    out = tmp_path / "out"
    argv = ["eval", "--benchmark", "gsm8k", "mt-bench", "--routers", "test_prompt_length"]
    argv += ["random", "--limit", "60", "--output", str(out), "--data-dir", str(data_dir)]
    assert main(argv) == 0
    first_calls = PromptLengthRouter.calls
    assert first_calls == 2  # one batch per benchmark
    gsm8k = json.loads((out / "gsm8k.json").read_text())
    mt_bench = json.loads((out / "mt-bench.json").read_text())
    assert gsm8k["n_prompts"] == 60 and gsm8k["limit"] == 60 and mt_bench["n_prompts"] == 60
    assert gsm8k["routers"]["test_prompt_length"]["cached"] is False
    assert 0.0 < gsm8k["routers"]["test_prompt_length"]["apgr"] < 1.5
    for result in (gsm8k, mt_bench):
        curve = result["routers"]["test_prompt_length"]["curve"]
        assert curve[0]["quality"] == pytest.approx(result["weak"]["quality"])
        assert curve[-1]["quality"] == pytest.approx(result["strong"]["quality"])
    assert (out / "mt-bench.png").stat().st_size > 10_000

    assert main(argv) == 0  # same prompts, same router: served from the cache
    assert PromptLengthRouter.calls == first_calls
    again = json.loads((out / "gsm8k.json").read_text())
    assert again["routers"]["test_prompt_length"]["cached"] is True
    assert (
        again["routers"]["test_prompt_length"]["apgr"]
        == gsm8k["routers"]["test_prompt_length"]["apgr"]
    )

    assert main([*argv[:-4], "--seed", "1", *argv[-4:]]) == 0  # another subset: scored anew
    assert PromptLengthRouter.calls == first_calls + 2


def test_a_router_that_fails_to_load_is_a_clear_error(tmp_path, capsys):
    csv_path = _oracle_csv(tmp_path / "toy.csv")
    argv = ["eval", "--benchmark", str(csv_path), "--routers", "random", "no_such_router"]
    assert main([*argv, "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "Could not load router(s)" in err and "no_such_router" in err
    assert not (tmp_path / "out").exists()  # nothing half-written


def test_checkpoint_flag_must_name_a_listed_router(tmp_path, capsys):
    csv_path = _oracle_csv(tmp_path / "toy.csv")
    argv = ["eval", "--benchmark", str(csv_path), "--routers", "random"]
    argv += ["--checkpoint", "mf=/nowhere", "--output", str(tmp_path / "out")]
    assert main(argv) == 2
    assert "--checkpoint given for router(s) not in --routers: mf" in capsys.readouterr().err


def test_one_checkpoint_flag_takes_several_routers_as_routers_does():
    """`--checkpoint mf=a sw_ranking=b` failed with "unrecognized arguments: sw_ranking=b"."""
    from routellm_lc.cli import build_parser
    from routellm_lc.commands.eval import parse_checkpoints

    for command in (["eval", "--benchmark", "gsm8k", "--output", "o"], ["serve"]):
        args = build_parser().parse_args(
            [*command, "--routers", "mf", "sw_ranking", "bert", "--checkpoint", "mf=a",
             "sw_ranking=b", "--checkpoint", "bert=c"]
        )  # fmt: skip
        assert parse_checkpoints(args.checkpoint) == {"mf": "a", "sw_ranking": "b", "bert": "c"}


def test_cache_identity_follows_the_checkpoint(tmp_path):
    from routellm_lc.evals.harness import router_identity

    folder = tmp_path / "ckpt"
    folder.mkdir()
    weights = folder / "model.safetensors"
    weights.write_bytes(b"v1")
    os.utime(weights, ns=(1_000_000_000, 1_000_000_000))
    before = router_identity(PromptLengthRouter(), str(folder))
    weights.write_bytes(b"v2")  # rewritten in place: the folder's own mtime need not change
    os.utime(weights, ns=(2_000_000_000, 2_000_000_000))
    assert router_identity(PromptLengthRouter(), str(folder)) != before
    keyed = PromptLengthRouter()
    keyed.cache_key = "mf:0123abcd"  # a router's own key (mf: its checkpoint hash) wins
    assert router_identity(keyed, str(folder)) == "mf:0123abcd"


def test_an_output_that_cannot_be_created_is_refused_before_scoring(tmp_path, capsys):
    csv_path = _oracle_csv(tmp_path / "toy.csv")
    (tmp_path / "x.txt").write_text("x")
    argv = ["eval", "--benchmark", str(csv_path), "--routers", "test_prompt_length"]
    assert main([*argv, "--output", str(tmp_path / "x.txt" / "ev")]) == 2
    err = capsys.readouterr().err
    assert "error: --output" in err and "x.txt is a file, not a folder" in err
    assert "Traceback" not in err
    assert PromptLengthRouter.calls == 0


def test_eval_notes_a_checkpoint_that_scores_another_pair_than_the_csv(tmp_path, capsys):
    """A checkpoint trained on your battles scores its own pair: evaluated on a CSV of two
    other models, its figures were printed with no word that they are for another pair."""
    from routellm_lc.routers.mf import MatrixFactorizationRouter

    battles = [
        {"prompt": f"q{i}", "model_a": a, "model_b": b, "winner": "model_a"}
        for i in range(4)
        for a, b in (("gpt-4o", "claude-3-haiku"), ("gpt-4o", "gpt-4o-mini"))
    ]
    router = MatrixFactorizationRouter("gpt-4o", "claude-3-haiku", embedder="local", dim=2)
    router.fit(battles)
    router.save_pretrained(tmp_path / "mine")
    csv_path = tmp_path / "mine.csv"
    rows = [f"prompt {'x' * i},{i % 2 == 0},False" for i in range(12)]
    csv_path.write_text("prompt,gpt-4o,gpt-4o-mini\n" + "\n".join(rows) + "\n")
    argv = ["eval", "--benchmark", str(csv_path), "--routers", "mf", "--bootstrap", "0"]
    argv += ["--checkpoint", f"mf={tmp_path / 'mine'}", "--no-cache", "--output", str(tmp_path)]
    assert main([*argv, "--strong-model", "gpt-4o", "--weak-model", "gpt-4o-mini"]) == 0
    err = capsys.readouterr().err
    assert "note: mf scores gpt-4o vs claude-3-haiku (its checkpoint's pair), not mine's " in err
    result = json.loads((tmp_path / "mine.json").read_text())
    assert result["routers"]["mf"]["scored_pair"] == ["gpt-4o", "claude-3-haiku"]
    # the bundled tiers stand for any pair: no note
    argv = ["eval", "--benchmark", str(csv_path), "--routers", "mf", "--bootstrap", "0"]
    assert main([*argv, "--strong-model", "gpt-4o", "--weak-model", "gpt-4o-mini",
                 "--output", str(tmp_path / "b")]) == 0  # fmt: skip
    assert "note:" not in capsys.readouterr().err


def test_routellm_evaluate_command_as_written(data_dir, tmp_path, capsys):
    """RouteLLM's `evaluate --routers random mf --benchmark gsm8k --strong-model
    gpt-4-1106-preview --weak-model mistralai/Mixtral-8x7B-Instruct-v0.1 --config
    config.example.yaml --overwrite-cache`: its own pair is accepted, its config names mf's
    checkpoint (--checkpoint would win), --overwrite-cache re-scores."""
    from routellm_lc.routers.mf import MatrixFactorizationRouter

    battles = [
        {"prompt": p, "model_a": "big", "model_b": "small", "winner": w}
        for p, w in (("Prove the theorem in full.", "model_a"), ("hi", "model_b"))
    ]
    MatrixFactorizationRouter("big", "small", embedder="local", dim=2).fit(
        battles * 4
    ).save_pretrained(tmp_path / "my-mf")
    config = tmp_path / "config.example.yaml"
    config.write_text(
        f"bert:\n  checkpoint_path: routellm/x\nmf:\n  checkpoint_path: {tmp_path / 'my-mf'}\n"
    )
    argv = ["eval", "--routers", "random", "mf", "--benchmark", "gsm8k", "--strong-model",
            "gpt-4-1106-preview", "--weak-model", "mistralai/Mixtral-8x7B-Instruct-v0.1",
            "--config", str(config), "--limit", "40", "--bootstrap", "0",
            "--data-dir", str(data_dir), "--output", str(tmp_path / "out")]  # fmt: skip

    def mf_row(extra):
        assert main([*argv, *extra]) == 0, capsys.readouterr().err
        return json.loads((tmp_path / "out" / "gsm8k.json").read_text())["routers"]["mf"]

    first = mf_row([])
    assert first["checkpoint"] == str(tmp_path / "my-mf")
    assert first["scored_pair"] == ["big", "small"]
    assert mf_row([])["cached"] is True  # the second run reads the cache...
    assert mf_row(["--overwrite-cache"])["cached"] is False  # ...unless told to re-score


def test_routellm_num_results_random_iters_and_parallel(data_dir, tmp_path, capsys):
    """RouteLLM's `evaluate --num-results N --random-iters N --parallel N`: N + 1 points per
    curve, `random` averaged over N runs; --parallel is accepted with a note."""
    argv = ["eval", "--routers", "random", "mf", "--benchmark", "gsm8k", "--limit", "60",
            "--bootstrap", "20", "--data-dir", str(data_dir)]  # fmt: skip
    assert main([*argv, "--output", str(tmp_path / "default")]) == 0
    default = json.loads((tmp_path / "default" / "gsm8k.json").read_text())
    assert default["num_results"] == 10 and default["random_iters"] == 10
    assert len(default["routers"]["mf"]["curve"]) == 11
    assert default["routers"]["random"]["runs"] == 10
    capsys.readouterr()

    extra = ["--num-results", "20", "--random-iters", "3", "--parallel", "4"]
    assert main([*argv, *extra, "--output", str(tmp_path / "fine")]) == 0
    err = capsys.readouterr().err
    assert "note: --parallel 4 is RouteLLM's" in err
    assert "note: --num-results 20: curves of 21 points" in err
    fine = json.loads((tmp_path / "fine" / "gsm8k.json").read_text())
    assert fine["num_results"] == 20 and fine["random_iters"] == 3
    mf = fine["routers"]["mf"]
    assert len(mf["curve"]) == 21 and mf["cached"] is True  # the same scores, more points
    thresholds = sorted(p["threshold"] for p in mf["curve"])
    assert thresholds[::2] == sorted(p["threshold"] for p in default["routers"]["mf"]["curve"])
    assert fine["routers"]["random"]["runs"] == 3
    assert len(fine["routers"]["random"]["apgr_runs"]) == 3
    assert default["routers"]["random"]["apgr_runs"][:3] != fine["routers"]["random"]["apgr_runs"]
    assert len(fine["optimal"]["curve"]) == 11  # RouteLLM's optimal grid: 0, 10, ..., 100%

    for bad in (["--num-results", "0"], ["--random-iters", "-1"]):
        with pytest.raises(SystemExit):
            main([*argv, *bad, "--output", str(tmp_path / "bad")])


def test_card_eval_refuses_a_sample_or_another_num_results(tmp_path, capsys):
    """Figures from `eval --limit` (a sample) or `--num-results 20` (another definition) used
    to go on a model card as the benchmark's."""
    for name, extra, message in (
        ("limited", {"limit": 40}, "scored a sample of 40 prompts"),
        ("finer", {"num_results": 20}, "--num-results 20"),
    ):
        folder = tmp_path / name
        folder.mkdir()
        row = {"apgr": 0.6, "cpt50": 40.0, "cache_key": "mf:x", "curve": []}
        result = {"routers": {"mf": row}, "csv": None, "limit": None, **extra}
        (folder / "gsm8k.json").write_text(json.dumps(result))
        argv = ["train", "--card-eval", str(folder), "--output", str(tmp_path / "out")]
        assert main(argv) == 2
        assert message in capsys.readouterr().err
