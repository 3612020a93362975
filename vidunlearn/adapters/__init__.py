"""The ONE registry of supported model families. Add a family: write ``adapters/<family>.py``
declaring an :class:`Adapter`, and list it in ``ADAPTERS`` below (see docs/adding-a-family.md)."""

from __future__ import annotations

from ..errors import ModelError
from .base import Adapter, Site
from .cogvideox import COGVIDEOX
from .hunyuan import HUNYUAN
from .ltx import LTX
from .wan import WAN
from .wan_i2v import WAN_I2V
from .zeroscope import ZEROSCOPE

ADAPTERS: tuple[Adapter, ...] = (WAN, WAN_I2V, LTX, COGVIDEOX, HUNYUAN, ZEROSCOPE)

__all__ = ["ADAPTERS", "Adapter", "Site", "adapter_for_pipeline", "resolve_alias", "supported_summary"]


def supported_summary() -> str:
    return "; ".join(f"{a.family} ({', '.join(a.pipeline_classes)})" for a in ADAPTERS)


def adapter_for_pipeline(class_name: str, where: str) -> Adapter:
    for adapter in ADAPTERS:
        if class_name in adapter.pipeline_classes:
            return adapter
    raise ModelError(f"pipeline class {class_name!r} is not supported", where=where,
                     fix=f"supported families: {supported_summary()}")


def resolve_alias(name: str) -> str | None:
    """Map a short model name (``wan2.1``) to its Hub id, or None when it is not an alias."""
    for adapter in ADAPTERS:
        if name.lower() in adapter.aliases:
            return adapter.aliases[name.lower()]
    return None
