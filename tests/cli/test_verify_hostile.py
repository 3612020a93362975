"""`vidunlearn verify --base` against hostile outputs: each one is a real `apply` output (tiny Wan,
the session fixture ``made``), copied and tampered with, often with its manifest (and even its
safetensors metadata) rewritten to match, the way an attacker who wants a passing verify would.
Every one must fail with one line; the untouched outputs of every format must still pass. Hostile
manifests: test_verify_manifests.py; the default remap's own checks: test_verify_remap.py."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from verify_tools import (K0, V1, apply_violence, copy_output, fails, forge_recipe, manifest_of, rehash, rewrite,
                          shard_of)
from verify_tools import verify_cli as run
from vidunlearn.verify import verify

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
        out = apply_violence(tiny_wan22, tmp_path / (options.get("output_format") or "folder"), **options)
        checked = verify(out, str(tiny_wan22))
        assert sorted(checked.sites) == ["transformer/cross_attn_kv", "transformer_2/cross_attn_kv"]
        assert len(checked.changed) == 8 and {c.rank for c in checked.changed} == {1}


# ------------------------------------------------------------------ the hostile tester's outputs
def test_reverted_edit_with_rehashed_manifest_fails(tiny_wan, made, tmp_path):
    out = copy_output(made["diffusers"], tmp_path / "reverted")
    for rel, action in manifest_of(out)["actions"].items():
        if action == "rewrite":
            (out / rel).unlink()
            os.link(tiny_wan / rel, out / rel)
    rehash(out)
    for args in ((out,), (out, "--base", tiny_wan)):  # the hashes agree; the shards were not written by apply
        fails(run(*args), "which the manifest lists as edited", "an unedited copy")
    rehash(out, lambda m: m.update(edited=[]))  # "0 tensors changed", and none listed
    fails(run(out, "--base", tiny_wan), "which the manifest does not list")
    forge_recipe(out, lambda r: None)  # the reverted shards claim to be apply's, the list is back
    rehash(out, lambda m: m.update(edited=manifest_of(made["diffusers"])["edited"]))
    fails(run(out, "--base", tiny_wan), "holds an unedited copy of", "which the recipe edits")


@pytest.mark.parametrize("made_as, claimed", [("diffusers", "lora"), ("diffusers", "single-file"), ("lora", "diffusers"),
                                              ("single-file", "lora"), ("lora", "single-file")])
def test_the_format_is_read_from_the_files_never_from_the_manifest(tiny_wan, made, tmp_path, made_as, claimed):
    out = copy_output(made[made_as], tmp_path / "claims")
    rehash(out, lambda m: m.update(format=claimed))
    fails(run(out, "--base", tiny_wan), f"the manifest says format {claimed!r}, but the files are a {made_as} output")
    fails(run(out), "the manifest says format")


def test_a_listed_tensor_replaced_by_random_full_rank_values_fails(tiny_wan, made, tmp_path):
    out = copy_output(made["diffusers"], tmp_path / "random")
    rewrite(shard_of(out, K0), lambda t: t.update({K0: torch.randn(24, 24) * t[K0].std()}))
    rehash(out)
    fails(run(out, "--base", tiny_wan), "W' - W has rank", "the recipe's edit has rank 1")


def test_a_listed_tensor_with_the_right_rank_but_another_direction_fails(tiny_wan, made, tmp_path):
    out = copy_output(made["diffusers"], tmp_path / "direction")
    base = load_file(shard_of(tiny_wan, V1))[V1]
    other = torch.nn.functional.normalize(torch.randn(24, 1, generator=torch.Generator().manual_seed(3)), dim=0)
    rewrite(shard_of(out, V1), lambda t: t.update({V1: base - (base @ other) @ other.T}))  # W (I - r r^T): rank 1, s = 1
    rehash(out)
    fails(run(out, "--base", tiny_wan), "removes other directions than the rest of site transformer/cross_attn_kv")


def test_a_change_in_the_edit_directions_that_is_not_the_projection_fails(tiny_wan, made, tmp_path):
    """a rank-1 change along the very direction the edit removed, but not -s W q q^T (a planted
    change hiding in the edit's own row space)"""
    out = copy_output(made["diffusers"], tmp_path / "planted")
    shard = shard_of(out, K0)
    edited, base = load_file(shard)[K0], load_file(shard_of(tiny_wan, K0))[K0]
    q = torch.linalg.svd(edited - base).Vh[:1].T  # the removed direction, (24, 1)
    planted = torch.randn(24, 1, generator=torch.Generator().manual_seed(5)) * 0.3
    rewrite(shard, lambda t: t.update({K0: edited + planted @ q.T}))
    rehash(out)
    fails(run(out, "--base", tiny_wan), "is not -s (W Q) Q^T with the recipe's strength s = 1")


def test_an_unlisted_tensor_changed_and_added_to_the_list_fails(tiny_wan, made, tmp_path):
    out = copy_output(made["diffusers"], tmp_path / "unlisted")
    key = "blocks.0.attn1.to_q.weight"
    rewrite(shard_of(out, key), lambda t: t.update({key: t[key] * 0.5}))
    rehash(out)
    fails(run(out, "--base", tiny_wan), "differs from the base but is not listed as edited")
    rehash(out, lambda m: m["edited"].append({**m["edited"][0], "tensor": key}))
    fails(run(out, "--base", tiny_wan), f"the manifest lists transformer/{key} as edited, but it is not an edit site")


def test_a_tensor_removed_from_a_shard_fails(tiny_wan, made, tmp_path):
    out = copy_output(made["diffusers"], tmp_path / "removed")
    key = "blocks.0.attn2.to_k.bias"
    rewrite(shard_of(out, key), lambda t: t.pop(key))
    rehash(out)
    fails(run(out, "--base", tiny_wan), f"tensor {key!r} of the base is missing from this file")


@pytest.mark.parametrize("change, phrase", [
    (lambda r: r.update(strength=0.5), "written for another recipe"),
    (lambda r: r.update(mode="uce"), "written for another recipe"),
    (lambda r: r.update(modules="to_k"), "written for another recipe"),
], ids=["strength", "mode", "modules"])
def test_a_changed_recipe_fails(tiny_wan, made, tmp_path, change, phrase):
    out = copy_output(made["diffusers"], tmp_path / "recipe")
    rehash(out, lambda m: change(m["recipe"]))
    fails(run(out), phrase)
    fails(run(out, "--base", tiny_wan), phrase)


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
    out = copy_output(made["diffusers"], tmp_path / "forged")
    forge_recipe(out, change, listed)
    fails(run(out, "--base", tiny_wan), phrase)


def test_a_replace_bias_change_outside_the_edit_fails(tiny_wan, made, tmp_path):
    assert run(made["replace"], "--base", tiny_wan).exit_code == 0
    out = copy_output(made["replace"], tmp_path / "bias")
    key = "blocks.0.attn2.to_k.bias"
    rewrite(shard_of(out, key), lambda t: t.update({key: t[key] + 0.05 * torch.randn(24)}))
    rehash(out)
    fails(run(out, "--base", tiny_wan), "b' - b is not in the column space of W' - W")


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
    out = copy_output(made["diffusers"], tmp_path / "out")
    os.link(base / "transformer" / name, out / "transformer" / name)  # what apply did before: link every other file
    rehash(out)
    for args in ((out, "--base", base), (out,)):
        fails(run(*args), name, "holds 'blocks.0.attn2.to_k.weight', which the manifest lists as edited, but apply "
               "did not write this file: an unedited copy")
    rewrite(out / "transformer" / name, lambda t: None, _provenance(shard_of(out, K0)))  # it now claims to be apply's
    rehash(out)
    fails(run(out, "--base", base), name, "holds an unedited copy of 'blocks.0.attn2.to_k.weight', which the recipe edits")


def test_an_fp16_variant_that_was_edited_too_passes(tiny_wan, made, tmp_path):
    """the other way to handle a variant: edit it like the shards (what apply may do)"""
    from vidunlearn.edit import project_weight

    name = "diffusion_pytorch_model.fp16.safetensors"
    base = _base_with(tiny_wan, tmp_path / "base", name, _fp16_variant(tiny_wan))
    out = copy_output(made["diffusers"], tmp_path / "out")
    shutil.copyfile(base / "transformer" / name, out / "transformer" / name)
    edited = {}
    for rel, action in manifest_of(out)["actions"].items():
        if action == "rewrite":
            edited.update(load_file(out / rel))
    first = load_file(shard_of(tiny_wan, K0))[K0]
    q = torch.linalg.svd(edited[K0] - first).Vh[:1].T  # the site's direction
    recipe = _provenance(shard_of(out, K0))  # the metadata apply writes into the files it edits
    rewrite(out / "transformer" / name, lambda t: t.update({k: project_weight(t[k], q, 1.0) for k in
                                                             (K0, V1, "blocks.0.attn2.to_v.weight",
                                                              "blocks.1.attn2.to_k.weight")}), recipe)
    rehash(out)
    result = run(out, "--base", base)
    assert result.exit_code == 0, result.output
    assert result.output.count("attn2.to_k.weight") == 4  # two shards and two variant tensors


def test_a_variant_or_pickle_left_out_passes_a_shard_left_out_fails(tiny_wan, made, tmp_path):
    """leaving an unedited copy out is the safe way to handle it; every tensor is still in the shards"""
    name = "diffusion_pytorch_model.fp16.safetensors"
    base = _base_with(tiny_wan, tmp_path / "base", name, _fp16_variant(tiny_wan))
    (base / "transformer" / "diffusion_pytorch_model.bin").write_bytes(b"never unpickled")
    assert run(made["diffusers"], "--base", base).exit_code == 0
    out = copy_output(made["diffusers"], tmp_path / "out")
    shard = shard_of(out, "blocks.1.attn1.to_q.weight")  # one that holds no edited tensor
    shard.unlink()
    rehash(out)
    fails(run(out, "--base", base), "a file of the base is missing from the output", shard.name)


def _provenance(file: Path) -> dict:
    from vidunlearn.model import read_header

    return {k: v for k, v in read_header(file)[0]["__metadata__"].items() if k.startswith("vidunlearn.")}


@pytest.mark.parametrize("rel", ["transformer/diffusion_pytorch_model.bin", "transformer/model.pt",
                                 "transformer/transformer.ckpt", "transformer/model.gguf", "transformer/weights.data",
                                 "wan_t2v_original.safetensors", "original/wan.pth"])
def test_a_weight_file_beside_the_edited_shards_fails_by_its_name(tiny_wan, made, tmp_path, rel):
    """pickles are never opened: the file is refused for its place and name alone"""
    out = copy_output(made["diffusers"], tmp_path / "out")
    (out / rel).parent.mkdir(exist_ok=True)
    shutil.copyfile(shard_of(tiny_wan, K0), out / rel)  # an unedited copy of an edited tensor
    rehash(out)
    fails(run(out, "--base", tiny_wan), rel.rsplit("/", 1)[-1])
    fails(run(out), rel.rsplit("/", 1)[-1], "unedited copy")


@pytest.mark.parametrize("made_as", ["single-file", "lora"])
def test_an_extra_weight_file_beside_a_single_file_or_lora_fails(tiny_wan, made, tmp_path, made_as):
    for extra in ("transformer.bin", "wan_original.safetensors"):
        out = copy_output(made[made_as], tmp_path / f"{made_as}-{extra}")
        shutil.copyfile(shard_of(tiny_wan, K0), out / extra)
        rehash(out)
        fails(run(out, "--base", tiny_wan), extra)
        fails(run(out), extra)


def test_lora_factors_tampered_within_the_edit_direction_fail(tiny_wan, made, tmp_path):
    out = copy_output(made["lora"], tmp_path / "lora")
    file = out / "pytorch_lora_weights.safetensors"
    key = "diffusion_model.blocks.0.cross_attn.k.lora_B.weight"
    rewrite(file, lambda t: t.update({key: torch.randn(24, 1, generator=torch.Generator().manual_seed(1))}))
    rehash(out)
    fails(run(out, "--base", tiny_wan), "is not -s (W Q) Q^T")


def test_lora_with_a_module_added_or_removed_fails(tiny_wan, made, tmp_path):
    out = copy_output(made["lora"], tmp_path / "added")
    prefix = "diffusion_model.blocks.0.self_attn.q."
    rewrite(out / "pytorch_lora_weights.safetensors",
             lambda t: t.update({prefix + "lora_A.weight": torch.zeros(1, 24), prefix + "lora_B.weight": torch.zeros(24, 1)}))
    rehash(out)
    fails(run(out, "--base", tiny_wan), "LoRA module 'blocks.0.attn1.to_q' is not an edit site of the recipe")
    out = copy_output(made["lora"], tmp_path / "removed")
    prefix = "diffusion_model.blocks.1.cross_attn.v."
    rewrite(out / "pytorch_lora_weights.safetensors",
             lambda t: [t.pop(prefix + "lora_A.weight"), t.pop(prefix + "lora_B.weight")])
    rehash(out)
    fails(run(out, "--base", tiny_wan), "which the LoRA lacks")


def test_single_file_with_a_random_edited_tensor_fails(tiny_wan, made, tmp_path):
    out = copy_output(made["single-file"], tmp_path / "single")
    key = "blocks.1.cross_attn.k.weight"
    rewrite(out / "transformer.safetensors", lambda t: t.update({key: torch.randn(24, 24)}))
    rehash(out)
    fails(run(out, "--base", tiny_wan), "W' - W has rank")


# ------------------------------------------------------------------------------ fp8 single file
def _fp8_base(tiny_wan: Path, path: Path) -> Path:
    """The tiny transformer as one ComfyUI-style fp8 file: original keys with the prefix, every 2-D
    weight float8_e4m3fn with its ``scale_weight``."""
    from vidunlearn.adapters.wankeys import PREFIX, to_original

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
    from vidunlearn.adapters.wankeys import PREFIX

    base = _fp8_base(tiny_wan, tmp_path / "wan_fp8.safetensors")
    out = apply_violence(base, tmp_path / "out", config=str(tiny_wan))
    assert run(out, "--base", base).exit_code == 0
    file = out / "wan_fp8.safetensors"
    key = PREFIX + "blocks.0.cross_attn.k.weight"
    tampered = copy_output(out, tmp_path / "random")
    rewrite(tampered / file.name, lambda t: t.update({key: torch.randn(24, 24).to(torch.float8_e4m3fn)}))
    rehash(tampered)
    fails(run(tampered, "--base", base), "W' - W has rank")
    tampered = copy_output(out, tmp_path / "scale")
    scale = PREFIX + "blocks.0.self_attn.q.scale_weight"  # the scale of a weight the recipe does not edit
    rewrite(tampered / file.name, lambda t: t.update({scale: t[scale] * 2}))
    rehash(tampered)
    fails(run(tampered, "--base", base), f"tensor {scale!r} differs from the base but is not listed as edited")
