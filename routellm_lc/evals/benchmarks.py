"""The evaluation benchmarks: RouteLLM's MT-Bench, MMLU and GSM8K files, or a user's CSV.

Each loads into one `Benchmark`: the text a router scores per prompt, plus the strong and the
weak model's quality on that prompt (correctness 0/1, or a score). RouteLLM's contaminated
prompts (the `eval_prompt` of each `*_contaminated_prompts.jsonl`) are removed first, exactly
as its `routellm/evals/benchmarks.py` does, so the counts match its published evaluation:
MMLU 14,037, GSM8K 1,307, MT-Bench 72 questions.

Only the standard library reads the files (csv, json): pandas is not a dependency.
"""

from __future__ import annotations

import csv
import json
import os
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from routellm_lc.errors import RouteLLMError

csv.field_size_limit(1 << 30)  # long prompts (pasted documents) exceed csv's 131,072 default

STRONG_MODEL = "gpt-4-1106-preview"
WEAK_MODEL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
BUILTIN_BENCHMARKS = ("mt-bench", "mmlu", "gsm8k")
EVALS_FOLDER = "routellm_evals"


#: What each built-in benchmark reads in `routellm_evals/` (checked up front for a clear error).
_EVALS_FILES = {
    "mt-bench": (
        "mt_bench_question.jsonl",
        "mt_bench_judgements.jsonl",
        "mt_bench_contaminated_prompts.jsonl",
    ),
    "mmlu": ("mmlu_responses", "mmlu_contaminated_prompts.jsonl"),
    "gsm8k": ("gsm8k_responses.csv", "gsm8k_contaminated_prompts.jsonl"),
}
_FETCH_HINT = (
    f"fetch it with `routellm-lc data fetch {EVALS_FOLDER} --into {{root}}` (files already "
    "there and verified are kept)"
)


class BenchmarkError(RouteLLMError, ValueError):
    """A benchmark name or file cannot be used (unknown name, missing file or column)."""


@dataclass(frozen=True)
class Benchmark:
    """Per-prompt outcomes of a strong and a weak model, and the text a router sees.

    `strong` and `weak` hold one quality value per prompt (float arrays): correctness as
    0/1 for MMLU and GSM8K, the mean GPT-4 judge score over both turns for MT-Bench. The
    benchmark's quality under a routing is the mean over prompts of the routed model's value.
    """

    name: str
    prompts: list[str]
    strong: np.ndarray
    weak: np.ndarray
    strong_model: str = STRONG_MODEL
    weak_model: str = WEAK_MODEL
    csv: str | None = None
    """The CSV file a user's benchmark was read from (None: RouteLLM's built-in one)."""

    def __post_init__(self) -> None:
        if not (len(self.prompts) == len(self.strong) == len(self.weak)):
            raise BenchmarkError(f"{self.name}: prompts and outcomes differ in length.")
        if not self.prompts:
            raise BenchmarkError(f"{self.name}: no prompts.")

    def __len__(self) -> int:
        return len(self.prompts)

    @property
    def quality_scale(self) -> float:
        """RouteLLM's unit for this benchmark's quality: 100 for 0/1 correctness (it computes
        accuracy in percent), 1 for scores (MT-Bench's judge points)."""
        both = np.concatenate([self.strong, self.weak])
        return 100.0 if np.isin(both, (0.0, 1.0)).all() else 1.0

    @property
    def strong_quality(self) -> float:
        return float(np.mean(self.strong))

    @property
    def weak_quality(self) -> float:
        return float(np.mean(self.weak))

    def subset(self, indices: np.ndarray) -> Benchmark:
        """The same benchmark restricted to `indices` (order kept)."""
        indices = np.sort(np.asarray(indices, dtype=np.int64))
        return Benchmark(
            name=self.name,
            prompts=[self.prompts[i] for i in indices],
            strong=self.strong[indices],
            weak=self.weak[indices],
            strong_model=self.strong_model,
            weak_model=self.weak_model,
            csv=self.csv,
        )

    def stratified_sample(self, limit: int, seed: int = 0) -> Benchmark:
        """A seeded subset of `limit` prompts, stratified by the sign of the strong−weak gain.

        Keeping the share of prompts where strong wins, ties and loses keeps the subset's
        strong/weak gap (the thing every metric normalises by) close to the full set's.
        """
        if limit >= len(self):
            return self
        if limit < 1:
            raise BenchmarkError(f"--limit must be at least 1, got {limit}.")
        rng = np.random.default_rng(seed)
        strata = np.sign(self.strong - self.weak)
        groups = [np.flatnonzero(strata == s) for s in (1.0, 0.0, -1.0)]
        groups = [g for g in groups if len(g)]
        exact = np.array([len(g) for g in groups], dtype=np.float64) * limit / len(self)
        counts = np.floor(exact).astype(np.int64)
        # Largest remainders get the prompts rounding left over.
        for i in np.argsort(-(exact - counts), kind="stable")[: limit - counts.sum()]:
            counts[i] += 1
        chosen = [rng.choice(g, size=c, replace=False) for g, c in zip(groups, counts, strict=True)]
        return self.subset(np.concatenate(chosen))


