"""`verify --base` on the default edit (the remap, W' = W + s (W A) B^T): its rank is bounded by the
recipe's erase rows, and every changed weight of a site shares one row space span(B). The tiny
model is 24 wide; two short pairs give fewer erase rows than that, so both checks bite here (with
the bundled pairs files the remap's change is of full width on this model, see
test_verify_hostile.py, which tampers with the paper's projection instead)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from conftest import run
from verify_tools import K0, V1, copy_output, fails, rehash, rewrite, shard_of

SHORT_PAIRS = """\
version: 1
concept: knife
pairs:
  - unsafe: "a man stabs a man"
    safe: "a man hugs a man"
  - unsafe: "a knife in an alley"
    safe: "a flower in an alley"
neutral:
  - "a cat"
  - "a dog in a park"
"""


@pytest.fixture(scope="module")
def narrow(tiny_wan, tmp_path_factory) -> Path:
    """A remap output whose change (rank = the unsafe prompts' tokens) is narrower than the layers."""
    root = tmp_path_factory.mktemp("verify-remap")
    (root / "short.yaml").write_text(SHORT_PAIRS)
    result = run("apply", "--model", tiny_wan, "--pairs", root / "short.yaml", "--out", root / "out",
                 "--work-dir", root / "work", "--no-collateral")
    assert result.exit_code == 0, result.output
    rank = json.loads((root / "out" / "vidunlearn.json").read_text())["recipe"]["edit_rank"]
    assert 1 < rank < 24  # the premise of both checks
    return root / "out"


def test_an_untouched_narrow_remap_passes(tiny_wan, narrow):
    result = run("verify", narrow, "--base", tiny_wan)
    assert result.exit_code == 0, result.output
    assert "remap at transformer/cross_attn_kv; at most its number of erase rows" in result.output


def test_a_change_of_the_right_rank_in_other_input_directions_fails(tiny_wan, narrow, tmp_path):
    """One layer's change replaced by one of the same rank and size that reads other input
    directions than the site's B: within the rank bound, caught by the shared row space."""
    out = copy_output(narrow, tmp_path / "rows")
    base, edited = load_file(shard_of(tiny_wan, V1))[V1], load_file(shard_of(out, V1))[V1]
    delta = edited - base
    rank = int(torch.linalg.matrix_rank(delta))
    generator = torch.Generator().manual_seed(7)
    rows = torch.linalg.qr(torch.randn(24, rank, generator=generator)).Q
    columns = torch.linalg.svd(delta).U[:, :rank]
    planted = columns @ torch.diag(torch.linalg.svdvals(delta)[:rank]) @ rows.T
    rewrite(shard_of(out, V1), lambda t: t.update({V1: base + planted}))
    rehash(out)
    fails(run("verify", out, "--base", tiny_wan), "changes other input directions than the rest of site")


def test_a_change_above_the_erase_rows_fails(tiny_wan, narrow, tmp_path):
    out = copy_output(narrow, tmp_path / "rank")
    rewrite(shard_of(out, K0), lambda t: t.update({K0: torch.randn(24, 24) * t[K0].std()}))
    rehash(out)
    fails(run("verify", out, "--base", tiny_wan), "W' - W has rank", "edit has rank at most")
