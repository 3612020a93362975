"""Prompt files in the shapes safety benchmarks are distributed in (T2VSafetyBench, SafeSora,
Ring-A-Bell, I2P): one prompt per line (``.txt``), CSV (``.csv``, ``.tsv``) with a header row, or
JSON Lines (``.jsonl``), with a column or field to name and optional per-row seed, category and
label columns. Rows become the forget prompts of an evaluation (or, with a label saying the prompt is
safe, retain prompts)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

from .errors import VidunlearnError
from .pairs import MAX_PROMPT_CHARS

SUFFIXES = (".txt", ".csv", ".tsv", ".jsonl")
SEEDS = (-2**63, 2**64 - 1)  # what torch.Generator.manual_seed takes
UNSAFE = {"1", "true", "yes", "unsafe", "nsfw"}
SAFE = {"0", "false", "no", "safe", "sfw"}


@dataclass(frozen=True)
class Columns:
    """Which column (CSV) or field (JSONL) holds what. Empty: absent."""

    prompt: str = "prompt"
    seed: str = ""
    category: str = ""
    label: str = ""          # 1/true/yes/unsafe: the prompt asks for the concept; 0/false/no/safe: it does not


@dataclass(frozen=True)
class Row:
    text: str
    seed: int | None = None
    category: str | None = None
    unsafe: bool = True


def _error(path: Path, line: int, message: str, fix: str) -> VidunlearnError:
    return VidunlearnError(message, where=f"{path}:{line}", fix=fix)


def _records(path: Path) -> list[tuple[int, dict]]:
    """(line number, {column: value}) of a CSV or JSONL file."""
    text = path.read_text(encoding="utf-8-sig")
    if path.suffix == ".jsonl":
        records = []
        for number, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                value = json.loads(line)
            except ValueError as exc:
                raise _error(path, number, f"not a JSON object ({getattr(exc, 'msg', exc)})",
                             "write one JSON object per line") from None
            except RecursionError:
                raise _error(path, number, "not a JSON object (nested too deeply)", "write one JSON object per line") from None
            if not isinstance(value, dict):
                raise _error(path, number, "not a JSON object", "write one JSON object per line, e.g. {\"prompt\": \"...\"}")
            records.append((number, value))
        return records
    reader = csv.DictReader(text.splitlines(), delimiter="\t" if path.suffix == ".tsv" else ",")
    return [(reader.line_num, row) for row in reader]


def _field(path: Path, number: int, record: dict, name: str, what: str, required: bool = False) -> str | None:
    """A row's value; an optional column may be absent or empty in some rows (a JSONL object
    without the field): None."""
    if not name:
        return None
    if name not in record and required:
        raise _error(path, number, f"no {what} column {name!r} (columns: {', '.join(map(str, record)) or 'none'})",
                     f"name the {what} column with --{what}-column")
    value = record.get(name)
    return None if value is None or str(value).strip() == "" else str(value).strip()


def _check_named(path: Path, records: list[tuple[int, dict]], columns: Columns) -> None:
    """A named optional column that no row has is a typo, not a column of empty values."""
    for what in ("seed", "category", "label"):
        name = getattr(columns, what)
        if name and records and not any(name in record for _, record in records):
            seen = sorted({str(k) for _, record in records for k in record})
            raise VidunlearnError(f"no row has a {what} column {name!r} (columns: {', '.join(seen)})", where=str(path),
                                  fix=f"name an existing column with --{what}-column, or leave it out")


def read_prompt_file(path: Path, columns: Columns = Columns()) -> list[Row]:
    """The rows of a prompt file; a one-line error for a missing file, column or bad value."""
    path = Path(path)
    if not path.is_file():
        raise VidunlearnError("prompt file not found", where=str(path), fix="check the path of --prompts-file")
    if path.suffix.lower() not in SUFFIXES:
        raise VidunlearnError(f"unknown prompt file type {path.suffix or '(none)'!r}", where=str(path),
                              fix=f"use one of {', '.join(SUFFIXES)} (one prompt per line for .txt)")
    try:
        if path.suffix == ".txt":
            lines = path.read_text(encoding="utf-8-sig").splitlines()
            records = [(n, {columns.prompt: line}) for n, line in enumerate(lines, 1) if line.strip()]
        else:
            records = _records(path)
    except UnicodeDecodeError:
        raise VidunlearnError("the prompt file is not UTF-8 text", where=str(path), fix="save it as UTF-8") from None
    _check_named(path, records, columns)
    rows = []
    for number, record in records:
        text = _field(path, number, record, columns.prompt, "prompt", required=True) or ""
        if not text:
            raise _error(path, number, "empty prompt", "remove the row or fill in its prompt")
        if len(text) > MAX_PROMPT_CHARS:
            raise _error(path, number, f"a prompt of {len(text)} characters (limit {MAX_PROMPT_CHARS})", "shorten it")
        seed = _field(path, number, record, columns.seed, "seed")
        if seed is not None and not (seed.lstrip("-").isdigit() and len(seed) <= 21 and SEEDS[0] <= int(seed) <= SEEDS[1]):
            raise _error(path, number, f"seed {seed[:24]!r} is not an integer from {SEEDS[0]} to {SEEDS[1]}",
                         "write a whole number")
        label = _field(path, number, record, columns.label, "label")
        if label is not None and label.lower() not in UNSAFE | SAFE:
            raise _error(path, number, f"label {label!r} is neither unsafe nor safe",
                         f"use one of {sorted(UNSAFE)} or {sorted(SAFE)}")
        rows.append(Row(text, int(seed) if seed is not None else None,
                        _field(path, number, record, columns.category, "category") or None,
                        label is None or label.lower() in UNSAFE))
    if not rows:
        raise VidunlearnError("the prompt file has no prompts", where=str(path), fix="add at least one row")
    return rows


def file_eval_set(path: Path, concept, columns: Columns = Columns(), seed: int = 0):
    """An :class:`~vidunlearn.evaluate.EvalSet` of a prompt file: unsafe rows are forget prompts
    (labelled with ``concept``), safe rows retain prompts (labelled "not the concept" only for a
    yes/no judge, where the other value is "no"). Row i's seed: its seed column, else ``seed + i``."""
    from .evaluate import EvalPrompt, EvalSet

    prompts = []
    for i, row in enumerate(read_prompt_file(path, columns)):
        if row.unsafe:
            labels = ((concept.attribute, concept.value),)
        else:
            labels = ((concept.attribute, "no"),) if concept.value == "yes" else ()
        prompts.append(EvalPrompt(row.text, "forget" if row.unsafe else "retain", labels,
                                  row.seed if row.seed is not None else seed + i, row.category))
    return EvalSet((concept,), tuple(prompts), str(path))
