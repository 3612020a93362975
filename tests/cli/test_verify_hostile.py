"""`vidunlearn verify --base` against hostile outputs: each one is a real `apply` output (tiny Wan),
copied and tampered with, often with its manifest (and even its safetensors metadata) rewritten to
match, the way an attacker who wants a passing verify would. Every one must fail with one line; the
untouched outputs of every format must still pass. Plus hostile manifests, fuzzed with hypothesis."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from typer.testing import CliRunner

from vidunlearn import api
from vidunlearn.cli import app
from vidunlearn.errors import VidunlearnError
from vidunlearn.fsutil import sha256_file, sha256_json
from vidunlearn.verify import verify
from vidunlearn.verify_manifest import VerifyError, parse_manifest, read_manifest

PAIRS = Path(__file__).resolve().parents[2] / "pairs"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
runner = CliRunner()
K0 = "blocks.0.attn2.to_k.weight"
V1 = "blocks.1.attn2.to_v.weight"


PAPER = {"mode": "project", "method": "cpca"}


def _apply(model: Path, out: Path, **options) -> Path:
    """The tampering below is planted into the paper's projection (rank 1 on the tiny model, whose
    width 24 is below the remap's rank, so a remap change there is full rank and only its place
    and the rest of the file can be checked): ``mode`` is the paper's unless given."""
    options = {**PAPER, **options} if "mode" not in options else options
    api.apply(str(model), out=out, pairs=[PAIRS / "violence.yaml"], work_dir=out.parent / "work", **options)
    return out


