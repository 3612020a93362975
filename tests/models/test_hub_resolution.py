"""The real loading code (alias -> Hub id -> snapshot, revision recorded), exercised offline on a
Hugging Face cache folder laid out exactly as huggingface_hub writes it."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from vidunlearn.errors import ModelError
from vidunlearn.model import resolve_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def hub_snapshot(folder: Path, hub: Path, repo_id: str, monkeypatch) -> Path:
    """Lay ``folder`` out in the Hugging Face cache ``hub`` as repo ``repo_id`` at COMMIT, as
    huggingface_hub writes it: content in blobs/ (LFS files named by their SHA-256, others by
    their git blob SHA-1), snapshots/<commit>/ holding relative symlinks to them; and point
    huggingface_hub at that cache, offline."""
    repo = hub / ("models--" + repo_id.replace("/", "--"))
    (repo / "blobs").mkdir(parents=True)
    for file in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        data = file.read_bytes()
        lfs = file.suffix in (".safetensors", ".bin", ".pth", ".pt", ".ckpt")  # git LFS: named by SHA-256
        name = hashlib.sha256(data).hexdigest() if lfs else \
            hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        (repo / "blobs" / name).write_bytes(data)
        link = repo / "snapshots" / COMMIT / file.relative_to(folder)
        link.parent.mkdir(parents=True, exist_ok=True)
        os.symlink(os.path.relpath(repo / "blobs" / name, link.parent), link)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(COMMIT)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as constants

    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(hub))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return repo


@pytest.fixture
def hub_cache(tiny_wan, tmp_path, monkeypatch):
    return hub_snapshot(tiny_wan, tmp_path / "hub", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", monkeypatch)


def test_alias_resolves_to_the_hub_snapshot_and_revision(hub_cache):
    source = resolve_model("wan2.1")
    assert source.repo_id == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    assert source.revision == COMMIT and source.path.name == COMMIT
    assert source.denoisers == ["transformer"]
    assert resolve_model("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", revision=COMMIT).path == source.path


def test_uncached_repo_offline_is_a_clear_error(hub_cache):
    with pytest.raises(ModelError, match="cannot be reached|not found"):
        resolve_model("wan2.1-14b")


def test_apply_from_the_cache_links_blobs_and_hashes_them_right(hub_cache, tmp_path):
    """Linked files take their SHA-256 from the blob name; the manifest must still equal a fresh
    read of every output file (a wrong blob-name shortcut would show here)."""
    import json

    from vidunlearn.api import EditRecipe, apply
    from vidunlearn.checkpoint import hash_outputs

    out = tmp_path / "out"
    result = apply("wan2.1", out=out, pairs=[Path("pairs/violence.yaml")], work_dir=tmp_path / "work", recipe=EditRecipe(rank=2))
    manifest = json.loads((out / "vidunlearn.json").read_text())
    assert manifest["base"]["revision"] == COMMIT and manifest["base"]["repo_id"] == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    assert "link" in manifest["actions"].values() and "rewrite" in manifest["actions"].values()
    assert manifest["files"] == {k: v for k, v in hash_outputs(out).items() if k != "vidunlearn.json"}
    assert result.manifest is not None
