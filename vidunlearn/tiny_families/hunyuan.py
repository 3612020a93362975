"""A tiny HunyuanVideoPipeline (real HunyuanVideo config keys at toy sizes; random weights).

The Llama tokenizer is Llama-3-style (Llama-3's pre-tokenizer regex, byte-level, a WordLevel
vocabulary of every pre-token of the texts and of diffusers' DEFAULT_PROMPT_TEMPLATE): with it the
template's prefix is exactly 95 tokens, as with the real tokenizer, so the pipeline's own
``crop_start=95`` is right and ``pipe(prompt=...)`` runs unmodified. ``text_embed_dim`` (24)
differs from the transformer's inner width (16), so a width check tells the text-path layers apart.
"""

from __future__ import annotations

import re
from pathlib import Path

from . import DEFAULT_TEXTS, save
from .clip import tiny_clip_tokenizer

TRANSFORMER_CONFIG = {
    "in_channels": 4, "out_channels": 4, "num_attention_heads": 2, "attention_head_dim": 8, "num_layers": 1,
    "num_single_layers": 1, "num_refiner_layers": 1, "mlp_ratio": 2.0, "patch_size": 1, "patch_size_t": 1,
    "qk_norm": "rms_norm", "guidance_embeds": True, "text_embed_dim": 24, "pooled_projection_dim": 8,
    "rope_theta": 256.0, "rope_axes_dim": [2, 2, 4],  # sum(rope_axes_dim) == attention_head_dim
}
VAE_CONFIG = {
    "in_channels": 3, "out_channels": 3, "latent_channels": 4,
    "down_block_types": ["HunyuanVideoDownBlock3D"] * 4, "up_block_types": ["HunyuanVideoUpBlock3D"] * 4,
    "block_out_channels": [8, 8, 8, 8], "layers_per_block": 1, "act_fn": "silu", "norm_num_groups": 4,
    "scaling_factor": 0.476986, "spatial_compression_ratio": 8, "temporal_compression_ratio": 4,
    "mid_block_add_attention": True,
}
LLAMA_CONFIG = {  # >= 3 layers, so that hidden_states[-3] (the pipeline's) is a real layer's output
    "hidden_size": 24, "intermediate_size": 48, "num_hidden_layers": 3, "num_attention_heads": 4,
    "num_key_value_heads": 2, "max_position_embeddings": 512, "rms_norm_eps": 1e-5, "hidden_act": "silu",
}
CLIP_CONFIG = {
    "hidden_size": 8, "intermediate_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
    "max_position_embeddings": 77, "projection_dim": 8, "hidden_act": "quick_gelu",
}

LLAMA3_PAT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
              r"|\s*[\r\n]+|\s+(?!\S)|\s+")
SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>", "<|eot_id|>",
            "<unk>", "<pad>"]


def tiny_llama_tokenizer(texts):
    """A fast tokenizer (tokenizer.json) with Llama-3's pre-tokenization, BOS added, right padding."""
    from diffusers.pipelines.hunyuan_video.pipeline_hunyuan_video import DEFAULT_PROMPT_TEMPLATE
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    pre = pre_tokenizers.Sequence([pre_tokenizers.Split(Regex(LLAMA3_PAT), behavior="isolated"),
                                   pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    template = DEFAULT_PROMPT_TEMPLATE["template"]
    corpus = list(texts) + [template.format(t) for t in texts] + [template]
    split = "(" + "|".join(map(re.escape, SPECIALS)) + ")"
    vocab = {s: i for i, s in enumerate(SPECIALS)}
    for text in corpus:
        for piece in re.split(split, text):
            if piece and piece not in SPECIALS:
                for word, _ in pre.pre_tokenize_str(piece):
                    vocab.setdefault(word, len(vocab))
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(SPECIALS)
    tok.post_processor = processors.TemplateProcessing(
        single="<|begin_of_text|> $A", pair="<|begin_of_text|> $A <|begin_of_text|> $B",
        special_tokens=[("<|begin_of_text|>", vocab["<|begin_of_text|>"])])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>",
                                   unk_token="<unk>", pad_token="<pad>", padding_side="right")


def build_tiny(path: Path, *, texts: list[str] | None = None, seed: int = 0, shard_bytes: int | None = 20_000) -> Path:
    import torch
    from diffusers import (AutoencoderKLHunyuanVideo, FlowMatchEulerDiscreteScheduler, HunyuanVideoPipeline,
                           HunyuanVideoTransformer3DModel)
    from transformers import CLIPTextConfig, CLIPTextModel, LlamaConfig, LlamaModel

    texts = texts or DEFAULT_TEXTS
    torch.manual_seed(seed)
    tokenizer, tokenizer_2 = tiny_llama_tokenizer(texts), tiny_clip_tokenizer(texts)
    text_encoder = LlamaModel(LlamaConfig(**LLAMA_CONFIG, vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id,
                                          eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)).eval()
    text_encoder_2 = CLIPTextModel(CLIPTextConfig(**CLIP_CONFIG, vocab_size=len(tokenizer_2),
                                                  bos_token_id=tokenizer_2.bos_token_id,
                                                  eos_token_id=tokenizer_2.eos_token_id,
                                                  pad_token_id=tokenizer_2.pad_token_id)).eval()
    pipe = HunyuanVideoPipeline(text_encoder=text_encoder, tokenizer=tokenizer,
                                transformer=HunyuanVideoTransformer3DModel(**TRANSFORMER_CONFIG).eval(),
                                vae=AutoencoderKLHunyuanVideo(**VAE_CONFIG).eval(),
                                scheduler=FlowMatchEulerDiscreteScheduler(shift=7.0),
                                text_encoder_2=text_encoder_2, tokenizer_2=tokenizer_2)
    return save(pipe, Path(path), shard_bytes)
