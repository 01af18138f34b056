"""Loaders on the real files in the data directory: counts, shapes, names, groups, battles."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from routellm_lc.data import DataDirError, data_dir
from routellm_lc.training.names import STRONG_MODEL, WEAK_MODEL, canonical, tier
from routellm_lc.training.sources import (
    Battle,
    BattleFormatError,
    battles_from_questions,
    iter_outcomes,
    load_alpaca_battles,
    load_questions,
    load_user_battles,
    tier_gap,
)


@pytest.fixture(scope="module")
def questions(data_dir):
    return load_questions(data_dir=data_dir)


def test_data_dir_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("ROUTELLM_LC_DATA", str(tmp_path))
    assert data_dir() == tmp_path
    explicit = tmp_path / "explicit"
    explicit.mkdir()
    assert data_dir(explicit) == explicit


def test_missing_data_dir_says_where_it_looked_and_how_to_fix(tmp_path, monkeypatch):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("ROUTELLM_LC_DATA", str(missing))
    with pytest.raises(DataDirError) as info:
        data_dir()
    assert str(missing) in str(info.value)
    assert "ROUTELLM_LC_DATA" in str(info.value) and "--data-dir" in str(info.value)


def test_question_counts_per_source(questions):
    counts = Counter(q.source for q in questions)
    # theoremqa: 800 minus the 53 that need a picture; zeroeval: 721 minus 17 MMLU items.
    assert counts == {
        "mmlu_pro_nonmmlu": 5222,
        "faithful_cot": 4880,
        "theoremqa": 747,
        "zeroeval_math_l5": 704,
        "arena_bench_v1": 300,
    }
    assert all(q.prompt.strip() and q.outcomes for q in questions)
    assert all(0.0 <= v <= 1.0 for q in questions for v in q.outcomes.values())


def test_theoremqa_questions_share_a_group_with_their_mmlu_pro_copies(questions):
    sources_per_group: dict[str, set[str]] = {}
    for q in questions:
        sources_per_group.setdefault(q.group, set()).add(q.source)
    shared = [g for g, s in sources_per_group.items() if s == {"theoremqa", "mmlu_pro_nonmmlu"}]
    # 598 TheoremQA items reappear in MMLU-Pro; 7 of those need a picture and are dropped.
    assert len(shared) == 591


def test_arena_scores_are_judge_scores_over_ten_without_the_duplicate_file(questions):
    arena = [q for q in questions if q.source == "arena_bench_v1"]
    models = set().union(*(q.outcomes for q in arena))
    assert len(models) == 16
    assert {STRONG_MODEL, WEAK_MODEL, "gpt-3.5-turbo"} <= models
    mean = {m: sum(q.outcomes[m] for q in arena if m in q.outcomes) for m in models}
    counts = Counter(m for q in arena for m in q.outcomes)
    # MANIFEST: gpt-4-1106-preview mean 8.87, Mixtral 6.54 (on the 1-10 scale).
    assert mean[STRONG_MODEL] / counts[STRONG_MODEL] == pytest.approx(0.887, abs=0.005)
    assert mean[WEAK_MODEL] / counts[WEAK_MODEL] == pytest.approx(0.654, abs=0.005)
    # 41 judge parse failures, one of them in the dropped duplicate file.
    assert sum(counts.values()) == 16 * 300 - 40


def test_faithful_cot_drops_runs_the_summary_flags_as_unparseable(data_dir):
    (gpt4_strategyqa,) = [
        q for q in load_questions(["faithful_cot"], data_dir) if q.qid == "StrategyQA/0"
    ]
    # gpt-4 on StrategyQA: COT (54.5% invalid) and LtM (31.7%) dropped, noNL and standard kept.
    assert set(gpt4_strategyqa.outcomes) >= {"gpt-4", "gpt-3.5-turbo"}


def test_outcomes_long_format_and_tier_gaps(questions):
    outcomes = list(iter_outcomes(questions[:50]))
    assert len(outcomes) == sum(len(q.outcomes) for q in questions[:50])
    assert {o.question_id for o in outcomes} == {q.qid for q in questions[:50]}
    gaps = [tier_gap(q) for q in questions]
    assert sum(g is not None for g in gaps) > 11_000
    known = [g for g in gaps if g is not None]
    assert min(known) >= -1.0 and max(known) <= 1.0
    assert sum(known) / len(known) > 0.1  # the strong tier is better on average


def test_battles_from_questions_cover_all_pairs_with_ties(questions):
    arena = [q for q in questions if q.source == "arena_bench_v1"][:5]
    battles = battles_from_questions(arena)
    n = sum(len(q.outcomes) * (len(q.outcomes) - 1) // 2 for q in arena)
    assert len(battles) == n
    first = arena[0]
    for b in battles[:20]:
        if b.prompt != first.prompt:
            continue
        a, c = first.outcomes[b.model_a], first.outcomes[b.model_b]
        assert b.winner == ("tie" if a == c else "model_a" if a > c else "model_b")


def test_alpaca_battles_encoding(data_dir):
    battles = load_alpaca_battles(data_dir)
    winners = Counter(b.winner for b in battles)
    # annotations_alpaca_eval_gpt4_turbo_fn: 5,204 reference wins, 2,031 generator wins,
    # 8 draws, 2 judge failures (dropped).
    assert winners == {"model_a": 5204, "model_b": 2031, "tie": 8}
    assert {b.model_a for b in battles} <= {"gpt-4-1106-preview", "text-davinci-003"}
    weighted = load_alpaca_battles(data_dir, "annotations_weighted_alpaca_eval_gpt4_turbo.jsonl")
    soft = [b for b in weighted if b.weight != 1.0]
    assert soft and all(0.0 <= b.weight <= 1.0 for b in soft)
    assert "example" not in {b.model_b for b in weighted}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("gpt4_1106_preview", "gpt-4-1106-preview"),
        ("gpt-4-1106-preview", "gpt-4-1106-preview"),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b-instruct-v0.1"),
        ("Mixtral-8x7B-Instruct-v0.1", "mixtral-8x7b-instruct-v0.1"),
        ("Mixtral-8x7B-Instruct-v0.1_5shots", "mixtral-8x7b-instruct-v0.1"),
        ("gpt-4(2023-06)", "gpt-4"),
        ("gpt-3.5-turbo(Azure 'ChatGPT',2023-05)", "gpt-3.5-turbo"),
        ("Meta-Llama-3_1-70B-Instruct_5shots", "meta-llama-3.1-70b-instruct"),
        ("Meta-Llama-3.1-70B-Instruct@hyperbolic", "meta-llama-3.1-70b-instruct"),
        ("Mistral-7B-v0.2-hf_5shots", "mistral-7b-v0.2"),
        ("gpt-4o_api-2024-07_run_gpt4o", "gpt-4o"),
        ("text_davinci_003", "text-davinci-003"),
        ("claude-v1", "claude-1"),
    ],
)
def test_model_names_normalise_to_one_spelling(raw, expected):
    assert canonical(raw) == expected


@pytest.mark.parametrize(
    ("model", "expected"),
    [
        ("gpt4_1106_preview", "strong"),
        ("gpt-4o-2024-05-13", "strong"),
        ("gpt-4o-mini-2024-07-18", None),
        ("gemini-1.5-pro-002_5shots", "strong"),
        ("Meta-Llama-3_1-70B-Instruct_5shots", "strong"),
        ("claude-3-opus-20240229", "strong"),
        ("claude-3-5-sonnet-20241022", "strong"),
        ("mistralai/Mixtral-8x7B-Instruct-v0.1", "weak"),
        ("gpt-3.5-turbo-0125", "weak"),
        ("Llama-2-70b-hf_5shots", "weak"),
        ("Qwen2-7B-Instruct", "weak"),
        ("Meta-Llama-3-70B-Instruct", None),
        ("o1-preview-2024-09-12", None),
    ],
)
def test_tiers_follow_the_data_readme(model, expected):
    assert tier(model) == expected


def test_user_logs_load_and_bad_lines_are_reported_with_line_numbers(tmp_path):
    good = tmp_path / "good.jsonl"
    rows = [
        {"prompt": "2+2?", "model_a": "big", "model_b": "small", "winner": "tie"},
        {
            "prompt": "prove it",
            "model_a": "big",
            "model_b": "small",
            "winner": "model_a",
            "weight": 2,
        },
    ]
    good.write_text("\n".join(json.dumps(r) for r in rows) + "\n\n")
    battles = load_user_battles(good)
    assert [(b.winner, b.weight, b.source) for b in battles] == [
        ("tie", 1.0, "user"),
        ("model_a", 2, "user"),
    ]

    bad = tmp_path / "bad.jsonl"
    bad.write_text(
        json.dumps(rows[0])
        + "\n{not json\n"
        + json.dumps({"prompt": "x", "model_a": "a", "model_b": "b", "winner": "a"})
        + "\n"
        + json.dumps({"prompt": "x", "model_a": "a", "winner": "tie"})
        + "\n"
    )
    with pytest.raises(BattleFormatError) as info:
        load_user_battles(bad)
    message = str(info.value)
    assert "3 malformed line(s)" in message
    assert f"{bad}:2: not valid JSON" in message
    assert f"{bad}:3: winner must be model_a, model_b, tie or tie (bothbad), got 'a'" in message
    assert f"{bad}:4: missing field(s) model_b" in message

    # JSON's Infinity is read by json.loads: refused at its line, not deep inside training
    bad.write_text(
        '{"prompt": "x", "model_a": "a", "model_b": "b", "winner": "tie", "weight": Infinity}\n'
    )
    with pytest.raises(BattleFormatError, match=r"bad.jsonl:1: weight must be a positive finite"):
        load_user_battles(bad)


def test_arena_bothbad_ties_are_read_as_ties_by_the_log_reader_and_every_router(tmp_path):
    """Chatbot Arena's `"winner": "tie (bothbad)"` is a tie for the log reader, as for the
    routers' `fit` (mf, sw_ranking, bert): one spelling accepted everywhere, read as "tie"."""
    from routellm_lc.routers.bert import BertRouter
    from routellm_lc.routers.mf import _WINNERS
    from routellm_lc.routers.sw_ranking import _OUTCOMES

    log = tmp_path / "arena.jsonl"
    rows = [
        {"prompt": "hi", "model_a": "gpt-4o", "model_b": "gpt-4o-mini", "winner": "tie (bothbad)"},
        {"prompt": "yo", "model_a": "gpt-4o", "model_b": "gpt-4o-mini", "winner": "model_b"},
    ]
    log.write_text("".join(json.dumps(r) + "\n" for r in rows))
    battles = load_user_battles(log)
    assert [b.winner for b in battles] == ["tie", "model_b"]
    from routellm_lc.training.sources import WINNERS

    assert set(WINNERS) == set(_WINNERS) == set(_OUTCOMES)
    assert _WINNERS["tie (bothbad)"] == _WINNERS["tie"] == _OUTCOMES["tie (bothbad)"]
    bert = BertRouter("gpt-4o", "gpt-4o-mini")
    _, labels, _ = bert.battle_labels([*battles, Battle("x", "gpt-4o", "gpt-4o-mini", "tie")])
    assert labels[0] == labels[2]
    with pytest.raises(ValueError, match="use model_a, model_b, tie or tie"):
        bert.battle_labels([Battle("x", "gpt-4o", "gpt-4o-mini", "tie (other)")])
