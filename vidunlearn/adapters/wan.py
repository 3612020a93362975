"""Wan 2.1 / 2.2 text-to-video (diffusers ``WanPipeline``).

Text path: UMT5 states -> ``condition_embedder.text_embedder`` (linear, GELU-tanh, linear) ->
every block's cross-attention ``attn2.to_k`` / ``attn2.to_v``. A direction found after the
text embedder serves all blocks of one denoiser; each Wan2.2 expert has its own text embedder
and so its own direction.
"""

from __future__ import annotations

from .base import Adapter, Site

WAN = Adapter(
    family="wan",
    pipeline_classes=("WanPipeline",),
    denoisers=("transformer", "transformer_2"),
    denoiser_class="WanTransformer3DModel",
    feed="condition_embedder.text_embedder",
    block_count_key="num_layers",
    sites={
        "cross_attn_kv": Site(
            name="cross_attn_kv",
            capture="condition_embedder.text_embedder",
            targets=("blocks.{block}.attn2.to_k", "blocks.{block}.attn2.to_v"),
            description="text tokens after the text embedder, read by every block's attn2.to_k/to_v",
        ),
        "text_embedder_in": Site(
            name="text_embedder_in",
            capture="condition_embedder.text_embedder.linear_1",
            capture_input=True,
            targets=("condition_embedder.text_embedder.linear_1",),
            description="raw UMT5 states, read by condition_embedder.text_embedder.linear_1",
        ),
    },
    default_sites=("cross_attn_kv",),
    aliases={
        "wan2.1": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        "wan2.1-1.3b": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        "wan2.1-14b": "Wan-AI/Wan2.1-T2V-14B-Diffusers",
        "wan2.2": "Wan-AI/Wan2.2-T2V-A14B-Diffusers",
        "wan2.2-a14b": "Wan-AI/Wan2.2-T2V-A14B-Diffusers",
    },
)
