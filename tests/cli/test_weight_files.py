"""Which files a diffusers output carries: never a weight file of a denoiser that was not edited
(precision variants, .bin and other formats, stray copies), every file of a symlinked component
folder, copies instead of hard links with --copy; and no weight that a loader would initialise
at random (missing or unexpected weights in the text encoder, the text path, the pipeline)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from conftest import PAIRS, checkpoint_problems, one_error, run
from vidunlearn.model import resolve_model

TRANSFORMER = "transformer"
TINY_SAMPLE = ("--prompt", "a cat", "--steps", "1", "--frames", "1", "--height", "16", "--width", "16")


def files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def variant_model(tiny_wan, tmp_path_factory) -> Path:
    """tiny_wan with, beside the transformer's default shards, an fp16 variant sharded like the
    Hub's (``diffusion_pytorch_model.fp16-0000N-of-0000M.safetensors`` + its index json) and a
    ``diffusion_pytorch_model.bin``: the same weights three times."""
    from diffusers import WanTransformer3DModel

    model = Path(shutil.copytree(tiny_wan, tmp_path_factory.mktemp("variant") / "model"))
    transformer = WanTransformer3DModel.from_pretrained(model / TRANSFORMER)
    config = (model / TRANSFORMER / "config.json").read_bytes()
    transformer.to(torch.float16).save_pretrained(model / TRANSFORMER, variant="fp16", max_shard_size=20_000)
    (model / TRANSFORMER / "config.json").write_bytes(config)  # as it was: the default weights are tiny_wan's
    torch.save(transformer.state_dict(), model / TRANSFORMER / "diffusion_pytorch_model.bin")
    assert (model / TRANSFORMER / "diffusion_pytorch_model.safetensors.index.fp16.json").is_file()
    return model


@pytest.fixture
def model(tiny_wan, tmp_path) -> Path:
    """A private copy of the tiny model that a test may change."""
    return Path(shutil.copytree(tiny_wan, tmp_path / "model"))


def _apply(model: Path, out: Path, *extra):
    return run("apply", "--model", model, "--pairs", PAIRS / "violence.yaml", "--out", out,
               "--work-dir", out.parent / "work", *extra)


# ------------------------------------------------------------------- variants and other formats
@pytest.mark.parametrize("extra, needles", [
    ((), ["transformer holds the fp16 variant (4 files) and diffusion_pytorch_model.bin",
          "pass --variant fp16 to edit that variant instead, or --drop-other-weights"]),
    (("--variant", "fp16"), ["transformer holds the default weights (8 files) and diffusion_pytorch_model.bin",
                             "--drop-other-weights"]),
    (("--dry-run",), ["the fp16 variant (4 files)"]),
], ids=["default", "variant", "dry-run"])
def test_weights_that_would_be_copied_unedited_are_refused(variant_model, tiny_refusal, tmp_path, extra, needles):
    """Before: exit 0, the fp16 variant and the .bin hard-linked into the output unchanged, and
    ``from_pretrained(out, variant="fp16")`` loaded the original weights."""
    result = run("apply", "--model", variant_model, "--refusal", tiny_refusal, "--out", tmp_path / "out", *extra)
    one_error(result, "they would reach the output unedited", *needles)
    assert list(tmp_path.iterdir()) == []


def test_a_weight_file_outside_the_components_is_refused(model, tiny_refusal, tmp_path):
    """An original-layout checkpoint beside the diffusers components (as some mirrors ship)."""
    shutil.copyfile(model / TRANSFORMER / "diffusion_pytorch_model-00001-of-00007.safetensors", model / "wan2.1_t2v.pth")
    one_error(run("apply", "--model", model, "--refusal", tiny_refusal, "--out", tmp_path / "out"),
              "the model folder holds wan2.1_t2v.pth")
    result = run("apply", "--model", model, "--refusal", tiny_refusal, "--out", tmp_path / "out", "--drop-other-weights")
    assert result.exit_code == 0, result.output
    assert "wan2.1_t2v.pth" not in files(tmp_path / "out")


def test_weights_in_the_folder_of_an_absent_component_are_refused(model, tiny_refusal, tmp_path):
    """model_index.json says transformer_2 is absent ([null, null]), yet its folder holds a copy
    of the transformer: no component of the pipeline, so its weights are not passed as the VAE's are."""
    shutil.copytree(model / TRANSFORMER, model / "transformer_2")
    assert json.loads((model / "model_index.json").read_text())["transformer_2"] == [None, None]
    one_error(run("apply", "--model", model, "--refusal", tiny_refusal, "--out", tmp_path / "out"),
              "the model folder holds transformer_2/diffusion_pytorch_model-00001-of-00007.safetensors")


