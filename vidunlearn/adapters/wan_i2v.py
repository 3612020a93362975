"""Wan2.1 image-to-video (diffusers ``WanImageToVideoPipeline``, the 480p and 720p 14B repos).

Two input streams reach each block's cross-attention, read by different layers (diffusers'
``WanAttnProcessor``: the transformer concatenates [image tokens, text tokens]; the processor
splits off the last 512 as the text, which ``attn2.to_k``/``to_v`` read, and sends the image
tokens to ``attn2.add_k_proj``/``add_v_proj`` only):

- text:  UMT5 states -> ``condition_embedder.text_embedder`` -> ``attn2.to_k`` / ``to_v``, as
  Wan T2V (same encoding, same key names);
- image: the CLIP vision encoder's penultimate hidden states (``image_encoder``, through
  ``image_processor``, as the pipeline's ``encode_image``) -> ``condition_embedder.image_embedder``
  (LayerNorm, MLP, LayerNorm) -> ``attn2.add_k_proj`` / ``add_v_proj``.

Each site's direction comes from its own stream's pairs: prompts for ``cross_attn_kv``, the
pairs' images for ``image_kv``; the two are never mixed in one vector.
"""

from __future__ import annotations

from dataclasses import replace

from .base import Site
from .wan import WAN


def load_image(path):
    """An RGB PIL image (what the pipeline's ``image=`` takes)."""
    from PIL import Image

    with Image.open(path) as image:
        return image.convert("RGB")


def encode_image_wan(processor, encoder, images: list, device: str, batch_size: int = 8, progress=None) -> list:
    """The CLIP vision encoder's ``hidden_states[-2]`` of each image, exactly as
    ``WanImageToVideoPipeline.encode_image`` computes them. ``images``: paths or PIL images.
    Returns [(T, D_image)] (T = 257 for the real ViT-H/14 at 224x224)."""
    import torch

    states: list[torch.Tensor] = []
    dtype = next(encoder.parameters()).dtype
    with torch.no_grad():
        for start in range(0, len(images), batch_size):
            batch = [load_image(i) if not hasattr(i, "convert") else i for i in images[start:start + batch_size]]
            pixels = processor(images=batch, return_tensors="pt").to(device)
            hidden = encoder(pixel_values=pixels.pixel_values.to(dtype), output_hidden_states=True).hidden_states[-2]
            states.extend(row for row in hidden)
            if progress is not None:
                progress(len(batch))
    return states


WAN_I2V = replace(
    WAN,
    family="wan-i2v",
    pipeline_classes=("WanImageToVideoPipeline",),
    denoisers=("transformer",),
    sites={
        "cross_attn_kv": replace(WAN.sites["cross_attn_kv"],
                                 description="text tokens after the text embedder, read by every block's attn2.to_k/to_v "
                                             "(the image tokens go to add_k_proj/add_v_proj)"),
        "image_kv": Site(
            name="image_kv",
            capture="condition_embedder.image_embedder",
            targets=("blocks.{block}.attn2.add_k_proj", "blocks.{block}.attn2.add_v_proj"),
            description="CLIP image tokens after the image embedder, read by every block's attn2.add_k_proj/add_v_proj",
            stream="image",
        ),
        "text_embedder_in": WAN.sites["text_embedder_in"],
    },
    default_sites=("cross_attn_kv", "image_kv"),
    image_encoder="image_encoder",
    encode_image=encode_image_wan,
    image_feed="condition_embedder.image_embedder",
    takes_image=True,
    card_extra={},
    aliases={
        "wan2.1-i2v": "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
        "wan2.1-i2v-14b": "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
        "wan2.1-i2v-14b-480p": "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers",
        "wan2.1-i2v-14b-720p": "Wan-AI/Wan2.1-I2V-14B-720P-Diffusers",
    },
)
