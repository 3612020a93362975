"""Open-Sora 2.0 (``hpcai-tech/Open-Sora-v2``, 11B): not a diffusers pipeline. Its Hub repo holds
the denoiser as ONE safetensors file with Open-Sora's own key names (``Open_Sora_v2.safetensors``,
bf16; the repo also ships ``flux1-dev.safetensors`` for its text-to-image-to-video mode, which the
tool never reads), T5-XXL in ``google/t5-v1_1-xxl/``, CLIP-L in ``openai/clip-vit-large-patch14/``
and the VAE in ``hunyuan_vae.safetensors`` (configs/diffusion/inference/256px.py: ``ckpts/...``).

Text path (hpcaitech/Open-Sora, ``opensora/models/text/conditioner.py`` ``HFEmbedder`` and
``opensora/utils/sampling.py`` ``prepare``): T5 tokenizes with ``padding="max_length"``,
``max_length=512``, truncation, and the encoder runs with ``attention_mask=None``, so the real
tokens attend to the pads; ``last_hidden_state``, all 512 positions, is ``txt``. The MMDiT
(``opensora/models/mmdit/model.py``) applies ``txt_in`` (Linear 4096 -> 3072) to every position,
and nothing masks the pads after it (the joint attention is ``flash_attn_func(q, k, v)`` without
a mask). So the one site, ``text_in``, is ``txt_in``'s input over all 512 positions, as CogVideoX's.

Not edited: the CLIP-L pooled vector (``vector_in``, added to the timestep embedding), a second
encoder's space that the tool does not capture; and the paper's own layers, the text stream's FFN
(``double_blocks.17``/``18.txt_mlp.0``), whose input depends on the video tokens (joint attention)
and the timestep (modulation): computing it means running 18 double blocks on noise latents, which
is not reproduced (docs/families.md).
"""

from __future__ import annotations

import math

from ..errors import ModelError
from .base import Adapter, FolderLayout, KeyMap, Site
from .cogvideox import encode_cogvideox

FILE = "Open_Sora_v2.safetensors"
NOT_MMDIT = "pass an Open-Sora 2.0 folder (Open_Sora_v2.safetensors with google/t5-v1_1-xxl beside it)"
AXES = (1 / 8, 7 / 16, 7 / 16)  # Open-Sora's axes_dim [16, 56, 56] for its head size 128, as shares


def _shape(shapes: dict[str, tuple[int, ...]], key: str, dims: int = 2) -> tuple[int, ...]:
    shape = shapes.get(key)
    if shape is None or len(shape) != dims:
        raise ModelError(f"no {dims}-D tensor {key!r}: not an Open-Sora 2.0 MMDiT file", fix=NOT_MMDIT)
    return shape


def _blocks(shapes: dict[str, tuple[int, ...]], prefix: str) -> int:
    indices = {key[len(prefix):].split(".", 1)[0] for key in shapes if key.startswith(prefix)}
    if not all(i.isdigit() for i in indices) or sorted(int(i) for i in indices) != list(range(len(indices))):
        raise ModelError(f"the {prefix}N tensors do not number their blocks 0, 1, 2...", fix=NOT_MMDIT)
    return len(indices)


