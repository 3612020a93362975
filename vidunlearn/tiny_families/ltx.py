"""A tiny LTXPipeline (real LTX-Video config keys at toy sizes; random weights)."""

from __future__ import annotations

from pathlib import Path

from . import save, t5_encoder

TRANSFORMER_CONFIG = {
    "in_channels": 8, "out_channels": 8, "patch_size": 1, "patch_size_t": 1,
    "num_attention_heads": 2, "attention_head_dim": 8, "cross_attention_dim": 16,  # = heads * head_dim
    "num_layers": 2, "caption_channels": 32, "qk_norm": "rms_norm_across_heads",
    "activation_fn": "gelu-approximate", "norm_elementwise_affine": False, "norm_eps": 1e-6,
    "attention_bias": True, "attention_out_bias": True,
}
VAE_CONFIG = {  # compresses 4x in space and time (the real one: 32x and 8x)
    "in_channels": 3, "out_channels": 3, "latent_channels": 8,
    "block_out_channels": [8, 8, 8, 8], "decoder_block_out_channels": [8, 8, 8, 8],
    "layers_per_block": [1, 1, 1, 1, 1], "decoder_layers_per_block": [1, 1, 1, 1, 1],
    "spatio_temporal_scaling": [True, True, False, False], "decoder_spatio_temporal_scaling": [True, True, False, False],
    "decoder_inject_noise": [False, False, False, False, False], "upsample_residual": [False, False, False, False],
    "upsample_factor": [1, 1, 1, 1], "timestep_conditioning": False, "patch_size": 1, "patch_size_t": 1,
    "encoder_causal": True, "decoder_causal": False,
}


def build_tiny(path: Path, *, texts: list[str] | None = None, seed: int = 0, shard_bytes: int | None = 20_000) -> Path:
    import torch
    from diffusers import AutoencoderKLLTXVideo, FlowMatchEulerDiscreteScheduler, LTXPipeline, LTXVideoTransformer3DModel

    torch.manual_seed(seed)
    tokenizer, text_encoder = t5_encoder(texts)
    pipe = LTXPipeline(scheduler=FlowMatchEulerDiscreteScheduler(), vae=AutoencoderKLLTXVideo(**VAE_CONFIG).eval(),
                       text_encoder=text_encoder, tokenizer=tokenizer,
                       transformer=LTXVideoTransformer3DModel(**TRANSFORMER_CONFIG).eval())
    return save(pipe, path, shard_bytes)
