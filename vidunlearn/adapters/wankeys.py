"""Wan transformer tensor names: diffusers <-> the original Wan / ComfyUI single-file names.

Pure string mapping, declared as data. It is the inverse of diffusers' own
``convert_wan_transformer_to_diffusers`` (loaders/single_file_utils.py) for the text-to-video
and image-to-video keys; a test checks the round trip through that converter on every key of a
real (tiny) Wan transformer.
"""

from __future__ import annotations

import re

from ..errors import ModelError

PREFIX = "model.diffusion_model."  # optional prefix of ComfyUI-saved checkpoints
LORA_PREFIX = "diffusion_model."  # what diffusers' and ComfyUI's Wan LoRA loaders expect

# (diffusers module path, original module path), whole dotted components; checked in order.
TOP_LEVEL = (
    ("condition_embedder.time_embedder.linear_1", "time_embedding.0"),
    ("condition_embedder.time_embedder.linear_2", "time_embedding.2"),
    ("condition_embedder.text_embedder.linear_1", "text_embedding.0"),
    ("condition_embedder.text_embedder.linear_2", "text_embedding.2"),
    ("condition_embedder.time_proj", "time_projection.1"),
    ("condition_embedder.image_embedder.norm1", "img_emb.proj.0"),
    ("condition_embedder.image_embedder.ff.net.0.proj", "img_emb.proj.1"),
    ("condition_embedder.image_embedder.ff.net.2", "img_emb.proj.3"),
    ("condition_embedder.image_embedder.norm2", "img_emb.proj.4"),
    ("scale_shift_table", "head.modulation"),
    ("proj_out", "head.head"),
    ("patch_embedding", "patch_embedding"),
)
IN_BLOCK = (  # inside blocks.N.
    ("attn1.to_out.0", "self_attn.o"), ("attn1.to_q", "self_attn.q"), ("attn1.to_k", "self_attn.k"),
    ("attn1.to_v", "self_attn.v"), ("attn1.norm_q", "self_attn.norm_q"), ("attn1.norm_k", "self_attn.norm_k"),
    ("attn2.to_out.0", "cross_attn.o"), ("attn2.to_q", "cross_attn.q"), ("attn2.to_k", "cross_attn.k"),
    ("attn2.to_v", "cross_attn.v"), ("attn2.norm_q", "cross_attn.norm_q"), ("attn2.norm_k", "cross_attn.norm_k"),
    ("attn2.add_k_proj", "cross_attn.k_img"), ("attn2.add_v_proj", "cross_attn.v_img"),
    ("attn2.norm_added_k", "cross_attn.norm_k_img"),
    ("ffn.net.0.proj", "ffn.0"), ("ffn.net.2", "ffn.2"),
    ("norm2", "norm3"),  # the cross-attention norm: diffusers swapped the names
    ("scale_shift_table", "modulation"),
)
BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


def _rename(name: str, pairs: tuple[tuple[str, str], ...], forward: bool) -> str | None:
    for ours, theirs in pairs:
        source, target = (ours, theirs) if forward else (theirs, ours)
        if name == source or name.startswith(source + "."):
            return target + name[len(source):]
    return None


def to_original(key: str) -> str:
    """``blocks.0.attn2.to_k.weight`` -> ``blocks.0.cross_attn.k.weight``. Raises on unknown keys."""
    match = BLOCK.match(key)
    new = (f"blocks.{match[1]}.{rest}" if (rest := _rename(match[2], IN_BLOCK, True)) else None) if match \
        else _rename(key, TOP_LEVEL, True)
    if new is None:
        raise ModelError(f"no original Wan name for tensor {key!r}", fix="only Wan2.1/2.2 T2V/I2V transformers are supported")
    return new


def to_diffusers(key: str) -> str:
    """The inverse of :func:`to_original`; strips an optional ``model.diffusion_model.`` prefix."""
    key = key.removeprefix(PREFIX)
    match = BLOCK.match(key)
    new = (f"blocks.{match[1]}.{rest}" if (rest := _rename(match[2], IN_BLOCK, False)) else None) if match \
        else _rename(key, TOP_LEVEL, False)
    if new is None:
        raise ModelError(f"tensor {key!r} is not a Wan transformer tensor",
                         fix="pass a Wan2.1/2.2 transformer checkpoint (original or ComfyUI key names)")
    return new
