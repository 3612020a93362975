"""Argument checks run before any work: every bad number, pattern, device or path a command is
given becomes one :class:`VidunlearnError` line, never a traceback after minutes of work."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

from .errors import PairsError, VidunlearnError
from .pairs import ConceptPairs

MAX_STRENGTH = 100.0  # 1 removes the concept component; far beyond it only float error grows
MAX_ALPHA = 1e6


def check_number(option: str, value: float, low: float, high: float) -> None:
    """``value`` is a finite number in [low, high] (NaN, inf and 1e308 are refused)."""
    if not math.isfinite(value) or not low <= value <= high:
        raise VidunlearnError(f"{option} {value} is not a finite number between {low:g} and {high:g}",
                              fix=f"pass e.g. {option} 1")


def check_pattern(option: str, pattern: str | None) -> None:
    """``pattern`` compiles as a Python regular expression."""
    if pattern is None:
        return
    try:
        re.compile(pattern)
    except re.error as exc:
        raise VidunlearnError(f"{option} {pattern!r} is not a valid regular expression ({exc})",
                              fix="escape special characters, e.g. 'attn2\\.to_k'") from None


def check_device(device: str) -> None:
    """``device`` names a torch device of a kind vidunlearn runs on (cpu, cuda, mps, xpu) that
    exists on this machine: ``cuda:1`` on a one-GPU machine is refused before any work."""
    import torch

    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError, TypeError):
        raise VidunlearnError(f"--device {device!r} is not a torch device", fix="use cpu, cuda, cuda:0 or mps") from None
    if parsed.type == "cpu":
        return
    backend = {"cuda": torch.cuda, "mps": torch.backends.mps, "xpu": getattr(torch, "xpu", None)}.get(parsed.type)
    if backend is None:
        raise VidunlearnError(f"--device {device}: vidunlearn runs on cpu, cuda, mps or xpu", fix="use --device cpu or cuda")
    count = backend.device_count() if hasattr(backend, "device_count") else 1
    if not backend.is_available() or (parsed.index or 0) >= count:
        raise VidunlearnError(f"--device {device}: no such device on this machine", fix="use --device cpu, or check the driver")


def check_edit_arguments(*, strength: float, alpha: float, modules: str | None, device: str,
                         push_to_hub: str | None) -> None:
    """apply's numbers, ``--sites`` pattern, device and Hub repo id (and HF_TOKEN), before any work."""
    check_number("--strength", strength, -MAX_STRENGTH, MAX_STRENGTH)
    check_number("--alpha", alpha, 0, MAX_ALPHA)
    check_pattern("--sites", modules)
    check_device(device)
    if push_to_hub:
        from .hub import check_repo_id, token_from_environment

        check_repo_id(push_to_hub)
        token_from_environment(push_to_hub)


def check_distinct_concepts(concepts: Sequence[ConceptPairs]) -> None:
    """Two pairs files of one run must name different concepts: the concept names the cache
    folder ``WORK_DIR/<concept>/``, so the second would replace the first's cache."""
    named: dict[str, str] = {}
    for concept in concepts:
        if concept.concept in named:
            raise PairsError(f"concept {concept.concept!r} is also named by {named[concept.concept]}", where=concept.path,
                             fix="give each pairs file its own 'concept:' name, and pass each file once")
        named[concept.concept] = concept.path


def input_paths(source: object, *, pairs: Sequence[Path] = (), refusal: Sequence[Path] = (),
                others: Sequence[tuple[str, Path | None]] = ()) -> list[tuple[str, Path | None]]:
    """Every path a command reads, as (description, path) for :func:`fsutil.check_apart`: the
    model folder or file, a single file's config pipeline, the pairs and refusal files, ``others``."""
    path = Path(getattr(source, "path"))
    config = getattr(source, "config_source", None)
    return [("the model folder" if path.is_dir() else "the --model file", path),
            ("the --config model folder", getattr(config, "path", None)),
            *(("the --pairs file", Path(p)) for p in pairs), *(("the --refusal file", Path(p)) for p in refusal),
            *others]


MAX_HARDEN = 10


def check_hardening(mode: str, pairs_only: bool, harden: int, adversarial) -> None:
    """``--harden`` rounds and ``--adversarial`` training need the remap solved from pairs alone."""
    for flag, on, why in (("--harden", harden, "it solves the remap again from the prompts' activations"),
                          ("--adversarial", adversarial.steps, "it trains against the pairs' prompts and their remap")):
        if on and (mode != "remap" or not pairs_only):
            raise VidunlearnError(f"{flag} needs the default --mode remap and --pairs ({why})",
                                  fix=f"leave {flag} out, or pass --pairs without --refusal")
    if not 0 <= harden <= MAX_HARDEN or int(harden) != harden:
        raise VidunlearnError(f"--harden {harden!r} is not a whole number of rounds from 0 to {MAX_HARDEN}", fix="use e.g. --harden 2")
    adversarial.check()
