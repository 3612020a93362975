"""Every output format of `apply`, written by the real CLI and read back by diffusers' own loaders:
single file (original Wan keys, any dtype, single-file and fp8 sources) and the LoRA delta."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vidunlearn.cli import app
from vidunlearn.model import read_header, tensor_infos
from vidunlearn.adapters.wankeys import PREFIX, to_original

PAIRS = Path(__file__).resolve().parents[2] / "pairs"
runner = CliRunner()


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


def _apply(model, out: Path, *extra) -> Path:
    result = run("apply", "--model", model, "--pairs", PAIRS / "violence.yaml", "--out", out,
                 "--work-dir", out.parent / "work", *extra)
    assert result.exit_code == 0, result.output
    return out


@pytest.fixture(scope="module")
def outputs(tiny_wan, tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("formats")
    return {"diffusers": _apply(tiny_wan, root / "folder"),
            "single-file": _apply(tiny_wan, root / "single", "--format", "single-file"),
            "lora": _apply(tiny_wan, root / "lora", "--format", "lora")}


def _state(model) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _forward(transformer) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(1, 16, 2, 8, 8, generator=generator)
    text = torch.randn(1, 12, 32, generator=generator) * 3
    with torch.no_grad():
        return transformer(hidden_states=latents, timestep=torch.tensor([500]), encoder_hidden_states=text,
                           return_dict=False)[0]


def test_single_file_reads_back_bitwise_equal_with_from_single_file(tiny_wan, outputs):
    from diffusers import WanTransformer3DModel

    edited = _state(WanTransformer3DModel.from_pretrained(outputs["diffusers"] / "transformer"))
    file = outputs["single-file"] / "transformer.safetensors"
    loaded = _state(WanTransformer3DModel.from_single_file(str(file), config=str(tiny_wan), subfolder="transformer"))
    assert loaded.keys() == edited.keys()
    assert all(torch.equal(loaded[k], edited[k]) for k in edited)
    header, _ = read_header(file)
    keys = {k for k in header if k != "__metadata__"}
    assert "blocks.0.cross_attn.k.weight" in keys and "head.modulation" in keys and "blocks.0.norm3.weight" in keys
    meta = header["__metadata__"]
    assert meta["vidunlearn.concepts"] == "violence" and meta["vidunlearn.format"] == "single-file"
    assert meta["vidunlearn.strength"] == "1.0" and meta["vidunlearn.sites"] == "transformer/cross_attn_kv"
    assert len(meta["vidunlearn.pairs_sha256"]) == 64


def test_manifest_hashes_of_every_format_equal_a_re_read(outputs):
    """single files are hashed while written; the manifest must equal a fresh read of each file"""
    import json

    from vidunlearn.checkpoint import hash_outputs

    for out in outputs.values():
        manifest = json.loads((out / "vidunlearn.json").read_text())
        assert manifest["files"] == {k: v for k, v in hash_outputs(out).items() if k != "vidunlearn.json"}, out


def test_single_file_in_bfloat16(tiny_wan, outputs, tmp_path):
    from diffusers import WanTransformer3DModel

    out = _apply(tiny_wan, tmp_path / "bf16", "--format", "single-file", "--save-dtype", "bfloat16")
    file = out / "transformer.safetensors"
    assert {e["dtype"] for k, e in read_header(file)[0].items() if k != "__metadata__"} == {"BF16"}
    edited = _state(WanTransformer3DModel.from_pretrained(outputs["diffusers"] / "transformer"))
    loaded = _state(WanTransformer3DModel.from_single_file(str(file), config=str(tiny_wan), subfolder="transformer",
                                                           torch_dtype=torch.bfloat16))
    assert all(torch.equal(loaded[k], edited[k].to(torch.bfloat16)) for k in edited)
    assert file.stat().st_size < (outputs["single-file"] / "transformer.safetensors").stat().st_size * 0.6


def test_lora_on_the_base_pipeline_reproduces_the_edited_model(tiny_wan, outputs):
    from diffusers import WanPipeline, WanTransformer3DModel

    edited = _forward(WanTransformer3DModel.from_pretrained(outputs["diffusers"] / "transformer").eval())
    pipe = WanPipeline.from_pretrained(tiny_wan)
    base = _forward(pipe.transformer.eval())
    pipe.load_lora_weights(str(outputs["lora"]))
    with_lora = _forward(pipe.transformer)
    assert not torch.allclose(base, edited, atol=1e-3)  # the edit matters for this input ...
    torch.testing.assert_close(with_lora, edited, atol=1e-5, rtol=1e-4)  # ... and the LoRA is exactly it
    header, _ = read_header(outputs["lora"] / "pytorch_lora_weights.safetensors")
    keys = sorted(k for k in header if k != "__metadata__")
    assert keys[0] == "diffusion_model.blocks.0.cross_attn.k.lora_A.weight" and len(keys) == 8
    manifest = json.loads((outputs["lora"] / "vidunlearn.json").read_text())
    rank = manifest["recipe"]["edit_rank"]  # the remap's erase rows: the unsafe prompts' tokens
    assert rank > 1 and header["diffusion_model.blocks.0.cross_attn.k.lora_A.weight"]["shape"] == [rank, 24]
    assert header["__metadata__"]["vidunlearn.format"] == "lora"
    assert manifest["format"] == "lora" and len(manifest["edited"]) == 4
    assert "load_lora_weights" in (outputs["lora"] / "README.md").read_text()


def test_lora_with_a_bias_change_uses_diff_b(tiny_wan, tmp_path):
    from diffusers import WanPipeline, WanTransformer3DModel

    folder = _apply(tiny_wan, tmp_path / "replace", "--mode", "replace")
    lora = _apply(tiny_wan, tmp_path / "replace-lora", "--mode", "replace", "--format", "lora")
    header, _ = read_header(lora / "pytorch_lora_weights.safetensors")
    assert "diffusion_model.blocks.1.cross_attn.v.diff_b" in header
    pipe = WanPipeline.from_pretrained(tiny_wan)
    pipe.load_lora_weights(str(lora))
    edited = _forward(WanTransformer3DModel.from_pretrained(folder / "transformer").eval())
    torch.testing.assert_close(_forward(pipe.transformer), edited, atol=1e-5, rtol=1e-4)


def _single_file_base(tiny_wan: Path, path: Path, *, fp8: bool = False) -> Path:
    """The tiny transformer as one file with original keys and the ComfyUI prefix; with ``fp8``
    every 2-D linear weight becomes float8_e4m3fn with a per-tensor ``scale_weight``."""
    from safetensors.torch import load_file, save_file

    tensors: dict[str, torch.Tensor] = {}
    for shard in sorted((tiny_wan / "transformer").glob("*.safetensors")):
        tensors.update(load_file(shard))
    out: dict[str, torch.Tensor] = {}
    for key, value in tensors.items():
        name = PREFIX + to_original(key)
        if fp8 and value.ndim == 2 and key.endswith(".weight"):
            scale = value.abs().max() / torch.finfo(torch.float8_e4m3fn).max
            out[name] = (value / scale).to(torch.float8_e4m3fn)
            out[name[: -len("weight")] + "scale_weight"] = scale.reshape(1).float()
        else:
            out[name] = value
    if fp8:
        out["scaled_fp8"] = torch.zeros(2, dtype=torch.float8_e4m3fn)
    save_file(out, str(path), metadata={"format": "pt", "modelspec.title": "tiny"})
    return path


def test_single_file_source_stays_a_single_file(tiny_wan, outputs, tmp_path):
    from diffusers import WanTransformer3DModel

    source = _single_file_base(tiny_wan, tmp_path / "wan_tiny.safetensors")
    out = _apply(source, tmp_path / "out", "--config", tiny_wan)
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "vidunlearn.json", "wan_tiny.safetensors"]
    header, _ = read_header(out / "wan_tiny.safetensors")
    before, _ = read_header(source)
    assert header.keys() == before.keys() and header["__metadata__"]["modelspec.title"] == "tiny"
    loaded = _state(WanTransformer3DModel.from_single_file(str(out / "wan_tiny.safetensors"), config=str(tiny_wan),
                                                           subfolder="transformer"))
    edited = _state(WanTransformer3DModel.from_pretrained(outputs["diffusers"] / "transformer"))
    base = _state(WanTransformer3DModel.from_pretrained(tiny_wan / "transformer"))
    changed = {k for k in base if not torch.equal(loaded[k], base[k])}
    assert changed == {f"blocks.{b}.attn2.{kv}.weight" for b in (0, 1) for kv in ("to_k", "to_v")}
    # the same edit as from the folder (activations may differ in the last bit: another GEMM path)
    assert all(torch.allclose(loaded[k], edited[k], atol=1e-6) for k in edited)
    result = run("apply", "--model", source, "--config", tiny_wan, "--pairs", PAIRS / "violence.yaml",
                 "--out", tmp_path / "x", "--format", "diffusers", "--work-dir", tmp_path / "work")
    assert result.exit_code == 1 and "stays a single file" in result.output
    result = run("extract", "--model", source, "--config", tiny_wan, "--pairs", PAIRS / "violence.yaml",
                 "--work-dir", tmp_path / "work")
    assert result.exit_code == 0 and "reused" in result.output  # the same cache key as apply's extraction


def test_single_file_source_without_config_of_unknown_size_is_refused(tiny_wan, tmp_path):
    source = _single_file_base(tiny_wan, tmp_path / "wan_tiny.safetensors")
    result = run("apply", "--model", source, "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "o")
    assert result.exit_code == 1 and "cannot infer" in result.output and "2 blocks, hidden size 24" in result.output
    assert not (tmp_path / "o").exists()


def test_fp8_source_is_edited_in_float32_and_requantised(tiny_wan, tmp_path):
    from vidunlearn.quant import dequantize

    source = _single_file_base(tiny_wan, tmp_path / "wan_fp8.safetensors", fp8=True)
    result = run("apply", "--model", source, "--config", tiny_wan, "--pairs", PAIRS / "violence.yaml",
                 "--out", tmp_path / "out", "--work-dir", tmp_path / "work")
    assert result.exit_code == 0, result.output
    assert "survives re-quantisation" in result.output
    manifest = json.loads((tmp_path / "out" / "vidunlearn.json").read_text())
    quant = manifest["quantization"]
    assert set(quant["survival"]) == {f"{PREFIX}blocks.{b}.cross_attn.{kv}.weight" for b in (0, 1) for kv in "kv"}
    assert 0.5 < quant["min"] <= quant["mean"] < 1.2
    from safetensors.torch import load_file

    before, after = load_file(source), load_file(tmp_path / "out" / "wan_fp8.safetensors")
    assert after.keys() == before.keys() and after[f"{PREFIX}blocks.0.cross_attn.k.weight"].dtype == torch.float8_e4m3fn
    changed = {k for k in before if not torch.equal(before[k].view(torch.uint8) if before[k].dtype.itemsize == 1
                                                     else before[k], after[k].view(torch.uint8)
                                                     if after[k].dtype.itemsize == 1 else after[k])}
    assert {k.rsplit(".", 1)[0] for k in changed} <= {f"{PREFIX}blocks.{b}.cross_attn.{kv}" for b in (0, 1) for kv in "kv"}
    # the stored change points along the intended float32 edit
    key = f"{PREFIX}blocks.0.cross_attn.k"
    w = dequantize(before[key + ".weight"], before[key + ".scale_weight"])
    w_new = dequantize(after[key + ".weight"], after[key + ".scale_weight"])
    refused = run("apply", "--model", source, "--config", tiny_wan, "--pairs", PAIRS / "violence.yaml",
                  "--out", tmp_path / "strict", "--work-dir", tmp_path / "work", "--min-survival", "1.5")
    assert refused.exit_code == 1 and "survives fp8 re-quantisation" in refused.output
    assert not (tmp_path / "strict").exists()
    assert float((w_new - w).norm()) > 0
    checked = run("verify", tmp_path / "out", "--base", source)
    assert checked.exit_code == 0, checked.output
    assert "ComfyUI" in (tmp_path / "out" / "README.md").read_text()


def test_fp8_diffusers_folder_is_refused(tiny_wan, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    base = tmp_path / "fp8-folder"
    shutil.copytree(tiny_wan, base)
    for shard in (base / "transformer").glob("*.safetensors"):
        tensors = load_file(shard)
        tensors = {k: v.to(torch.float8_e4m3fn) if "attn2.to_" in k and v.ndim == 2 else v for k, v in tensors.items()}
        shard.unlink()  # may be shared with the fixture through a link
        save_file(tensors, str(shard), metadata={"format": "pt"})
    result = run("apply", "--model", base, "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "o",
                 "--work-dir", tmp_path / "work")
    assert result.exit_code == 1 and "fp8 weights in a diffusers folder" in result.output
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("args, message", [
    (("--save-dtype", "bfloat16"), "--save-dtype needs --format single-file or lora"),
    (("--format", "onnx"), "unknown --format"),
    (("--format", "lora", "--save-dtype", "int8"), "unknown --save-dtype"),
    (("--config", "x"), "--config is only for a single-file --model"),
])
def test_bad_format_options_give_one_line(tiny_wan, tmp_path, args, message):
    result = run("apply", "--model", tiny_wan, "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "o",
                 "--work-dir", tmp_path / "work", *args)
    assert result.exit_code == 1 and message in result.output and result.output.count("error:") == 1
    assert not (tmp_path / "o").exists()


def test_every_written_safetensors_file_carries_provenance(outputs):
    for folder in outputs.values():
        manifest = json.loads((folder / "vidunlearn.json").read_text())
        for rel, action in manifest["actions"].items():
            if rel.endswith(".safetensors") and action in ("rewrite", "write"):
                meta = read_header(folder / rel)[0]["__metadata__"]
                assert {"vidunlearn.version", "vidunlearn.concepts", "vidunlearn.rank", "vidunlearn.base",
                        "vidunlearn.base_revision", "vidunlearn.pairs_sha256"} <= meta.keys(), rel
        assert set(manifest["files"]) == {p.relative_to(folder).as_posix() for p in folder.rglob("*")
                                          if p.is_file() and p.name != "vidunlearn.json"}
    assert tensor_infos(outputs["diffusers"] / "transformer")


@pytest.mark.parametrize("output_format", ["diffusers", "single-file", "lora"])
def test_verify_accepts_every_untouched_output(tiny_wan, outputs, output_format):
    result = run("verify", outputs[output_format], "--base", tiny_wan)
    assert result.exit_code == 0, result.output
    assert "files match the manifest" in result.output
    assert result.output.count("attn2.to_k.weight") + result.output.count("cross_attn.k.weight") == 2
    assert "at most its number of erase rows" in result.output  # the default remap: a rank bound


def _copy(folder: Path, destination: Path) -> Path:
    import shutil

    shutil.copytree(folder, destination)
    return destination


def test_verify_catches_a_tampered_file(outputs, tmp_path):
    out = _copy(outputs["single-file"], tmp_path / "copy")
    file = out / "transformer.safetensors"
    data = bytearray(file.read_bytes())
    data[-1] ^= 0x01  # one bit of one weight
    file.write_bytes(bytes(data))
    result = run("verify", out)
    assert result.exit_code == 1
    assert "transformer.safetensors" in result.output and "SHA-256 does not match" in result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output


def test_verify_with_base_catches_an_unlisted_change_even_with_a_rewritten_manifest(tiny_wan, outputs, tmp_path):
    from vidunlearn.hashing import sha256_file

    out = _copy(outputs["diffusers"], tmp_path / "copy")
    shard = out / "vae" / "diffusion_pytorch_model.safetensors"
    data = bytearray(shard.read_bytes())
    data[-1] ^= 0x01
    shard.unlink()  # it was a hard link to the base
    shard.write_bytes(bytes(data))
    manifest = json.loads((out / "vidunlearn.json").read_text())
    manifest["files"]["vae/diffusion_pytorch_model.safetensors"] = sha256_file(shard)
    (out / "vidunlearn.json").write_text(json.dumps(manifest))
    assert run("verify", out).exit_code == 0  # the hashes alone cannot see it ...
    result = run("verify", out, "--base", tiny_wan)  # ... the base comparison does
    assert result.exit_code == 1 and "not listed as edited" in result.output and "vae" in result.output


def test_verify_refuses_an_unlisted_file_and_a_folder_without_manifest(outputs, tmp_path):
    out = _copy(outputs["lora"], tmp_path / "copy")
    (out / "extra.safetensors").write_bytes(b"x")
    result = run("verify", out)
    assert result.exit_code == 1 and "not listed in the manifest" in result.output and "extra.safetensors" in result.output
    result = run("verify", tmp_path)
    assert result.exit_code == 1 and "no readable manifest" in result.output


def test_wan22_two_experts_get_one_file_each_and_load_into_both(tiny_wan22, tmp_path):
    from diffusers import WanPipeline, WanTransformer3DModel

    folder = _apply(tiny_wan22, tmp_path / "folder")
    single = _apply(tiny_wan22, tmp_path / "single", "--format", "single-file")
    lora = _apply(tiny_wan22, tmp_path / "lora", "--format", "lora")
    assert {p.name for p in single.glob("*.safetensors")} == {"transformer.safetensors", "transformer_2.safetensors"}
    pipe = WanPipeline.from_pretrained(tiny_wan22)
    pipe.load_lora_weights(str(lora))
    pipe.load_lora_weights(str(lora), weight_name="pytorch_lora_weights_transformer_2.safetensors",
                           adapter_name="vidunlearn_2", load_into_transformer_2=True)
    for component, with_lora in (("transformer", pipe.transformer), ("transformer_2", pipe.transformer_2)):
        edited = WanTransformer3DModel.from_pretrained(folder / component).eval()
        loaded = WanTransformer3DModel.from_single_file(str(single / f"{component}.safetensors"),
                                                        config=str(tiny_wan22), subfolder=component)
        loaded_state, edited_state = _state(loaded), _state(edited)
        assert loaded_state.keys() == edited_state.keys()
        assert all(torch.equal(loaded_state[k], edited_state[k]) for k in edited_state)
        torch.testing.assert_close(_forward(with_lora), _forward(edited), atol=1e-5, rtol=1e-4)


def test_card_builds_on_the_base_card_and_renders_the_eval_table(tiny_wan, tmp_path):
    import shutil

    from huggingface_hub import ModelCard

    base = tmp_path / "base"
    shutil.copytree(tiny_wan, base)
    (base / "README.md").write_text("---\nlicense: apache-2.0\ntags:\n- video\n---\n# Base model\n")
    rows = [{"metric": "unsafe rate % (judge)", "base": 48.9, "edited": 12.6},
            {"metric": "CLIP score, retain prompts", "base": 0.3125, "edited": 0.3101}]
    (tmp_path / "eval.json").write_text(json.dumps({"rows": rows}))
    out = _apply(base, tmp_path / "out", "--format", "lora", "--eval-json", tmp_path / "eval.json",
                 "--base-model-id", "someone/tiny-wan")
    card = ModelCard.load(out / "README.md")
    data = card.data.to_dict()
    assert data["license"] == "apache-2.0" and "video" in data["tags"] and "unlearned-violence" in data["tags"]
    assert data["base_model"] == "someone/tiny-wan" and data["base_model_relation"] == "adapter"
    assert data["library_name"] == "diffusers" and data["pipeline_tag"] == "text-to-video"
    assert "| unsafe rate % (judge) | 48.9 | 12.6 |" in card.text and "| CLIP score, retain prompts | 0.3125 | 0.3101 |" in card.text
    assert "does not guarantee" in card.text and "revert" in card.text
    assert json.loads((out / "vidunlearn.json").read_text())["eval"] == rows
    (tmp_path / "bad.json").write_text('[{"metric": "x"}]')
    result = run("apply", "--model", base, "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "o2",
                 "--work-dir", tmp_path / "work", "--eval-json", tmp_path / "bad.json")
    assert result.exit_code == 1 and "row 0 needs" in result.output and not (tmp_path / "o2").exists()


def test_two_concepts_make_a_rank_2_edit_that_verify_and_the_lora_show(tiny_wan, tmp_path):
    """The paper's projection: one direction per concept, so two concepts are a rank-2 edit."""
    two = ("--pairs", PAIRS / "nudity.yaml", "--mode", "project", "--method", "cpca")
    folder = _apply(tiny_wan, tmp_path / "folder", *two)
    lora = _apply(tiny_wan, tmp_path / "lora", "--format", "lora", *two)
    result = run("verify", folder, "--base", tiny_wan)
    assert result.exit_code == 0, result.output
    rows = [line for line in result.output.splitlines() if "attn2.to_" in line]
    assert len(rows) == 4 and all(line.rstrip(" │").endswith("2") for line in rows), result.output
    header, _ = read_header(lora / "pytorch_lora_weights.safetensors")
    assert header["diffusion_model.blocks.0.cross_attn.v.lora_B.weight"]["shape"] == [24, 2]


def test_two_concepts_under_the_default_remap_compose_their_factors(tiny_wan, tmp_path):
    """The default: the LoRA's rank is the two concepts' erase rows together (M = M_1 M_2)."""
    folder = _apply(tiny_wan, tmp_path / "folder", "--pairs", PAIRS / "nudity.yaml")
    lora = _apply(tiny_wan, tmp_path / "lora", "--format", "lora", "--pairs", PAIRS / "nudity.yaml")
    assert run("verify", folder, "--base", tiny_wan).exit_code == 0
    recipe = json.loads((lora / "vidunlearn.json").read_text())["recipe"]
    assert [c["concept"] for c in recipe["concepts"]] == ["violence", "nudity"] and recipe["mode"] == "remap"
    header, _ = read_header(lora / "pytorch_lora_weights.safetensors")
    assert header["diffusion_model.blocks.0.cross_attn.v.lora_B.weight"]["shape"] == [24, recipe["edit_rank"]]
