"""The real loading code (alias -> Hub id -> snapshot, revision recorded), exercised offline on a
Hugging Face cache folder laid out exactly as huggingface_hub writes it."""

from __future__ import annotations

import shutil

import pytest

from vidunlearn.errors import ModelError
from vidunlearn.model import resolve_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub_cache(tiny_wan, tmp_path, monkeypatch):
    repo = tmp_path / "hub" / "models--Wan-AI--Wan2.1-T2V-1.3B-Diffusers"
    shutil.copytree(tiny_wan, repo / "snapshots" / COMMIT)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return repo


def test_alias_resolves_to_the_hub_snapshot_and_revision(hub_cache):
    source = resolve_model("wan2.1")
    assert source.repo_id == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    assert source.revision == COMMIT and source.path.name == COMMIT
    assert source.denoisers == ["transformer"]
    assert resolve_model("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", revision=COMMIT).path == source.path


def test_uncached_repo_offline_is_a_clear_error(hub_cache):
    with pytest.raises(ModelError, match="cannot be reached|not found"):
        resolve_model("wan2.1-14b")
