"""Judges: read a generated clip and say what it shows, as {attribute: value}.

A judge is any object with ``name``, ``attributes`` (the attributes it reports) and
``judge(clip) -> dict[str, str]`` where ``clip`` is (F, H, W, 3) float in [0, 1] or uint8.
Built-in: ``oracle`` (deterministic pixel judge of the benchmark world: colour, shape, motion).
Plug-ins for real models load lazily and fail with one line when their package is missing:
``nudenet`` (pip install 'vidunlearn[nudenet]'; reports nudity yes/no).

Add a judge of your own without touching the package: write one file with a ``load() -> Judge``
function and pass its path, ``--judge my_judge.py`` (docs/eval.md has a worked example). A judge
may also offer ``judge_frames(clip) -> [verdict per frame]`` when it reads frames one at a time
(NudeNet); the per-frame rates then use it instead of judging each frame as a still clip. With
``from_frames(verdicts) -> verdict`` as well, a clip's frames are read once for both.
To ship one with vidunlearn: ``judges/<name>.py`` and a line in ``JUDGES`` below.
"""

from __future__ import annotations

import importlib
from pathlib import Path
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


def _from_file(path: Path):
    """The module of a judge file (the user's own code, run as they asked)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"vidunlearn_judge_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not callable(getattr(module, "load", None)):
        raise JudgeError("the judge file has no load() function", where=str(path),
                         fix="define load() returning an object with name, attributes and judge(clip)")
    return module


def load_judge(name: str) -> Judge:
    """The judge called ``name``, or the one a ``.py`` file's ``load()`` returns; imports its
    module (and the package it needs) only now."""
    if name.endswith(".py"):
        path = Path(name)
        if not path.is_file():
            raise JudgeError("judge file not found", where=name, fix="pass the path of a .py file with load()")
        module = _from_file(path)
    elif name not in JUDGES:
        raise JudgeError(f"unknown judge {name!r}", fix=f"use one of {sorted(JUDGES)}, or a .py file with load()")
    else:
        module = importlib.import_module(JUDGES[name][0])
    judge = module.load()
    missing = [a for a in ("name", "attributes", "judge") if not hasattr(judge, a)]
    if missing or not judge.attributes:
        raise JudgeError(f"judge {name!r} lacks {', '.join(missing) or 'attributes'}",
                         fix="return an object with name, attributes (non-empty) and judge(clip) -> {attribute: value}")
    return judge
