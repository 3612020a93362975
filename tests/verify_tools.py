"""Helpers of the `verify --base` tests: real `apply` outputs (tiny Wan) tampered with the way an
attacker who wants a passing verify would (the shards rewritten, the manifest rehashed, even the
files' ``vidunlearn.recipe`` metadata forged). The outputs themselves are the session fixture
``made`` (tests/conftest.py)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from vidunlearn import api
from vidunlearn.cli import app
from vidunlearn.hashing import sha256_file, sha256_json

PAIRS = Path(__file__).resolve().parents[1] / "pairs"
runner = CliRunner()
K0 = "blocks.0.attn2.to_k.weight"
V1 = "blocks.1.attn2.to_v.weight"


PAPER = {"mode": "project", "method": "cpca"}


def apply_violence(model: Path, out: Path, **options) -> Path:
    """The tampering below is planted into the paper's projection (rank 1 on the tiny model, whose
    width 24 is below the remap's rank, so a remap change there is full rank and only its place
    and the rest of the file can be checked): ``mode`` is the paper's unless given."""
    options = {**PAPER, **options} if "mode" not in options else options
    output = api.OutputOptions(format=options.pop("output_format", None), save_dtype=options.pop("save_dtype", None))
    load = api.LoadOptions(config=options.pop("config", None))
    api.apply(str(model), out=out, pairs=[PAIRS / "violence.yaml"], work_dir=out.parent / "work",
              recipe=api.EditRecipe(**options), load=load, output=output)
    return out


def verify_cli(*args) -> object:
    return runner.invoke(app, ["verify", *[str(a) for a in args]])


def fails(result, *phrases: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output, result.output
    for phrase in phrases:
        assert phrase in result.output, result.output


def copy_output(folder: Path, destination: Path) -> Path:
    return Path(shutil.copytree(folder, destination))


def manifest_of(out: Path) -> dict:
    return json.loads((out / "vidunlearn.json").read_text())


def rehash(out: Path, edit: Callable[[dict], None] | None = None) -> None:
    """What an attacker does after tampering: list every file again with its new SHA-256."""
    manifest = manifest_of(out)
    if edit is not None:
        edit(manifest)
    manifest["files"] = {p.relative_to(out).as_posix(): sha256_file(p) for p in sorted(out.rglob("*"))
                         if p.is_file() and p.name != "vidunlearn.json"}
    (out / "vidunlearn.json").write_text(json.dumps(manifest))


def rewrite(file: Path, change: Callable[[dict[str, torch.Tensor]], None], metadata: dict | None = None) -> None:
    with safe_open(str(file), framework="pt") as handle:
        meta = handle.metadata() or {}
    tensors = load_file(file)
    change(tensors)
    file.unlink()  # it may be a hard link to the base
    save_file(tensors, str(file), metadata={**meta, **(metadata or {})})


def shard_of(out: Path, key: str) -> Path:
    index = json.loads((out / "transformer" / "diffusion_pytorch_model.safetensors.index.json").read_text())
    return out / "transformer" / index["weight_map"][key]


def forge_recipe(out: Path, change: Callable[[dict], None], listed: list[str] | None = None) -> None:
    """Change the recipe and make everything that records it agree: the manifest, its list of
    edited tensors and the ``vidunlearn.recipe`` metadata of every written file."""
    manifest = manifest_of(out)
    change(manifest["recipe"])
    digest = sha256_json(manifest["recipe"])
    for rel, action in manifest["actions"].items():
        if action in ("rewrite", "write") and rel.endswith(".safetensors"):
            rewrite(out / rel, lambda tensors: None, {"vidunlearn.recipe": digest})

    def edit(m: dict) -> None:
        m["recipe"] = manifest["recipe"]
        if listed is not None:
            m["edited"] = [{**m["edited"][0], "tensor": t} for t in listed]
    rehash(out, edit)