def mmdit_config(shapes: dict[str, tuple[int, ...]]) -> dict:
    """``MMDiTConfig`` of the file's tensors (the file has no config; the 11B's is in Open-Sora's
    configs/diffusion/inference/256px.py): sizes from the shapes, switches from which keys exist,
    the rotary embedding's ``axes_dim`` (no parameters) in the 256px config's shares of the head size."""
    hidden, context = _shape(shapes, "txt_in.weight")
    depth = _blocks(shapes, "double_blocks.")
    if depth == 0:
        raise ModelError("no double_blocks.N tensors: not an Open-Sora 2.0 MMDiT file", fix=NOT_MMDIT)
    block = "double_blocks.0.txt_"
    head = _shape(shapes, block + "attn.norm.query_norm.scale", dims=1)[0]
    in_channels = _shape(shapes, "img_in.weight")[1]
    cond = shapes.get("cond_in.weight")
    patch = math.isqrt(cond[1] - in_channels) if cond is not None and len(cond) == 2 and cond[1] > in_channels else 2
    fused = block + "attn.qkv.weight" in shapes
    axes = [round(head * share) for share in AXES]
    if head <= 0 or hidden % head or any(a % 2 for a in axes) or sum(axes) != head:
        raise ModelError(f"head size {head} (hidden {hidden}) has no rotary split like Open-Sora's [16, 56, 56]",
                         fix=NOT_MMDIT)
    return {
        "in_channels": in_channels, "vec_in_dim": _shape(shapes, "vector_in.in_layer.weight")[1],
        "context_in_dim": context, "hidden_size": hidden,
        "mlp_ratio": _shape(shapes, block + "mlp.0.weight")[0] / hidden, "num_heads": hidden // head,
        "depth": depth, "depth_single_blocks": _blocks(shapes, "single_blocks."), "axes_dim": axes, "theta": 10_000,
        "qkv_bias": block + ("attn.qkv.bias" if fused else "attn.q_proj.bias") in shapes,
        "guidance_embed": "guidance_in.in_layer.weight" in shapes, "cond_embed": cond is not None,
        "fused_qkv": fused, "patch_size": patch,
    }


def mmdit_class() -> type:
    from .opensora_mmdit import MMDiT

    return MMDiT


def encode_opensora(tokenizer, encoder, prompts: list[str], max_length: int, device: str, batch_size: int = 8,
                    progress=None) -> list:
    """HFEmbedder's T5 states: padded to 512, no mask, all 512 positions (nothing masks the pads)."""
    return encode_cogvideox(tokenizer, encoder, prompts, max_length, device, batch_size, progress)


def _same_name(key: str) -> str:
    return key  # the tool names Open-Sora's tensors by their own keys: there is no diffusers naming


T5 = "google/t5-v1_1-xxl"
OPENSORA = Adapter(
    family="opensora",
    pipeline_classes=("OpenSoraV2",),  # no diffusers pipeline: the folder is recognised by its layout
    denoisers=("transformer",),
    denoiser_class="MMDiTModel",
    denoiser_factory=mmdit_class,
    layout=FolderLayout(
        denoiser_file=FILE,
        folders={"text_encoder": (T5, "transformers", "T5EncoderModel"), "tokenizer": (T5, "transformers", "T5Tokenizer")},
        config=mmdit_config,
        download=(FILE, f"{T5}/*", "README.md"),
    ),
    feed="txt_in",
    block_count_key="depth",
    sites={
        "text_in": Site(
            name="text_in",
            capture="txt_in",
            capture_input=True,
            targets=("txt_in",),
            description="raw T5 states (all 512 positions), read by txt_in, the one layer that reads them alone",
        ),
    },
    default_sites=("text_in",),
    encode=encode_opensora,
    max_sequence_length=512,  # configs/diffusion/inference/256px.py: t5 max_length
    keymap=KeyMap(to_original=_same_name, to_diffusers=_same_name),
    # Open-Sora's inference loads a LoRA only as a peft adapter folder (``pretrained_lora_path``:
    # ``PeftModel.from_pretrained``, opensora/utils/sampling.py), a layout this tool does not write
    lora_refusal=("loads a LoRA only as a peft adapter folder (its pretrained_lora_path), which vidunlearn "
                  "does not write"),
    single_file_loading=(
        "# Open-Sora's own inference code reads it: in configs/diffusion/inference/256px.py (or 768px.py) set\n"
        '# model = dict(type="flux", from_pretrained="{name}/{file}", ...)  # instead of ./ckpts/{file}'),
    frame_step=4,
    size_step=16,
    aliases={"open-sora-v2": "hpcai-tech/Open-Sora-v2", "opensora-v2": "hpcai-tech/Open-Sora-v2"},
)
