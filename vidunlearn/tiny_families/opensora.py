"""A tiny folder laid out like ``hpcai-tech/Open-Sora-v2`` (random weights): the MMDiT as one bf16
``Open_Sora_v2.safetensors`` with Open-Sora's real key names (``txt_in``, ``vector_in``,
``double_blocks.N.txt_attn.q_proj``, ``single_blocks.N.v_mlp``...; the 11B's switches:
``fused_qkv=False``, ``qkv_bias=True``, ``cond_embed=True``, no guidance embedding) at toy sizes,
a tiny T5 encoder and tokenizer in ``google/t5-v1_1-xxl/`` (safetensors: the Hub's are pickles),
a tiny CLIP text model in ``openai/clip-vit-large-patch14/`` and a stand-in ``hunyuan_vae.safetensors``
(neither is read by the tool). ``flux1-dev*.safetensors`` of the Hub repo are left out."""

from __future__ import annotations

from pathlib import Path

from . import t5_encoder

MMDIT_CONFIG = {  # MMDiTConfig fields at toy sizes; the 11B: configs/diffusion/inference/256px.py
    "in_channels": 16, "vec_in_dim": 16, "context_in_dim": 32, "hidden_size": 64, "mlp_ratio": 2.0, "num_heads": 2,
    "depth": 2, "depth_single_blocks": 2, "axes_dim": [4, 14, 14], "theta": 10_000, "qkv_bias": True,
    "guidance_embed": False, "cond_embed": True, "fused_qkv": False, "patch_size": 2,
}
CLIP_CONFIG = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
               "max_position_embeddings": 77, "projection_dim": 16}
T5_FOLDER, CLIP_FOLDER = "google/t5-v1_1-xxl", "openai/clip-vit-large-patch14"


def build_tiny(path: Path, *, texts: list[str] | None = None, seed: int = 0) -> Path:
    import torch
    from safetensors.torch import save_file
    from transformers import CLIPTextConfig, CLIPTextModel

    from ..adapters.opensora import FILE
    from ..adapters.opensora_mmdit import MMDiT
    from .clip import tiny_clip_tokenizer

    torch.manual_seed(seed)
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer, encoder = t5_encoder(texts)
    tokenizer.save_pretrained(path / T5_FOLDER)
    encoder.save_pretrained(path / T5_FOLDER, safe_serialization=True)
    clip_tokenizer = tiny_clip_tokenizer(texts or ["a red square"])
    ids = {k: clip_tokenizer.convert_tokens_to_ids(t) for k, t in (("bos_token_id", "<|startoftext|>"), ("eos_token_id", "<|endoftext|>"), ("pad_token_id", "<|endoftext|>"))}
    clip = CLIPTextModel(CLIPTextConfig(**CLIP_CONFIG, vocab_size=len(clip_tokenizer), **ids)).eval()
    clip_tokenizer.save_pretrained(path / CLIP_FOLDER)
    clip.save_pretrained(path / CLIP_FOLDER, safe_serialization=True)
    mmdit = MMDiT.from_config(MMDIT_CONFIG)
    state = {key: value.detach().to(torch.bfloat16).contiguous() for key, value in mmdit.state_dict().items()}
    save_file(state, str(path / FILE), metadata={"format": "pt"})  # the Hub's file: bf16, Open-Sora's own keys
    save_file({"encoder.conv_in.conv.weight": torch.randn(8, 3, 3, 3, 3)}, str(path / "hunyuan_vae.safetensors"))
    (path / "README.md").write_text("# tiny Open-Sora-v2 layout (random weights, for tests)\n")
    return path