def load_benchmark(
    spec: str,
    data_dir: str | os.PathLike[str] | None = None,
    strong_model: str = STRONG_MODEL,
    weak_model: str = WEAK_MODEL,
) -> Benchmark:
    """`mt-bench`, `mmlu`, `gsm8k` (from `<data_dir>/routellm_evals/`) or a path to a CSV."""
    if spec in BUILTIN_BENCHMARKS:
        from routellm_lc.data import data_dir as resolve_data_dir

        folder = resolve_data_dir(data_dir) / EVALS_FOLDER
        if not folder.is_dir():
            raise BenchmarkError(
                f"No {EVALS_FOLDER}/ folder in the data directory {folder.parent}: "
                f"{_FETCH_HINT.format(root=folder.parent)} "
                "or evaluate on your own CSV (--benchmark FILE.csv)."
            )
        for needed in _EVALS_FILES[spec]:
            if not (folder / needed).exists():
                raise BenchmarkError(
                    f"{spec}: {folder / needed} is missing ({EVALS_FOLDER}/ is incomplete): "
                    f"{_FETCH_HINT.format(root=folder.parent)}."
                )
        loader = {"mt-bench": load_mt_bench, "mmlu": load_mmlu, "gsm8k": load_gsm8k}[spec]
        return loader(folder)
    if spec.lower().endswith(".csv") or Path(spec).is_file():
        return load_csv(spec, strong_model=strong_model, weak_model=weak_model)
    raise BenchmarkError(
        f"Unknown benchmark {spec!r}: use one of {', '.join(BUILTIN_BENCHMARKS)} or a path to a "
        "CSV with a `prompt` column and one column per model."
    )


def contaminated_prompts(path: Path) -> set[str]:
    """The `eval_prompt` of every line of a RouteLLM `contaminated_prompts.jsonl`."""
    with open(path, encoding="utf-8") as handle:
        return {json.loads(line)["eval_prompt"] for line in handle if line.strip()}


def load_mmlu(folder: Path) -> Benchmark:
    """All 57 `mmlu_responses/mmlu_<domain>.csv` files, decontaminated (14,037 prompts)."""
    files = sorted((folder / "mmlu_responses").glob("mmlu_*.csv"))
    if not files:
        raise BenchmarkError(f"No mmlu_*.csv files under {folder / 'mmlu_responses'}.")
    rows = [row for path in files for row in _read_csv(path)]
    removed = contaminated_prompts(folder / "mmlu_contaminated_prompts.jsonl")
    return _from_rows("mmlu", rows, removed, STRONG_MODEL, WEAK_MODEL, _parse_bool)


def load_gsm8k(folder: Path) -> Benchmark:
    """`gsm8k_responses.csv`, decontaminated (1,307 prompts)."""
    rows = _read_csv(folder / "gsm8k_responses.csv")
    removed = contaminated_prompts(folder / "gsm8k_contaminated_prompts.jsonl")
    return _from_rows("gsm8k", rows, removed, STRONG_MODEL, WEAK_MODEL, _parse_bool)


def load_mt_bench(folder: Path) -> Benchmark:
    """MT-Bench: 72 questions after decontamination, routed on the first turn's text.

    A question is removed when either turn is a contaminated prompt (RouteLLM's rule; in its
    list only first turns occur). Quality per question is the mean GPT-4 judge score over its
    two turns, so the benchmark mean equals RouteLLM's mean over all turn judgements.
    """
    removed = contaminated_prompts(folder / "mt_bench_contaminated_prompts.jsonl")
    with open(folder / "mt_bench_question.jsonl", encoding="utf-8") as handle:
        questions = [json.loads(line) for line in handle if line.strip()]
    questions = [q for q in questions if not any(turn in removed for turn in q["turns"])]
    scores: dict[tuple[int, str], list[float]] = defaultdict(list)
    with open(folder / "mt_bench_judgements.jsonl", encoding="utf-8") as handle:
        for line in handle:
            if line.strip():
                row = json.loads(line)
                scores[(row["question_id"], row["model"])].append(float(row["score"]))

    def per_question(model: str) -> np.ndarray:
        missing = [q["question_id"] for q in questions if not scores.get((q["question_id"], model))]
        if missing:
            raise BenchmarkError(f"mt-bench: no judgement for {model} on questions {missing[:5]}.")
        return np.array([np.mean(scores[(q["question_id"], model)]) for q in questions])

    return Benchmark(
        name="mt-bench",
        prompts=[q["turns"][0] for q in questions],
        strong=per_question(STRONG_MODEL),
        weak=per_question(WEAK_MODEL),
    )


