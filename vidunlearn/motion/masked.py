"""MoMask's two token transformers, rewritten from ``EricGuo5513/momask-codes``
(``models/mask_transformer/{transformer,tools}.py``) with the same module and parameter names, so
the state-dict keys equal MoMask's (minus ``clip_model.*``, which MoMask also strips on save):

- :class:`MaskTransformer` predicts the base-layer codes: ``token_emb`` (nb_code + 2 rows: mask
  and pad), ``input_process.poseEmbedding``, ``position_enc.pe`` (5000 positions),
  ``seqTransEncoder.layers.{i}.*`` (``nn.TransformerEncoderLayer``, GELU, sequence first),
  ``cond_emb`` (clip_dim -> latent_dim), ``output_process.{dense,LayerNorm,poseFinal}``.
  Trained by masking a cosine-scheduled share of tokens (BERT-style 10 % random / 88 % mask),
  decoded by iterative mask-predict; classifier-free guidance from ``cond_drop_prob`` dropout.
- :class:`ResidualTransformer` predicts layer q's codes from the sum of layers < q, with MoMask's
  ``share_weight`` layout (``embed_proj_shared_weight``, ``token_embed_weight_``,
  ``output_proj_weight_``) and ``quant_emb`` for the layer index.

The one change: text encoding is outside the modules. MoMask's ``encode_text`` runs a frozen CLIP
ViT-B/32 inside the module; here ``forward``/``generate`` take the text vectors (B, clip_dim)
directly, made by :mod:`vidunlearn.motion.text` (all-MiniLM-L6-v2, not CLIP; see there).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .rvq import gumbel_noise


def lengths_to_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B,) -> (B, max_len), True inside the sequence."""
    return torch.arange(max_len, device=lengths.device).expand(len(lengths), max_len) < lengths.unsqueeze(1)


def cosine_schedule(t: torch.Tensor) -> torch.Tensor:
    return torch.cos(t * math.pi * 0.5)


def top_k(logits: torch.Tensor, thres: float = 0.9, dim: int = -1) -> torch.Tensor:
    """Keep the top ceil((1 - thres) * n) logits, -inf elsewhere."""
    k = math.ceil((1 - thres) * logits.shape[dim])
    val, ind = logits.topk(k, dim=dim)
    return torch.full_like(logits, float("-inf")).scatter_(dim, ind, val)


def gumbel_sample(t: torch.Tensor, temperature: float = 1.0, dim: int = -1) -> torch.Tensor:
    noise = torch.zeros_like(t).uniform_(0, 1)
    return (t / max(temperature, 1e-10) + gumbel_noise(noise)).argmax(dim=dim)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, (nn.Linear, nn.Embedding)):
        module.weight.data.normal_(mean=0.0, std=0.02)
        if isinstance(module, nn.Linear) and module.bias is not None:
            module.bias.data.zero_()
    elif isinstance(module, nn.LayerNorm):
        module.bias.data.zero_()
        module.weight.data.fill_(1.0)


class InputProcess(nn.Module):
    def __init__(self, input_feats: int, latent_dim: int) -> None:
        super().__init__()
        self.poseEmbedding = nn.Linear(input_feats, latent_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.poseEmbedding(x.permute(1, 0, 2))  # (B, T, d) -> (T, B, latent)


class PositionalEncoding(nn.Module):
    def __init__(self, d_model: int, dropout: float = 0.1, max_len: int = 5000) -> None:
        super().__init__()
        self.dropout = nn.Dropout(p=dropout)
        pe = torch.zeros(max_len, d_model)
        position = torch.arange(0, max_len, dtype=torch.float).unsqueeze(1)
        div_term = torch.exp(torch.arange(0, d_model, 2).float() * (-np.log(10000.0) / d_model))
        pe[:, 0::2] = torch.sin(position * div_term)
        pe[:, 1::2] = torch.cos(position * div_term)
        self.register_buffer("pe", pe.unsqueeze(0).transpose(0, 1))  # (max_len, 1, d_model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout(x + self.pe[: x.shape[0]])


class OutputProcess(nn.Module):
    """(T, B, latent) -> (B, out_feats, T). MoMask's OutputProcess_Bert is the same module."""

    def __init__(self, out_feats: int, latent_dim: int) -> None:
        super().__init__()
        self.dense = nn.Linear(latent_dim, latent_dim)
        self.LayerNorm = nn.LayerNorm(latent_dim, eps=1e-12)
        self.poseFinal = nn.Linear(latent_dim, out_feats)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.poseFinal(self.LayerNorm(F.gelu(self.dense(hidden)))).permute(1, 2, 0)


def _encoder(latent_dim: int, ff_size: int, num_layers: int, num_heads: int, dropout: float) -> nn.TransformerEncoder:
    layer = nn.TransformerEncoderLayer(d_model=latent_dim, nhead=num_heads, dim_feedforward=ff_size, dropout=dropout,
                                       activation="gelu")
    return nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)


