"""Caches cannot lie: every component of the activation and refusal cache keys invalidates the
cache on its own, and a change that extraction does not read (an edited attn2 weight) does not.
Model files are changed in place with their size and modification time restored, so a key
built from sizes and mtimes would wrongly reuse the cache."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest
import torch

from conftest import PAIRS
from vidunlearn import api
from vidunlearn.model import resolve_model, tensor_infos, weight_map


def _flip_tensor_byte(path: Path, key: str) -> None:
    """Change one byte of tensor ``key`` in place; keep the file's size and mtime."""
    stat = path.stat()
    info = tensor_infos(path.parent)[key]
    from vidunlearn.model import read_header

    offset = read_header(path)[1] + info.begin + 1
    with open(path, "r+b") as handle:
        handle.seek(offset)
        byte = handle.read(1)
        handle.seek(offset)
        handle.write(bytes([byte[0] ^ 0x40]))
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert path.stat().st_size == stat.st_size


@pytest.fixture(scope="module")
def cached(tiny_wan, tmp_path_factory):
    """A model copy and an activation cache computed on it."""
    root = tmp_path_factory.mktemp("keys")
    model = Path(shutil.copytree(tiny_wan, root / "model"))
    out = root / "activations.safetensors"
    assert not api.extract(str(model), PAIRS / "violence.yaml", out=out).reused
    return model, out


def _reused(model, out: Path, **changes) -> bool:
    """Extract into a copy of the cache with one input changed; True when the cache was reused."""
    copy = out.with_name(f"copy-{len(list(out.parent.iterdir()))}.safetensors")
    shutil.copyfile(out, copy)
    kwargs = {"sites": None, "dtype": "float32", "pairs": PAIRS / "violence.yaml", **changes}
    return api.extract(model, kwargs.pop("pairs"), out=copy, **kwargs).reused


def test_same_inputs_reuse_the_cache(cached):
    model, out = cached
    assert _reused(str(model), out)


def test_pairs_content_sites_dtype_revision_and_id_each_invalidate(cached, tmp_path):
    model, out = cached
    source = resolve_model(str(model))
    edited_pairs = tmp_path / "violence.yaml"
    edited_pairs.write_text((PAIRS / "violence.yaml").read_text().replace("a cat", "a dog", 1))
    assert not _reused(source, out, pairs=edited_pairs)
    assert not _reused(source, out, sites=["text_embedder_in"])
    assert not _reused(source, out, dtype="bfloat16")
    assert not _reused(dataclasses.replace(source, revision="0" * 40), out)
    assert not _reused(dataclasses.replace(source, repo_id="someone/else"), out)


def test_tool_version_invalidates(cached, monkeypatch):
    model, out = cached
    monkeypatch.setattr(api, "__version__", "999.0")
    assert not _reused(str(model), out)


@pytest.mark.parametrize("part", ["text encoder weight", "text embedder weight", "tokenizer file", "denoiser config"])
def test_a_changed_model_file_invalidates_even_with_same_size_and_mtime(tiny_wan, tmp_path, part):
    model = Path(shutil.copytree(tiny_wan, tmp_path / "model"))
    out = tmp_path / "activations.safetensors"
    api.extract(str(model), PAIRS / "violence.yaml", out=out)
    if part == "text encoder weight":
        path = model / "text_encoder" / "model.safetensors"
        _flip_tensor_byte(path, next(k for k in tensor_infos(path.parent) if "shared" in k))
    elif part == "text embedder weight":
        key = "condition_embedder.text_embedder.linear_1.weight"
        _flip_tensor_byte(weight_map(model / "transformer")[key], key)
    else:
        path = model / ("tokenizer/tokenizer_config.json" if part == "tokenizer file" else "transformer/config.json")
        stat = path.stat()
        text = path.read_text()
        path.write_text(text.replace(" ", "\t", 1) if part == "tokenizer file" else text.replace('"eps": 1e-06', '"eps": 2e-06'))
        assert path.read_text() != text
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert not api.extract(str(model), PAIRS / "violence.yaml", out=out).reused


def test_weights_extraction_never_reads_do_not_invalidate(tiny_wan, tmp_path):
    """The attn2 weights are edited by apply, not read by extract: the cache stays valid (and
    refusal vectors computed on a base model apply to its already-edited copy)."""
    model = Path(shutil.copytree(tiny_wan, tmp_path / "model"))
    out = tmp_path / "activations.safetensors"
    api.extract(str(model), PAIRS / "violence.yaml", out=out)
    key = "blocks.0.attn2.to_k.weight"
    _flip_tensor_byte(weight_map(model / "transformer")[key], key)
    assert api.extract(str(model), PAIRS / "violence.yaml", out=out).reused


def test_factorize_cache_is_keyed_by_every_parameter(cached, tmp_path):
    model, out = cached
    from vidunlearn.artifacts import ActivationSet, RefusalVectors

    acts = ActivationSet.load(out)
    refusal = tmp_path / "refusal.safetensors"
    first = api.factorize(acts, out=refusal, rank=2)
    key = lambda: RefusalVectors.load(refusal).meta["cache_key"]
    assert api.factorize(acts, out=refusal, rank=2).meta["cache_key"] == first.meta["cache_key"]
    seen = {key()}
    for change in ({"rank": 3}, {"alpha": 0.5}, {"method": "pca"}, {"level": "pair", "rank": 1}):
        api.factorize(acts, out=refusal, **change)
        assert key() not in seen, change
        seen.add(key())
    other = dataclasses.replace(acts, meta={**acts.meta, "cache_key": "another extraction"})
    api.factorize(other, out=refusal, rank=2)
    assert key() not in seen
    with torch.no_grad():
        assert torch.isfinite(RefusalVectors.load(refusal).sites["transformer/cross_attn_kv"].direction).all()