def test_variant_is_edited(variant_model, tmp_path):
    """--variant fp16 edits the fp16 shards; from_pretrained(out, variant="fp16") loads them and
    differs from the base's fp16 weights on exactly the planned tensors."""
    from diffusers import WanPipeline, WanTransformer3DModel

    out = tmp_path / "out"
    result = _apply(variant_model, out, "--variant", "fp16", "--drop-other-weights")
    assert result.exit_code == 0, result.output
    assert "left out of the output (9 files)" in result.output
    variant = {f for f in files(variant_model / TRANSFORMER) if "fp16" in f}
    assert len(variant) == 4 and files(out / TRANSFORMER) == {"config.json", *variant}
    manifest = json.loads((out / "vidunlearn.json").read_text())
    assert manifest["base"]["variant"] == "fp16" and len(manifest["left_out"]) == 9
    assert 'from_pretrained("out", variant="fp16")' in (out / "README.md").read_text()
    edited = WanPipeline.from_pretrained(out, variant="fp16").transformer.state_dict()
    base = WanTransformer3DModel.from_pretrained(variant_model / TRANSFORMER, variant="fp16").state_dict()
    changed = {k for k in base if not torch.equal(edited[k], base[k])}
    assert changed == {r["tensor"] for r in manifest["edited"]} and len(changed) == 4
    result = run("verify", out, "--base", variant_model)
    assert result.exit_code == 0, result.output
    assert resolve_model(str(out)).variant == "fp16"  # its only weights: read without --variant, by sample too
    sampled = run("sample", "--model", out, "--out", tmp_path / "s", *TINY_SAMPLE)
    assert sampled.exit_code == 0, sampled.output


def test_drop_other_weights_leaves_them_out(variant_model, tiny_refusal, tmp_path):
    from diffusers import WanPipeline

    out = tmp_path / "out"
    result = run("apply", "--model", variant_model, "--refusal", tiny_refusal, "--out", out, "--drop-other-weights")
    assert result.exit_code == 0, result.output
    assert "--drop-other-weights: left out of the output (5 files)" in result.output
    assert not {f for f in files(out) if "fp16" in f or f.endswith(".bin")}
    assert checkpoint_problems(out) == []
    assert WanPipeline.from_pretrained(out).transformer is not None


def test_an_unknown_variant_is_refused(variant_model, tiny_refusal, tmp_path):
    one_error(run("apply", "--model", variant_model, "--refusal", tiny_refusal, "--out", tmp_path / "out",
                  "--variant", "bf16"), "no bf16 weights, only the variant(s) default, fp16")