@pytest.fixture(scope="module")
def made(tiny_wan, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("verify-hostile")
    return {"diffusers": _apply(tiny_wan, root / "folder"), "lora": _apply(tiny_wan, root / "lora", output_format="lora"),
            "single-file": _apply(tiny_wan, root / "single", output_format="single-file"),
            "replace": _apply(tiny_wan, root / "replace", mode="replace", method="cpca"),
            "remap": _apply(tiny_wan, root / "remap", mode="remap"),
            "remap-lora": _apply(tiny_wan, root / "remap-lora", mode="remap", output_format="lora"),
            "remap-single-file": _apply(tiny_wan, root / "remap-single", mode="remap", output_format="single-file"),
            "lora-bf16": _apply(tiny_wan, root / "lora-bf16", output_format="lora", save_dtype="bfloat16"),
            "single-file-fp16": _apply(tiny_wan, root / "single-fp16", output_format="single-file",
                                       save_dtype="float16")}


def run(*args) -> object:
    return runner.invoke(app, ["verify", *[str(a) for a in args]])


def _fails(result, *phrases: str) -> None:
    assert result.exit_code == 1, result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output, result.output
    for phrase in phrases:
        assert phrase in result.output, result.output


def _copy(folder: Path, destination: Path) -> Path:
    return Path(shutil.copytree(folder, destination))


def _manifest(out: Path) -> dict:
    return json.loads((out / "vidunlearn.json").read_text())


def _rehash(out: Path, edit: Callable[[dict], None] | None = None) -> None:
    """What an attacker does after tampering: list every file again with its new SHA-256."""
    manifest = _manifest(out)
    if edit is not None:
        edit(manifest)
    manifest["files"] = {p.relative_to(out).as_posix(): sha256_file(p) for p in sorted(out.rglob("*"))
                         if p.is_file() and p.name != "vidunlearn.json"}
    (out / "vidunlearn.json").write_text(json.dumps(manifest))


def _rewrite(file: Path, change: Callable[[dict[str, torch.Tensor]], None], metadata: dict | None = None) -> None:
    with safe_open(str(file), framework="pt") as handle:
        meta = handle.metadata() or {}
    tensors = load_file(file)
    change(tensors)
    file.unlink()  # it may be a hard link to the base
    save_file(tensors, str(file), metadata={**meta, **(metadata or {})})


def _shard(out: Path, key: str) -> Path:
    index = json.loads((out / "transformer" / "diffusion_pytorch_model.safetensors.index.json").read_text())
    return out / "transformer" / index["weight_map"][key]


def _forge_recipe(out: Path, change: Callable[[dict], None], listed: list[str] | None = None) -> None:
    """Change the recipe and make everything that records it agree: the manifest, its list of
    edited tensors and the ``vidunlearn.recipe`` metadata of every written file."""
    manifest = _manifest(out)
    change(manifest["recipe"])
    digest = sha256_json(manifest["recipe"])
    for rel, action in manifest["actions"].items():
        if action in ("rewrite", "write") and rel.endswith(".safetensors"):
            _rewrite(out / rel, lambda tensors: None, {"vidunlearn.recipe": digest})

    def edit(m: dict) -> None:
        m["recipe"] = manifest["recipe"]
        if listed is not None:
            m["edited"] = [{**m["edited"][0], "tensor": t} for t in listed]
    _rehash(out, edit)


# ------------------------------------------------------------------------------- still passing
def test_every_untouched_output_passes_with_the_recipe_checked(tiny_wan, made):
    for name, out in made.items():
        result = run(out, "--base", tiny_wan)
        assert result.exit_code == 0, (name, result.output)
        assert "ok: the changes are exactly the recipe's" in result.output
        assert "transformer/cross_attn_kv" in result.output
        assert ("rank 1 each" in result.output) == (not name.startswith("remap")), (name, result.output)


def test_wan22_two_experts_pass_in_every_format(tiny_wan22, tmp_path):
    for options in ({}, {"output_format": "single-file"}, {"output_format": "lora"}):
        out = _apply(tiny_wan22, tmp_path / (options.get("output_format") or "folder"), **options)
        checked = verify(out, str(tiny_wan22))
        assert sorted(checked.sites) == ["transformer/cross_attn_kv", "transformer_2/cross_attn_kv"]
        assert len(checked.changed) == 8 and {c.rank for c in checked.changed} == {1}


# ------------------------------------------------------------------ the hostile tester's outputs
def test_reverted_edit_with_rehashed_manifest_fails(tiny_wan, made, tmp_path):
    out = _copy(made["diffusers"], tmp_path / "reverted")
    for rel, action in _manifest(out)["actions"].items():
        if action == "rewrite":
            (out / rel).unlink()
            os.link(tiny_wan / rel, out / rel)
    _rehash(out)
    for args in ((out,), (out, "--base", tiny_wan)):  # the hashes agree; the shards were not written by apply
        _fails(run(*args), "which the manifest lists as edited", "an unedited copy")
    _rehash(out, lambda m: m.update(edited=[]))  # "0 tensors changed", and none listed
    _fails(run(out, "--base", tiny_wan), "which the manifest does not list")
    _forge_recipe(out, lambda r: None)  # the reverted shards claim to be apply's, the list is back
    _rehash(out, lambda m: m.update(edited=_manifest(made["diffusers"])["edited"]))
    _fails(run(out, "--base", tiny_wan), "holds an unedited copy of", "which the recipe edits")


@pytest.mark.parametrize("made_as, claimed", [("diffusers", "lora"), ("diffusers", "single-file"), ("lora", "diffusers"),
                                              ("single-file", "lora"), ("lora", "single-file")])
def test_the_format_is_read_from_the_files_never_from_the_manifest(tiny_wan, made, tmp_path, made_as, claimed):
    out = _copy(made[made_as], tmp_path / "claims")
    _rehash(out, lambda m: m.update(format=claimed))
    _fails(run(out, "--base", tiny_wan), f"the manifest says format {claimed!r}, but the files are a {made_as} output")
    _fails(run(out), "the manifest says format")


def test_a_listed_tensor_replaced_by_random_full_rank_values_fails(tiny_wan, made, tmp_path):
    out = _copy(made["diffusers"], tmp_path / "random")
    _rewrite(_shard(out, K0), lambda t: t.update({K0: torch.randn(24, 24) * t[K0].std()}))
    _rehash(out)
    _fails(run(out, "--base", tiny_wan), "W' - W has rank", "the recipe's edit has rank 1")


def test_a_listed_tensor_with_the_right_rank_but_another_direction_fails(tiny_wan, made, tmp_path):
    out = _copy(made["diffusers"], tmp_path / "direction")
    base = load_file(_shard(tiny_wan, V1))[V1]
    other = torch.nn.functional.normalize(torch.randn(24, 1, generator=torch.Generator().manual_seed(3)), dim=0)
    _rewrite(_shard(out, V1), lambda t: t.update({V1: base - (base @ other) @ other.T}))  # W (I - r r^T): rank 1, s = 1
    _rehash(out)
    _fails(run(out, "--base", tiny_wan), "removes other directions than the rest of site transformer/cross_attn_kv")


def test_a_change_in_the_edit_directions_that_is_not_the_projection_fails(tiny_wan, made, tmp_path):
    """a rank-1 change along the very direction the edit removed, but not -s W q q^T (a planted
    change hiding in the edit's own row space)"""
    out = _copy(made["diffusers"], tmp_path / "planted")
    shard = _shard(out, K0)
    edited, base = load_file(shard)[K0], load_file(_shard(tiny_wan, K0))[K0]
    q = torch.linalg.svd(edited - base).Vh[:1].T  # the removed direction, (24, 1)
    planted = torch.randn(24, 1, generator=torch.Generator().manual_seed(5)) * 0.3
    _rewrite(shard, lambda t: t.update({K0: edited + planted @ q.T}))
    _rehash(out)
    _fails(run(out, "--base", tiny_wan), "is not -s (W Q) Q^T with the recipe's strength s = 1")


def test_an_unlisted_tensor_changed_and_added_to_the_list_fails(tiny_wan, made, tmp_path):
    out = _copy(made["diffusers"], tmp_path / "unlisted")
    key = "blocks.0.attn1.to_q.weight"
    _rewrite(_shard(out, key), lambda t: t.update({key: t[key] * 0.5}))
    _rehash(out)
    _fails(run(out, "--base", tiny_wan), "differs from the base but is not listed as edited")
    _rehash(out, lambda m: m["edited"].append({**m["edited"][0], "tensor": key}))
    _fails(run(out, "--base", tiny_wan), f"the manifest lists transformer/{key} as edited, but it is not an edit site")


def test_a_tensor_removed_from_a_shard_fails(tiny_wan, made, tmp_path):
    out = _copy(made["diffusers"], tmp_path / "removed")
    key = "blocks.0.attn2.to_k.bias"
    _rewrite(_shard(out, key), lambda t: t.pop(key))
    _rehash(out)
    _fails(run(out, "--base", tiny_wan), f"tensor {key!r} of the base is missing from this file")


@pytest.mark.parametrize("change, phrase", [
    (lambda r: r.update(strength=0.5), "written for another recipe"),
    (lambda r: r.update(mode="uce"), "written for another recipe"),
    (lambda r: r.update(modules="to_k"), "written for another recipe"),
], ids=["strength", "mode", "modules"])
def test_a_changed_recipe_fails(tiny_wan, made, tmp_path, change, phrase):
    out = _copy(made["diffusers"], tmp_path / "recipe")
    _rehash(out, lambda m: change(m["recipe"]))
    _fails(run(out), phrase)
    _fails(run(out, "--base", tiny_wan), phrase)


@pytest.mark.parametrize("change, listed, phrase", [
    (lambda r: r.update(strength=0.5), None, "with the recipe's strength s = 0.5"),
    (lambda r: r["concepts"].append({**r["concepts"][0], "concept": "nudity"}), None,
     "has rank 1; the recipe's edit has rank 2"),
    (lambda r: r.update(subspace=True), None, "has rank 1; the recipe's edit has rank 4"),
    (lambda r: r.update(modules="to_k"), ["blocks.0.attn2.to_k.weight", "blocks.1.attn2.to_k.weight"],
     "'blocks.0.attn2.to_v.weight' differs from the base but is not listed as edited"),
    (lambda r: r.update(sites=["transformer/text_embedder_in"]), ["condition_embedder.text_embedder.linear_1.weight"],
     "holds 'condition_embedder.text_embedder.linear_1.weight', which the manifest lists as edited, but apply did "
     "not write this file: an unedited copy"),
    (lambda r: r.update(sites=["transformer/nowhere"]), None, "is not a site of the base"),
], ids=["strength", "concepts", "subspace", "modules", "sites", "unknown-site"])
def test_a_changed_recipe_fails_even_with_forged_metadata(tiny_wan, made, tmp_path, change, listed, phrase):
    out = _copy(made["diffusers"], tmp_path / "forged")
    _forge_recipe(out, change, listed)
    _fails(run(out, "--base", tiny_wan), phrase)


def test_a_replace_bias_change_outside_the_edit_fails(tiny_wan, made, tmp_path):
    assert run(made["replace"], "--base", tiny_wan).exit_code == 0
    out = _copy(made["replace"], tmp_path / "bias")
    key = "blocks.0.attn2.to_k.bias"
    _rewrite(_shard(out, key), lambda t: t.update({key: t[key] + 0.05 * torch.randn(24)}))
    _rehash(out)
    _fails(run(out, "--base", tiny_wan), "b' - b is not in the column space of W' - W")


# --------------------------------------------------- unedited copies beside the edited weights
def _base_with(tiny_wan: Path, destination: Path, name: str, content: Callable[[Path], None]) -> Path:
    """A copy of the tiny base (hard links) with one more file in transformer/."""
    base = Path(shutil.copytree(tiny_wan, destination, copy_function=os.link))
    content(base / "transformer" / name)
    return base


def _fp16_variant(tiny_wan: Path) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        tensors: dict[str, torch.Tensor] = {}
        for shard in (tiny_wan / "transformer").glob("*.safetensors"):
            tensors.update({k: v.half() for k, v in load_file(shard).items()})
        save_file(tensors, str(path), metadata={"format": "pt"})
    return write


def test_an_fp16_variant_linked_from_the_base_fails(tiny_wan, made, tmp_path):
    name = "diffusion_pytorch_model.fp16.safetensors"
    base = _base_with(tiny_wan, tmp_path / "base", name, _fp16_variant(tiny_wan))
    out = _copy(made["diffusers"], tmp_path / "out")
    os.link(base / "transformer" / name, out / "transformer" / name)  # what apply did before: link every other file
    _rehash(out)
    for args in ((out, "--base", base), (out,)):
        _fails(run(*args), name, "holds 'blocks.0.attn2.to_k.weight', which the manifest lists as edited, but apply "
               "did not write this file: an unedited copy")
    _rewrite(out / "transformer" / name, lambda t: None, _provenance(_shard(out, K0)))  # it now claims to be apply's
    _rehash(out)
    _fails(run(out, "--base", base), name, "holds an unedited copy of 'blocks.0.attn2.to_k.weight', which the recipe edits")


def test_an_fp16_variant_that_was_edited_too_passes(tiny_wan, made, tmp_path):
    """the other way to handle a variant: edit it like the shards (what apply may do)"""
    from vidunlearn.edit import project_weight

    name = "diffusion_pytorch_model.fp16.safetensors"
    base = _base_with(tiny_wan, tmp_path / "base", name, _fp16_variant(tiny_wan))
    out = _copy(made["diffusers"], tmp_path / "out")
    shutil.copyfile(base / "transformer" / name, out / "transformer" / name)
    edited = {}
    for rel, action in _manifest(out)["actions"].items():
        if action == "rewrite":
            edited.update(load_file(out / rel))
    first = load_file(_shard(tiny_wan, K0))[K0]
    q = torch.linalg.svd(edited[K0] - first).Vh[:1].T  # the site's direction
    recipe = _provenance(_shard(out, K0))  # the metadata apply writes into the files it edits
    _rewrite(out / "transformer" / name, lambda t: t.update({k: project_weight(t[k], q, 1.0) for k in
                                                             (K0, V1, "blocks.0.attn2.to_v.weight",
                                                              "blocks.1.attn2.to_k.weight")}), recipe)
    _rehash(out)
    result = run(out, "--base", base)
    assert result.exit_code == 0, result.output
    assert result.output.count("attn2.to_k.weight") == 4  # two shards and two variant tensors


def test_a_variant_or_pickle_left_out_passes_a_shard_left_out_fails(tiny_wan, made, tmp_path):
    """leaving an unedited copy out is the safe way to handle it; every tensor is still in the shards"""
    name = "diffusion_pytorch_model.fp16.safetensors"
    base = _base_with(tiny_wan, tmp_path / "base", name, _fp16_variant(tiny_wan))
    (base / "transformer" / "diffusion_pytorch_model.bin").write_bytes(b"never unpickled")
    assert run(made["diffusers"], "--base", base).exit_code == 0
    out = _copy(made["diffusers"], tmp_path / "out")
    shard = _shard(out, "blocks.1.attn1.to_q.weight")  # one that holds no edited tensor
    shard.unlink()
    _rehash(out)
    _fails(run(out, "--base", base), "a file of the base is missing from the output", shard.name)


def _provenance(file: Path) -> dict:
    from vidunlearn.model import read_header

    return {k: v for k, v in read_header(file)[0]["__metadata__"].items() if k.startswith("vidunlearn.")}


@pytest.mark.parametrize("rel", ["transformer/diffusion_pytorch_model.bin", "transformer/model.pt",
                                 "transformer/transformer.ckpt", "transformer/model.gguf", "transformer/weights.data",
                                 "wan_t2v_original.safetensors", "original/wan.pth"])
def test_a_weight_file_beside_the_edited_shards_fails_by_its_name(tiny_wan, made, tmp_path, rel):
    """pickles are never opened: the file is refused for its place and name alone"""
    out = _copy(made["diffusers"], tmp_path / "out")
    (out / rel).parent.mkdir(exist_ok=True)
    shutil.copyfile(_shard(tiny_wan, K0), out / rel)  # an unedited copy of an edited tensor
    _rehash(out)
    _fails(run(out, "--base", tiny_wan), rel.rsplit("/", 1)[-1])
    _fails(run(out), rel.rsplit("/", 1)[-1], "unedited copy")


@pytest.mark.parametrize("made_as", ["single-file", "lora"])
def test_an_extra_weight_file_beside_a_single_file_or_lora_fails(tiny_wan, made, tmp_path, made_as):
    for extra in ("transformer.bin", "wan_original.safetensors"):
        out = _copy(made[made_as], tmp_path / f"{made_as}-{extra}")
        shutil.copyfile(_shard(tiny_wan, K0), out / extra)
        _rehash(out)
        _fails(run(out, "--base", tiny_wan), extra)
        _fails(run(out), extra)


def test_lora_factors_tampered_within_the_edit_direction_fail(tiny_wan, made, tmp_path):
    out = _copy(made["lora"], tmp_path / "lora")
    file = out / "pytorch_lora_weights.safetensors"
    key = "diffusion_model.blocks.0.cross_attn.k.lora_B.weight"
    _rewrite(file, lambda t: t.update({key: torch.randn(24, 1, generator=torch.Generator().manual_seed(1))}))
    _rehash(out)
    _fails(run(out, "--base", tiny_wan), "is not -s (W Q) Q^T")


def test_lora_with_a_module_added_or_removed_fails(tiny_wan, made, tmp_path):
    out = _copy(made["lora"], tmp_path / "added")
    prefix = "diffusion_model.blocks.0.self_attn.q."
    _rewrite(out / "pytorch_lora_weights.safetensors",
             lambda t: t.update({prefix + "lora_A.weight": torch.zeros(1, 24), prefix + "lora_B.weight": torch.zeros(24, 1)}))
    _rehash(out)
    _fails(run(out, "--base", tiny_wan), "LoRA module 'blocks.0.attn1.to_q' is not an edit site of the recipe")
    out = _copy(made["lora"], tmp_path / "removed")
    prefix = "diffusion_model.blocks.1.cross_attn.v."
    _rewrite(out / "pytorch_lora_weights.safetensors",
             lambda t: [t.pop(prefix + "lora_A.weight"), t.pop(prefix + "lora_B.weight")])
    _rehash(out)
    _fails(run(out, "--base", tiny_wan), "which the LoRA lacks")


def test_single_file_with_a_random_edited_tensor_fails(tiny_wan, made, tmp_path):
    out = _copy(made["single-file"], tmp_path / "single")
    key = "blocks.1.cross_attn.k.weight"
    _rewrite(out / "transformer.safetensors", lambda t: t.update({key: torch.randn(24, 24)}))
    _rehash(out)
    _fails(run(out, "--base", tiny_wan), "W' - W has rank")


# --------------------------------------------------------------------------- hostile manifests
HOSTILE_MANIFESTS = {
    "a list": ("[]", "not an object"),
    "a number": ("7", "not an object"),
    "null": ("null", "not an object"),
    "100k nested lists": ("[" * 100_000 + "]" * 100_000, "no readable manifest"),
    "nesting inside the recipe": (None, "no readable manifest"),
    "not UTF-8": (b"\xff\xfe{", "no readable manifest"),
    "huge": (b" " * (17 << 20) + b"{}", "more than"),
    "files is a list": ({"files": []}, "field 'files'"),
    "a path out of the folder": ({"files": {"../../etc/passwd": "0" * 64}}, "not a file inside the output folder"),
    "an absolute path": ({"files": {"/etc/passwd": "0" * 64}}, "not a file inside the output folder"),
    "a bad digest": ({"files": {"README.md": 5}}, "not 64 hex digits"),
    "edited is a string": ({"edited": "x"}, "field 'edited'"),
    "strength is text": ({"recipe.strength": "1"}, "strength"),
    "strength is zero": ({"recipe.strength": 0}, "strength"),
    "strength is true": ({"recipe.strength": True}, "strength"),
    "sites is a number": ({"recipe.sites": 5}, "'sites'"),
    "rank is negative": ({"recipe.concepts": [{"rank": -1}]}, "'rank'"),
    "modules not a regex": ({"recipe.modules": "(("}, "not a valid regex"),
    "modules backtracks forever": ({"recipe.modules": "(a+)+$"}, "repeats a group"),
    "unknown mode": ({"recipe.mode": "erase"}, "recipe mode"),
    "schema 2": ({"schema": 2}, "schema"),
    "format is a dict": ({"format": {}}, "format"),
}


def _hostile(manifest: dict, case: str) -> bytes:
    text, _ = HOSTILE_MANIFESTS[case]
    if isinstance(text, (str, bytes)):
        return text.encode() if isinstance(text, str) else text
    if text is None:  # deep nesting inside an otherwise valid manifest
        body = json.dumps(manifest)
        return (body[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}").encode()
    for path, value in text.items():
        target = manifest
        *parents, last = path.split(".")
        for parent in parents:
            target = target[parent]
        target[last] = value
    return json.dumps(manifest).encode()


@pytest.mark.parametrize("case", sorted(HOSTILE_MANIFESTS))
def test_hostile_manifest_gives_one_line(tiny_wan, made, tmp_path, case):
    out = _copy(made["lora"], tmp_path / "out")
    (out / "vidunlearn.json").write_bytes(_hostile(_manifest(out), case))
    for args in ((out,), (out, "--base", tiny_wan)):
        _fails(run(*args), HOSTILE_MANIFESTS[case][1])


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=25)
_FIELDS = ["schema", "format", "files", "edited", "recipe", "recipe.sites", "recipe.modules", "recipe.mode",
           "recipe.strength", "recipe.subspace", "recipe.concepts"]


def _only_own_error(check: Callable[[], object]) -> None:
    try:
        check()
    except VidunlearnError as exc:
        assert "\n" not in exc.one_line()


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_manifest_random_bytes(data):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "vidunlearn.json").write_bytes(data)
        _only_own_error(lambda: read_manifest(Path(folder)))