class _Conditioned(nn.Module):
    cond_drop_prob: float

    def mask_cond(self, cond: torch.Tensor, force_mask: bool = False) -> torch.Tensor:
        """Zero the text vector (always with ``force_mask``; with ``cond_drop_prob`` in training)."""
        if force_mask:
            return torch.zeros_like(cond)
        if self.training and self.cond_drop_prob > 0:
            keep = 1.0 - torch.bernoulli(torch.full((cond.shape[0], 1), self.cond_drop_prob, device=cond.device))
            return cond * keep
        return cond


class MaskTransformer(_Conditioned):
    def __init__(self, code_dim: int, num_tokens: int, latent_dim: int = 256, ff_size: int = 1024,
                 num_layers: int = 8, num_heads: int = 4, dropout: float = 0.1, clip_dim: int = 512,
                 cond_drop_prob: float = 0.1) -> None:
        super().__init__()
        self.code_dim, self.latent_dim, self.clip_dim = code_dim, latent_dim, clip_dim
        self.num_tokens, self.cond_drop_prob = num_tokens, cond_drop_prob
        self.input_process = InputProcess(code_dim, latent_dim)
        self.position_enc = PositionalEncoding(latent_dim, dropout)
        self.seqTransEncoder = _encoder(latent_dim, ff_size, num_layers, num_heads, dropout)
        self.cond_emb = nn.Linear(clip_dim, latent_dim)
        self.mask_id, self.pad_id = num_tokens, num_tokens + 1
        self.output_process = OutputProcess(num_tokens, latent_dim)
        self.token_emb = nn.Embedding(num_tokens + 2, code_dim)
        self.apply(_init_weights)
        self.noise_schedule = cosine_schedule

    def trans_forward(self, motion_ids: torch.Tensor, cond: torch.Tensor, padding_mask: torch.Tensor,
                      force_mask: bool = False) -> torch.Tensor:
        """ids (B, T), cond (B, clip_dim), padding_mask (B, T) True at pads -> logits (B, num_tokens, T)."""
        cond = self.cond_emb(self.mask_cond(cond, force_mask)).unsqueeze(0)
        x = self.position_enc(self.input_process(self.token_emb(motion_ids)))
        xseq = torch.cat([cond, x], dim=0)
        padding_mask = torch.cat([torch.zeros_like(padding_mask[:, :1]), padding_mask], dim=1)
        return self.output_process(self.seqTransEncoder(xseq, src_key_padding_mask=padding_mask)[1:])

    def forward(self, ids: torch.Tensor, cond: torch.Tensor, m_lens: torch.Tensor):
        """Training loss on base-layer ids (B, T) with lengths m_lens (B,) in tokens:
        (cross-entropy, predicted ids, accuracy on the masked tokens)."""
        bs, ntokens = ids.shape
        non_pad = lengths_to_mask(m_lens, ntokens)
        ids = torch.where(non_pad, ids, self.pad_id)
        rand_mask_probs = self.noise_schedule(torch.zeros(bs, device=ids.device).uniform_(0, 1))
        num_masked = (ntokens * rand_mask_probs).round().clamp(min=1)
        mask = (torch.rand(bs, ntokens, device=ids.device).argsort(-1) < num_masked.unsqueeze(-1)) & non_pad
        labels = torch.where(mask, ids, self.mask_id)
        x_ids = ids.clone()
        mask_rid = torch.bernoulli(mask.float() * 0.1).bool() & mask                 # 10 %: a random token
        x_ids = torch.where(mask_rid, torch.randint_like(x_ids, high=self.num_tokens), x_ids)
        mask_mid = torch.bernoulli((mask & ~mask_rid).float() * 0.88).bool() & mask  # 88 % of the rest: [MASK]
        x_ids = torch.where(mask_mid, self.mask_id, x_ids)
        logits = self.trans_forward(x_ids, cond, ~non_pad)
        loss = F.cross_entropy(logits, labels, ignore_index=self.mask_id)
        pred = logits.argmax(1)
        acc = (pred == labels)[labels != self.mask_id].float().mean().item()
        return loss, pred, acc

    def forward_with_cond_scale(self, motion_ids, cond_vector, padding_mask, cond_scale: float = 3,
                                force_mask: bool = False) -> torch.Tensor:
        if force_mask:
            return self.trans_forward(motion_ids, cond_vector, padding_mask, force_mask=True)
        logits = self.trans_forward(motion_ids, cond_vector, padding_mask)
        if cond_scale == 1:
            return logits
        aux = self.trans_forward(motion_ids, cond_vector, padding_mask, force_mask=True)
        return aux + (logits - aux) * cond_scale

    @torch.no_grad()
    def generate(self, cond_vector: torch.Tensor, m_lens: torch.Tensor, timesteps: int, cond_scale: float,
                 temperature: float = 1.0, topk_filter_thres: float = 0.9, gsample: bool = False,
                 force_mask: bool = False) -> torch.Tensor:
        """Iterative mask-predict (MoMask's schedule): start all masked; at step t re-mask the
        cos(pi/2 * t) share of least confident tokens and predict them again. -> ids (B, T), -1 at pads."""
        was_training = self.training
        self.eval()
        seq_len = int(m_lens.max())
        padding_mask = ~lengths_to_mask(m_lens, seq_len)
        ids = torch.where(padding_mask, self.pad_id, self.mask_id)
        scores = torch.where(padding_mask, 1e5, 0.0)
        for timestep in torch.linspace(0, 1, timesteps):
            num_masked = torch.round(self.noise_schedule(timestep) * m_lens).clamp(min=1)
            is_mask = scores.argsort(1).argsort(1) < num_masked.unsqueeze(-1)
            ids = torch.where(is_mask, self.mask_id, ids)
            logits = self.forward_with_cond_scale(ids, cond_vector, padding_mask, cond_scale, force_mask)
            logits = logits.permute(0, 2, 1)
            filtered = top_k(logits, topk_filter_thres, dim=-1)
            if gsample:
                pred_ids = gumbel_sample(filtered, temperature, dim=-1)
            else:
                pred_ids = torch.distributions.Categorical(F.softmax(filtered / temperature, dim=-1)).sample()
            ids = torch.where(is_mask, pred_ids, ids)
            scores = logits.softmax(-1).gather(2, pred_ids.unsqueeze(-1)).squeeze(-1)
            scores = scores.masked_fill(~is_mask, 1e5)
        self.train(was_training)
        return torch.where(padding_mask, -1, ids)


