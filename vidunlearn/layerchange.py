"""The edit of one planned layer, computed once and shared by every output format.

A normal weight is edited exactly as the diffusers-folder writer does (``edit_linear``: float32
math, stored dtype kept), so every format stores bitwise the same edited tensors. An fp8 weight
is dequantised with its scale, edited in float32 and re-quantised (see :mod:`vidunlearn.quant`).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from .checkpoint import EditRecord
from .edit import edit_linear
from .model import ModelSource, TensorInfo
from .plan import PlannedEdit
from .quant import FP8, dequantize, is_fp8, quantize, survival


# safetensors dtype -> the torch name the diffusers-folder manifest uses
TORCH_NAMES = {"F32": "float32", "BF16": "bfloat16", "F16": "float16", "F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


def read_tensor(path: Path, key: str) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        return handle.get_tensor(key)


def load_tensor(info: TensorInfo) -> torch.Tensor:
    return read_tensor(info.file, info.key)


def load_float(source: ModelSource, component: str, key: str) -> torch.Tensor:
    """Tensor ``key`` (diffusers name) of ``component``, dequantised to float32 when fp8."""
    info = source.tensor_infos(component)[key]
    tensor = load_tensor(info)
    if is_fp8(info.dtype):
        scale = source.scale_info(component, key)
        return dequantize(tensor, load_tensor(scale) if scale is not None else None)
    return tensor


@dataclass(frozen=True)
class LayerChange:
    """One layer before and after. ``weight``/``new_weight`` are float32 (dequantised for fp8);
    ``stored`` maps each file key that changes (weight, bias, fp8 scale) to its new tensor."""

    edit: PlannedEdit
    weight: torch.Tensor
    bias: torch.Tensor | None
    new_weight: torch.Tensor
    new_bias: torch.Tensor | None
    stored: dict[str, torch.Tensor]
    survival: float | None  # fp8 only
    scale_key: str | None = None  # fp8: the file key of the weight's scale
    old_scale: torch.Tensor | None = None

    def records(self) -> list[EditRecord]:
        out = []
        pairs = [(self.edit.weight, self.weight, self.stored_weight_float())]
        if self.edit.bias is not None and self.edit.bias.key in self.stored:
            assert self.bias is not None
            pairs.append((self.edit.bias, self.bias, self.stored[self.edit.bias.key]))
        for info, old, new in pairs:
            if info.key not in self.stored:
                continue
            change = float((new.float() - old.float()).norm())
            out.append(EditRecord(self.edit.component, info.key, list(info.shape), TORCH_NAMES.get(info.dtype, info.dtype), change,
                                  change / max(float(old.float().norm()), 1e-12)))
        return out

    def stored_weight_float(self) -> torch.Tensor:
        new = self.stored.get(self.edit.weight.key)
        if new is None:
            return self.weight
        if is_fp8(self.edit.weight.dtype):
            scale = self.stored.get(self.scale_key) if self.scale_key else None
            return dequantize(new, scale if scale is not None else self.old_scale)
        return new.float()


def compute_change(source: ModelSource, edit: PlannedEdit) -> LayerChange:
    """Edit one planned layer (reads its weight, bias and fp8 scale)."""
    assert edit.spec is not None
    raw = load_tensor(edit.weight)
    bias = load_tensor(edit.bias) if edit.bias is not None else None
    stored: dict[str, torch.Tensor] = {}
    if not is_fp8(edit.weight.dtype):
        new_weight, new_bias = edit_linear(raw, bias, edit.spec)
        if edit.spec.touches_weight:
            stored[edit.weight.key] = new_weight
        if edit.spec.touches_bias and edit.bias is not None and new_bias is not None:
            stored[edit.bias.key] = new_bias
        exact = edit_linear(raw.float(), bias, edit.spec)[0]  # float32: the edit before rounding to the stored dtype
        return LayerChange(edit, raw.float(), bias, exact, new_bias, stored, None)
    scale_info = source.scale_info(edit.component, f"{edit.module}.weight")
    scale = load_tensor(scale_info) if scale_info is not None else None
    weight = dequantize(raw, scale)
    new_weight, new_bias = edit_linear(weight, bias, edit.spec)
    codes, new_scale = quantize(new_weight, scale, FP8[edit.weight.dtype])
    after = dequantize(codes, new_scale)
    if edit.spec.touches_weight:
        stored[edit.weight.key] = codes
        if scale_info is not None and new_scale is not None and not torch.equal(new_scale, scale):
            stored[scale_info.key] = new_scale
    if edit.spec.touches_bias and edit.bias is not None and new_bias is not None:
        stored[edit.bias.key] = new_bias
    kept = survival(weight, new_weight, weight, after) if edit.spec.touches_weight else None
    return LayerChange(edit, weight, bias, new_weight, new_bias, stored, kept,
                       scale_key=scale_info.key if scale_info is not None else None, old_scale=scale)
