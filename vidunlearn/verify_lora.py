"""``verify --base`` for a LoRA output: every module's B A is exactly the recipe's change of the
base weight at a planned target (and its bias change, under the family's ``lora_bias`` key), and
the LoRA holds no module the recipe does not edit."""

from __future__ import annotations

from pathlib import Path

import torch

from .errors import VidunlearnError
from .formats import LORA_FILE
from .layerchange import load_float
from .model import ModelSource
from .verify_base import CASTS, MODIFIED, WRONG_BASE, Comparison
from .verify_manifest import Manifest, VerifyError
from .verify_math import UNIT_ROUNDOFF, rounding_noise


def _lora_component(rel: str, source: ModelSource) -> str:
    if rel == LORA_FILE:
        return source.adapter.denoisers[0]
    prefix = LORA_FILE.removesuffix(".safetensors") + "_"
    return rel.removeprefix(prefix).removesuffix(".safetensors") if rel.startswith(prefix) else ""


def _lora_modules(tensors: dict[str, torch.Tensor], where: Path, source: ModelSource,
                  component: str) -> dict[str, dict[str, torch.Tensor]]:
    """diffusers module name -> {"lora_A.weight": A, "lora_B.weight": B, "diff_b": db} of a LoRA file
    (the bias change under the family's key, ``adapter.lora_bias``)."""
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in tensors.items():
        bias = source.adapter.lora_bias
        part = next((s for s in ("lora_A.weight", "lora_B.weight", bias) if key.endswith("." + s)), None)
        try:
            module = source.adapter.lora_module(component, key[: -len(part) - 1]) if part else None
        except VidunlearnError:
            module = None
        if module is None:
            raise VerifyError(f"tensor {key[:80]!r} is not a LoRA factor apply writes", where=str(where), fix=MODIFIED)
        modules.setdefault(module, {})["diff_b" if part == bias else part] = tensor
    return modules


def compare_lora(comparison: Comparison, manifest: Manifest, source: ModelSource) -> None:
    from safetensors.torch import load_file

    planned = {(t.component, t.module) for t in comparison.targets.values()}
    seen: set[tuple[str, str]] = set()
    for rel in sorted(r for r in manifest.files if r.endswith(".safetensors")):
        out_file = comparison.out / rel
        component = _lora_component(rel, source)
        if component not in source.denoisers:
            raise VerifyError("not a LoRA file of a denoiser of the base", where=str(out_file), fix=WRONG_BASE)
        for module, parts in sorted(_lora_modules(load_file(str(out_file)), out_file, source, component).items()):
            if (component, module) not in planned or (component, module) in seen:
                raise VerifyError(f"LoRA module {module!r} is not an edit site of the recipe", where=str(out_file),
                                  fix=MODIFIED)
            seen.add((component, module))
            _lora_module(comparison, source, component, module, parts, rel)
    if planned - seen:
        component, module = sorted(planned - seen)[0]
        raise VerifyError(f"the recipe edits {component}/{module}, which the LoRA lacks", where=str(comparison.out),
                          fix=MODIFIED)


def _lora_module(comparison: Comparison, source: ModelSource, component: str, module: str,
                 parts: dict[str, torch.Tensor], rel: str) -> None:
    out_file = comparison.out / rel
    weight = load_float(source, component, f"{module}.weight").float()
    down, up = parts.get("lora_A.weight"), parts.get("lora_B.weight")
    if (down is None or up is None or down.ndim != 2 or up.ndim != 2 or up.shape[1] != down.shape[0]
            or (up.shape[0], down.shape[1]) != tuple(weight.shape)):
        raise VerifyError(f"LoRA module {module!r} has no lora_A/lora_B pair of the base weight's shape "
                          f"{list(weight.shape)}", where=str(out_file), fix=WRONG_BASE)
    delta = up.float() @ down.float()
    dtype = next(k for k, v in CASTS.items() if v == down.dtype) if down.dtype in CASTS.values() else "F32"
    shown = f"{component}/{module}" if component != source.adapter.denoisers[0] else module
    target = comparison.targets.get((component, f"{module}.weight"))
    if target is not None:
        if not bool(delta.abs().max() > 0):
            raise VerifyError(f"LoRA module {module!r} changes nothing, the recipe edits it", where=str(out_file),
                              fix=MODIFIED)
        # B and A are each rounded to the LoRA's dtype: |d(B A)|_F <= 2 u |B|_F |A|_F, plus float32 for W + B A
        noise = (rounding_noise(weight + delta, "F32")
                 + 2 * UNIT_ROUNDOFF.get(dtype, 2.0**-24) * float(up.float().norm() * down.float().norm()))
        comparison.checks.add(target, out_file, rel, shown + ".weight", weight, weight + delta, dtype, None, noise)
    elif bool(delta.abs().max() > 0):
        raise VerifyError(f"LoRA module {module!r} changes the weight, which the recipe's mode does not",
                          where=str(out_file), fix=MODIFIED)
    bias_target = comparison.targets.get((component, f"{module}.bias"))
    if "diff_b" in parts and bias_target is None:
        raise VerifyError(f"LoRA module {module!r} changes the bias (diff_b), which the recipe's mode does not",
                          where=str(out_file), fix=MODIFIED)
    if "diff_b" not in parts and bias_target is not None:
        raise VerifyError(f"LoRA module {module!r} has no bias change (diff_b), the recipe's mode changes the bias",
                          where=str(out_file), fix=MODIFIED)
    if bias_target is not None:
        bias = load_float(source, component, f"{module}.bias").float()
        if parts["diff_b"].shape != bias.shape:
            raise VerifyError(f"diff_b of {module!r} is not of the bias's shape", where=str(out_file), fix=WRONG_BASE)
        new_bias = bias + parts["diff_b"].float()
        comparison.checks.add(bias_target, out_file, rel, shown + ".bias", bias, new_bias, dtype, None)
    comparison.result.lora_modules_checked += 1
