"""Wan 2.1 / 2.2 text-to-video (diffusers ``WanPipeline``).

Text path: UMT5 states -> ``condition_embedder.text_embedder`` (linear, GELU-tanh, linear) ->
every block's cross-attention ``attn2.to_k`` / ``attn2.to_v``. A direction found after the
text embedder serves all blocks of one denoiser; each Wan2.2 expert has its own text embedder
and so its own direction.
"""

from __future__ import annotations

from .base import Adapter, KeyMap, Site
from .wankeys import LORA_PREFIX, PREFIX, to_diffusers, to_original


def encode_wan(tokenizer, encoder, prompts: list[str], max_length: int, device: str,
               batch_size: int = 8, progress=None) -> list:
    """The UMT5 states of the real tokens of each prompt (pads excluded), exactly as WanPipeline
    computes them before it zero-pads to ``max_length``. Returns [(T_i, D_text)]."""
    import torch
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean

    states: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            batch = [prompt_clean(p) for p in prompts[start:start + batch_size]]
            tokens = tokenizer(batch, padding="longest", max_length=max_length, truncation=True,
                               add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
            mask = tokens.attention_mask.to(device)
            hidden = encoder(tokens.input_ids.to(device), mask).last_hidden_state
            for row, length in zip(hidden, mask.gt(0).sum(dim=1).tolist()):
                states.append(row[:length])
            if progress is not None:
                progress(len(batch))
    return states


# A single-file transformer's (num_layers, hidden size, input channels) -> the diffusers repo with its config
SINGLE_FILE_SIZES = {
    (30, 1536, 16): "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
    (40, 5120, 16): "Wan-AI/Wan2.1-T2V-14B-Diffusers",
}

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
    encode=encode_wan,
    keymap=KeyMap(to_original=to_original, to_diffusers=to_diffusers, prefix=PREFIX, lora_prefix=LORA_PREFIX),
    lora_original_names=True,  # diffusers' WanLoraLoaderMixin and ComfyUI both read the original names
    lora_bias="diff_b",
    zero_pads_prompts=True,
    card_extra={"transformer_2": (
        'pipe.load_lora_weights("{name}", weight_name="{file}",\n'
        '                       adapter_name="vidunlearn_2", load_into_transformer_2=True)  # Wan2.2: the second expert')},
    aliases={
        "wan2.1": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        "wan2.1-1.3b": "Wan-AI/Wan2.1-T2V-1.3B-Diffusers",
        "wan2.1-14b": "Wan-AI/Wan2.1-T2V-14B-Diffusers",
        "wan2.2": "Wan-AI/Wan2.2-T2V-A14B-Diffusers",
        "wan2.2-a14b": "Wan-AI/Wan2.2-T2V-A14B-Diffusers",
    },
)
