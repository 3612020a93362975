"""Tiny Wan pipelines built from config dicts, offline, in milliseconds (random weights).

Used by the tests and by ``vidunlearn tiny`` for a smoke test of the plumbing. A tiny random
model shows that the pipeline runs and that the edit does what the math says; it does not show
that a concept is forgotten (that needs a trained model; see benchmarks/).
"""

from __future__ import annotations

import re
import string
from pathlib import Path

# Real Wan2.1 configs at toy sizes; keys as in the Hub's config.json files.
TRANSFORMER_CONFIG = {
    "patch_size": [1, 2, 2], "num_attention_heads": 2, "attention_head_dim": 12, "in_channels": 16,
    "out_channels": 16, "text_dim": 32, "freq_dim": 256, "ffn_dim": 32, "num_layers": 2,
    "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "image_dim": None,
    "added_kv_proj_dim": None, "rope_max_seq_len": 32,
}
VAE_CONFIG = {"base_dim": 3, "z_dim": 16, "dim_mult": [1, 1, 1, 1], "num_res_blocks": 1,
              "temperal_downsample": [False, True, True]}
TEXT_ENCODER_CONFIG = {"vocab_size": 0, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2,
                       "num_heads": 4, "relative_attention_num_buckets": 8, "relative_attention_max_distance": 16,
                       "dropout_rate": 0.0, "feed_forward_proj": "gated-gelu", "is_encoder_decoder": False}


def tiny_vocabulary(texts: list[str]) -> list[tuple[str, float]]:
    """A Unigram vocabulary: pad=0, </s>=1, unk=2, every word of ``texts``, then characters."""
    words = sorted({w for t in texts for w in re.findall(r"[\w'-]+|[^\w\s]", t.lower())})
    pieces = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    pieces += [("▁" + w, -1.0) for w in words]
    pieces += [(c, -6.0) for c in string.ascii_lowercase + string.digits + string.punctuation]
    return pieces


def build_tiny_wan(path: Path, *, texts: list[str] | None = None, experts: int = 1, seed: int = 0,
                   shard_bytes: int | None = 20_000) -> Path:
    """Write a tiny WanPipeline folder to ``path``, laid out like the Hub's Wan repos.

    experts=2 writes a Wan2.2-style pipeline with ``transformer`` and ``transformer_2``.
    shard_bytes shards the (float32) transformer like the Hub's 1.3B repo; None writes one file.
    """
    import torch
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanPipeline, WanTransformer3DModel
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

    torch.manual_seed(seed)
    texts = texts or ["a red square moving left", "a blue circle moving right"]
    tokenizer = T5Tokenizer(vocab=tiny_vocabulary(texts), extra_ids=0)
    text_encoder = UMT5EncoderModel(UMT5Config(**{**TEXT_ENCODER_CONFIG, "vocab_size": len(tokenizer)})).eval()
    transformers = [WanTransformer3DModel(**TRANSFORMER_CONFIG).eval() for _ in range(experts)]
    vae = AutoencoderKLWan(**VAE_CONFIG).eval()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=3.0)
    extra = {"transformer_2": transformers[1], "boundary_ratio": 0.875} if experts == 2 else {}
    pipe = WanPipeline(tokenizer=tokenizer, text_encoder=text_encoder, transformer=transformers[0], vae=vae,
                       scheduler=scheduler, **extra)
    pipe.save_pretrained(path, safe_serialization=True)
    if shard_bytes:
        for name, model in [("transformer", transformers[0])] + ([("transformer_2", transformers[1])] if experts == 2 else []):
            for old in (path / name).glob("diffusion_pytorch_model*"):
                old.unlink()
            model.save_pretrained(path / name, safe_serialization=True, max_shard_size=shard_bytes)
    return path
