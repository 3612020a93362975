"""Tiny random-weight pipelines of every family, built from config dicts, offline, in a second:
the tests' models and ``vidunlearn tiny --family``. Each is laid out like the family's Hub repo
(model_index.json and one folder per component; the denoiser sharded like the Hub's)."""

from __future__ import annotations

from pathlib import Path

T5_CONFIG = {"vocab_size": 0, "d_model": 32, "d_kv": 8, "d_ff": 64, "num_layers": 2, "num_heads": 4,
             "relative_attention_num_buckets": 8, "relative_attention_max_distance": 16, "dropout_rate": 0.0,
             "feed_forward_proj": "gated-gelu", "is_encoder_decoder": False}
DEFAULT_TEXTS = ["a red square moving left", "a blue circle moving right"]


def t5_encoder(texts: list[str] | None):
    """(tokenizer, encoder): a T5 tokenizer over ``texts``' words and a tiny T5 encoder."""
    from transformers import T5Config, T5EncoderModel, T5Tokenizer

    from ..tiny import tiny_vocabulary

    tokenizer = T5Tokenizer(vocab=tiny_vocabulary(texts or DEFAULT_TEXTS), extra_ids=0)
    return tokenizer, T5EncoderModel(T5Config(**{**T5_CONFIG, "vocab_size": len(tokenizer)})).eval()


def save(pipe, path: Path, shard_bytes: int | None, component: str = "transformer") -> Path:
    """Save ``pipe`` as safetensors; ``shard_bytes`` shards the denoiser (streaming is shard by shard)."""
    pipe.save_pretrained(path, safe_serialization=True)
    if shard_bytes:
        for old in (path / component).glob("diffusion_pytorch_model*"):
            old.unlink()
        getattr(pipe, component).save_pretrained(path / component, safe_serialization=True, max_shard_size=shard_bytes)
    return Path(path)


def build(family: str, path: Path, *, texts: list[str] | None = None, seed: int = 0) -> Path:
    """The tiny pipeline of ``family`` (``wan``, ``ltx``, ``cogvideox``...) written to ``path``."""
    from importlib import import_module

    from ..errors import VidunlearnError

    if family == "wan":
        from ..tiny import build_tiny_wan

        return build_tiny_wan(path, texts=texts, seed=seed)
    if family not in FAMILIES:
        raise VidunlearnError(f"no tiny pipeline for family {family!r}", fix=f"use one of wan, {', '.join(FAMILIES)}")
    return import_module(f".{family.replace('-', '_')}", __name__).build_tiny(path, texts=texts, seed=seed)


FAMILIES = ("ltx", "cogvideox", "hunyuan", "zeroscope", "wan-i2v", "opensora")