@FUZZ
@given(st.dictionaries(st.sampled_from(_FIELDS), _json, min_size=1, max_size=4))
def test_fuzz_manifest_fields(made, replacements):
    manifest = _manifest(made["lora"])
    for path, value in replacements.items():
        target = manifest
        *parents, last = path.split(".")
        for parent in parents:
            target = target[parent] if isinstance(target.get(parent), dict) else target.setdefault("_", {})
        target[last] = value
    _only_own_error(lambda: parse_manifest(manifest, Path("vidunlearn.json")))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_FIELDS[4:]), _json | st.sampled_from(["transformer/cross_attn_kv", "to_k", "uce", "replace", 2.0]))
def test_fuzz_recipe_against_the_base(tiny_wan, made, field, value):
    """a forged recipe (metadata forged too) on a real LoRA output, checked against the real base"""
    with tempfile.TemporaryDirectory() as folder:
        out = _copy(made["lora"], Path(folder) / "out")
        manifest = _manifest(out)
        target = manifest
        *parents, last = field.split(".")
        for parent in parents:
            target = target[parent]
        target[last] = value
        try:
            digest = sha256_json(manifest["recipe"])
        except (TypeError, ValueError):
            digest = "-"
        _rewrite(out / "pytorch_lora_weights.safetensors", lambda t: None, {"vidunlearn.recipe": digest})
        _rehash(out, lambda m: m.update(recipe=manifest["recipe"]))
        _only_own_error(lambda: verify(out, str(tiny_wan)))


