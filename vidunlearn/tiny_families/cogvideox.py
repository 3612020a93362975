"""A tiny CogVideoXPipeline (real CogVideoX-2b config keys at toy sizes; random weights)."""

from __future__ import annotations

from pathlib import Path

from . import save, t5_encoder

TRANSFORMER_CONFIG = {
    "num_attention_heads": 2, "attention_head_dim": 8, "in_channels": 4, "out_channels": 4,
    "time_embed_dim": 4, "text_embed_dim": 32, "num_layers": 2,
    "sample_width": 2, "sample_height": 2, "sample_frames": 9, "patch_size": 2,
    "temporal_compression_ratio": 4, "max_text_seq_length": 226,  # = the adapter's max_sequence_length
    "use_rotary_positional_embeddings": False,  # 2b-style sincos positions
}
VAE_CONFIG = {
    "in_channels": 3, "out_channels": 3,
    "down_block_types": ["CogVideoXDownBlock3D"] * 4, "up_block_types": ["CogVideoXUpBlock3D"] * 4,
    "block_out_channels": [8, 8, 8, 8], "latent_channels": 4, "layers_per_block": 1,
    "norm_num_groups": 2, "temporal_compression_ratio": 4,
}


def build_tiny(path: Path, *, texts: list[str] | None = None, seed: int = 0, shard_bytes: int | None = 20_000) -> Path:
    import torch
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXPipeline, CogVideoXTransformer3DModel

    torch.manual_seed(seed)
    tokenizer, text_encoder = t5_encoder(texts)
    pipe = CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder, vae=AutoencoderKLCogVideoX(**VAE_CONFIG).eval(),
                             transformer=CogVideoXTransformer3DModel(**TRANSFORMER_CONFIG).eval(),
                             scheduler=CogVideoXDDIMScheduler())
    return save(pipe, path, shard_bytes)