# ------------------------------------------------------------------------ symlinked folders
def test_symlinked_component_folder_is_written_as_real_files(model, tiny_refusal, tmp_path):
    """Before: the vae behind ``vae -> vae_real`` was left out (rglob does not follow folder
    links), exit 0, and the output did not load."""
    from diffusers import WanPipeline

    (model / "vae").rename(model / "vae_real")
    (model / "vae").symlink_to("vae_real", target_is_directory=True)
    out = tmp_path / "out"
    result = run("apply", "--model", model, "--refusal", tiny_refusal, "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "vae").is_dir() and not (out / "vae").is_symlink()
    assert files(out / "vae") == files(model / "vae_real")
    assert checkpoint_problems(out) == []
    assert WanPipeline.from_pretrained(out).vae is not None


@pytest.mark.parametrize("link, needle", [("outside", "links to a folder outside the model folder"),
                                          ("loop", "links to a folder that contains it (a loop)")])
def test_folder_links_out_of_the_model_or_in_a_loop_are_refused(model, tiny_refusal, tmp_path, link, needle):
    if link == "outside":
        shutil.move(model / "vae", tmp_path / "elsewhere")
        (model / "vae").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    else:
        (model / "vae" / "again").symlink_to("..", target_is_directory=True)
    one_error(run("apply", "--model", model, "--refusal", tiny_refusal, "--out", tmp_path / "out"), needle)
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------------------- hard links, --copy
def _inodes(folder: Path) -> set[tuple[int, int]]:
    return {(s.st_dev, s.st_ino) for p in folder.rglob("*") if p.is_file() for s in [p.stat()]}


def test_copy_shares_no_file_with_the_base(tiny_wan, tiny_refusal, tmp_path):
    linked, copied = tmp_path / "linked", tmp_path / "copied"
    result = run("apply", "--model", tiny_wan, "--refusal", tiny_refusal, "--out", linked)
    assert result.exit_code == 0, result.output
    assert "are hard links to the base model's files" in result.output and "--copy" in result.output
    assert _inodes(linked) & _inodes(tiny_wan)  # the premise: without --copy they are shared
    result = run("apply", "--model", tiny_wan, "--refusal", tiny_refusal, "--out", copied, "--copy")
    assert result.exit_code == 0, result.output
    assert "hard links" not in result.output
    assert not _inodes(copied) & _inodes(tiny_wan)
    assert set(json.loads((copied / "vidunlearn.json").read_text())["actions"].values()) == {"copy", "rewrite"}
    assert checkpoint_problems(copied) == []
    (copied / "vae" / "config.json").write_text("{}")  # writing into the output ...
    assert json.loads((tiny_wan / "vae" / "config.json").read_text())  # ... leaves the base as it was


# ---------------------------------------------------------- missing and unexpected weights
def _rewrite(file: Path, change) -> None:
    tensors = load_file(file)
    save_file(change(tensors), file, metadata={"format": "pt"})


@pytest.mark.parametrize("case, needles", [
    ("one unrelated tensor", ["the text_encoder weights do not match its config", "missing (e.g. encoder.",
                              "1 unexpected (e.g. foo.bar)"]),
    ("one weight missing", ["the text_encoder weights do not match its config: 1 missing (e.g. encoder.final_layer_norm.weight)"]),
])
def test_text_encoder_with_missing_weights_is_refused(model, tmp_path, case, needles):
    """Before: transformers initialised the missing weights at random (a warning) and apply
    computed the edit from that encoder, exit 0."""
    weights = model / "text_encoder" / "model.safetensors"
    if case == "one unrelated tensor":
        _rewrite(weights, lambda t: {"foo.bar": torch.zeros(3)})
    else:
        _rewrite(weights, lambda t: {k: v for k, v in t.items() if k != "encoder.final_layer_norm.weight"})
    one_error(_apply(model, tmp_path / "out"), *needles)
    assert not (tmp_path / "out").exists()
    one_error(run("sample", "--model", model, "--out", tmp_path / "s", *TINY_SAMPLE), *needles)


def test_pipeline_with_a_missing_vae_weight_is_refused_by_sample(model, tmp_path):
    """Before: diffusers initialised the missing VAE weight at random and sample wrote videos."""
    weights = model / "vae" / "diffusion_pytorch_model.safetensors"
    _rewrite(weights, lambda t: {k: v for k, v in t.items() if k != "decoder.conv_out.weight"})
    one_error(run("sample", "--model", model, "--out", tmp_path / "s", *TINY_SAMPLE),
              "the vae weights do not match its config: 1 missing (e.g. decoder.conv_out.weight)")
    assert not (tmp_path / "s").exists()


def test_text_path_with_a_missing_weight_names_it(model, tmp_path):
    from vidunlearn.model import weight_map

    key = "condition_embedder.text_embedder.linear_1.bias"
    shard = weight_map(model / TRANSFORMER)[key]
    _rewrite(shard, lambda t: {k: v for k, v in t.items() if k != key})
    one_error(_apply(model, tmp_path / "out"), f"the transformer text path weights do not match its config: 1 missing (e.g. {key})")
    assert os.path.exists(model) and not (tmp_path / "out").exists()
