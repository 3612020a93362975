"""Weights variants in diffusers and transformers file names, e.g. ``fp16`` in
``diffusion_pytorch_model.fp16.safetensors``, in the shards of a sharded variant
(``diffusion_pytorch_model.fp16-00001-of-00002.safetensors``) and in their index json
(``diffusion_pytorch_model.safetensors.index.fp16.json``), as ``from_pretrained(variant=...)`` names them."""

from __future__ import annotations

import re
from pathlib import Path

VARIANT_NAME = re.compile(r"^[^.]+\.(?:safetensors\.index\.(?P<index>[^.]+)\.json|(?P<file>[^.]+?)(?:-\d{5}-of-\d{5})?\.safetensors)$")


def variant_of(name: str) -> str | None:
    """The variant a safetensors weight file or index json belongs to; None for the default names."""
    match = VARIANT_NAME.match(name)
    return (match.group("index") or match.group("file")) if match else None


def weight_variants(component_dir: Path) -> list[str | None]:
    """The weights variants of a component folder (None: the default file names), default first."""
    found = {variant_of(p.name) for p in component_dir.glob("*.safetensors*") if p.suffix in (".safetensors", ".json")}
    return sorted(found, key=lambda v: (v is not None, v or "")) or [None]


def weight_index(component_dir: Path, variant: str | None = None) -> Path | None:
    """The index json of ``variant``'s safetensors weights, or None when they are not sharded."""
    indexes = sorted(p for p in component_dir.glob("*.safetensors.index*.json") if variant_of(p.name) == variant)
    return indexes[0] if indexes else None