# ------------------------------------------------------------------------------ fp8 single file
def _fp8_base(tiny_wan: Path, path: Path) -> Path:
    """The tiny transformer as one ComfyUI-style fp8 file: original keys with the prefix, every 2-D
    weight float8_e4m3fn with its ``scale_weight``."""
    from vidunlearn.wankeys import PREFIX, to_original

    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted((tiny_wan / "transformer").glob("*.safetensors")):
        for key, value in load_file(shard).items():
            name = PREFIX + to_original(key)
            if value.ndim == 2 and key.endswith(".weight"):
                scale = value.abs().max() / torch.finfo(torch.float8_e4m3fn).max
                tensors[name] = (value / scale).to(torch.float8_e4m3fn)
                tensors[name[: -len("weight")] + "scale_weight"] = scale.reshape(1).float()
            else:
                tensors[name] = value
    save_file(tensors, str(path), metadata={"format": "pt"})
    return path


def test_fp8_single_file_passes_and_a_random_fp8_edit_or_a_changed_scale_fails(tiny_wan, tmp_path):
    from vidunlearn.wankeys import PREFIX

    base = _fp8_base(tiny_wan, tmp_path / "wan_fp8.safetensors")
    out = _apply(base, tmp_path / "out", config=str(tiny_wan))
    assert run(out, "--base", base).exit_code == 0
    file = out / "wan_fp8.safetensors"
    key = PREFIX + "blocks.0.cross_attn.k.weight"
    tampered = _copy(out, tmp_path / "random")
    _rewrite(tampered / file.name, lambda t: t.update({key: torch.randn(24, 24).to(torch.float8_e4m3fn)}))
    _rehash(tampered)
    _fails(run(tampered, "--base", base), "W' - W has rank")
    tampered = _copy(out, tmp_path / "scale")
    scale = PREFIX + "blocks.0.self_attn.q.scale_weight"  # the scale of a weight the recipe does not edit
    _rewrite(tampered / file.name, lambda t: t.update({scale: t[scale] * 2}))
    _rehash(tampered)
    _fails(run(tampered, "--base", base), f"tensor {scale!r} differs from the base but is not listed as edited")
