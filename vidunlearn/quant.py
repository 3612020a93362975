"""fp8 weights: dequantise, edit in float32, re-quantise, and measure what survived.

ComfyUI "fp8_scaled" checkpoints store a linear weight as ``float8_e4m3fn`` codes q with a
per-tensor float32 scale next to it (``<module>.scale_weight``): W = q * scale. Plain fp8
checkpoints have no scale (scale = 1). An edit is never applied on the quantised grid: W is
dequantised, W' computed in float32, then re-quantised with the same scale (or a larger one
when W' would clip). The edit's survival is how much of dW = W' - W the stored change keeps:

    survival = <Q(W') - Q(W), dW> / ||dW||^2          (1 = all of it, 0 = nothing)

where Q(X) is X quantised and dequantised again (Q(W) = W for an fp8 source).
"""

from __future__ import annotations

import torch

FP8 = {"F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2}
SCALE_SUFFIX = "scale_weight"


def is_fp8(dtype: str) -> bool:
    return dtype in FP8


def dequantize(codes: torch.Tensor, scale: torch.Tensor | None) -> torch.Tensor:
    """(out, in) fp8 codes, scalar scale -> (out, in) float32."""
    value = codes.float()
    return value * scale.float().reshape(()) if scale is not None else value


def quantize(weight: torch.Tensor, scale: torch.Tensor | None, dtype: torch.dtype
             ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """float32 (out, in) -> (codes, scale). The scale is kept unless ``weight`` would clip, then
    raised to max|W| / max(dtype) (same shape and dtype as the old scale)."""
    limit = torch.finfo(dtype).max
    peak = float(weight.abs().max())
    if scale is None:
        return weight.clamp(-limit, limit).to(dtype), None
    old = float(scale.float().reshape(()))
    new_scale = scale if peak <= old * limit else torch.full_like(scale, peak / limit)
    codes = (weight / new_scale.float().reshape(())).clamp(-limit, limit).to(dtype)
    return codes, new_scale


def survival(weight: torch.Tensor, edited: torch.Tensor, stored_before: torch.Tensor, stored_after: torch.Tensor) -> float:
    """Share of the intended change ``edited - weight`` that the stored change keeps (float32 inputs)."""
    intended = (edited - weight).double()
    kept = (stored_after - stored_before).double()
    denominator = float((intended * intended).sum())
    return float((kept * intended).sum()) / denominator if denominator > 0 else 1.0
