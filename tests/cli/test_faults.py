"""Faults and hostile inputs through the real CLI: disk full, read-only destinations, truncated
or corrupted files, NaN weights, pickles, escaping paths, remote code, overlapping outputs.
Each must give one `error:` line (no traceback), leave no output or temporary sibling, and leave
the source model byte for byte as it was."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import pickle
import resource
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import PAIRS, checkpoint_problems, leftovers
from vidunlearn.cli import app
from vidunlearn.model import tensor_infos

runner = CliRunner()
SHARD1 = "transformer/diffusion_pytorch_model-00001-of-00007.safetensors"


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def tree(folder: Path) -> dict[str, str]:
    """relative path -> SHA-256 of every file (links followed)."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def one_error(result, *needles: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in result.output, result.output


@pytest.fixture
def model(tiny_wan, tmp_path) -> Path:
    """A private copy of the tiny model that a test may damage."""
    return Path(shutil.copytree(tiny_wan, tmp_path / "model"))


@contextlib.contextmanager
def mounted(folder: Path, options: str):
    """A real tmpfs at ``folder`` (needs mount privileges; the test is skipped without them)."""
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


# ---------------------------------------------------------------------- disk full, read-only
def test_file_size_limit_mid_write_fails_cleanly(tiny_wan, tiny_refusal, tmp_path):
    """RLIMIT_FSIZE makes the kernel refuse writes past 20 KB (EFBIG) in the middle of the first
    rewritten shard: a real write fault, no privileges needed."""
    before = tree(tiny_wan)
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20_000, hard))
    try:
        result = run("apply", "--model", tiny_wan, "--refusal", tiny_refusal, "--out", tmp_path / "out")
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    one_error(result, "I/O error while writing the output", "File too large", "nothing was written")
    assert list(tmp_path.iterdir()) == [] and tree(tiny_wan) == before


@pytest.mark.parametrize("what", ["checkpoint", "cache"])
def test_disk_full_fails_cleanly(tiny_wan, tiny_refusal, tmp_path, what):
    """A real full file system (a 64 KiB tmpfs; the checkpoint is ~500 KB, the cache ~90 KB)."""
    before = tree(tiny_wan)
    with mounted(tmp_path / "disk", "size=64k") as disk:
        if what == "checkpoint":
            result = run("apply", "--model", tiny_wan, "--refusal", tiny_refusal, "--out", disk / "out")
        else:
            result = run("extract", "--model", tiny_wan, "--pairs", PAIRS / "violence.yaml", "--work-dir", disk / "work")
        # the checkpoint is refused before writing (free-space check); the cache fails mid-write
        one_error(result, "MiB free" if what == "checkpoint" else "No space left on device", "nothing was written")
        assert [p for p in disk.rglob("*") if p.is_file()] == [] and leftovers(disk) == []
    assert tree(tiny_wan) == before


@pytest.mark.parametrize("command", ["apply", "extract", "sample", "tiny"])
def test_read_only_destination_is_refused_before_writing(tiny_wan, tiny_refusal, tmp_path, command):
    with mounted(tmp_path / "ro", "ro,size=1m") as ro:
        out = ro / "out"
        args = {"apply": ("apply", "--model", tiny_wan, "--refusal", tiny_refusal, "--out", out),
                "extract": ("extract", "--model", tiny_wan, "--pairs", PAIRS / "violence.yaml", "--out", out),
                "sample": ("sample", "--model", tiny_wan, "--prompt", "a cat", "--out", out),
                "tiny": ("tiny", "--out", out)}[command]
        one_error(run(*args), "not writable")


def test_unwritable_destination_without_privileges(tiny_wan, tiny_refusal):
    """/proc refuses new folders even to root: the kernel error becomes one line."""
    one_error(run("apply", "--model", tiny_wan, "--refusal", tiny_refusal, "--out", "/proc/vidunlearn-test/out"), "/proc")


def test_output_overlapping_the_model_is_refused(model, tiny_refusal):
    before = tree(model)
    for out in (model, model / "edited", model.parent):
        one_error(run("apply", "--model", model, "--refusal", tiny_refusal, "--out", out, "--force"), "overlaps the model folder")
    assert tree(model) == before