def q_schedule(bs: int, low: int, high: int, device: torch.device | str = "cpu") -> torch.Tensor:
    """Random quantizer layers in [low, high - 1], more often the lower ones."""
    schedule = 1 - cosine_schedule(torch.zeros(bs, device=device).uniform_(0, 1))
    return torch.round(schedule * (high - low - 1)).long() + low


class ResidualTransformer(_Conditioned):
    def __init__(self, code_dim: int, num_tokens: int, num_quantizers: int, latent_dim: int = 256,
                 ff_size: int = 1024, num_layers: int = 8, num_heads: int = 4, dropout: float = 0.1,
                 clip_dim: int = 512, cond_drop_prob: float = 0.1) -> None:
        super().__init__()
        if num_quantizers < 3:
            raise ValueError("the share_weight layout needs num_quantizers >= 3")
        self.code_dim, self.latent_dim, self.clip_dim = code_dim, latent_dim, clip_dim
        self.num_tokens, self.num_quantizers, self.cond_drop_prob = num_tokens, num_quantizers, cond_drop_prob
        self.input_process = InputProcess(code_dim, latent_dim)
        self.position_enc = PositionalEncoding(latent_dim, dropout)
        self.seqTransEncoder = _encoder(latent_dim, ff_size, num_layers, num_heads, dropout)
        self.quant_emb = nn.Linear(num_quantizers, latent_dim)
        self.cond_emb = nn.Linear(clip_dim, latent_dim)
        self.pad_id = num_tokens
        self.output_process = OutputProcess(code_dim, latent_dim)
        n = num_tokens + 1
        # MoMask's share_weight=True, shared_codebook=False: layer q's input embedding is layer q-1's output projection.
        self.embed_proj_shared_weight = nn.Parameter(torch.normal(0, 0.02, size=(num_quantizers - 2, n, code_dim)))
        self.token_embed_weight_ = nn.Parameter(torch.normal(0, 0.02, size=(1, n, code_dim)))
        self.output_proj_weight_ = nn.Parameter(torch.normal(0, 0.02, size=(1, n, code_dim)))
        self.apply(_init_weights)

    @property
    def token_embed_weight(self) -> torch.Tensor:   # (Q-1, n, code_dim): embeddings of layers 0 .. Q-2
        return torch.cat([self.token_embed_weight_, self.embed_proj_shared_weight], dim=0)

    @property
    def output_proj_weight(self) -> torch.Tensor:   # (Q-1, n, code_dim): outputs for layers 1 .. Q-1
        return torch.cat([self.embed_proj_shared_weight, self.output_proj_weight_], dim=0)

    def output_project(self, logits: torch.Tensor, qids: torch.Tensor) -> torch.Tensor:
        """(B, code_dim, T) -> (B, n, T) with the output projection of layer qids + 1."""
        return torch.einsum("bnc,bcs->bns", self.output_proj_weight[qids], logits)

    def trans_forward(self, motion_codes, qids, cond, padding_mask, force_mask: bool = False) -> torch.Tensor:
        cond = self.cond_emb(self.mask_cond(cond, force_mask)).unsqueeze(0)
        x = self.input_process(motion_codes)
        q_emb = self.quant_emb(F.one_hot(qids, self.num_quantizers).float()).unsqueeze(0)
        xseq = torch.cat([cond, q_emb, self.position_enc(x)], dim=0)
        padding_mask = torch.cat([torch.zeros_like(padding_mask[:, :2]), padding_mask], dim=1)
        return self.output_process(self.seqTransEncoder(xseq, src_key_padding_mask=padding_mask)[2:])

    def forward(self, all_indices: torch.Tensor, cond: torch.Tensor, m_lens: torch.Tensor):
        """Training loss on all layers' ids (B, T, Q): predict a random layer q >= 1 from the sum of
        the embeddings of layers < q."""
        bs, ntokens, nq = all_indices.shape
        non_pad = lengths_to_mask(m_lens, ntokens)
        all_indices = torch.where(non_pad.unsqueeze(-1), all_indices, self.pad_id)
        active = q_schedule(bs, 1, nq, all_indices.device)                                   # (B,)
        table = self.token_embed_weight                                                     # (Q-1, n, d)
        codes = torch.stack([table[q][all_indices[..., q]] for q in range(nq - 1)], dim=-1)  # (B, T, d, Q-1)
        history = codes.cumsum(-1)[torch.arange(bs), :, :, active - 1]                      # (B, T, d)
        target = all_indices[torch.arange(bs), :, active]                                   # (B, T)
        logits = self.output_project(self.trans_forward(history, active, cond, ~non_pad), active - 1)
        loss = F.cross_entropy(logits, target, ignore_index=self.pad_id)
        pred = logits.argmax(1)
        acc = (pred == target)[target != self.pad_id].float().mean().item()
        return loss, pred, acc

    def forward_with_cond_scale(self, motion_codes, q_id: int, cond_vector, padding_mask, cond_scale: float = 3,
                                force_mask: bool = False) -> torch.Tensor:
        qids = torch.full((motion_codes.shape[0],), q_id, dtype=torch.long, device=motion_codes.device)
        logits = self.output_project(self.trans_forward(motion_codes, qids, cond_vector, padding_mask, force_mask),
                                     qids - 1)
        if force_mask or cond_scale == 1:
            return logits
        aux = self.output_project(self.trans_forward(motion_codes, qids, cond_vector, padding_mask, True), qids - 1)
        return aux + (logits - aux) * cond_scale

    @torch.no_grad()
    def generate(self, motion_ids: torch.Tensor, cond_vector: torch.Tensor, m_lens: torch.Tensor,
                 temperature: float = 1.0, topk_filter_thres: float = 0.9, cond_scale: float = 2,
                 num_res_layers: int = -1) -> torch.Tensor:
        """Base ids (B, T) (-1 at pads) -> all layers' ids (B, T, Q), -1 at pads."""
        was_training = self.training
        self.eval()
        padding_mask = ~lengths_to_mask(m_lens, motion_ids.shape[1])
        motion_ids = torch.where(padding_mask, self.pad_id, motion_ids)
        all_indices, history = [motion_ids], 0.0
        layers = self.num_quantizers if num_res_layers == -1 else num_res_layers + 1
        table = self.token_embed_weight
        for q in range(1, layers):
            history = history + table[q - 1][motion_ids]
            logits = self.forward_with_cond_scale(history, q, cond_vector, padding_mask, cond_scale).permute(0, 2, 1)
            pred_ids = gumbel_sample(top_k(logits, topk_filter_thres, dim=-1), temperature, dim=-1)
            motion_ids = torch.where(padding_mask, self.pad_id, pred_ids)
            all_indices.append(motion_ids)
        self.train(was_training)
        out = torch.stack(all_indices, dim=-1)
        return torch.where(out == self.pad_id, -1, out)
