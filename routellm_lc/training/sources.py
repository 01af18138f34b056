"""Training sources in the data directory → questions with per-model outcomes, and battles.

Every source becomes a list of `Question`s: a prompt plus each model's outcome in [0, 1]
(correctness, averaged over a model's prompting runs; or a 1-10 judge score / 10). Battles
(prompt, model_a, model_b, winner) are derived from them — all model pairs per question, equal
outcomes as ties — or read directly (AlpacaEval's judge preferences, a user's JSONL logs).

Never reads `routellm_evals/`: that folder is evaluation-only.
"""

from __future__ import annotations

import csv
import itertools
import json
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from routellm_lc.data import data_dir as resolve_data_dir
from routellm_lc.data import require_data
from routellm_lc.errors import RouteLLMError
from routellm_lc.training.names import canonical, tier

Winner = Literal["model_a", "model_b", "tie"]

csv.field_size_limit(1 << 30)


@dataclass(frozen=True)
class Battle:
    prompt: str
    model_a: str
    model_b: str
    winner: Winner
    source: str = "user"
    weight: float = 1.0


@dataclass
class Question:
    source: str
    qid: str
    prompt: str
    outcomes: dict[str, float] = field(default_factory=dict)
    group: str = ""
    """Questions sharing a group (e.g. a TheoremQA item reused in MMLU-Pro) split together."""
    subset: str = ""


@dataclass(frozen=True)
class Outcome:
    """One model's outcome on one question: `score` in [0, 1] (correctness averaged over the
    model's prompting runs, or a 1-10 judge score / 10)."""

    prompt: str
    model: str
    score: float
    source: str
    question_id: str
    group: str = ""


def iter_outcomes(questions: Iterable[Question]) -> Iterator[Outcome]:
    """The long format: one `Outcome` per (question, model)."""
    for q in questions:
        for model, score in q.outcomes.items():
            yield Outcome(q.prompt, model, score, q.source, q.qid, q.group)


def tier_gap(question: Question) -> float | None:
    """Mean strong-tier outcome minus mean weak-tier outcome on a question (see
    `names.tier`); None when either tier has no model on it."""
    strong = [v for m, v in question.outcomes.items() if tier(m) == "strong"]
    weak = [v for m, v in question.outcomes.items() if tier(m) == "weak"]
    if not strong or not weak:
        return None
    return sum(strong) / len(strong) - sum(weak) / len(weak)


@dataclass(frozen=True)
class SourceInfo:
    name: str
    licence: str
    kind: Literal["correctness", "judge-score", "preference"]


SOURCES: dict[str, SourceInfo] = {
    "arena_bench_v1": SourceInfo("arena_bench_v1", "Apache-2.0", "judge-score"),
    "mmlu_pro_nonmmlu": SourceInfo(
        "mmlu_pro_nonmmlu", "Apache-2.0 (repo); MIT (dataset)", "correctness"
    ),
    "zeroeval_math_l5": SourceInfo("zeroeval_math_l5", "Apache-2.0", "correctness"),
    "theoremqa": SourceInfo("theoremqa", "MIT", "correctness"),
    "faithful_cot": SourceInfo("faithful_cot", "MIT", "correctness"),
    "alpaca_eval": SourceInfo("alpaca_eval", "CC BY-NC 4.0 (non-commercial)", "preference"),
}
OUTCOME_SOURCES = tuple(name for name, info in SOURCES.items() if info.kind != "preference")

#: faithful_cot runs whose predictions are mostly unparseable are not evidence of skill.
MAX_INVALID_PCT = 30.0


def _jsonl(path: Path) -> Iterator[dict]:
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                yield json.loads(line)


