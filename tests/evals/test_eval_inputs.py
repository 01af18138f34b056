"""`routellm-lc eval` refuses bad input clearly: CSV cells and encodings, batch sizes, names
that would collide, an --output that is a file; and never caches an incomplete scoring."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest

from routellm_lc.cli import main
from routellm_lc.errors import RouteLLMError
from routellm_lc.evals.benchmarks import BenchmarkError, load_benchmark, load_csv
from routellm_lc.evals.harness import (
    LoadedRouter,
    ScoreCache,
    cached_scores,
    format_table,
    run_eval,
    score_prompts,
)
from routellm_lc.routers import Router, register_router
from routellm_lc.routers.base import RouterOutputError

HEADER = "prompt,gpt-4-1106-preview,mistralai/Mixtral-8x7B-Instruct-v0.1\n"


@register_router("test_eval_inputs_length")
class LengthRouter(Router):
    calls = 0

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        type(self).calls += 1
        return np.array([min(len(p), 100) / 100 for p in prompts])


class NaNRouter(Router):
    """Scores nothing: NaN for every prompt."""

    name = "nan_router"

    def strong_win_rate(self, prompts: Sequence[str]) -> np.ndarray:
        return np.full(len(prompts), np.nan)


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTELLM_LC_CACHE", str(tmp_path / "cache"))
    LengthRouter.calls = 0


def _csv(path, rows: Sequence[str], header: str = HEADER, encoding: str = "utf-8"):
    path.write_bytes((header + "".join(r + "\n" for r in rows)).encode(encoding))
    return path


def _toy_rows(n: int = 20) -> list[str]:
    return [f"{'x' * k},{k > n // 2},False" for k in range(1, n + 1)]


@pytest.mark.parametrize("cell", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_cells_are_refused_naming_row_and_column(tmp_path, cell):
    path = _csv(tmp_path / "b.csv", ["a,True,False", f"b,{cell},False"])
    with pytest.raises(BenchmarkError, match=r"row 2 \(line 3\), column 'gpt-4-1106-preview'"):
        load_csv(path)


def test_empty_cell_and_short_row_name_row_and_column(tmp_path):
    path = _csv(tmp_path / "e.csv", ["a,True,False", "b,,False"])
    with pytest.raises(BenchmarkError, match=r"row 2 \(line 3\), column 'gpt-4.*empty cell"):
        load_csv(path)
    path = _csv(tmp_path / "s.csv", ["a,True,False", "b,True"])
    with pytest.raises(BenchmarkError, match="row 2 .* has no 'mistralai/Mixtral"):
        load_csv(path)


def test_bom_long_prompts_and_encodings(tmp_path):
    bom = _csv(tmp_path / "bom.csv", ["a,True,False", "b,False,False"], encoding="utf-8-sig")
    assert load_csv(bom).prompts == ["a", "b"]
    long_prompt = "y" * 200_000  # beyond csv's default field limit of 131,072
    long = _csv(tmp_path / "long.csv", [f"{long_prompt},True,False", "b,False,True"])
    assert load_csv(long).prompts[0] == long_prompt
    latin = _csv(tmp_path / "latin.csv", ["caf\u00e9,True,False"], encoding="latin-1")
    with pytest.raises(BenchmarkError, match="not UTF-8"):
        load_csv(latin)


def test_header_only_csv_says_it_has_no_rows(tmp_path):
    with pytest.raises(BenchmarkError, match="no data rows"):
        load_csv(_csv(tmp_path / "h.csv", []))


def test_incomplete_evals_folder_names_the_missing_file(tmp_path):
    (tmp_path / "routellm_evals").mkdir()
    (tmp_path / "routellm_evals" / "gsm8k_responses.csv").write_text(HEADER)
    with pytest.raises(BenchmarkError, match="gsm8k_contaminated_prompts.jsonl is missing.*fetch"):
        load_benchmark("gsm8k", tmp_path)
    with pytest.raises(BenchmarkError, match="mt_bench_question.jsonl is missing"):
        load_benchmark("mt-bench", tmp_path)


@pytest.mark.parametrize("size", [0, -5])
def test_bad_batch_size_is_an_error_in_cli_and_api(tmp_path, capsys, size):
    path = _csv(tmp_path / "toy.csv", _toy_rows())
    argv = ["eval", "--benchmark", str(path), "--routers", "test_eval_inputs_length"]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--batch-size", str(size), "--output", str(tmp_path / "out")])
    assert exit_.value.code == 2 and "--batch-size: must be at least 1" in capsys.readouterr().err
    with pytest.raises(RouteLLMError, match="batch_size must be at least 1"):
        run_eval([str(path)], ["test_eval_inputs_length"], tmp_path / "o", batch_size=size)
    with pytest.raises(RouteLLMError, match="batch_size must be at least 1"):
        score_prompts(LengthRouter(), ["a", "b"], batch_size=size, progress=False)
    assert not list((tmp_path / "cache").rglob("*.npz"))  # nothing cached


def test_scores_that_are_not_win_rates_are_an_error_and_never_cached(tmp_path):
    cache = ScoreCache(tmp_path / "scores")
    loaded = LoadedRouter("nan_router", NaNRouter(), None, "nan:1")
    with pytest.raises(RouterOutputError, match="'nan_router'.*not win rates in \\[0, 1\\]"):
        cached_scores(loaded, "b", ["a", "b"], cache, progress=False)
    assert not list((tmp_path / "scores").glob("*.npz"))


def test_two_csvs_with_one_name_are_refused(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = _csv(tmp_path / "a" / "bench.csv", _toy_rows())
    second = _csv(tmp_path / "b" / "bench.csv", _toy_rows(30))
    argv = ["eval", "--benchmark", str(first), str(second), "--routers", "random"]
    assert main([*argv, "--bootstrap", "0", "--output", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "both named 'bench'" in err and not (tmp_path / "out").exists()


def test_output_that_is_a_file_is_a_clear_error(tmp_path, capsys):
    path = _csv(tmp_path / "toy.csv", _toy_rows())
    (tmp_path / "taken").write_text("x")
    argv = ["eval", "--benchmark", str(path), "--routers", "random", "--output"]
    assert main([*argv, str(tmp_path / "taken")]) == 2
    assert "is a file" in capsys.readouterr().err


def test_undefined_apgr_prints_null_like_the_json(tmp_path, capsys):
    path = _csv(tmp_path / "flat.csv", [f"{'x' * k},True,True" for k in range(1, 21)])
    argv = ["eval", "--benchmark", str(path), "--routers", "test_eval_inputs_length"]
    assert main([*argv, "--output", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "nan" not in out and "test_eval_inputs_length  null" in out
    assert (
        json.loads((tmp_path / "out" / "flat.json").read_text())["routers"][
            "test_eval_inputs_length"
        ]["apgr"]
        is None
    )
    assert "null" in format_table(
        {
            "flat": {
                "routers": {"r": {"apgr": float("nan"), "cpt50": float("nan")}},
                "optimal": {"apgr": 1.0, "cpt50": 10.0},
            }
        }
    )


def test_model_column_flags_are_refused_for_built_in_benchmarks_alone(tmp_path, capsys):
    """`--strong-model` / `--weak-model` name CSV columns; with only built-in benchmarks they
    would be silently ignored (gsm8k always scores RouteLLM's pair), so they are refused before
    anything is loaded. With a CSV among the benchmarks they apply to it."""
    out = tmp_path / "out"
    for flags in (["--strong-model", "gpt-4o"], ["--weak-model", "x", "--strong-model", "y"]):
        argv = ["eval", "--benchmark", "gsm8k", "--routers", "random", *flags]
        assert main([*argv, "--data-dir", str(tmp_path / "none"), "--output", str(out)]) == 2
        err = capsys.readouterr().err
        assert "name the columns of a CSV benchmark" in err or "names the columns" in err
        assert "gsm8k always scores RouteLLM's pair" in err and "Traceback" not in err
        assert not out.exists()
    with pytest.raises(BenchmarkError, match="mt-bench, mmlu always score RouteLLM's pair"):
        run_eval(["mt-bench", "mmlu"], ["random"], out, weak_model="x")
    path = _csv(tmp_path / "mine.csv", _toy_rows(), header="prompt,big,small\n")
    argv = ["eval", "--benchmark", str(path), "--routers", "random", "--bootstrap", "0"]
    assert (
        main([*argv, "--strong-model", "big", "--weak-model", "small", "--output", str(out)]) == 0
    )
