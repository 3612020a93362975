"""Judges: read a generated clip and say what it shows, as {attribute: value}.

A judge is any object with ``name``, ``attributes`` (the attributes it reports) and
``judge(clip) -> dict[str, str]`` where ``clip`` is (F, H, W, 3) float in [0, 1] or uint8.
Built-in: ``oracle`` (deterministic pixel judge of the benchmark world: colour, shape, motion).
Plug-ins for real models load lazily and fail with one line when their package is missing:
``nudenet`` (pip install 'vidunlearn[nudenet]'; reports nudity yes/no).

Add a judge: write ``judges/<name>.py`` with a ``load() -> Judge`` function and list it in
``JUDGES`` below.
"""

from __future__ import annotations

import importlib
from typing import Protocol

import numpy as np

from ..errors import VidunlearnError

# name -> (module, one-line description)
JUDGES: dict[str, tuple[str, str]] = {
    "oracle": ("vidunlearn.judges.oracle", "benchmark world: colour, shape, motion from pixels (built in)"),
    "nudenet": ("vidunlearn.judges.nudenet", "nudity yes/no from NudeNet's detector (optional extra 'nudenet')"),
}


class JudgeError(VidunlearnError):
    """A judge is unknown, or its optional package is not installed."""


class Judge(Protocol):
    name: str
    attributes: tuple[str, ...]

    def judge(self, clip: np.ndarray) -> dict[str, str]: ...


def load_judge(name: str) -> Judge:
    """The judge called ``name``; imports its module (and the package it needs) only now."""
    if name not in JUDGES:
        raise JudgeError(f"unknown judge {name!r}", fix=f"use one of {sorted(JUDGES)}")
    module = importlib.import_module(JUDGES[name][0])
    return module.load()
