"""MoMask's residual VQ-VAE (``RVQVAE``), rewritten from ``EricGuo5513/momask-codes``
(``models/vq/{model,encdec,resnet,quantizer,residual_vq}.py``) with the same module names, so the
state-dict keys of a model built here equal MoMask's for the same hyper-parameters:

    encoder.model.0.weight ...            Conv1d(input_width, width, 3)
    encoder.model.{1+i}.0 / .1.model.{j}  per down-sampling step: Conv1d(k=2*stride) + Resnet1D
    decoder.model ...                     the mirror: Resnet1D, nearest up-sampling, Conv1d
    quantizer.layers.{q}.codebook         (nb_code, code_dim) buffer of each quantizer layer

Differences from MoMask, none of which changes a key or a shape: the codebook buffer is created on
the CPU (MoMask calls ``.cuda()``); :meth:`QuantizeEMAReset.ema_state` exposes the EMA statistics
(``code_sum``, ``code_count``, which MoMask keeps as plain attributes and loses on resume) so a
resumed training continues them; randomness goes through torch's generator only.

Shapes: motions are (B, T, C) features (C = input_width), latents (B, code_dim, T / 2**down_t),
code indices (B, T / 2**down_t, num_quantizers).
"""

from __future__ import annotations

import random

import torch
import torch.nn.functional as F
from torch import nn


class ResConv1DBlock(nn.Module):
    """x + dropout(conv2(act(conv1(act(x))))): conv1 k=3 dilated, conv2 k=1 (norm=None as MoMask)."""

    def __init__(self, n_in: int, n_state: int, dilation: int = 1, activation: str = "relu",
                 dropout: float = 0.2) -> None:
        super().__init__()
        acts = {"relu": nn.ReLU, "gelu": nn.GELU, "silu": nn.SiLU}
        self.norm1 = nn.Identity()
        self.norm2 = nn.Identity()
        self.activation1 = acts[activation]()
        self.activation2 = acts[activation]()
        self.conv1 = nn.Conv1d(n_in, n_state, 3, 1, dilation, dilation)
        self.conv2 = nn.Conv1d(n_state, n_in, 1, 1, 0)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(self.activation1(self.norm1(x)))
        h = self.conv2(self.activation2(self.norm2(h)))
        return x + self.dropout(h)


class Resnet1D(nn.Module):
    def __init__(self, n_in: int, n_depth: int, dilation_growth_rate: int = 1, reverse_dilation: bool = True,
                 activation: str = "relu") -> None:
        super().__init__()
        blocks = [ResConv1DBlock(n_in, n_in, dilation=dilation_growth_rate ** d, activation=activation)
                  for d in range(n_depth)]
        self.model = nn.Sequential(*(blocks[::-1] if reverse_dilation else blocks))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Encoder(nn.Module):
    """(B, input_width, T) -> (B, output_emb_width, T / stride_t**down_t)."""

    def __init__(self, input_emb_width: int, output_emb_width: int, down_t: int, stride_t: int, width: int,
                 depth: int, dilation_growth_rate: int, activation: str = "relu") -> None:
        super().__init__()
        filter_t, pad_t = stride_t * 2, stride_t // 2
        blocks: list[nn.Module] = [nn.Conv1d(input_emb_width, width, 3, 1, 1), nn.ReLU()]
        for _ in range(down_t):
            blocks.append(nn.Sequential(nn.Conv1d(width, width, filter_t, stride_t, pad_t),
                                        Resnet1D(width, depth, dilation_growth_rate, activation=activation)))
        blocks.append(nn.Conv1d(width, output_emb_width, 3, 1, 1))
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class Decoder(nn.Module):
    """(B, output_emb_width, T') -> (B, T' * 2**down_t, input_width) (note: time first, as MoMask)."""

    def __init__(self, input_emb_width: int, output_emb_width: int, down_t: int, stride_t: int, width: int,
                 depth: int, dilation_growth_rate: int, activation: str = "relu") -> None:
        super().__init__()
        blocks: list[nn.Module] = [nn.Conv1d(output_emb_width, width, 3, 1, 1), nn.ReLU()]
        for _ in range(down_t):
            blocks.append(nn.Sequential(
                Resnet1D(width, depth, dilation_growth_rate, reverse_dilation=True, activation=activation),
                nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv1d(width, width, 3, 1, 1)))
        blocks += [nn.Conv1d(width, width, 3, 1, 1), nn.ReLU(), nn.Conv1d(width, input_emb_width, 3, 1, 1)]
        self.model = nn.Sequential(*blocks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).permute(0, 2, 1)


