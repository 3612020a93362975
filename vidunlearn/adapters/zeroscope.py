"""ZeroScope / ModelScope text-to-video (diffusers ``TextToVideoSDPipeline``, ``UNet3DConditionModel``:
ali-vilab/text-to-video-ms-1.7b and its fine-tunes cerspense/zeroscope_v2_576w, ...).

Text path: CLIP (OpenCLIP ViT-H text tower) states, padded to 77 and encoded WITHOUT a mask;
UNet3DConditionModel has no ``encoder_attention_mask``, so every spatial cross-attention
(``{down_blocks.i|mid_block|up_blocks.i}.attentions.j.transformer_blocks.0.attn2.to_k/to_v``)
reads the raw states of all 77 positions (BOS, prompt, EOS and the pads, which depend on the
prompt because CLIP is causal). There is no projection inside the UNet to serve as ``feed``, so
the feed and capture are the first target layer itself, its input recorded. The temporal
attentions (``temp_attentions.*``, ``transformer_in``) have an ``attn2`` too, but it is
self-attention over frames: not a target. No K/V layer has a bias (``--mode bias/replace`` are
refused). Weights: cerspense's repos ship pickle ``.bin`` files only; ``vidunlearn convert``
rewrites them as safetensors without executing the pickles (vidunlearn/convert.py). LoRA:
diffusers' ``load_lora_weights`` cannot load into UNet3DConditionModel (it has no
``load_lora_adapter``), so the LoRA is PEFT-format and the card loads it with peft.
"""

from __future__ import annotations

from ..errors import ModelError
from .base import Adapter, Site

FIRST = "down_blocks.0.attentions.0.transformer_blocks.0.attn2.to_k"


def encode_zeroscope(tokenizer, encoder, prompts: list[str], max_length: int, device: str, batch_size: int = 8,
                     progress=None) -> list:
    """Per prompt (max_length, D): TextToVideoSDPipeline.encode_prompt's prompt_embeds
    (clip_skip=None): padding to ``max_length`` (77), truncation, an attention mask only if the
    encoder's config asks for one (CLIPTextConfig does not), last_hidden_state (after
    final_layer_norm). All positions are kept: the UNet reads them all."""
    import torch

    states: list[torch.Tensor] = []
    with torch.no_grad():
        for start in range(0, len(prompts), batch_size):
            batch = list(prompts[start:start + batch_size])
            tokens = tokenizer(batch, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
            mask = tokens.attention_mask.to(device) if getattr(encoder.config, "use_attention_mask", False) else None
            states.extend(encoder(tokens.input_ids.to(device), attention_mask=mask)[0])
            if progress is not None:
                progress(len(batch))
    return states


def _int(config: dict, key: str) -> int:
    value = config.get(key, 2)
    if type(value) is not int or not 0 < value <= 64:
        raise ModelError(f"{key} is {str(value)[:40]!r}, not an integer from 1 to 64", where="unet/config.json",
                         fix="the config.json is broken or hostile")
    return value


def _kinds(config: dict, key: str) -> list[str]:
    value = config.get(key)
    if not isinstance(value, list) or not 0 < len(value) <= 16 or not all(isinstance(k, str) for k in value):
        raise ModelError(f"{key} is not a list of block type names", where="unet/config.json",
                         fix="the config.json is broken or hostile")
    return value


def cross_attn_targets(config: dict) -> list[str]:
    """Every spatial cross-attention K/V of a UNet3DConditionModel, from its config.json alone.
    Each of UNet3D's Transformer2DModels has one transformer block; a CrossAttnDownBlock3D has
    ``layers_per_block`` of them, a CrossAttnUpBlock3D ``layers_per_block + 1``, the mid block one."""
    per_block = _int(config, "layers_per_block")
    kv = lambda prefix: [f"{prefix}.transformer_blocks.0.attn2.to_k", f"{prefix}.transformer_blocks.0.attn2.to_v"]
    names: list[str] = []
    for i, kind in enumerate(_kinds(config, "down_block_types")):
        if kind == "CrossAttnDownBlock3D":
            for j in range(per_block):
                names += kv(f"down_blocks.{i}.attentions.{j}")
    names += kv("mid_block.attentions.0")
    for i, kind in enumerate(_kinds(config, "up_block_types")):
        if kind == "CrossAttnUpBlock3D":
            for j in range(per_block + 1):
                names += kv(f"up_blocks.{i}.attentions.{j}")
    return names


# the card's loading code for a LoRA: diffusers' load_lora_weights cannot load into UNet3DConditionModel
LORA_LOADING = '''from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
from safetensors.torch import load_file

pipe = {pipeline}.from_pretrained("{base_id}")
lora = {{k.removeprefix("unet."): v for k, v in load_file("{name}/{file}").items()}}
ranks = {{k.removesuffix(".lora_A.weight"): v.shape[0] for k, v in lora.items() if k.endswith(".lora_A.weight")}}
r = max(ranks.values())  # scale alpha / r = 1: the LoRA is the exact edit
config = LoraConfig(r=r, lora_alpha=r, target_modules=sorted(ranks), rank_pattern=ranks, alpha_pattern=ranks)
inject_adapter_in_model(config, pipe.unet)  # diffusers' load_lora_weights cannot load into UNet3DConditionModel
set_peft_model_state_dict(pipe.unet, lora)
# no inference overhead: for m in pipe.unet.modules(): hasattr(m, "merge") and m.merge()'''

ZEROSCOPE = Adapter(
    family="zeroscope",
    pipeline_classes=("TextToVideoSDPipeline",),
    denoisers=("unet",),
    denoiser_class="UNet3DConditionModel",
    feed=FIRST,  # no projection inside the UNet: the first target layer, its input recorded
    block_count_key="layers_per_block",  # an integer; no target has a {block} template, so it counts nothing
    sites={
        "cross_attn_kv": Site(
            name="cross_attn_kv",
            capture=FIRST,
            capture_input=True,
            targets=(),
            expand=cross_attn_targets,
            description="raw CLIP states (all 77 positions), read by every spatial attn2.to_k/to_v "
                        "(temp_attentions and transformer_in attn2 are self-attention)",
        ),
    },
    default_sites=("cross_attn_kv",),
    encode=encode_zeroscope,
    max_sequence_length=77,
    frame_step=1,  # any number of frames
    size_step=8,   # TextToVideoSDPipeline.check_inputs: height and width divisible by 8
    lora_loading=LORA_LOADING,
    aliases={"zeroscope": "cerspense/zeroscope_v2_576w", "modelscope": "ali-vilab/text-to-video-ms-1.7b"},
)
