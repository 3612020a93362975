"""Pairs files: the shipped ones load; every malformed input gets a PairsError naming file:line [field]."""

from __future__ import annotations

from pathlib import Path

import pytest

from vidunlearn.errors import PairsError
from vidunlearn.pairs import load_pairs

ROOT = Path(__file__).resolve().parents[2]
GOOD = """version: 1
concept: violence
pairs:
  - unsafe: "a man stabs a man"
    safe: "a man greets a man"
  - unsafe: "a woman shoots a car"
    safe: "a woman photographs a car"
neutral: ["a cat sleeps", "a river flows"]
"""


@pytest.mark.parametrize("name", ["violence", "nudity", "trademark", "copyrighted-character"])
def test_shipped_pairs_files_load(name):
    concept = load_pairs(ROOT / "pairs" / f"{name}.yaml")
    assert len(concept.pairs) >= 5 and len(concept.neutral) >= 10
    assert concept.probes and concept.retain
    assert not set(concept.probes) & set(concept.unsafe), "probes must be held out"


def test_good_file_and_hash(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(GOOD)
    a = load_pairs(path)
    assert a.concept == "violence" and a.unsafe == ("a man stabs a man", "a woman shoots a car")
    path.write_text(GOOD.replace("greets", "hugs"))
    assert load_pairs(path).sha256 != a.sha256


BAD = {
    "empty": ("", "file is empty"),
    "malformed": ("pairs: [unclosed", "invalid YAML"),
    "not a mapping": ("- a\n- b\n", "top level must be a mapping"),
    "no version": (GOOD.replace("version: 1\n", ""), "'version' must be 1"),
    "unknown key": (GOOD + "extra: 1\n", "unknown key"),
    "identical": (GOOD.replace("a man greets a man", "a man stabs a man"), "identical"),
    "one pair": (GOOD.split("  - unsafe: \"a woman")[0] + "neutral: [\"a\", \"b\"]\n", "at least 2 needed"),
    "no neutral": (GOOD.replace('neutral: ["a cat sleeps", "a river flows"]\n', ""), "missing 'neutral'"),
    "number prompt": (GOOD.replace('"a man greets a man"', "42"), "expected a text string"),
    "bad concept": (GOOD.replace("concept: violence", "concept: Bad Name!"), "not a slug"),
    "missing safe": (GOOD.replace('    safe: "a man greets a man"\n', ""), "expected exactly"),
    "python tag": (GOOD.replace("concept: violence", "concept: !!python/object:os.system x"), "expected a text string"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_inputs_give_one_clear_error(tmp_path, case):
    text, message = BAD[case]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(PairsError, match=message) as info:
        load_pairs(path)
    line = info.value.one_line()
    assert str(path) in line and "\n" not in line


def test_error_names_the_line_and_field(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(GOOD.replace("a woman photographs a car", "a woman shoots a car"))
    with pytest.raises(PairsError) as info:
        load_pairs(path)
    assert f"{path}:6 [pairs[1]]" in info.value.one_line()


def test_missing_file_and_huge_file(tmp_path):
    with pytest.raises(PairsError, match="not found"):
        load_pairs(tmp_path / "nope.yaml")
    big = tmp_path / "big.yaml"
    big.write_text("#" * (2 << 20))
    with pytest.raises(PairsError, match="limit"):
        load_pairs(big)
