"""A tiny WanImageToVideoPipeline (Wan2.1 I2V config keys at toy sizes; random weights): a UMT5
text encoder, a CLIP vision encoder and image processor built from config dicts, and a
WanTransformer3DModel with ``image_dim`` (the CLIP width) and ``added_kv_proj_dim`` (its own
width), so each block's cross-attention has ``add_k_proj`` / ``add_v_proj`` for the image tokens."""

from __future__ import annotations

from pathlib import Path

from ..tiny import TRANSFORMER_CONFIG as WAN_T2V, VAE_CONFIG

CLIP_VISION_CONFIG = {"hidden_size": 16, "intermediate_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
                      "image_size": 32, "patch_size": 8, "projection_dim": 16, "hidden_act": "gelu"}  # 16 patches + CLS
IMAGE_PROCESSOR_CONFIG = {"size": {"shortest_edge": 32}, "crop_size": {"height": 32, "width": 32},
                          "do_center_crop": True, "do_resize": True, "do_normalize": True,
                          "image_mean": [0.48145466, 0.4578275, 0.40821073], "image_std": [0.26862954, 0.26130258, 0.27577711]}
# the real 14B I2V: in_channels 36 (16 noise + 4 mask + 16 image latents), image_dim 1280, added_kv_proj_dim 5120
TRANSFORMER_CONFIG = {**WAN_T2V, "in_channels": 36, "image_dim": 16, "added_kv_proj_dim": 24}  # 24 = heads * head_dim


def build_tiny(path: Path, *, texts: list[str] | None = None, seed: int = 0, shard_bytes: int | None = 20_000) -> Path:
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel, T5Tokenizer, UMT5Config, UMT5EncoderModel

    from ..tiny import TEXT_ENCODER_CONFIG, tiny_vocabulary
    from . import DEFAULT_TEXTS, save

    torch.manual_seed(seed)
    tokenizer = T5Tokenizer(vocab=tiny_vocabulary(texts or DEFAULT_TEXTS), extra_ids=0)
    text_encoder = UMT5EncoderModel(UMT5Config(**{**TEXT_ENCODER_CONFIG, "vocab_size": len(tokenizer)})).eval()
    pipe = WanImageToVideoPipeline(
        tokenizer=tokenizer, text_encoder=text_encoder, vae=AutoencoderKLWan(**VAE_CONFIG).eval(),
        scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0),
        image_processor=CLIPImageProcessor(**IMAGE_PROCESSOR_CONFIG),
        image_encoder=CLIPVisionModel(CLIPVisionConfig(**CLIP_VISION_CONFIG)).eval(),
        transformer=WanTransformer3DModel(**TRANSFORMER_CONFIG).eval())
    return save(pipe, path, shard_bytes)
