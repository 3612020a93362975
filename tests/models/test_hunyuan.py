"""HunyuanVideo beyond the per-family contract (tests/models/test_families.py): the encoding is
the pipeline's own, the site's second target (the token refiner's pooled text embedder) reads
the masked mean of exactly the recorded states. The dry run on the real 13B config is in
test_hub_layouts.py, `sample` in test_families.py."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import _all_texts
from vidunlearn.model import resolve_model
from vidunlearn.record import record_sites
from vidunlearn.textpath import load_text_encoder, load_text_path

PROMPTS = ["a man stabs a man in an alley", "a cat", "a red square moving left"]
POOLED = "context_embedder.time_text_embed.text_embedder.linear_1"


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
