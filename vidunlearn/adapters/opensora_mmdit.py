"""Open-Sora 2.0's denoiser (an MMDiT, Flux-like) as a module tree with exactly its parameter names
and shapes: what ``apply --dry-run`` builds on the meta device and checks the file against, and
what ``extract`` loads ``txt_in`` into. Written from hpcaitech/Open-Sora's
``opensora/models/mmdit/model.py`` (``MMDiTModel``) and ``layers.py`` (``DoubleStreamBlock``,
``SingleStreamBlock``, ``SelfAttention``, ``QKNorm``, ``Modulation``, ``MLPEmbedder``, ``LastLayer``).

Only ``txt_in`` runs here (``extract`` calls it on the T5 states). The blocks carry no forward: the
tool never runs them (the text stream inside them depends on the video tokens and the timestep,
which this tool does not reproduce; docs/families.md). Imports torch: import it lazily, through
``adapters/opensora.py``'s factory.

No ``from __future__ import annotations`` here: ``bounds.check_types`` reads :class:`MMDiTConfig`'s
field types from its ``__init__`` signature, and needs them as types, not strings.
"""

from dataclasses import asdict, dataclass

import torch
from torch import nn


@dataclass(frozen=True)
class MMDiTConfig:
    """``MMDiTConfig``'s fields that set the module tree (Open-Sora's inference configs give them;
    ``axes_dim`` and ``theta`` size only the rotary embedding, which has no parameters)."""

    in_channels: int
    vec_in_dim: int
    context_in_dim: int
    hidden_size: int
    mlp_ratio: float
    num_heads: int
    depth: int
    depth_single_blocks: int
    axes_dim: list[int]
    theta: int
    qkv_bias: bool
    guidance_embed: bool
    cond_embed: bool = False
    fused_qkv: bool = True
    patch_size: int = 2

    @classmethod
    def from_dict(cls, config: dict) -> "MMDiTConfig":
        return cls(**config)


class MLPEmbedder(nn.Module):
    def __init__(self, in_dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.in_layer = nn.Linear(in_dim, hidden_dim, bias=True)
        self.silu = nn.SiLU()
        self.out_layer = nn.Linear(hidden_dim, hidden_dim, bias=True)


class RMSNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(dim))


class QKNorm(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.query_norm = RMSNorm(dim)
        self.key_norm = RMSNorm(dim)


class SelfAttention(nn.Module):
    def __init__(self, dim: int, num_heads: int, qkv_bias: bool, fused_qkv: bool) -> None:
        super().__init__()
        if fused_qkv:
            self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        else:
            self.q_proj = nn.Linear(dim, dim, bias=qkv_bias)
            self.k_proj = nn.Linear(dim, dim, bias=qkv_bias)
            self.v_proj = nn.Linear(dim, dim, bias=qkv_bias)
        self.norm = QKNorm(dim // num_heads)
        self.proj = nn.Linear(dim, dim)


class Modulation(nn.Module):
    def __init__(self, dim: int, double: bool) -> None:
        super().__init__()
        self.lin = nn.Linear(dim, (6 if double else 3) * dim, bias=True)


def _mlp(hidden: int, inner: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(hidden, inner, bias=True), nn.GELU(approximate="tanh"),
                         nn.Linear(inner, hidden, bias=True))


class DoubleStreamBlock(nn.Module):
    def __init__(self, config: MMDiTConfig) -> None:
        super().__init__()
        hidden, inner = config.hidden_size, int(config.hidden_size * config.mlp_ratio)
        for stream in ("img", "txt"):  # the image stream, then the text stream: the same layers
            self.add_module(f"{stream}_mod", Modulation(hidden, double=True))
            self.add_module(f"{stream}_norm1", nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6))
            self.add_module(f"{stream}_attn", SelfAttention(hidden, config.num_heads, config.qkv_bias, config.fused_qkv))
            self.add_module(f"{stream}_norm2", nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6))
            self.add_module(f"{stream}_mlp", _mlp(hidden, inner))


class SingleStreamBlock(nn.Module):
    def __init__(self, config: MMDiTConfig) -> None:
        super().__init__()
        hidden, inner = config.hidden_size, int(config.hidden_size * config.mlp_ratio)
        if config.fused_qkv:
            self.linear1 = nn.Linear(hidden, hidden * 3 + inner)
        else:
            self.q_proj = nn.Linear(hidden, hidden)
            self.k_proj = nn.Linear(hidden, hidden)
            self.v_mlp = nn.Linear(hidden, hidden + inner)
        self.linear2 = nn.Linear(hidden + inner, hidden)
        self.norm = QKNorm(hidden // config.num_heads)
        self.pre_norm = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.mlp_act = nn.GELU(approximate="tanh")
        self.modulation = Modulation(hidden, double=False)


class LastLayer(nn.Module):
    def __init__(self, hidden: int, out_channels: int) -> None:
        super().__init__()
        self.norm_final = nn.LayerNorm(hidden, elementwise_affine=False, eps=1e-6)
        self.linear = nn.Linear(hidden, out_channels, bias=True)  # Open-Sora passes patch_size 1 here
        self.adaLN_modulation = nn.Sequential(nn.SiLU(), nn.Linear(hidden, 2 * hidden, bias=True))


class MMDiT(nn.Module):
    """Open-Sora 2.0's ``MMDiTModel`` module tree; its state_dict keys are the file's key names."""

    config_class = MMDiTConfig

    def __init__(self, config: MMDiTConfig) -> None:
        super().__init__()
        if config.num_heads <= 0 or config.hidden_size % config.num_heads:
            raise ValueError(f"hidden size {config.hidden_size} is not divisible by num_heads {config.num_heads}")
        if sum(config.axes_dim) != config.hidden_size // config.num_heads:
            raise ValueError(f"axes_dim {config.axes_dim} does not sum to the head size")
        self.config = config
        hidden = config.hidden_size
        self.img_in = nn.Linear(config.in_channels, hidden, bias=True)
        self.time_in = MLPEmbedder(256, hidden)
        self.vector_in = MLPEmbedder(config.vec_in_dim, hidden)
        self.guidance_in = MLPEmbedder(256, hidden) if config.guidance_embed else nn.Identity()
        self.cond_in = (nn.Linear(config.in_channels + config.patch_size ** 2, hidden, bias=True)
                        if config.cond_embed else nn.Identity())
        self.txt_in = nn.Linear(config.context_in_dim, hidden)
        self.double_blocks = nn.ModuleList(DoubleStreamBlock(config) for _ in range(config.depth))
        self.single_blocks = nn.ModuleList(SingleStreamBlock(config) for _ in range(config.depth_single_blocks))
        self.final_layer = LastLayer(hidden, config.in_channels)

    @classmethod
    def from_config(cls, config: dict) -> "MMDiT":
        return cls(MMDiTConfig.from_dict(config))

    def config_dict(self) -> dict:
        return asdict(self.config)
