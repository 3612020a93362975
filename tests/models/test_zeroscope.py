"""ZeroScope / ModelScope beyond the shared family contract (tests/models/test_families.py):
the encoding equals TextToVideoSDPipeline.encode_prompt, the targets are exactly the spatial
cross-attentions, pickle-only folders are converted without running anything from the pickles,
bias modes are refused, sampling works. The dry run on the real Hub layout's 32 targets is in
test_hub_layouts.py."""

from __future__ import annotations

import os
import pickle
import re
import shutil
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import PAIRS, ROOT, _all_texts, leftovers, one_error
from vidunlearn import api
from vidunlearn.cli import app
from vidunlearn.errors import ModelError
from vidunlearn.model import resolve_model

runner = CliRunner()
SPATIAL_KV = re.compile(r"^(down_blocks\.\d+|mid_block|up_blocks\.\d+)\.attentions\.\d+\.transformer_blocks\.0\.attn2\.to_[kv]$")


sys.path.insert(0, str(ROOT / "benchmarks"))
from apply_vs_copy import make_refusal  # noqa: E402


def run(*args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def tiny_zs(tmp_path_factory) -> Path:
    from vidunlearn.tiny_families import build

    return build("zeroscope", tmp_path_factory.mktemp("zs") / "tiny-zeroscope", texts=_all_texts())


def test_encoding_equals_the_pipelines_encode_prompt(tiny_zs):
    from diffusers import TextToVideoSDPipeline

    from vidunlearn.adapters.zeroscope import encode_zeroscope

    pipe = TextToVideoSDPipeline.from_pretrained(str(tiny_zs), use_safetensors=True)
    prompts = ["a man stabs a man in an alley", "a red square moving left", ""]
    ours = encode_zeroscope(pipe.tokenizer, pipe.text_encoder, prompts, 77, "cpu", batch_size=2)
    theirs = pipe.encode_prompt(prompts, "cpu", 1, False)[0]
    assert [s.shape for s in ours] == [torch.Size([77, 12])] * 3
    torch.testing.assert_close(torch.stack(ours), theirs, atol=0, rtol=0)


def test_targets_are_exactly_the_spatial_cross_attentions(tiny_zs):
    """Every attn2.to_k/to_v outside temp_attentions and transformer_in (self-attention over frames)."""
    from diffusers import UNet3DConditionModel

    source = resolve_model(str(tiny_zs))
    unet = UNet3DConditionModel.from_pretrained(str(tiny_zs / "unet"), use_safetensors=True)
    names = source.adapter.site("cross_attn_kv").target_modules(source.config("unet"), source.adapter.block_count_key)
    every_kv = {n for n, m in unet.named_modules() if re.search(r"attn2\.to_[kv]$", n)}
    assert set(names) == {n for n in every_kv if SPATIAL_KV.match(n)} and len(names) == len(set(names)) == 22
    assert {n for n in every_kv - set(names)} and all("temp_attentions" in n or n.startswith("transformer_in")
                                                       for n in every_kv - set(names))
    assert all(unet.get_submodule(n).bias is None and unet.get_submodule(n).in_features == 12 for n in names)


def _pickle_folder(tiny: Path, folder: Path) -> Path:
    """``tiny`` as cerspense/zeroscope_v2_576w ships: every weight a pickle (.bin); the unet sharded."""
    from diffusers import AutoencoderKL, UNet3DConditionModel
    from safetensors.torch import load_file

    shutil.copytree(tiny, folder)
    for component, cls, shard in (("unet", UNet3DConditionModel, 200_000), ("vae", AutoencoderKL, None)):
        model = cls.from_pretrained(str(tiny / component), use_safetensors=True)
        for file in (folder / component).glob("diffusion_pytorch_model*"):
            file.unlink()
        model.save_pretrained(folder / component, safe_serialization=False, **({"max_shard_size": shard} if shard else {}))
    (folder / "text_encoder" / "model.safetensors").unlink()
    torch.save(load_file(tiny / "text_encoder" / "model.safetensors"), folder / "text_encoder" / "pytorch_model.bin")
    return folder


def test_a_pickle_only_folder_is_refused_then_converted_and_applies(tiny_zs, tmp_path):
    from diffusers import TextToVideoSDPipeline

    base = _pickle_folder(tiny_zs, tmp_path / "zs-bin")
    assert not list(base.rglob("*.safetensors*")) and len(list((base / "unet").glob("*.bin"))) > 1
    one_error(run("apply", "--model", base, "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "o"),
              "only pickle files", "vidunlearn convert --model")
    converted = tmp_path / "zs-st"
    result = run("convert", "--model", base, "--out", converted)
    assert result.exit_code == 0, result.output
    assert "unet/diffusion_pytorch_model-00001-of-" in result.output and "text_encoder/pytorch_model.bin -> model.safetensors" in result.output
    assert not list(converted.rglob("*.bin")) and (converted / "unet" / "diffusion_pytorch_model.safetensors.index.json").is_file()
    original = TextToVideoSDPipeline.from_pretrained(str(tiny_zs), use_safetensors=True)
    again = TextToVideoSDPipeline.from_pretrained(str(converted), use_safetensors=True)
    for component in ("unet", "vae", "text_encoder"):
        mine, theirs = getattr(again, component).state_dict(), getattr(original, component).state_dict()
        assert mine.keys() == theirs.keys() and all(torch.equal(mine[k], theirs[k]) for k in mine), component
    out = tmp_path / "edited"
    api.apply(str(converted), out=out, pairs=[PAIRS / "violence.yaml"], work_dir=tmp_path / "w")
    assert TextToVideoSDPipeline.from_pretrained(str(out), use_safetensors=True).unet is not None
    one_error(run("convert", "--model", base, "--out", converted), "already exists")


class Payload:
    """Unpickling this runs ``touch <marker>``: the classic code payload of a .bin file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("kind", ["torch.save zip", "legacy pickle"])
def test_a_pickle_carrying_code_is_refused_in_one_line_and_never_runs(kind, tiny_zs, tmp_path):
    from vidunlearn.convert import load_tensors

    marker = tmp_path / "pwned"
    base = shutil.copytree(tiny_zs, tmp_path / "evil")
    for file in (base / "unet").glob("diffusion_pytorch_model*"):
        file.unlink()
    evil = base / "unet" / "diffusion_pytorch_model.bin"
    state = {"conv_in.weight": torch.zeros(2), "x": Payload(marker)}
    if kind == "torch.save zip":
        torch.save(state, evil)
    else:
        evil.write_bytes(pickle.dumps(state))
    out = tmp_path / "converted"
    one_error(run("convert", "--model", base, "--out", out), "refused: the pickle asks for more than tensors",
              "never runs code")
    with pytest.raises(ModelError, match="refused"):
        load_tensors(evil)
    assert not marker.exists(), "the pickle's code ran"
    assert not out.exists() and leftovers(tmp_path) == []


@pytest.mark.parametrize("mode", ["bias", "replace"])
def test_bias_modes_are_refused_in_one_line(mode, tiny_zs, tmp_path):
    """No spatial attn2.to_k/to_v has a bias."""
    refusal = tmp_path / "refusal.safetensors"
    make_refusal(tiny_zs, refusal)
    one_error(run("apply", "--model", tiny_zs, "--refusal", refusal, "--mode", mode, "--out", tmp_path / "o"),
              "attn2.to_k.bias, which is absent")
    assert not (tmp_path / "o").exists()


def test_sample_generates_through_the_pipelines_own_prompt_path(tiny_zs, tmp_path):
    out = tmp_path / "s"
    result = run("sample", "--model", tiny_zs, "--prompt", "a cat", "--steps", 2, "--frames", 4, "--height", 32,
                 "--width", 32, "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "edited" / "00.mp4").stat().st_size > 0 and (out / "samples.json").is_file()
    one_error(run("sample", "--model", tiny_zs, "--prompt", "a cat", "--height", 36, "--width", 32, "--out", tmp_path / "t"),
              "multiples of 8")


def test_the_zeroscope_alias_converts_from_the_hub_cache(tiny_zs, tmp_path, monkeypatch):
    """`convert --model zeroscope` resolves cerspense/zeroscope_v2_576w (here: an offline Hub cache
    laid out as huggingface_hub writes it, pickle weights only plus the original-format zs2_576w/
    folder) and converts it; `apply --model zeroscope` is refused with the pointer to convert."""
    from test_hub_resolution import hub_snapshot

    base = _pickle_folder(tiny_zs, tmp_path / "zs-bin")
    (base / "zs2_576w").mkdir()
    (base / "zs2_576w" / "text2video_pytorch_model.pth").write_bytes(pickle.dumps(Payload(tmp_path / "pwned")))
    hub_snapshot(base, tmp_path / "hub", "cerspense/zeroscope_v2_576w", monkeypatch)
    one_error(run("apply", "--model", "zeroscope", "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "o"),
              "vidunlearn convert --model")
    out = tmp_path / "zeroscope_v2_576w"
    result = run("convert", "--model", "zeroscope", "--out", out)
    assert result.exit_code == 0, result.output
    assert "left out zs2_576w/ (not a component of model_index.json)" in result.output
    assert not (out / "zs2_576w").exists() and not (tmp_path / "pwned").exists()
    assert resolve_model(str(out)).denoisers == ["unet"]
