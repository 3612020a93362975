"""A tiny TextToVideoSDPipeline (ZeroScope / ModelScope layout: real UNet3DConditionModel config
keys at toy sizes; random weights). cross_attention_dim (12) differs from every self-attention
width (16, 32; transformer_in 32), so a wrong target would fail the width check, and is at most
every cross-attention's output width (16, 32), so each K/V weight has full column rank (its edit
can be read back as pinv(W) W')."""

from __future__ import annotations

from pathlib import Path

from . import DEFAULT_TEXTS, save

UNET_CONFIG = {
    "sample_size": 8, "in_channels": 4, "out_channels": 4,
    "down_block_types": ["CrossAttnDownBlock3D", "CrossAttnDownBlock3D", "DownBlock3D"],
    "up_block_types": ["UpBlock3D", "CrossAttnUpBlock3D", "CrossAttnUpBlock3D"],
    "block_out_channels": [16, 32, 32], "layers_per_block": 2, "norm_num_groups": 4,
    "cross_attention_dim": 12, "attention_head_dim": 4,
}
VAE_CONFIG = {
    "in_channels": 3, "out_channels": 3, "down_block_types": ["DownEncoderBlock2D", "DownEncoderBlock2D"],
    "up_block_types": ["UpDecoderBlock2D", "UpDecoderBlock2D"], "block_out_channels": [8, 8], "latent_channels": 4,
    "layers_per_block": 1, "norm_num_groups": 4, "sample_size": 32, "scaling_factor": 0.18215,
}
CLIP_CONFIG = {"hidden_size": 12, "intermediate_size": 24, "num_hidden_layers": 2, "num_attention_heads": 2,
               "max_position_embeddings": 77, "projection_dim": 12, "hidden_act": "gelu"}
SCHEDULER_CONFIG = {"beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear", "clip_sample": False,
                    "set_alpha_to_one": False, "steps_offset": 1, "prediction_type": "epsilon"}


def build_pipeline(texts: list[str] | None = None, seed: int = 0):
    """The tiny pipeline in memory."""
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, TextToVideoSDPipeline, UNet3DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    from .clip import tiny_clip_tokenizer

    torch.manual_seed(seed)
    tokenizer = tiny_clip_tokenizer(texts or DEFAULT_TEXTS)  # model_max_length 77, pad <|endoftext|>
    text_encoder = CLIPTextModel(CLIPTextConfig(**CLIP_CONFIG, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                                eos_token_id=tokenizer.eos_token_id,
                                                pad_token_id=tokenizer.pad_token_id)).eval()
    return TextToVideoSDPipeline(vae=AutoencoderKL(**VAE_CONFIG).eval(), text_encoder=text_encoder, tokenizer=tokenizer,
                                 unet=UNet3DConditionModel(**UNET_CONFIG).eval(),
                                 scheduler=DDIMScheduler(**SCHEDULER_CONFIG))


def build_tiny(path: Path, *, texts: list[str] | None = None, seed: int = 0, shard_bytes: int | None = 20_000) -> Path:
    return save(build_pipeline(texts, seed), Path(path), shard_bytes, component="unet")
