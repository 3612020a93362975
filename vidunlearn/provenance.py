"""What every output says about itself: safetensors ``vidunlearn.*`` metadata, the fp8 survival
report, and the optional eval table (rows read from eval.json or a JSON file of rows)."""

from __future__ import annotations

import json
from pathlib import Path

from . import __version__
from .errors import ArtifactError, VidunlearnError
from .hashing import sha256_json
from .model import ModelSource


def provenance_metadata(source: ModelSource, recipe: dict, output_format: str) -> dict[str, str]:
    """The ``vidunlearn.*`` keys written into the header of every safetensors file we write
    (safetensors metadata values are strings; lists are comma-joined). One entry per concept of
    ``recipe["concepts"]`` (dicts with concept, pairs_sha256, rank, method)."""
    joined = lambda values: ",".join(str(v) for v in values)
    concepts = recipe["concepts"]
    return {
        "vidunlearn.version": __version__,
        "vidunlearn.concepts": joined(c["concept"] for c in concepts),
        "vidunlearn.pairs_sha256": joined(c.get("pairs_sha256") or "" for c in concepts),
        "vidunlearn.rank": joined(c.get("rank") for c in concepts),
        "vidunlearn.method": joined(c.get("method") for c in concepts),
        "vidunlearn.strength": str(recipe["strength"]),
        "vidunlearn.mode": recipe["mode"],
        "vidunlearn.sites": joined(recipe["sites"]),
        "vidunlearn.recipe": sha256_json(recipe),
        "vidunlearn.base": source.repo_id or source.name,
        "vidunlearn.base_revision": source.revision or "local",
        "vidunlearn.format": output_format,
    }


def check_survival(survival: dict[str, float], threshold: float, where: str) -> dict | None:
    """Summarise how much of the edit survived fp8 re-quantisation; refuse below ``threshold``."""
    if not survival:
        return None
    worst_key = min(survival, key=survival.get)
    worst = survival[worst_key]
    if worst < threshold:
        raise VidunlearnError(f"only {worst:.0%} of the edit survives fp8 re-quantisation in {worst_key} "
                              f"(threshold {threshold:.0%})", where=where,
                              fix="use --format lora (a float delta on top of the fp8 model), a larger --strength, "
                                  "or --min-survival 0 to write it anyway")
    return {"survival": dict(sorted(survival.items())), "min": worst,
            "mean": sum(survival.values()) / len(survival), "threshold": threshold}


def load_evals(paths: list[Path]) -> tuple[list[dict] | None, str | None]:
    """:func:`load_eval` of every file, their rows in order and their settings joined by "; "."""
    if not paths:
        return None, None
    loaded = [load_eval(path) for path in paths]
    settings = [s for _, s in loaded if s]
    return [row for rows, _ in loaded for row in rows], "; ".join(settings) if settings else None


def load_eval(path: Path) -> tuple[list[dict], str | None]:
    """Eval rows for the model card and the settings they were measured at: the ``eval.json``
    that ``vidunlearn eval`` writes (per-concept rows, settings from it), the ``attack.json`` that
    ``vidunlearn attack`` writes (the attack success rate beside the unattacked rate), or a JSON
    list (or an object with a ``rows`` list and an optional ``settings`` string) of
    ``{"metric": str, "base": number|str, "edited": number|str}`` (extra keys are kept)."""
    try:
        value = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise ArtifactError(f"cannot read eval JSON ({str(exc)[:120] or type(exc).__name__})", where=str(path),
                            fix="pass the JSON written by eval") from None
    if isinstance(value, dict) and value.get("kind") in ("vidunlearn-eval", "vidunlearn-attack"):
        from .report import attack_rows, attack_settings_line, card_rows, settings_line

        attack = value["kind"] == "vidunlearn-attack"
        try:
            if attack:
                return attack_rows(value), attack_settings_line(value)
            return card_rows(value), settings_line(value)
        except (KeyError, TypeError, IndexError, AttributeError, ValueError) as exc:
            raise ArtifactError(f"{'attack' if attack else 'eval'}.json lacks a field the card needs ({type(exc).__name__}: {str(exc)[:80]})",
                                where=str(path), fix="pass the eval.json that `vidunlearn eval` wrote, unchanged") from None
    rows = value.get("rows") if isinstance(value, dict) else value
    if not isinstance(rows, list) or not rows:
        raise ArtifactError("eval JSON has no rows", where=str(path),
                            fix='write a list of {"metric": ..., "base": ..., "edited": ...} (or {"rows": [...]})')
    for number, row in enumerate(rows):
        if not isinstance(row, dict) or not isinstance(row.get("metric"), str) or "base" not in row or "edited" not in row:
            raise ArtifactError(f"row {number} needs 'metric' (text), 'base' and 'edited'", where=str(path),
                                fix='e.g. {"metric": "unsafe rate %", "base": 48.9, "edited": 12.6}')
    settings = value.get("settings") if isinstance(value, dict) else None
    return rows, settings if isinstance(settings, str) else None