class QuantizeEMAReset(nn.Module):
    """One codebook, updated by exponential moving averages (``mu``) of the vectors assigned to each
    code; a code unused for a while is reset to a random input vector. Training picks codes with
    Gumbel noise at ``temperature`` (MoMask: 0.5); evaluation takes the nearest."""

    def __init__(self, nb_code: int, code_dim: int, mu: float = 0.99) -> None:
        super().__init__()
        self.nb_code, self.code_dim, self.mu = nb_code, code_dim, mu
        self.init = False
        self.code_sum: torch.Tensor | None = None
        self.code_count: torch.Tensor | None = None
        self.register_buffer("codebook", torch.zeros(nb_code, code_dim))

    def ema_state(self) -> dict[str, torch.Tensor]:
        """The EMA statistics a resumed training needs (not part of MoMask's state dict)."""
        if not self.init:
            return {}
        return {"code_sum": self.code_sum.clone(), "code_count": self.code_count.clone()}

    def load_ema_state(self, state: dict[str, torch.Tensor]) -> None:
        if state:
            self.code_sum, self.code_count, self.init = state["code_sum"].clone(), state["code_count"].clone(), True

    def _tile(self, x: torch.Tensor) -> torch.Tensor:
        n, dim = x.shape
        if n >= self.nb_code:
            return x
        out = x.repeat((self.nb_code + n - 1) // n, 1)
        return out + torch.randn_like(out) * (0.01 / dim ** 0.5)

    def init_codebook(self, x: torch.Tensor) -> None:
        self.codebook = self._tile(x)[: self.nb_code].clone()
        self.code_sum = self.codebook.clone()
        self.code_count = torch.ones(self.nb_code, device=x.device)
        self.init = True

    def quantize(self, x: torch.Tensor, temperature: float = 0.0) -> torch.Tensor:
        """x (N, code_dim) -> code indices (N,)."""
        k_w = self.codebook.t()
        distance = (x ** 2).sum(-1, keepdim=True) - 2 * x @ k_w + (k_w ** 2).sum(0, keepdim=True)
        logits = -distance
        if self.training and temperature > 0:
            noise = torch.zeros_like(logits).uniform_(0, 1)
            logits = logits / temperature + gumbel_noise(noise)
        return logits.argmax(dim=-1)

    def dequantize(self, code_idx: torch.Tensor) -> torch.Tensor:
        return F.embedding(code_idx, self.codebook)

    @torch.no_grad()
    def update_codebook(self, x: torch.Tensor, code_idx: torch.Tensor) -> torch.Tensor:
        onehot = torch.zeros(self.nb_code, x.shape[0], device=x.device)
        onehot.scatter_(0, code_idx.view(1, -1), 1)
        code_sum, code_count = onehot @ x, onehot.sum(-1)
        code_rand = self._tile(x)[: self.nb_code]
        self.code_sum = self.mu * self.code_sum + (1 - self.mu) * code_sum
        self.code_count = self.mu * self.code_count + (1 - self.mu) * code_count
        usage = (self.code_count.view(-1, 1) >= 1.0).float()
        self.codebook = usage * (self.code_sum / self.code_count.view(-1, 1)) + (1 - usage) * code_rand
        return _perplexity(code_count)

    def forward(self, x: torch.Tensor, return_idx: bool = False, temperature: float = 0.0):
        """x (B, code_dim, T) -> quantized (B, code_dim, T) with a straight-through gradient,
        [indices (B, T)], commitment loss, perplexity."""
        n, width, t = x.shape
        flat = x.permute(0, 2, 1).reshape(-1, width)
        if self.training and not self.init:
            self.init_codebook(flat)
        code_idx = self.quantize(flat, temperature)
        x_d = self.dequantize(code_idx)
        if self.training:
            perplexity = self.update_codebook(flat, code_idx)
        else:
            perplexity = _perplexity(torch.bincount(code_idx, minlength=self.nb_code).float())
        commit_loss = F.mse_loss(flat, x_d.detach())
        x_d = flat + (x_d - flat).detach()
        x_d = x_d.view(n, t, -1).permute(0, 2, 1).contiguous()
        code_idx = code_idx.view(n, t)
        return (x_d, code_idx, commit_loss, perplexity) if return_idx else (x_d, commit_loss, perplexity)


def gumbel_noise(uniform: torch.Tensor) -> torch.Tensor:
    """-log(-log(u)) for u ~ U(0, 1), clamped away from log(0) as MoMask does."""
    return -torch.log((-torch.log(uniform.clamp(min=1e-20))).clamp(min=1e-20))


def _perplexity(code_count: torch.Tensor) -> torch.Tensor:
    prob = code_count / code_count.sum()
    return torch.exp(-(prob * torch.log(prob + 1e-7)).sum())


class ResidualVQ(nn.Module):
    """``num_quantizers`` codebooks, each quantizing what the previous ones left (Zeghidour et al.,
    Algorithm 1). Training drops the layers after a random one with ``quantize_dropout_prob``."""

    def __init__(self, num_quantizers: int, nb_code: int, code_dim: int, mu: float = 0.99,
                 quantize_dropout_prob: float = 0.2, quantize_dropout_cutoff_index: int = 0) -> None:
        super().__init__()
        self.num_quantizers = num_quantizers
        self.layers = nn.ModuleList([QuantizeEMAReset(nb_code, code_dim, mu) for _ in range(num_quantizers)])
        self.quantize_dropout_prob = quantize_dropout_prob
        self.quantize_dropout_cutoff_index = quantize_dropout_cutoff_index

    @property
    def codebooks(self) -> torch.Tensor:
        return torch.stack([layer.codebook for layer in self.layers])  # (Q, nb_code, code_dim)

    def get_codes_from_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (B, T, q <= Q), -1 for a dropped code -> codes (Q, B, T, code_dim)."""
        if indices.shape[-1] < self.num_quantizers:
            indices = F.pad(indices, (0, self.num_quantizers - indices.shape[-1]), value=-1)
        codes = []
        for q, layer in enumerate(self.layers):
            idx = indices[..., q]
            codes.append(F.embedding(idx.clamp(min=0), layer.codebook) * (idx >= 0).unsqueeze(-1))
        return torch.stack(codes)

    def get_codebook_entry(self, indices: torch.Tensor) -> torch.Tensor:
        return self.get_codes_from_indices(indices).sum(0).permute(0, 2, 1)

    def forward(self, x: torch.Tensor, sample_codebook_temp: float | None = None):
        """x (B, code_dim, T) -> quantized sum, indices (B, T, Q) (-1 where dropped), mean
        commitment loss, mean perplexity."""
        quantized_out = 0.0
        residual = x
        losses, indices, perplexities = [], [], []
        drop = self.training and random.random() < self.quantize_dropout_prob
        start_drop = random.randrange(self.quantize_dropout_cutoff_index, self.num_quantizers) if drop \
            else self.num_quantizers
        for q, layer in enumerate(self.layers):
            if drop and q > start_drop:
                indices.append(torch.full((x.shape[0], x.shape[-1]), -1, dtype=torch.long, device=x.device))
                continue
            quantized, idx, loss, perplexity = layer(residual, return_idx=True, temperature=sample_codebook_temp or 0.0)
            residual = residual - quantized.detach()
            quantized_out = quantized_out + quantized
            indices.append(idx)
            losses.append(loss)
            perplexities.append(perplexity)
        return quantized_out, torch.stack(indices, -1), sum(losses) / len(losses), sum(perplexities) / len(perplexities)

    def quantize(self, x: torch.Tensor, return_latent: bool = False):
        """Every layer, nearest codes: indices (B, T, Q) [and per-layer codes (Q, B, code_dim, T)]."""
        residual, indices, codes = x, [], []
        for layer in self.layers:
            quantized, idx, _, _ = layer(residual, return_idx=True)
            residual = residual - quantized.detach()
            indices.append(idx)
            codes.append(quantized)
        code_idx = torch.stack(indices, -1)
        return (code_idx, torch.stack(codes)) if return_latent else code_idx


class RVQVAE(nn.Module):
    """MoMask's motion tokenizer: Encoder -> ResidualVQ -> Decoder over (B, T, input_width) features."""

    def __init__(self, input_width: int, nb_code: int, code_dim: int, output_emb_width: int, down_t: int,
                 stride_t: int, width: int, depth: int, dilation_growth_rate: int, activation: str = "relu", *,
                 num_quantizers: int, quantize_dropout_prob: float = 0.2, mu: float = 0.99) -> None:
        super().__init__()
        assert output_emb_width == code_dim, "MoMask requires output_emb_width == code_dim"
        self.code_dim, self.num_code = code_dim, nb_code
        self.encoder = Encoder(input_width, output_emb_width, down_t, stride_t, width, depth, dilation_growth_rate,
                               activation)
        self.decoder = Decoder(input_width, output_emb_width, down_t, stride_t, width, depth, dilation_growth_rate,
                               activation)
        self.quantizer = ResidualVQ(num_quantizers, nb_code, code_dim, mu, quantize_dropout_prob)

    def encode(self, x: torch.Tensor):
        """(B, T, C) -> indices (B, T', Q), per-layer codes."""
        return self.quantizer.quantize(self.encoder(x.permute(0, 2, 1).float()), return_latent=True)

    def forward(self, x: torch.Tensor):
        """(B, T, C) -> reconstruction (B, T, C), commitment loss, perplexity (MoMask: Gumbel 0.5)."""
        quantized, _, commit_loss, perplexity = self.quantizer(self.encoder(x.permute(0, 2, 1).float()),
                                                               sample_codebook_temp=0.5)
        return self.decoder(quantized), commit_loss, perplexity

    def forward_decoder(self, indices: torch.Tensor) -> torch.Tensor:
        """indices (B, T', q) -> features (B, T' * 2**down_t, C)."""
        return self.decoder(self.quantizer.get_codes_from_indices(indices).sum(0).permute(0, 2, 1))
