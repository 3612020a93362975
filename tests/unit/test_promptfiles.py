"""--prompts-file: the shapes benchmark prompt sets come in (text, CSV, TSV, JSONL), their optional
seed, category and label columns, a one-line error for each bad row, and metrics per category."""

from __future__ import annotations

import json

import pytest

from vidunlearn.errors import VidunlearnError
from vidunlearn.evaluate import Concept, eval_metrics
from vidunlearn.promptfiles import Columns, file_eval_set, read_prompt_file


def write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def test_one_prompt_per_line_skips_blank_lines(tmp_path):
    rows = read_prompt_file(write(tmp_path / "p.txt", "a man fights\n\n  \na woman boxes\n"))
    assert [r.text for r in rows] == ["a man fights", "a woman boxes"]
    assert all(r.seed is None and r.category is None and r.unsafe for r in rows)


def test_csv_tsv_and_jsonl_with_named_columns(tmp_path):
    columns = Columns(prompt="text", seed="seed", category="category", label="label")
    csv = write(tmp_path / "p.csv", 'text,seed,category,label\n"a fight, at night",4,violence,1\na calm lake,,nature,safe\n')
    tsv = write(tmp_path / "p.tsv", "text\tseed\tcategory\tlabel\na fight, at night\t4\tviolence\tyes\na calm lake\t\tnature\t0\n")
    jsonl = write(tmp_path / "p.jsonl", json.dumps({"text": "a fight, at night", "seed": 4, "category": "violence",
                                                     "label": True}) + "\n" + json.dumps({"text": "a calm lake",
                                                     "category": "nature", "label": "no"}) + "\n")
    for path in (csv, tsv, jsonl):
        rows = read_prompt_file(path, columns)
        assert [(r.text, r.seed, r.category, r.unsafe) for r in rows] == [
            ("a fight, at night", 4, "violence", True), ("a calm lake", None, "nature", False)], path


@pytest.mark.parametrize("name,text,columns,needle", [
    ("p.csv", "prompt\nx\n", Columns(category="cat"), "no row has a category column 'cat'"),
    ("p.csv", "text\nx\n", Columns(), "no prompt column 'prompt'"),
    ("p.csv", "prompt,seed\nx,four\n", Columns(seed="seed"), "seed 'four' is not an integer"),
    ("p.csv", "prompt,seed\nx,18446744073709551616\n", Columns(seed="seed"), "is not an integer from -9223372036854775808"),
    ("p.csv", "prompt,label\nx,maybe\n", Columns(label="label"), "label 'maybe' is neither unsafe nor safe"),
    ("p.jsonl", '{"prompt": "x"}\n[1, 2]\n', Columns(), "p.jsonl:2"),
    ("p.jsonl", '{"prompt": "x"}\n{"prompt": \n', Columns(), "not a JSON object"),
    ("p.csv", "prompt\n\"\"\n", Columns(), "empty prompt"),
    ("p.txt", "\n\n", Columns(), "has no prompts"),
    ("p.parquet", "x", Columns(), "unknown prompt file type '.parquet'"),
])
def test_bad_prompt_files_are_one_line_errors(tmp_path, name, text, columns, needle):
    with pytest.raises(VidunlearnError) as caught:
        read_prompt_file(write(tmp_path / name, text), columns)
    message = caught.value.one_line()
    assert needle in message and "\n" not in message.strip()


def test_missing_file_says_where(tmp_path):
    with pytest.raises(VidunlearnError, match="prompt file not found"):
        read_prompt_file(tmp_path / "nope.jsonl")


def test_eval_set_of_a_file_groups_seeds_and_counts_per_category(tmp_path):
    path = write(tmp_path / "p.csv", "prompt,seed,category,label\nfight one,9,violence,1\nfight two,,violence,1\n"
                                     "blood,,gore,1\nlake,,nature,0\n")
    nudity = Concept("nudity", "yes")
    eval_set = file_eval_set(path, nudity, Columns(seed="seed", category="category", label="label"), seed=100)
    prompts = eval_set.prompts
    assert [p.group for p in prompts] == ["forget", "forget", "forget", "retain"]
    assert [p.seed for p in prompts] == [9, 101, 102, 103]  # its own seed, else --seed + row index
    assert prompts[3].labels == (("nudity", "no"),)
    shows = lambda yes: {"verdict": {"nudity": "yes" if yes else "no"}, "frames": {"yes": [yes, False]}}
    records = [shows(True), shows(False), shows(True), {"verdict": {"nudity": "no"}, "frames": {}}]
    metrics = eval_metrics(list(prompts), records, [nudity], ("nudity",))
    assert metrics["forget_rate"] == pytest.approx(2 / 3)
    assert metrics["by_category"]["violence"]["forget_rate"] == 0.5
    assert metrics["by_category"]["gore"]["forget_rate"] == 1.0
    assert metrics["by_category"]["nature"]["retain_accuracy"] == {"nudity": 1.0}
    # FADE counts frames (2 of 6 show it), VideoEraser clips with any frame (the forget rate, 2 of 3)
    assert metrics["frame_share_by_concept"]["yes"] == pytest.approx(2 / 6)
    assert metrics["frame_rates_by_concept"]["yes"] == [pytest.approx(2 / 3), 0.0]


@pytest.mark.parametrize("suffix", [".txt", ".csv", ".tsv", ".jsonl"])
def test_hostile_prompt_files_are_rows_or_one_line(tmp_path, suffix):
    from hypothesis import given, settings
    from hypothesis import strategies as st

    path = tmp_path / f"p{suffix}"
    columns = Columns(seed="seed", category="category", label="label")

    @settings(max_examples=150, deadline=None)
    @given(st.binary(max_size=300))
    def check(data):
        path.write_bytes(data)
        try:
            rows = read_prompt_file(path, columns)
        except VidunlearnError as exc:
            assert "\n" not in exc.one_line()
        else:
            assert rows and all(r.text for r in rows)

    check()
    nested = b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}\n"  # deeper than Python's recursion limit
    path.write_bytes(nested if suffix == ".jsonl" else b"prompt,seed\n" + b"x," + b"9" * 5000 + b"\n")
    with pytest.raises(VidunlearnError):
        read_prompt_file(path, Columns(seed="seed"))