# ------------------------------------------------------------- truncated / corrupted / NaN
def _truncate(path: Path, drop: int = 100) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:-drop])


@pytest.mark.parametrize("damage", ["truncated shard", "corrupt header", "header lies about shape", "truncated text encoder"])
def test_damaged_model_files_give_one_line(model, tiny_refusal, tmp_path, damage):
    shard = model / SHARD1
    if damage == "truncated shard":
        _truncate(shard)
    elif damage == "corrupt header":
        data = bytearray(shard.read_bytes())
        data[8:40] = b"\xff" * 32
        shard.write_bytes(bytes(data))
    elif damage == "header lies about shape":
        data = shard.read_bytes()
        length = int.from_bytes(data[:8], "little")
        header = json.loads(data[8:8 + length])
        key = next(k for k in header if k != "__metadata__")
        header[key]["shape"] = [d * 2 for d in header[key]["shape"]] or [2]
        raw = json.dumps(header).encode()
        raw += b" " * (-len(raw) % 8)
        shard.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + length:])
    else:
        _truncate(model / "text_encoder" / "model.safetensors")
    source = ["--refusal", tiny_refusal] if damage != "truncated text encoder" else \
        ["--pairs", PAIRS / "violence.yaml", "--work-dir", tmp_path / "work"]
    result = run("apply", "--model", model, *source, "--out", tmp_path / "out")
    one_error(result, "not a readable safetensors file")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("damage", ["truncated", "bit flip", "garbage"])
