"""The streamed shard writer (checkpoint.rewrite_shard) against an in-memory reference
(checkpoint.rewrite_shard_in_memory: safetensors load_file -> replace -> save_file).

What holds, found by running both on the same edits:
- every tensor of the streamed file is bitwise equal to the in-memory file's (same keys,
  dtypes, shapes), untouched tensors are bitwise equal to the source's, and edited ones are
  exactly ``project_weight`` of the source;
- the parsed headers are equal, the tensors appear in the same order with the same
  ``data_offsets``, the header lengths are equal and the data sections are byte-identical;
- the files are NOT byte-identical as files, and cannot be made so: safetensors' writer stores
  ``__metadata__`` in a Rust HashMap, so its key order changes from one process to the next
  (and its writer emits non-ASCII as raw UTF-8 where ``json.dumps`` escapes it). The streamed
  writer keeps the source's key order then appends ours, deterministically. So these tests
  assert byte identity for everything except the order of the ``__metadata__`` keys.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from vidunlearn.checkpoint import rewrite_shard, rewrite_shard_in_memory
from vidunlearn.edit import project_weight
from vidunlearn.model import read_header, weight_map
from vidunlearn.tiny import build_tiny_wan

METADATA = {"vidunlearn.version": "0.1.0", "vidunlearn.concepts": "nudity,violence", "vidunlearn.recipe": "ab" * 32,
            "vidunlearn.base": "tiny", "vidunlearn.base_revision": "local"}


def _basis(hidden: int, rank: int, seed: int) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(hidden, rank, generator=generator, dtype=torch.float64))
    return q.float()


def _edits(shard: Path, pattern: tuple[str, ...], basis: torch.Tensor) -> dict:
    """key -> producer of project_weight(original) for every matching 2-D weight of ``shard``."""
    with safe_open(str(shard), framework="pt") as handle:
        keys = [k for k in handle.keys() if k.endswith(".weight") and any(p in k for p in pattern)
                and len(handle.get_slice(k).get_shape()) == 2]

    def producer(key: str):
        def run() -> torch.Tensor:
            with safe_open(str(shard), framework="pt") as handle:
                return project_weight(handle.get_tensor(key), basis, 1.0)
        return run

    return {k: producer(k) for k in keys}


def _raw(path: Path) -> tuple[dict, bytes, bytes]:
    """(parsed header, header bytes incl. the 8-byte length, data section bytes)."""
    header, start = read_header(path)
    data = path.read_bytes()
    return header, data[:start], data[start:]


def _both(source: Path, tmp_path: Path, edits: dict) -> tuple[Path, Path]:
    streamed, in_memory = tmp_path / f"streamed-{source.name}", tmp_path / f"memory-{source.name}"
    rewrite_shard(source, streamed, edits, METADATA)
    rewrite_shard_in_memory(source, in_memory, edits, METADATA)
    return streamed, in_memory


def _check_pair(source: Path, streamed: Path, in_memory: Path, edited: set[str]) -> None:
    original, a, b = load_file(str(source)), load_file(str(streamed)), load_file(str(in_memory))
    assert set(a) == set(b) == set(original)
    for key in original:
        assert a[key].dtype == b[key].dtype == original[key].dtype, key
        assert a[key].shape == b[key].shape == original[key].shape, key
        assert torch.equal(a[key], b[key]), key  # bitwise for floats without NaN
        assert a[key].view(torch.uint8).equal(b[key].view(torch.uint8)), key
        if key in edited:
            assert not torch.equal(a[key], original[key]), f"{key} was planned but did not change"
        else:
            assert a[key].view(torch.uint8).equal(original[key].view(torch.uint8)), key

    header_a, raw_a, data_a = _raw(streamed)
    header_b, raw_b, data_b = _raw(in_memory)
    source_header, _ = read_header(source)
    # Same layout as the source and as safetensors' own writer; only metadata grows.
    assert header_a == header_b
    assert [k for k in header_a if k != "__metadata__"] == [k for k in header_b if k != "__metadata__"]
    assert {k: v for k, v in header_a.items() if k != "__metadata__"} == \
        {k: v for k, v in source_header.items() if k != "__metadata__"}
    assert header_a["__metadata__"] == {**source_header.get("__metadata__", {}), **METADATA}
    assert len(raw_a) == len(raw_b) and data_a == data_b
    assert streamed.stat().st_size == in_memory.stat().st_size
    # The files differ at most in the order of the __metadata__ keys: canonicalise and compare.
    canonical_a, canonical_b = _canonical(streamed), _canonical(in_memory)
    assert canonical_a == canonical_b
    # And the streamed writer is deterministic, unlike safetensors' (HashMap) metadata order.
    again = streamed.with_name("again-" + streamed.name)
    rewrite_shard(source, again, {k: (lambda k=k: a[k]) for k in edited}, METADATA)
    assert again.read_bytes() == streamed.read_bytes()


def _canonical(path: Path) -> bytes:
    header, start = read_header(path)
    header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw + path.read_bytes()[start:]


@pytest.fixture(scope="module")
def tiny_sharded(tmp_path_factory) -> Path:
    return build_tiny_wan(tmp_path_factory.mktemp("tiny") / "wan", shard_bytes=20_000)


def test_streamed_equals_in_memory_on_sharded_float32(tiny_sharded: Path, tmp_path: Path) -> None:
    shards = sorted(set(weight_map(tiny_sharded / "transformer").values()))
    assert len(shards) > 1
    basis = _basis(24, 2, seed=1)  # hidden size of the tiny transformer: 2 heads x 12
    touched = 0
    for shard in shards:
        edits = _edits(shard, ("attn2.to_k", "attn2.to_v", "attn1.to_q"), basis)
        touched += len(edits)
        streamed, in_memory = _both(shard, tmp_path, edits)
        _check_pair(shard, streamed, in_memory, set(edits))
        original = load_file(str(shard))
        for key, produce in edits.items():
            assert torch.equal(load_file(str(streamed))[key], project_weight(original[key], basis, 1.0))
    assert touched >= 6  # 2 blocks x (to_k, to_v, to_q)


def test_streamed_equals_in_memory_on_single_file_bf16(tmp_path: Path) -> None:
    generator = torch.Generator().manual_seed(0)

    def rand(*shape: int, dtype=torch.bfloat16) -> torch.Tensor:
        return torch.randn(*shape, generator=generator).to(dtype)

    tensors = {f"blocks.{i}.attn2.{n}.weight": rand(48, 32) for i in range(3) for n in ("to_k", "to_v", "to_q")}
    tensors.update({f"blocks.{i}.attn2.{n}.bias": rand(48) for i in range(3) for n in ("to_k", "to_v")})
    tensors.update({"blocks.0.scale_shift_table": rand(1, 6, 32, dtype=torch.float32),  # mixed dtypes
                    "proj_out.weight": rand(7, 32), "rope.freqs": torch.arange(5, dtype=torch.int64)})
    source = tmp_path / "diffusion_pytorch_model.safetensors"
    save_file(tensors, str(source), metadata={"format": "pt"})
    edits = _edits(source, ("attn2.to_k", "attn2.to_v"), _basis(32, 3, seed=2))
    assert len(edits) == 6
    streamed, in_memory = _both(source, tmp_path, edits)
    _check_pair(source, streamed, in_memory, set(edits))
    assert load_file(str(streamed))["blocks.0.attn2.to_k.weight"].dtype == torch.bfloat16


def test_untouched_tensor_bytes_are_copied_verbatim(tiny_sharded: Path, tmp_path: Path) -> None:
    basis = _basis(24, 1, seed=3)
    for shard in sorted(set(weight_map(tiny_sharded / "transformer").values())):
        edits = _edits(shard, ("attn2.to_k", "attn2.to_v"), basis)
        streamed = tmp_path / shard.name
        rewrite_shard(shard, streamed, edits, METADATA)
        source_header, source_start = read_header(shard)
        out_header, out_start = read_header(streamed)
        source_bytes, out_bytes = shard.read_bytes(), streamed.read_bytes()
        assert len(out_bytes) - out_start == len(source_bytes) - source_start
        for key, entry in source_header.items():
            if key == "__metadata__":
                continue
            begin, end = entry["data_offsets"]
            assert out_header[key]["data_offsets"] == [begin, end]
            old = source_bytes[source_start + begin:source_start + end]
            new = out_bytes[out_start + begin:out_start + end]
            assert (new != old) if key in edits else (new == old), key


@pytest.mark.parametrize("kernel_copy", [True, False], ids=["copy_file_range", "pread-pwrite-fallback"])
def test_returned_digest_is_the_written_files_sha256(tiny_sharded: Path, tmp_path: Path, monkeypatch,
                                                     kernel_copy: bool) -> None:
    import errno
    import os

    from vidunlearn.hashing import sha256_file

    if not kernel_copy:  # a file system where the kernel cannot copy between the two files
        def refuse(*args, **kwargs):
            raise OSError(errno.EXDEV, "cross-device")
        monkeypatch.setattr(os, "copy_file_range", refuse)
    basis = _basis(24, 2, seed=4)
    for shard in sorted(set(weight_map(tiny_sharded / "transformer").values())):
        edits = _edits(shard, ("attn2.to_k", "attn2.to_v"), basis)
        streamed, in_memory = _both(shard, tmp_path, edits)
        digest = rewrite_shard(shard, tmp_path / "digest.safetensors", edits, METADATA)
        assert digest == sha256_file(tmp_path / "digest.safetensors")
        # edits computed in this thread, when their turn comes, give the same bytes
        assert rewrite_shard(shard, tmp_path / "inline.safetensors", edits, METADATA, prefetch=0) == digest
        _check_pair(shard, streamed, in_memory, set(edits))


def test_truncated_shard_is_a_clear_error(tiny_sharded: Path, tmp_path: Path) -> None:
    from vidunlearn.errors import ModelError

    shard = sorted(set(weight_map(tiny_sharded / "transformer").values()))[0]
    cut = tmp_path / shard.name
    cut.write_bytes(shard.read_bytes()[:-100])
    with pytest.raises(ModelError, match="truncated"):
        rewrite_shard(cut, tmp_path / "out.safetensors", {}, METADATA)


def test_shards_rewritten_in_parallel_give_the_same_folder(tiny_sharded: Path, tmp_path: Path) -> None:
    from vidunlearn.checkpoint import hash_outputs, write_checkpoint
    from vidunlearn.plan import plan_edits
    from vidunlearn.edit import EditSpec
    from vidunlearn.model import resolve_model

    source = resolve_model(str(tiny_sharded))
    plan = plan_edits(source, {"transformer/cross_attn_kv": EditSpec("project", 1.0, _basis(24, 2, seed=5))}, None)
    written = {}
    for workers in (1, 3):
        out = tmp_path / f"w{workers}"
        out.mkdir()
        written[workers] = write_checkpoint(source, out, plan, METADATA, workers=workers)
        assert written[workers].sha256 == hash_outputs(out)
    assert written[1] == written[3]
    assert sum(a == "rewrite" for a in written[1].actions.values()) > 1  # several shards really were rewritten
