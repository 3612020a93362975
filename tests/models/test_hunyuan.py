"""HunyuanVideo beyond the per-family contract (tests/models/test_families.py): the encoding is
the pipeline's own, the site's second target (the token refiner's pooled text embedder) reads
the masked mean of exactly the recorded states, and --dry-run plans against the real 13B
transformer config from sparse shards (real key names and shapes, no disk used)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from conftest import _all_texts
from sparse_layout import write_sparse_denoiser
from vidunlearn.cli import app
from vidunlearn.model import resolve_model
from vidunlearn.record import record_sites
from vidunlearn.textpath import load_text_encoder, load_text_path

PROMPTS = ["a man stabs a man in an alley", "a cat", "a red square moving left"]
POOLED = "context_embedder.time_text_embed.text_embedder.linear_1"
# hunyuanvideo-community/HunyuanVideo transformer/config.json (the keys that set the sizes; 13B)
HUB_CONFIG = {
    "in_channels": 16, "out_channels": 16, "num_attention_heads": 24, "attention_head_dim": 128,
    "num_layers": 20, "num_single_layers": 40, "num_refiner_layers": 2, "mlp_ratio": 4.0,
    "patch_size": 2, "patch_size_t": 1, "qk_norm": "rms_norm", "guidance_embeds": True,
    "text_embed_dim": 4096, "pooled_projection_dim": 768, "rope_theta": 256.0, "rope_axes_dim": [16, 56, 56],
}


def run(*args):
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(scope="module")
def tiny_hunyuan(tmp_path_factory) -> Path:
    from vidunlearn.tiny_families import build

    return build("hunyuan", tmp_path_factory.mktemp("models") / "tiny-hunyuan", texts=_all_texts())


def _pipeline(path: Path):
    from diffusers import HunyuanVideoPipeline

    pipe = HunyuanVideoPipeline.from_pretrained(str(path), use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def test_encoding_matches_the_pipeline(tiny_hunyuan):
    """Our per-prompt states equal HunyuanVideoPipeline.encode_prompt's at the positions its mask
    keeps (template prefix cropped), bit for bit; the template prefix is the real 95 tokens."""
    pipe = _pipeline(tiny_hunyuan)
    reference, _, mask = pipe.encode_prompt(PROMPTS, device="cpu")
    source = resolve_model(str(tiny_hunyuan))
    tokenizer, encoder = load_text_encoder(source, "cpu", torch.float32)
    ours = source.adapter.encode(tokenizer, encoder, PROMPTS, source.adapter.max_sequence_length, "cpu", batch_size=2)
    for state, ref, keep in zip(ours, reference, mask):
        assert torch.equal(state, ref[keep.bool()])
    # the prompt tokens (no BOS) and the template's closing <|eot_id|>
    assert [s.shape[0] for s in ours] == [len(tokenizer(p, add_special_tokens=False).input_ids) + 1 for p in PROMPTS]


def test_text_path_loads_only_proj_in(tiny_hunyuan):
    source = resolve_model(str(tiny_hunyuan))
    model = load_text_path(source, "transformer", "cpu", torch.float32)
    materialised = {n for n, p in model.named_parameters() if p.device.type != "meta"}
    assert materialised == {"context_embedder.proj_in.weight", "context_embedder.proj_in.bias"}
    assert model.get_submodule(POOLED).weight.device.type == "meta"


def test_pooled_text_embedder_reads_the_mean_of_the_recorded_states(tiny_hunyuan):
    """The second target's input during pipe(...) is the mean, over the real tokens, of exactly
    the activations extract records at the site (which the first target reads per token)."""
    source = resolve_model(str(tiny_hunyuan))
    key = "transformer/text_in"
    pipe = _pipeline(tiny_hunyuan)
    for prompt in PROMPTS[:2]:
        recorded = record_sites(source, [prompt], [key]).tokens[key][0]
        seen: list[torch.Tensor] = []
        handle = pipe.transformer.get_submodule(POOLED).register_forward_hook(
            lambda module, args, output: seen.append(args[0].detach().clone()))
        pipe(prompt=prompt, height=16, width=16, num_frames=5, num_inference_steps=1, guidance_scale=6.0,
             generator=torch.Generator().manual_seed(0), output_type="latent")
        handle.remove()
        assert seen and seen[0].shape == (1, recorded.shape[1])
        torch.testing.assert_close(seen[0][0], recorded.mean(0), atol=1e-5, rtol=1e-4)


def _refusal(model: Path, path: Path, width: int) -> None:
    """A RefusalVectors artifact for this folder's site: one random unit direction of ``width``
    (as benchmarks/apply_vs_copy.py make_refusal)."""
    from vidunlearn.artifacts import RefusalVectors, SiteVectors

    site = "transformer/text_in"
    source = resolve_model(str(model))
    direction = torch.randn(width, generator=torch.Generator().manual_seed(7))
    direction /= direction.norm()
    vectors = RefusalVectors(
        sites={site: SiteVectors(direction=direction, refusal=3.0 * direction, basis=direction[:, None].clone(),
                                 eigenvalues=torch.tensor([1.0]), safe_mean=torch.zeros(width))},
        meta={"model": source.describe(), "sites": [site], "concept": "test", "method": "cpca", "rank": 1,
              "alpha": 1.0, "level": "token", "pairs_sha256": None,
              "stats": {site: {"refusal_norm": 3.0, "retained": 1.0, "data_rank": 1, "eigenvalues": [1.0],
                               "hidden_size": width}}})
    vectors.save(path)


def test_dry_run_plans_both_targets_against_the_real_13b_config(tiny_hunyuan, tmp_path):
    """The Hub layout (real transformer config, every tensor's real name and shape in 5 GB bf16
    shards with an index, sparse: no disk used); the rest from the tiny pipeline."""
    model = tmp_path / "HunyuanVideo"
    for name in ("text_encoder", "text_encoder_2", "tokenizer", "tokenizer_2", "vae", "scheduler"):
        shutil.copytree(tiny_hunyuan / name, model / name)
    shutil.copyfile(tiny_hunyuan / "model_index.json", model / "model_index.json")
    entries = dict(write_sparse_denoiser(model / "transformer", "HunyuanVideoTransformer3DModel", HUB_CONFIG))
    params = sum(torch.Size(s).numel() for s in entries.values())
    assert 12.5e9 < params < 13.5e9  # "13B"
    shards = sorted((model / "transformer").glob("*.safetensors"))
    assert len(shards) == 6 and sum(f.stat().st_blocks for f in shards) * 512 < 2**20  # ~26 GB on paper, holes on disk
    assert entries["context_embedder.proj_in.weight"] == (3072, 4096)
    assert entries[f"{POOLED}.weight"] == (3072, 4096)
    refusal = tmp_path / "refusal.safetensors"
    _refusal(model, refusal, 4096)
    out = tmp_path / "out"
    result = run("apply", "--model", model, "--refusal", refusal, "--out", out, "--dry-run", "--mode", "project",
                 "--method", "cpca", "--no-collateral")
    assert result.exit_code == 0, result.output
    for target in ("context_embedder.proj_in.weight", f"{POOLED}.weight"):
        assert target in result.output
    assert "[3072, 4096]" in result.output
    assert "match the model built on the meta device" in result.output
    assert not out.exists()


@pytest.mark.parametrize("family", ["hunyuan", "ltx"])
def test_sample_cli_generates(family, tiny_hunyuan, tmp_path):
    """`vidunlearn sample` (the pipeline's own prompt encoding; HunyuanVideo's --guidance is its
    embedded guidance, the negative prompt unused without true CFG) writes a playable clip."""
    if family == "hunyuan":
        model, size, frames = tiny_hunyuan, 16, 5
    else:
        from vidunlearn.tiny_families import build

        model, size, frames = build("ltx", tmp_path / "tiny-ltx"), 32, 9
    out = tmp_path / "samples"
    result = run("sample", "--model", model, "--prompt", "a red square moving left", "--steps", 2,
                 "--frames", frames, "--height", size, "--width", size, "--out", out)
    assert result.exit_code == 0, result.output
    assert (out / "edited" / "00.mp4").stat().st_size > 0
    assert json.loads((out / "samples.json").read_text())["settings"]["frames"] == frames