def test_damaged_cache_file_gives_one_line(tiny_refusal, tmp_path, damage):
    cache = tmp_path / "activations.safetensors"
    shutil.copyfile(tiny_refusal.with_name("activations.safetensors"), cache)
    data = bytearray(cache.read_bytes())
    if damage == "truncated":
        data = data[: len(data) // 2]
    elif damage == "bit flip":
        data[-5] ^= 0x10
    else:
        data = bytearray(os.urandom(len(data)))
    cache.write_bytes(bytes(data))
    result = run("factorize", "--activations", cache, "--out", tmp_path / "refusal.safetensors")
    one_error(result, "activations.safetensors")
    assert "checksum" in result.output if damage == "bit flip" else "not a readable" in result.output
    assert not (tmp_path / "refusal.safetensors").exists()


def test_damaged_cache_is_recomputed_not_reused(tiny_wan, tmp_path):
    work = tmp_path / "work"
    assert run("extract", "--model", tiny_wan, "--pairs", PAIRS / "violence.yaml", "--work-dir", work).exit_code == 0
    cache = work / "violence" / "activations.safetensors"
    good = cache.read_bytes()
    damaged = bytearray(good)
    damaged[-5] ^= 0x10
    cache.write_bytes(bytes(damaged))
    result = run("extract", "--model", tiny_wan, "--pairs", PAIRS / "violence.yaml", "--work-dir", work)
    assert result.exit_code == 0 and "do not match" in result.output and "wrote" in result.output
    assert cache.read_bytes() == good


def _poison(path: Path, key_part: str, value: float) -> None:
    from safetensors.torch import load_file, save_file

    tensors = load_file(path)
    key = next(k for k in sorted(tensors) if key_part in k)
    tensors[key].view(-1)[0] = value
    save_file(tensors, path, metadata={"format": "pt"})


def test_nan_in_text_encoder_weights_gives_one_line(model, tmp_path):
    _poison(model / "text_encoder" / "model.safetensors", "shared.weight", float("nan"))
    result = run("apply", "--model", model, "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "out",
                 "--work-dir", tmp_path / "work")
    one_error(result, "NaN or Inf")
    assert not (tmp_path / "out").exists()


def test_inf_in_an_edited_weight_gives_one_line(model, tiny_refusal, tmp_path):
    infos = tensor_infos(model / "transformer")
    shard = infos["blocks.0.attn2.to_k.weight"].file
    _poison(shard, "blocks.0.attn2.to_k.weight", float("inf"))
    result = run("apply", "--model", model, "--refusal", tiny_refusal, "--out", tmp_path / "out")
    one_error(result, "NaN or Inf")
    assert not (tmp_path / "out").exists() and leftovers(tmp_path) == []


# ------------------------------------------------------------------------ hostile model files
class _Boom:
    def __reduce__(self):
        return (os.system, (f"touch {os.environ['VIDUNLEARN_TEST_MARKER']}",))


@pytest.mark.parametrize("component", ["text_encoder", "transformer"])
def test_pickle_weights_are_refused_never_loaded(model, tmp_path, monkeypatch, component):
    marker = tmp_path / "unpickled"
    monkeypatch.setenv("VIDUNLEARN_TEST_MARKER", str(marker))
    folder = model / component
    for file in list(folder.glob("*.safetensors*")):
        file.unlink()
    (folder / ("pytorch_model.bin" if component == "text_encoder" else "diffusion_pytorch_model.bin")).write_bytes(pickle.dumps(_Boom()))
    for args in (["apply", "--model", model, "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "out", "--work-dir", tmp_path / "w"],
                 ["sample", "--model", model, "--prompt", "a cat", "--out", tmp_path / "s", "--steps", "1", "--frames", "1",
                  "--height", "16", "--width", "16"]):
        result = run(*args)
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        assert "safetensors" in result.output
    assert "never unpickles" in run(*["apply", "--model", model, "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "out",
                                      "--work-dir", tmp_path / "w"]).output
    assert not marker.exists(), "a pickle was executed"
    assert not (tmp_path / "out").exists() and not (tmp_path / "s").exists()


@pytest.mark.parametrize("name", ["../../../etc/passwd", "/etc/passwd", "sub/../../x.safetensors", "", 7])
def test_index_paths_cannot_escape_the_model_folder(model, tiny_refusal, tmp_path, name):
    index = model / "transformer" / "diffusion_pytorch_model.safetensors.index.json"
    data = json.loads(index.read_text())
    first = next(iter(data["weight_map"]))
    data["weight_map"][first] = name
    index.write_text(json.dumps(data))
    result = run("apply", "--model", model, "--refusal", tiny_refusal, "--out", tmp_path / "out")
    one_error(result, "not a file of this folder")
    assert not (tmp_path / "out").exists()


def test_symlink_out_of_the_model_folder_is_never_copied(model, tiny_refusal, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("hf_do_not_publish_me")
    (model / "tokenizer" / "notes.txt").symlink_to(secret)
    result = run("apply", "--model", model, "--refusal", tiny_refusal, "--out", tmp_path / "out")
    one_error(result, "links to a file outside the model folder", "notes.txt")
    assert not (tmp_path / "out").exists()


def test_remote_code_component_is_refused(model, tmp_path):
    index = model / "model_index.json"
    data = json.loads(index.read_text())
    data["scheduler"] = ["my_scheduler", "EvilScheduler"]
    index.write_text(json.dumps(data))
    (model / "scheduler" / "my_scheduler.py").write_text("raise SystemExit('remote code ran')\n")
    for args in (["apply", "--model", model, "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "o"],
                 ["sample", "--model", model, "--prompt", "a cat", "--out", tmp_path / "s"]):
        one_error(run(*args), "never code shipped with a model")


def test_hub_cache_layout_under_a_dot_cache_folder_is_copied_whole(tiny_wan, tiny_refusal, tmp_path):
    """huggingface_hub stores files as blobs named by their SHA-256 and links to them from the
    snapshot, under ~/.cache: the links are allowed, and every file reaches the output."""
    repo = tmp_path / ".cache" / "huggingface" / "hub" / "models--org--tiny"
    snapshot = repo / "snapshots" / ("0" * 40)
    for file in sorted(p for p in tiny_wan.rglob("*") if p.is_file()):
        digest = hashlib.sha256(file.read_bytes()).hexdigest()
        blob = repo / "blobs" / digest
        blob.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(file, blob)
        link = snapshot / file.relative_to(tiny_wan)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    result = run("apply", "--model", snapshot, "--refusal", tiny_refusal, "--out", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert checkpoint_problems(tmp_path / "out") == []
    assert set(tree(tmp_path / "out")) - {"README.md", "vidunlearn.json"} == set(tree(tiny_wan))


def test_megabyte_prompt_on_the_command_line_is_refused(tiny_wan, tmp_path):
    one_error(run("sample", "--model", tiny_wan, "--prompt", "a" * (1 << 20), "--out", tmp_path / "s"), "characters long")
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize("case", ["all differences zero", "all pairs identical"])
def test_degenerate_covariance_through_the_cli(tmp_path, case):
    """Activations whose unsafe and safe tokens coincide (or whose pairs are all the same pair)
    cannot define a direction: factorize says so in one line and writes nothing."""
    import torch

    from vidunlearn.artifacts import ActivationSet

    generator = torch.Generator().manual_seed(0)
    if case == "all differences zero":
        unsafe = [torch.randn(3, 8, generator=generator) for _ in range(4)]
        safe = [t.clone() for t in unsafe]
    else:
        unsafe, safe = [torch.randn(3, 8, generator=generator)] * 4, [torch.randn(3, 8, generator=generator)] * 4
    tokens = {"transformer/cross_attn_kv": {"unsafe": unsafe, "safe": safe,
                                            "neutral": [torch.randn(5, 8, generator=generator) for _ in range(3)]}}
    acts = tmp_path / "activations.safetensors"
    ActivationSet(tokens=tokens, meta={"sites": ["transformer/cross_attn_kv"], "concept": "x"}).save(acts)
    result = run("factorize", "--activations", acts, "--level", "pair", "--rank", "2")
    one_error(result, "identical" if case == "all differences zero" else "exceeds the rank of the data")
    assert not (tmp_path / "refusal.safetensors").exists()


HOSTILE_JSON = {
    "model_index.json": "[" * 100_000 + "]" * 100_000,
    "transformer/config.json": "[1, 2]",
    "transformer/diffusion_pytorch_model.safetensors.index.json": '{"weight_map": ' + "[" * 100_000 + "]" * 100_000 + "}",
    "text_encoder/config.json": "{" * 50_000,
}


@pytest.mark.parametrize("rel", sorted(HOSTILE_JSON))
def test_hostile_model_json_gives_one_line(model, tiny_refusal, tmp_path, rel):
    (model / rel).write_text(HOSTILE_JSON[rel])
    source = ["--pairs", PAIRS / "violence.yaml", "--work-dir", tmp_path / "w"] if rel.startswith("text_encoder") \
        else ["--refusal", tiny_refusal]
    result = run("apply", "--model", model, *source, "--out", tmp_path / "out")
    one_error(result)
    assert any(m in result.output for m in ("cannot read", "not a JSON object", "unreadable")), result.output
    assert not (tmp_path / "out").exists()


def test_component_name_cannot_escape_the_model_folder(model, tiny_refusal, tmp_path):
    index = model / "model_index.json"
    data = json.loads(index.read_text())
    data["../../outside"] = ["diffusers", "AutoencoderKLWan"]
    index.write_text(json.dumps(data))
    one_error(run("apply", "--model", model, "--refusal", tiny_refusal, "--out", tmp_path / "out"), "not a file of this folder")
    assert not (tmp_path / "out").exists()


def test_too_little_free_space_is_refused_before_writing(tiny_wan, tiny_refusal, tmp_path, monkeypatch):
    """The free-space check without privileges: the file system reports 1 KiB free."""
    from collections import namedtuple

    from vidunlearn import fsutil

    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(fsutil.shutil, "disk_usage", lambda path: usage(1 << 30, (1 << 30) - 1024, 1024))
    result = run("apply", "--model", tiny_wan, "--refusal", tiny_refusal, "--out", tmp_path / "out")
    one_error(result, "MiB free", "nothing was written")
    assert list(tmp_path.iterdir()) == []


def test_extract_onto_a_folder_is_refused_before_any_work(tiny_wan, tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    (folder / "precious").write_text("keep me")
    one_error(run("extract", "--model", tiny_wan, "--pairs", PAIRS / "violence.yaml", "--out", folder), "folder is in the way")
    assert (folder / "precious").read_text() == "keep me"
