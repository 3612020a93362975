"""Artifacts round-trip exactly; corrupt, foreign or truncated files give ArtifactError."""

from __future__ import annotations

import torch
import pytest

from vidunlearn.artifacts import ActivationSet, RefusalVectors, SiteVectors
from vidunlearn.errors import ArtifactError


def _acts():
    g = torch.Generator().manual_seed(0)
    tokens = {"transformer/cross_attn_kv": {grp: [torch.randn(n, 8, generator=g) for n in (3, 5)]
                                            for grp in ("unsafe", "safe", "neutral")}}
    return ActivationSet(tokens=tokens, meta={"sites": ["transformer/cross_attn_kv"], "cache_key": "k"})


def test_activation_round_trip(tmp_path):
    acts = _acts()
    acts.save(tmp_path / "a.safetensors")
    back = ActivationSet.load(tmp_path / "a.safetensors")
    for grp in ("unsafe", "safe", "neutral"):
        for x, y in zip(acts.tokens["transformer/cross_attn_kv"][grp], back.tokens["transformer/cross_attn_kv"][grp]):
            assert torch.equal(x, y)
    assert back.meta["cache_key"] == "k" and "tool_version" in back.meta
    assert [p.name for p in tmp_path.iterdir()] == ["a.safetensors"], "no temporary file may be left"


def test_refusal_round_trip(tmp_path):
    v = SiteVectors(torch.ones(4) / 2, torch.ones(4), torch.eye(4)[:, :2], torch.tensor([2.0, 1.0]), torch.zeros(4))
    RefusalVectors(sites={"transformer/cross_attn_kv": v}, meta={"sites": ["transformer/cross_attn_kv"], "concept": "c"}).save(tmp_path / "r.safetensors")
    back = RefusalVectors.load(tmp_path / "r.safetensors")
    assert back.concept == "c" and torch.equal(back.sites["transformer/cross_attn_kv"].basis, v.basis)


def test_truncated_file_is_a_clear_error(tmp_path):
    path = tmp_path / "a.safetensors"
    _acts().save(path)
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ArtifactError, match="not a readable safetensors file"):
        ActivationSet.load(path)


def test_wrong_kind_and_garbage(tmp_path):
    path = tmp_path / "a.safetensors"
    _acts().save(path)
    with pytest.raises(ArtifactError, match="not a vidunlearn refusal file"):
        RefusalVectors.load(path)
    (tmp_path / "g.safetensors").write_bytes(b"\x00" * 64)
    with pytest.raises(ArtifactError):
        ActivationSet.load(tmp_path / "g.safetensors")
    with pytest.raises(ArtifactError, match="not found"):
        ActivationSet.load(tmp_path / "missing.safetensors")
