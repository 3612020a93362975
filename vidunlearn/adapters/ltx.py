"""LTX-Video text-to-video (diffusers ``LTXPipeline``, 0.9.0 / 0.9.1 2B).

Text path: T5-XXL states (padded to 128, encoded without a mask; the pads are masked out of the
cross-attention) -> ``caption_projection`` (linear, GELU-tanh, linear) -> every block's
``attn2.to_k`` / ``attn2.to_v``, as in Wan. ``LTXConditionPipeline`` (0.9.5+, 13B) encodes with a
mask at length 256 and is not handled here.

Single files: the original / ComfyUI layout differs from diffusers' by four renames and the
optional ``model.diffusion_model.`` prefix (the inverse of diffusers'
``convert_ltx_transformer_checkpoint_to_diffusers``); the text-path tensors keep their names.
"""

from __future__ import annotations

from ..errors import ModelError
from .base import Adapter, KeyMap, Site
from .t5 import encode_t5_padded

# (diffusers name, original name) for whole dotted components; every other component is the same
RENAMES = (("proj_in", "patchify_proj"), ("time_embed", "adaln_single"), ("norm_q", "q_norm"), ("norm_k", "k_norm"))
PREFIX = "model.diffusion_model."


def _rename(key: str, forward: bool) -> str:
    table = dict(RENAMES) if forward else {theirs: ours for ours, theirs in RENAMES}
    if key.startswith(("vae.", "vae_")):
        raise ModelError(f"tensor {key[:80]!r} belongs to the VAE, not the transformer",
                         fix="pass the transformer's tensors only")
    return ".".join(table.get(part, part) for part in key.split("."))


def to_original(key: str) -> str:
    return _rename(key, True)


def to_diffusers(key: str) -> str:
    return _rename(key, False)


def encode_ltx(tokenizer, encoder, prompts: list[str], max_length: int, device: str, batch_size: int = 8,
               progress=None) -> list:
    """LTXPipeline's T5 states of the real tokens (``</s>`` included); the pads are masked out of attn2."""
    return encode_t5_padded(tokenizer, encoder, prompts, max_length, device, keep_pads=False,
                            batch_size=batch_size, progress=progress)


LTX = Adapter(
    family="ltx",
    pipeline_classes=("LTXPipeline",),
    denoisers=("transformer",),
    denoiser_class="LTXVideoTransformer3DModel",
    feed="caption_projection",
    block_count_key="num_layers",
    sites={
        "cross_attn_kv": Site(
            name="cross_attn_kv",
            capture="caption_projection",
            targets=("transformer_blocks.{block}.attn2.to_k", "transformer_blocks.{block}.attn2.to_v"),
            description="text tokens after caption_projection, read by every block's attn2.to_k/to_v",
        ),
        "caption_projection_in": Site(
            name="caption_projection_in",
            capture="caption_projection.linear_1",
            capture_input=True,
            targets=("caption_projection.linear_1",),
            description="raw T5 states, read by caption_projection.linear_1",
        ),
    },
    default_sites=("cross_attn_kv",),
    encode=encode_ltx,
    max_sequence_length=128,
    keymap=KeyMap(to_original=to_original, to_diffusers=to_diffusers, prefix=PREFIX, lora_prefix="diffusion_model."),
    frame_step=8,
    size_step=32,
    aliases={"ltx-video": "Lightricks/LTX-Video", "ltx-video-0.9.1": "Lightricks/LTX-Video-0.9.1"},
)