def load_csv(
    path: str | os.PathLike[str],
    strong_model: str = STRONG_MODEL,
    weak_model: str = WEAK_MODEL,
) -> Benchmark:
    """A user's CSV: a `prompt` column plus one column per model (True/False or a number)."""
    path = Path(path)
    if not path.is_file():
        raise BenchmarkError(f"Benchmark CSV not found: {path}.")
    rows = _read_csv(path)
    if not rows:
        raise BenchmarkError(
            f"{path} has no data rows (only a header, or nothing): add one row per prompt."
        )
    columns = {c for c in rows[0] if c not in (_ROW, _LINE, None)}
    missing = [c for c in ("prompt", strong_model, weak_model) if c not in columns]
    if missing:
        raise BenchmarkError(
            f"{path}: missing column(s) {', '.join(map(repr, missing))}; found "
            f"{', '.join(map(repr, sorted(columns)))}. Name the model columns with "
            "--strong-model / --weak-model."
        )
    bench = _from_rows(path.stem, rows, set(), strong_model, weak_model, _parse_outcome)
    return replace(bench, csv=str(path))


def _read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a CSV as dicts (header → cell), each with its 1-based data-row number under
    `_ROW` and the file line it starts on under `_LINE`; `BenchmarkError` for an unreadable file.
    A UTF-8 byte-order mark (Excel's "CSV UTF-8") is dropped."""
    if not path.is_file():
        raise BenchmarkError(f"Benchmark file not found: {path}.")
    rows: list[dict[str, str]] = []
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.DictReader(handle)
            header = reader.fieldnames or []
            twice = sorted({c for c in header if header.count(c) > 1})
            if twice:  # DictReader would keep the last column of each name, silently
                raise BenchmarkError(
                    f"{path}: the header names {', '.join(map(repr, twice))} more than once: "
                    "give each column its own name."
                )
            line = 1
            for number, row in enumerate(reader, 1):
                row[_ROW], row[_LINE] = str(number), str(line + 1)
                if None in row:  # more fields than the header: DictReader files them under None
                    raise BenchmarkError(
                        f"{path}: {_where(row)} has {len(row[None])} more field(s) than the "
                        'header; quote a cell that holds a comma ("like, this").'
                    )
                rows.append(row)
                line = reader.line_num
    except UnicodeDecodeError as exc:
        raise BenchmarkError(
            f"{path} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8 CSV."
        ) from None
    except csv.Error as exc:
        raise BenchmarkError(f"{path}: not a readable CSV ({exc}).") from None
    return rows


_ROW, _LINE = "\0row", "\0line"  # keys no CSV header can hold


def _from_rows(
    name: str,
    rows: list[dict[str, str]],
    removed: set[str],
    strong_model: str,
    weak_model: str,
    parse: Callable[[str], float],
) -> Benchmark:
    """Per-prompt outcomes of the two model columns. A missing or unparseable cell, a NaN /
    infinite number, or an empty prompt is refused naming its row and column: a benchmark with a
    hole in it would give NaN metrics (and no prompt is silently dropped)."""

    def cell(row: dict[str, str], column: str) -> str:
        value = row.get(column)
        if value is None:  # the row has fewer fields than the header
            raise BenchmarkError(f"{name}: {_where(row)} has no {column!r} field.")
        return value

    def outcome(row: dict[str, str], column: str) -> float:
        value = cell(row, column)
        try:
            number = parse(value)
        except ValueError as exc:
            raise BenchmarkError(f"{name}: {_where(row)}, column {column!r}: {exc}.") from None
        if not np.isfinite(number):
            raise BenchmarkError(
                f"{name}: {_where(row)}, column {column!r}: {value!r} is not a finite number."
            )
        return number

    for row in rows:
        if not cell(row, "prompt").strip():
            raise BenchmarkError(f"{name}: {_where(row)}: the prompt is empty.")
    kept = [row for row in rows if row["prompt"] not in removed]
    strong = np.array([outcome(row, strong_model) for row in kept], dtype=np.float64)
    weak = np.array([outcome(row, weak_model) for row in kept], dtype=np.float64)
    return Benchmark(
        name=name,
        prompts=[row["prompt"] for row in kept],
        strong=strong,
        weak=weak,
        strong_model=strong_model,
        weak_model=weak_model,
    )


def _where(row: dict[str, str]) -> str:
    return f"row {row.get(_ROW, '?')} (line {row.get(_LINE, '?')})"


def _parse_bool(value: str) -> float:
    text = value.strip().lower()
    if text in ("true", "1", "1.0"):
        return 1.0
    if text in ("false", "0", "0.0"):
        return 0.0
    raise ValueError(
        f"expected True/False, got {value!r}" + (" (an empty cell)" if not text else "")
    )


def _parse_outcome(value: str) -> float:
    """True/False → 1/0; anything else must be a number (a score)."""
    try:
        return _parse_bool(value)
    except ValueError:
        pass
    try:
        return float(value)
    except ValueError:
        empty = " (an empty cell)" if not value.strip() else ""
        raise ValueError(f"expected True/False or a number, got {value!r}{empty}") from None
