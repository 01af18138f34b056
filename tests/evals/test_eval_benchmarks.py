"""Benchmark loaders on RouteLLM's real files, and the user-CSV format."""

from __future__ import annotations

import json

import numpy as np
import pytest

from routellm_lc.evals.benchmarks import (
    BenchmarkError,
    contaminated_prompts,
    load_benchmark,
    load_csv,
)


@pytest.mark.parametrize(
    ("name", "count", "strong", "weak"),
    [
        # RouteLLM's numbers after decontamination (data README / MANIFEST).
        ("mmlu", 14_037, 0.8059, 0.6809),
        ("gsm8k", 1_307, 0.8577, 0.6373),
        ("mt-bench", 72, 9.212, 8.281),
    ],
)
def test_builtin_benchmarks_match_routellm_after_decontamination(
    data_dir, name, count, strong, weak
):
    bench = load_benchmark(name, data_dir)
    assert len(bench) == count
    assert round(bench.strong_quality, 4 if name != "mt-bench" else 3) == strong
    assert round(bench.weak_quality, 4 if name != "mt-bench" else 3) == weak
    assert bench.strong_model == "gpt-4-1106-preview"
    assert bench.weak_model == "mistralai/Mixtral-8x7B-Instruct-v0.1"
    removed = contaminated_prompts(
        data_dir / "routellm_evals" / f"{name.replace('-', '_')}_contaminated_prompts.jsonl"
    )
    assert removed and not removed & set(bench.prompts)


def test_mt_bench_routes_on_the_first_turn_and_averages_both(data_dir):
    bench = load_benchmark("mt-bench", data_dir)
    folder = data_dir / "routellm_evals"
    questions = [json.loads(line) for line in open(folder / "mt_bench_question.jsonl")]
    first = next(q for q in questions if q["turns"][0] == bench.prompts[0])
    scores = [
        json.loads(line)
        for line in open(folder / "mt_bench_judgements.jsonl")
        if json.loads(line)["question_id"] == first["question_id"]
    ]
    strong = [s["score"] for s in scores if s["model"] == "gpt-4-1106-preview"]
    assert len(strong) == 2 and bench.strong[0] == pytest.approx(np.mean(strong))


def test_stratified_sample_is_seeded_and_keeps_the_gain_mix(data_dir):
    bench = load_benchmark("gsm8k", data_dir)
    sample = bench.stratified_sample(200, seed=3)
    again = bench.stratified_sample(200, seed=3)
    assert len(sample) == 200 and sample.prompts == again.prompts
    assert bench.stratified_sample(200, seed=4).prompts != sample.prompts
    full_wins = np.mean(bench.strong > bench.weak)
    assert np.mean(sample.strong > sample.weak) == pytest.approx(full_wins, abs=0.005)


def test_custom_csv_with_scores_and_named_columns(tmp_path):
    path = tmp_path / "mine.csv"
    path.write_text('prompt,big,small\n"hello, world",9,7\nsum 2+2,True,False\n')
    bench = load_csv(path, strong_model="big", weak_model="small")
    assert bench.name == "mine" and bench.prompts == ["hello, world", "sum 2+2"]
    assert bench.strong.tolist() == [9.0, 1.0] and bench.weak.tolist() == [7.0, 0.0]


def test_custom_csv_errors_name_the_problem(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("prompt,big\nhi,1\n")
    with pytest.raises(BenchmarkError, match="missing column.*'small'.*--strong-model"):
        load_csv(path, strong_model="big", weak_model="small")
    path.write_text("prompt,big,small\nhi,yes,0\n")
    with pytest.raises(BenchmarkError, match="True/False or a number, got 'yes'"):
        load_csv(path, strong_model="big", weak_model="small")
    with pytest.raises(BenchmarkError, match="Unknown benchmark 'hellaswag'"):
        load_benchmark("hellaswag")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        # an unquoted comma in the last column: the prompt used to be cut at the comma
        ("big,small,prompt\nTrue,False,Summarise this, then list the risks\n",
         r"row 1 \(line 2\) has 1 more field\(s\) than the header; quote a cell"),
        # two columns of one name: the last one used to win silently
        ("prompt,big,big,small\nhi,1,0,0\n", "names 'big' more than once"),
        ("prompt,big,small\nhi,1,0\n  ,1,0\n", r"row 2 \(line 3\): the prompt is empty"),
    ],
)  # fmt: skip
def test_custom_csv_rows_are_never_silently_cut_or_shadowed(tmp_path, text, match):
    path = tmp_path / "mine.csv"
    path.write_text(text)
    with pytest.raises(BenchmarkError, match=match):
        load_csv(path, strong_model="big", weak_model="small")