def _rows(path: Path) -> Iterator[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(handle)


def _delimited(path: Path) -> Iterator[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as handle:
        yield from csv.DictReader(handle, delimiter="\t")


def _average(outcomes: dict[tuple[str, str], list[float]]) -> dict[str, dict[str, float]]:
    """(qid, model) → runs  ⇒  qid → {model: mean outcome}."""
    table: dict[str, dict[str, float]] = defaultdict(dict)
    for (qid, model), values in outcomes.items():
        table[qid][model] = sum(values) / len(values)
    return table


# MANIFEST: gpt-4_single.jsonl repeats gpt-3.5-turbo's judgments (same model, same scores).
_ARENA_DUPLICATE_FILES = {"gpt-4_single.jsonl"}


def load_arena_bench(root: Path) -> list[Question]:
    folder = root / "arena_bench_v1"
    prompts = {q["question_id"]: q["turns"][0] for q in _jsonl(folder / "question.jsonl")}
    scores: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in _rows(folder / "scores_gpt4_single_ref.csv"):
        if row["score"] in ("", "-1") or row["question_id"] not in prompts:
            continue  # judge parse failures
        if row["source_file"] in _ARENA_DUPLICATE_FILES:
            continue
        scores[(row["question_id"], canonical(row["model"]))].append(float(row["score"]) / 10.0)
    table = _average(scores)
    return [
        Question("arena_bench_v1", qid, prompts[qid], table[qid], f"arena_bench_v1:{qid}")
        for qid in table
    ]


def load_mmlu_pro(root: Path) -> list[Question]:
    folder = root / "mmlu_pro_nonmmlu"
    questions = {}
    for q in _jsonl(folder / "questions.jsonl"):
        options = q.get("options") or []
        letters = "ABCDEFGHIJ"
        body = q["question"] + "".join(f"\n{letters[i]}. {o}" for i, o in enumerate(options))
        questions[str(q["question_id"])] = (body, q.get("src", ""))
    outcomes: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in _rows(folder / "outcomes.csv"):
        if row["question_id"] in questions:
            outcomes[(row["question_id"], canonical(row["model"]))].append(float(row["correct"]))
    table = _average(outcomes)
    return [
        Question(
            "mmlu_pro_nonmmlu",
            qid,
            questions[qid][0],
            table[qid],
            _group(questions[qid][0]),
            questions[qid][1],
        )
        for qid in table
    ]


def load_math_l5(root: Path) -> list[Question]:
    folder = root / "zeroeval_math_l5"
    excluded_file = folder / "EXCLUDED_ids_in_MMLU_test.txt"
    excluded = (
        set(excluded_file.read_text(encoding="utf-8").split()) if excluded_file.exists() else set()
    )
    prompts = {str(q["id"]): q["problem"] for q in _jsonl(folder / "questions.jsonl")}
    outcomes: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in _rows(folder / "outcomes.csv"):
        if row["id"] in prompts and row["id"] not in excluded:
            outcomes[(row["id"], canonical(row["model"]))].append(
                float(row["correct_zeroeval_firstnumber"])
            )
    table = _average(outcomes)
    return [
        Question("zeroeval_math_l5", qid, prompts[qid], table[qid], f"zeroeval_math_l5:{qid}")
        for qid in table
    ]


def load_theoremqa(root: Path) -> list[Question]:
    folder = root / "theoremqa"
    prompts, fields = {}, {}
    for q in _jsonl(folder / "questions.jsonl"):
        if not q.get("needs_picture"):
            prompts[q["id"]] = q["question"]
            fields[q["id"]] = q.get("field", "")
    outcomes: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in _rows(folder / "outcomes.csv"):
        if row["id"] in prompts:
            outcomes[(row["id"], canonical(row["model"]))].append(float(row["correct"]))
    table = _average(outcomes)
    return [
        Question("theoremqa", qid, prompts[qid], table[qid], _group(prompts[qid]), fields[qid])
        for qid in table
    ]


def load_faithful_cot(root: Path) -> list[Question]:
    folder = root / "faithful_cot"
    broken = {
        (r["dataset"], r["model"], r["prompt"])
        for r in _delimited(folder / "model_summary.tsv")
        if float(r.get("invalid_pred_pct") or 0.0) > MAX_INVALID_PCT
    }
    prompts = {}
    for q in _jsonl(folder / "questions.jsonl"):
        text = q["question"]
        prompts[(q["dataset"], str(q["id"]))] = text
    outcomes: dict[tuple[str, str], list[float]] = defaultdict(list)
    for row in _rows(folder / "outcomes.csv"):
        key = (row["dataset"], row["id"])
        if key not in prompts or (row["dataset"], row["model"], row["prompt"]) in broken:
            continue
        if row.get("pred_missing") == "1":
            continue
        outcomes[(f"{key[0]}/{key[1]}", canonical(row["model"]))].append(float(row["correct"]))
    table = _average(outcomes)
    return [
        Question(
            "faithful_cot",
            qid,
            prompts[tuple(qid.split("/", 1))],
            table[qid],
            f"faithful_cot:{qid}",
            qid.split("/")[0],
        )
        for qid in table
    ]


def _group(prompt: str) -> str:
    """A key shared by the same question in different sources (TheoremQA ⊂ MMLU-Pro)."""
    first_line = prompt.strip().split("\n", 1)[0]
    return "q:" + " ".join(first_line.lower().split())[:200]


_LOADERS = {
    "arena_bench_v1": load_arena_bench,
    "mmlu_pro_nonmmlu": load_mmlu_pro,
    "zeroeval_math_l5": load_math_l5,
    "theoremqa": load_theoremqa,
    "faithful_cot": load_faithful_cot,
}


def load_questions(
    sources: Sequence[str] = OUTCOME_SOURCES, data_dir: str | os.PathLike[str] | None = None
) -> list[Question]:
    """Questions with per-model outcomes from the named sources."""
    root = resolve_data_dir(data_dir)
    unknown = [s for s in sources if s not in _LOADERS]
    if unknown:
        raise RouteLLMError(f"Unknown outcome source(s) {unknown}; known: {sorted(_LOADERS)}.")
    for source in sources:  # every folder checked before any is read
        _require_source(root, source)
    questions: list[Question] = []
    for source in sources:
        try:
            questions += _LOADERS[source](root)
        except FileNotFoundError as exc:  # a folder without one of its files
            missing = Path(exc.filename or "?")
            relative = missing.relative_to(root) if missing.is_relative_to(root) else missing
            require_data(root, str(relative), f"needed by training source {source}")
            raise
    return questions


def _require_source(root: Path, source: str) -> None:
    """The folder of a training source, or a `MissingDataError` saying how to get it."""
    if not (root / source).is_dir():
        require_data(root, source, f"training source {source}")


def battles_from_questions(
    questions: Iterable[Question], models: Iterable[str] | None = None
) -> list[Battle]:
    """All model pairs per question (restricted to `models` if given); equal outcomes tie."""
    keep = set(models) if models is not None else None
    battles = []
    for question in questions:
        ranked = sorted(m for m in question.outcomes if keep is None or m in keep)
        for a, b in itertools.combinations(ranked, 2):
            oa, ob = question.outcomes[a], question.outcomes[b]
            winner: Winner = "tie" if abs(oa - ob) < 1e-9 else ("model_a" if oa > ob else "model_b")
            battles.append(Battle(question.prompt, a, b, winner, question.source))
    return battles


ALPACA_ANNOTATIONS = (
    "annotations_alpaca_eval_gpt4_turbo_fn.jsonl",
    "annotations_alpaca_eval_cot_gpt4_turbo_fn.jsonl",
    "annotations_weighted_alpaca_eval_gpt4_turbo.jsonl",
    "annotations_alpaca_eval_gpt4.jsonl",
    "annotations_bedrock_claude.jsonl",
)
#: Submissions that are not a model (AlpacaEval's template folder).
_ALPACA_NOT_MODELS = {"example"}


def _alpaca_battles(prompt: str, model_a: str, model_b: str, preference: float) -> list[Battle]:
    """AlpacaEval's encoding: 1 = generator_1 (reference) wins, 2 = generator_2 wins, 0 or 1.5
    = draw (alpaca_eval's `pairwise_to_winrate`); anything else in (1, 2) is a weighted
    annotator's 1 + P(generator_2 wins), kept as a soft label: two battles weighted p and 1 − p
    (their weighted log-loss equals the log-loss against target p)."""
    if preference in (0.0, 1.5):
        return [Battle(prompt, model_a, model_b, "tie", "alpaca_eval")]
    if preference == 1.0:
        return [Battle(prompt, model_a, model_b, "model_a", "alpaca_eval")]
    if preference == 2.0:
        return [Battle(prompt, model_a, model_b, "model_b", "alpaca_eval")]
    p = min(max(preference - 1.0, 0.0), 1.0)
    return [
        Battle(prompt, model_a, model_b, "model_b", "alpaca_eval", p),
        Battle(prompt, model_a, model_b, "model_a", "alpaca_eval", 1.0 - p),
    ]


def load_alpaca_battles(
    data_dir: str | os.PathLike[str] | None = None,
    annotations: str | Sequence[str] = "annotations_alpaca_eval_gpt4_turbo_fn.jsonl",
) -> list[Battle]:
    """AlpacaEval judge preferences as battles (model_a = the reference generator_1, model_b =
    generator_2; see `_alpaca_battles` for the encoding; null = judge failure, dropped).

    `annotations`: one file name, a list of them, or "all" (`ALPACA_ANNOTATIONS`).
    Licence: CC BY-NC 4.0 (non-commercial) — say so in the card of any router trained on it.
    """
    folder = resolve_data_dir(data_dir) / "alpaca_eval"
    prompts = {r["instruction_id"]: r["instruction"] for r in _jsonl(folder / "instructions.jsonl")}
    files = (
        ALPACA_ANNOTATIONS
        if annotations == "all"
        else [annotations]
        if isinstance(annotations, str)
        else list(annotations)
    )
    battles: list[Battle] = []
    for name in files:
        for row in _jsonl(folder / name):
            preference = row.get("preference")
            if preference is None or row["instruction_id"] not in prompts:
                continue
            if row["generator_2"] in _ALPACA_NOT_MODELS:
                continue
            battles += _alpaca_battles(
                prompts[row["instruction_id"]],
                canonical(row["generator_1"]),
                canonical(row["generator_2"]),
                float(preference),
            )
    return battles


class BattleFormatError(RouteLLMError, ValueError):
    """A line of a user's battle log is malformed."""


_BATTLE_FIELDS = ("prompt", "model_a", "model_b", "winner")
#: Winners a battle log may hold, and what each is read as. Chatbot Arena's logs mark a tie in
#: which both answers were bad "tie (bothbad)": a tie here, as every router's `fit` reads it.
WINNERS: dict[str, Winner] = {
    "model_a": "model_a",
    "model_b": "model_b",
    "tie": "tie",
    "tie (bothbad)": "tie",
}
_MAX_REPORTED_ERRORS = 10


def _parse_battle_line(line: str) -> Battle:
    """One JSONL line → a `Battle`, or ValueError saying what is wrong with it."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ValueError(f"not valid JSON ({exc.msg} at column {exc.colno})") from None
    if not isinstance(row, dict):
        raise ValueError(f"expected a JSON object, got {type(row).__name__}")
    missing = [k for k in _BATTLE_FIELDS if k not in row]
    if missing:
        raise ValueError(f"missing field(s) {', '.join(missing)}")
    for key in _BATTLE_FIELDS:
        if not isinstance(row[key], str) or not row[key].strip():
            raise ValueError(f"{key} must be a non-empty string, got {row[key]!r}")
    if row["winner"] not in WINNERS:
        raise ValueError(
            f"winner must be model_a, model_b, tie or tie (bothbad), got {row['winner']!r}"
        )
    if row["model_a"] == row["model_b"]:
        raise ValueError(f"model_a and model_b are the same model ({row['model_a']!r})")
    weight = row.get("weight", 1.0)
    if (
        isinstance(weight, bool)
        or not isinstance(weight, int | float)
        or not weight > 0
        or not math.isfinite(weight)  # json.loads reads Infinity
    ):
        raise ValueError(f"weight must be a positive finite number, got {weight!r}")
    winner = WINNERS[row["winner"]]
    return Battle(row["prompt"], row["model_a"], row["model_b"], winner, "user", weight)


def load_user_battles(path: str | os.PathLike[str]) -> list[Battle]:
    """A user's own preference logs: JSONL, one battle per line::

        {"prompt": "...", "model_a": "gpt-4o", "model_b": "gpt-4o-mini", "winner": "model_a"}

    `winner` ∈ {"model_a", "model_b", "tie", "tie (bothbad)"} (Chatbot Arena's tie in which
    both answers were bad, read as a tie: `Battle.winner` is "tie"); an optional positive numeric `weight`; other
    keys are ignored; blank lines are skipped. Model names are kept as written. Bad lines raise
    `BattleFormatError` listing each (file:line: what is wrong), up to ten.
    """
    battles: list[Battle] = []
    errors: list[str] = []
    if not Path(path).is_file():
        raise BattleFormatError(f"Battle log {path} not found.")
    try:
        with open(path, encoding="utf-8-sig") as handle:
            lines = handle.read().split("\n")  # not splitlines: JSON may hold a raw U+2028
    except UnicodeDecodeError as exc:
        raise BattleFormatError(
            f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8 JSONL."
        ) from None
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            battles.append(_parse_battle_line(line))
        except ValueError as exc:
            errors.append(f"{path}:{number}: {exc}")
    if errors:
        shown = "\n  ".join(errors[:_MAX_REPORTED_ERRORS])
        more = len(errors) - _MAX_REPORTED_ERRORS
        tail = f"\n  ... and {more} more bad line(s)" if more > 0 else ""
        raise BattleFormatError(
            f"{len(errors)} malformed line(s) in {path} (expected JSON objects with prompt, "
            f"model_a, model_b, winner):\n  {shown}{tail}"
        )
    if not battles:
        raise BattleFormatError(f"{path} holds no battles (one JSON object per line).")
    return battles


def training_prompts(
    data_dir: str | os.PathLike[str] | None = None, decontaminate: bool = True
) -> list[str]:
    """Unique prompts of the outcome sources (the default calibration sample), decontaminated
    against the evaluation prompts unless told otherwise."""
    questions = load_questions(data_dir=data_dir)
    if decontaminate:
        from routellm_lc.training.decontaminate import decontaminate_questions

        questions, _ = decontaminate_questions(questions, data_dir=data_dir)
    return list(dict.fromkeys(q.prompt for q in questions))
