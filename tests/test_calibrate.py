"""Threshold calibration: the share it targets is the share it sends strong."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence

import numpy as np
import pytest

from routellm_lc.calibrate import (
    CalibrationError,
    calibrate,
    calibrate_threshold,
    read_prompt_file,
    threshold_for_share,
)
from routellm_lc.cli import main
from routellm_lc.routers import Router, register_router


@register_router("test_calibration_hash")
class HashRouter(Router):
    """A deterministic score per prompt, uniform over [0, 1) and tie-free; counts its calls."""

    calls = 0

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        type(self).calls += 1
        digests = [hashlib.sha256(p.encode()).hexdigest()[:13] for p in prompts]
        return np.array([int(d, 16) / 16**13 for d in digests])


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTELLM_LC_CACHE", str(tmp_path / "cache"))
    HashRouter.calls = 0


PROMPTS = [f"prompt number {i}" for i in range(1_000)]


@pytest.mark.parametrize("pct", [0.05, 0.2, 0.333, 0.5, 0.9])
def test_calibrated_threshold_sends_the_target_share_strong(pct):
    router = HashRouter()
    threshold = calibrate_threshold(router, PROMPTS, pct, use_cache=False)
    sent = int(np.sum(router.strong_win_rate(PROMPTS) >= threshold))
    assert abs(sent - pct * len(PROMPTS)) <= 1


def test_threshold_is_routellms_quantile():
    scores = np.array([0.1, 0.4, 0.2, 0.3, 0.5])
    # (1 − 0.4) quantile, linear: position 0.6 · 4 = 2.4 in [.1, .2, .3, .4, .5] → 0.34.
    assert threshold_for_share(scores, 0.4) == pytest.approx(0.34)
    assert np.sum(scores >= 0.34) == 2  # 40% of 5


def test_calibrate_reports_and_reuses_cached_scores():
    result = calibrate("test_calibration_hash", 0.2, prompts=PROMPTS)
    assert result.n_prompts == 1_000 and result.measured_share == pytest.approx(0.2, abs=0.001)
    assert result.sample == "prompts" and HashRouter.calls == 4  # 256-prompt batches
    assert str(result).startswith("threshold for 20.0% strong calls with router test_calibr")
    again = calibrate("test_calibration_hash", 0.5, prompts=PROMPTS)
    assert HashRouter.calls == 4  # the sample's scores came from the cache
    assert again.measured_share == pytest.approx(0.5, abs=0.001)


@pytest.mark.parametrize("bad", [0, 1, 1.5, -0.2, "20", "abc", float("nan")])
def test_share_outside_zero_one_is_a_clear_error(bad):
    with pytest.raises(CalibrationError, match="between 0 and 1"):
        calibrate("test_calibration_hash", bad, prompts=PROMPTS)
    assert HashRouter.calls == 0


def test_prompt_files_txt_and_jsonl(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text("first prompt\n\nsecond prompt\n")
    assert read_prompt_file(txt) == ["first prompt", "second prompt"]
    jsonl = tmp_path / "p.jsonl"
    jsonl.write_text(json.dumps({"prompt": "a\nb"}) + "\n" + json.dumps({"text": "x"}) + "\n")
    with pytest.raises(CalibrationError, match="p.jsonl:2: expected an object"):
        read_prompt_file(jsonl)


def test_a_json_file_may_hold_one_array_of_prompts(tmp_path):
    """`json.dump(rows, f, indent=2)` of a list was refused as "not valid JSON" at line 1."""
    array = tmp_path / "p.json"
    array.write_text(json.dumps([{"prompt": "a\nb"}, "plain string", {"prompt": "c"}], indent=2))
    assert read_prompt_file(array) == ["a\nb", "plain string", "c"]
    array.write_text(json.dumps([{"prompt": "a"}, {"text": "x"}]))
    with pytest.raises(CalibrationError, match="item 1: expected a string or an object"):
        read_prompt_file(array)
    array.write_text('[{"prompt": "a"},\n  {"prompt": }]')
    with pytest.raises(CalibrationError, match=r"p.json:2: not valid JSON"):
        read_prompt_file(array)
    lines = tmp_path / "l.json"  # one object per line still reads as before
    lines.write_text(json.dumps({"prompt": "x"}) + "\n" + json.dumps({"prompt": "y"}) + "\n")
    assert read_prompt_file(lines) == ["x", "y"]
    jsonl = tmp_path / "a.jsonl"  # a .jsonl file is JSON Lines: an array there is one bad line
    jsonl.write_text(json.dumps([{"prompt": "x"}]) + "\n")
    with pytest.raises(CalibrationError, match="a.jsonl:1: expected an object"):
        read_prompt_file(jsonl)


def test_cli_prints_threshold_and_measured_share(tmp_path, capsys):
    path = tmp_path / "traffic.jsonl"
    path.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in PROMPTS))
    argv = ["calibrate", "--router", "test_calibration_hash", "--strong-pct", "0.2"]
    assert main([*argv, "--prompts", str(path)]) == 0
    out = capsys.readouterr().out
    expected = calibrate_threshold(HashRouter(), PROMPTS, 0.2)
    assert (
        f"threshold for 20.0% strong calls with router test_calibration_hash: {expected:.4f} "
        "(on 1,000 prompts; measured share 20.0%)"
    ) in out
    assert main([*argv[:-1], "2", "--prompts", str(path)]) == 2
    assert "strictly between 0 and 1" in capsys.readouterr().err


def test_routellm_calibrate_flags_are_understood(tmp_path, capsys):
    """RouteLLM's `calibrate_threshold --routers mf --strong-model-pct 0.5` spelling."""
    path = tmp_path / "traffic.txt"
    path.write_text("".join(p.replace("\n", " ") + "\n" for p in PROMPTS))
    argv = ["calibrate", "--routers", "test_calibration_hash", "--strong-model-pct", "0.5"]
    assert main([*argv, "--prompts", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["strong_pct"] == 0.5 and result["measured_share"] == pytest.approx(0.5)
    assert result["router"] == "test_calibration_hash"
    # RouteLLM calibrates several routers in one run: one line each, on the same sample
    argv = ["calibrate", "--routers", "test_calibration_hash", "random", "--strong-model-pct"]
    assert main([*argv, "0.25", "--prompts", str(path), "--json"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["router"] for r in lines] == ["test_calibration_hash", "random"]
    assert all(r["measured_share"] == pytest.approx(0.25, abs=0.002) for r in lines)
    assert main([*argv, "0.25", "--checkpoint", "x"]) == 2
    assert "calibrate that router alone" in capsys.readouterr().err


def test_routellm_calibrate_command_with_its_config_and_task(tmp_path, capsys):
    """RouteLLM's documented `calibrate_threshold --task calibrate --routers mf
    --strong-model-pct 0.5 --config config.example.yaml`: the config's checkpoint_path is the
    router's checkpoint; `--task generate` (RouteLLM's precomputation) is refused."""
    from routellm_lc.calibrate import calibrate_threshold
    from routellm_lc.routers.mf import MatrixFactorizationRouter

    battles = [
        {"prompt": p, "model_a": "big", "model_b": "small", "winner": w}
        for p, w in (("Prove the theorem in full.", "model_a"), ("hi", "model_b"))
    ]
    mine = MatrixFactorizationRouter("big", "small", embedder="local", dim=2).fit(battles * 4)
    mine.save_pretrained(tmp_path / "my-mf")
    (tmp_path / "config.example.yaml").write_text(
        f"sw_ranking:\n  arena_battle_datasets: [lmsys/x]\nmf:\n  checkpoint_path: {tmp_path / 'my-mf'}\n"
    )
    sample = [f"prompt {i} {'word ' * (i % 7)}" for i in range(40)]
    (tmp_path / "p.txt").write_text("\n".join(sample) + "\n")
    argv = ["calibrate", "--task", "calibrate", "--routers", "mf", "--strong-model-pct", "0.5"]
    argv += [
        "--config",
        str(tmp_path / "config.example.yaml"),
        "--prompts",
        str(tmp_path / "p.txt"),
    ]
    assert main([*argv, "--json", "--no-cache"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["threshold"] == pytest.approx(calibrate_threshold(mine, sample, 0.5))
    assert main([*argv[:2], "generate", *argv[3:]]) == 2
    assert "--task generate is RouteLLM's step" in capsys.readouterr().err
    (tmp_path / "server.yaml").write_text("port: 8000\n")
    assert main([*argv[:-4], "--config", str(tmp_path / "server.yaml")]) == 2
    assert "is not a RouteLLM router config" in capsys.readouterr().err


def test_default_sample_is_the_training_prompts(tmp_path, monkeypatch):
    sample = [f"training prompt {i}" for i in range(50)]
    seen = {}

    def fake_training_prompts(path=None):
        seen["data_dir"] = path
        return sample

    monkeypatch.setattr("routellm_lc.training.sources.training_prompts", fake_training_prompts)
    result = calibrate("test_calibration_hash", 0.3, data_dir=tmp_path)
    assert seen["data_dir"] == tmp_path
    assert result.sample == "training prompts" and result.n_prompts == 50


def test_prompt_files_split_at_newlines_only(tmp_path):
    """A form feed or U+2028 is a character of a prompt (JSON writes U+2028 raw), not a line
    break: `str.splitlines` made one prompt two, and a valid JSONL line invalid JSON."""
    txt = tmp_path / "p.txt"
    txt.write_text("page one\fpage two\r\nsecond\u2028line\nthird\u0085x\n", encoding="utf-8")
    assert read_prompt_file(txt) == ["page one\fpage two", "second\u2028line", "third\u0085x"]
    jsonl = tmp_path / "p.jsonl"
    rows = [{"prompt": "a\u2028b"}, {"prompt": "c\x1cd"}]
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    assert read_prompt_file(jsonl) == ["a\u2028b", "c\x1cd"]
    jsonl.write_text(json.dumps({"prompt": "ok"}) + "\n" + json.dumps({"prompt": " "}) + "\n")
    with pytest.raises(CalibrationError, match="p.jsonl:2: the prompt is blank"):
        read_prompt_file(jsonl)


def test_prompt_file_kind_follows_its_extension(tmp_path):
    txt = tmp_path / "p.txt"
    txt.write_text('{"role": "user"} is a JSON-looking prompt\nsecond\n')
    assert read_prompt_file(txt) == ['{"role": "user"} is a JSON-looking prompt', "second"]
    bom = tmp_path / "bom.txt"
    bom.write_bytes("\ufefffirst\n".encode())
    assert read_prompt_file(bom) == ["first"]
    latin = tmp_path / "latin.txt"
    latin.write_bytes("caf\u00e9\n".encode("latin-1"))
    with pytest.raises(CalibrationError, match="not UTF-8"):
        read_prompt_file(latin)


def test_random_is_seeded_and_takes_no_checkpoint(capsys):
    first = calibrate("random", 0.2, prompts=PROMPTS)
    assert calibrate("random", 0.2, prompts=PROMPTS).threshold == first.threshold
    argv = ["calibrate", "--router", "random", "--strong-pct", "0.2", "--checkpoint", "x"]
    assert main(argv) == 2
    assert "random router has no checkpoint" in capsys.readouterr().err


def test_share_hints_and_small_sample_note(tmp_path, capsys):
    with pytest.raises(CalibrationError) as error:
        calibrate("test_calibration_hash", "150%", prompts=PROMPTS)
    assert "0.2 means 20%" not in str(error.value) and "between 0% and 100%" in str(error.value)
    path = tmp_path / "one.txt"
    path.write_text("just one prompt\n")
    argv = ["calibrate", "--router", "test_calibration_hash", "--strong-pct", "0.2"]
    assert main([*argv, "--prompts", str(path)]) == 0
    assert "note: only 1 prompt(s) in the sample" in capsys.readouterr().err


def test_router_objects_without_a_cache_key_are_never_cached():
    class Scaled(HashRouter):
        def __init__(self, power: float) -> None:
            self.power = power

        def strong_win_rate(self, prompts):
            return super().strong_win_rate(prompts) ** self.power

    low = calibrate_threshold(Scaled(1.0), PROMPTS, 0.2)
    high = calibrate_threshold(Scaled(3.0), PROMPTS, 0.2)
    assert high == pytest.approx(low**3)


def test_missing_default_sample_points_to_prompts(tmp_path):
    (tmp_path / "arena_bench_v1").mkdir()
    with pytest.raises(CalibrationError, match="no mmlu_pro_nonmmlu/ folder.*--prompts FILE"):
        calibrate("test_calibration_hash", 0.2, data_dir=tmp_path)


def test_a_target_share_that_ties_make_unreachable_gets_a_note(tmp_path, capsys):
    """100 copies of one prompt: every score ties, so a threshold sends all of them strong or
    none; the result says so (CLI and `Calibration.note`) and counts distinct prompts."""
    path = tmp_path / "dup100.txt"
    path.write_text("what is the capital of France?\n" * 100)
    argv = ["calibrate", "--router", "test_calibration_hash", "--strong-pct", "0.2"]
    assert main([*argv, "--prompts", str(path)]) == 0
    captured = capsys.readouterr()
    assert "measured share 100.0%" in captured.out
    assert "note: the target share 20.0% cannot be reached on this sample" in captured.err
    assert "100 of the 100 prompts score exactly the threshold" in captured.err
    assert "only 1 distinct prompt(s) in the sample (100 with repeats)" in captured.err.lower()

    result = calibrate("test_calibration_hash", 0.2, prompts=read_prompt_file(path))
    assert (result.n_prompts, result.n_distinct, result.measured_share) == (100, 1, 1.0)
    assert result.share_above == 0.0 and not result.reachable
    assert "cannot be reached" in result.note and "distinct" in result.note

    # Half the sample one repeated prompt, half distinct: 20% is reachable, 70% is not (the
    # 50 tied prompts sit across it); 120 distinct prompts are no small sample.
    prompts = ["same"] * 50 + PROMPTS[:120]
    scores = HashRouter().strong_win_rate(prompts)
    tied = float(scores[0])
    for pct in (0.2, 0.7):
        result = calibrate("test_calibration_hash", pct, prompts=prompts)
        reachable = abs(result.measured_share - pct) <= 1 / len(prompts) + 1e-9
        assert result.reachable == reachable
        assert (result.note is None) == reachable, result.note
    assert np.mean(scores > tied) < 0.7 < np.mean(scores >= tied)  # the case the note is for
    assert calibrate("test_calibration_hash", 0.2, prompts=PROMPTS).note is None


def test_a_folder_given_as_the_prompt_file_is_named_as_a_folder(tmp_path):
    from routellm_lc.calibrate import CalibrationError, read_prompt_file

    with pytest.raises(CalibrationError, match="is a folder"):
        read_prompt_file(tmp_path)
