"""What ``api.apply`` is asked to do, in three small groups (the CLI fills them from its options):
how the edit is computed (:class:`EditRecipe`), how the base model is read (:class:`LoadOptions`)
and what is written where (:class:`OutputOptions`)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .adversarial_settings import AdversarialSettings
from .card import CardOptions
from .weightfiles import OutputFiles

if TYPE_CHECKING:
    from .motion.apply import MotionOptions


@dataclass(frozen=True)
class EditRecipe:
    """How the edit is computed: ``vidunlearn apply``'s method options (docs/method.md).

    ``mode`` remap (default), project (the paper's, with ``method`` cpca), replace, bias or uce;
    ``strength`` None: the mode's default (:func:`vidunlearn.edit.default_strength`); ``sites`` the
    ``--site`` names, ``modules`` the ``--sites`` regex; ``harden`` RECE rounds; ``adversarial``
    the training against the attack (``steps`` 0: off); ``motion`` a MoMask edit's MotionOptions."""

    mode: str = "remap"
    method: str | None = None
    strength: float | None = None
    rank: int = 4
    alpha: float = 1.0
    level: str = "token"
    subspace: bool = False
    sites: list[str] | None = None
    modules: str | None = None
    harden: int = 0
    adversarial: AdversarialSettings = AdversarialSettings()
    motion: MotionOptions | None = None


@dataclass(frozen=True)
class LoadOptions:
    """How the base model is read and where the work runs (``--revision``, ``--config``,
    ``--variant``, ``--device``, ``--dtype``, ``--offload``); ``no_cache``: extract and factorize
    afresh, reading no cache."""

    revision: str | None = None
    config: str | None = None
    variant: str | None = None
    device: str = "cpu"
    dtype: str = "float32"
    offload: bool = False
    no_cache: bool = False


@dataclass(frozen=True)
class OutputOptions:
    """What is written and where it goes: ``format`` (None: diffusers, or single-file for a
    single-file model), ``save_dtype``, fp8's ``min_survival``, the weight files' handling
    (``files``), the card's extras (``card``), the collateral measurement, the ``eval_json`` files
    rendered in the card, and the Hub push (``push_to_hub``, ``private``, ``hub_revision``)."""

    format: str | None = None
    save_dtype: str | None = None
    min_survival: float = 0.5
    files: OutputFiles = OutputFiles()
    card: CardOptions = CardOptions()
    collateral: bool = True
    eval_json: list[Path] = field(default_factory=list)
    push_to_hub: str | None = None
    private: bool = False
    hub_revision: str | None = None
