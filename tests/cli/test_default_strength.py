"""The default lambda (docs/method.md, "Several concepts: lambda 1.25"): 1 for one concept, 1.25
for the remap of several concepts in one edit, 1 for the other modes; --strength always wins.
Through the CLI on the tiny Wan, read back from the manifest and from the weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from safetensors.torch import load_file

from tests.conftest import PAIRS, run
from vidunlearn.edit import MULTI_CONCEPT_STRENGTH, default_strength


def _strength(tiny_wan, out: Path, *args) -> float:
    result = run("apply", "--model", tiny_wan, "--out", out, "--no-collateral", "--work-dir", out.parent / "work", *args)
    assert result.exit_code == 0, result.output
    return json.loads((out / "vidunlearn.json").read_text())["recipe"]["strength"]


def test_default_strength_rule():
    assert default_strength("remap", 1) == 1.0 and default_strength("remap", 2) == MULTI_CONCEPT_STRENGTH == 1.25
    assert default_strength("project", 2) == default_strength("uce", 3) == 1.0


@pytest.mark.parametrize("args, expected", [
    (("--pairs", PAIRS / "violence.yaml"), 1.0),
    (("--pairs", PAIRS / "violence.yaml", "--pairs", PAIRS / "nudity.yaml"), 1.25),
    (("--pairs", PAIRS / "violence.yaml", "--pairs", PAIRS / "nudity.yaml", "--strength", "1"), 1.0),
    (("--pairs", PAIRS / "violence.yaml", "--pairs", PAIRS / "nudity.yaml", "--mode", "project"), 1.0),
])
def test_the_cli_records_the_strength_it_used(tiny_wan, tmp_path, args, expected):
    assert _strength(tiny_wan, tmp_path / "out", *args) == expected


def test_two_concepts_by_default_equal_an_explicit_1_25(tiny_wan, tmp_path):
    both = ("--pairs", PAIRS / "violence.yaml", "--pairs", PAIRS / "nudity.yaml")
    _strength(tiny_wan, tmp_path / "default", *both)
    _strength(tiny_wan, tmp_path / "explicit", *both, "--strength", "1.25")
    _strength(tiny_wan, tmp_path / "one", *both, "--strength", "1")
    shards = sorted((tmp_path / "default" / "transformer").glob("*.safetensors"))
    for shard in shards:
        a, b = load_file(shard), load_file(tmp_path / "explicit" / "transformer" / shard.name)
        assert all((a[k] == b[k]).all() for k in a)
    assert any(not (load_file(s)[k] == load_file(tmp_path / "one" / "transformer" / s.name)[k]).all()
               for s in shards for k in load_file(s))
