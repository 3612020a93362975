"""The ONE registry of supported model families. Add a family: write ``adapters/<family>.py``
declaring an :class:`Adapter`, and list it in ``ADAPTERS`` below (see docs/adding-a-family.md)."""

from __future__ import annotations

from ..errors import ModelError
from .base import Adapter, Site
from .cogvideox import COGVIDEOX
from .hunyuan import HUNYUAN
from .ltx import LTX
from .opensora import OPENSORA
from .wan import WAN
from .wan_i2v import WAN_I2V
from .zeroscope import ZEROSCOPE

ADAPTERS: tuple[Adapter, ...] = (WAN, WAN_I2V, LTX, COGVIDEOX, HUNYUAN, ZEROSCOPE, OPENSORA)

__all__ = ["ADAPTERS", "Adapter", "Site", "adapter_for_pipeline", "download_patterns", "resolve_alias", "supported_summary"]


def supported_summary() -> str:
    return "; ".join(f"{a.family} ({a.layout.denoiser_file + ' folder' if a.layout else ', '.join(a.pipeline_classes)})"
                     for a in ADAPTERS)


def adapter_for_pipeline(class_name: str, where: str) -> Adapter:
    for adapter in ADAPTERS:
        if class_name in adapter.pipeline_classes:
            return adapter
    raise ModelError(f"pipeline class {class_name!r} is not supported", where=where,
                     fix=f"supported families: {supported_summary()}")


def download_patterns(repo_id: str) -> list[str] | None:
    """The files of ``repo_id`` the tool reads, where an adapter of a family outside diffusers
    names it among its aliases (Open-Sora-v2 also ships a Flux checkpoint the tool never reads);
    None: the whole repo."""
    for adapter in ADAPTERS:
        if adapter.layout is not None and adapter.layout.download and repo_id in adapter.aliases.values():
            return list(adapter.layout.download)
    return None


def resolve_alias(name: str) -> str | None:
    """Map a short model name (``wan2.1``) to its Hub id, or None when it is not an alias."""
    for adapter in ADAPTERS:
        if name.lower() in adapter.aliases:
            return adapter.aliases[name.lower()]
    return None
