"""Reading ``vidunlearn.json`` for ``verify``. Every field verify relies on is checked for type and
range before use, so a hostile manifest (wrong types, deep nesting, a huge file, a path that leaves
the folder) is one line, never a traceback. The manifest is a claim to check, never a fact: the
format is detected from the files (:mod:`vidunlearn.verify`), the edited tensors are planned from
the recipe on the base (:mod:`vidunlearn.verify_base`)."""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .edit import MODES, EditSpec
from .errors import VidunlearnError
from .hashing import sha256_json

MANIFEST_SCHEMA = 1  # the schema api.apply writes
MAX_MANIFEST_BYTES = 16 << 20  # a 14B model's manifest is a few kB
MAX_ENTRIES = 100_000
MAX_REPEATS = 3  # open-ended repeats (*, +, {n,}) in the recipe's module regex
FORMATS = ("diffusers", "single-file", "lora")
DIGEST = re.compile(r"[0-9a-f]{64}")
FORGED = "this manifest was not written by `vidunlearn apply`; do not use this output"


class VerifyError(VidunlearnError):
    """The output does not match its manifest or its base."""


@dataclass(frozen=True)
class Recipe:
    """The parts of the manifest's ``recipe`` that decide which tensors change and how."""

    sites: tuple[str, ...]  # "component/site"
    modules: str | None  # regex on module names
    mode: str
    strength: float
    subspace: bool
    ranks: tuple[int | None, ...]  # per concept: factorize's rank (None for uce)
    edit_rank: int | None = None  # uce, remap: the columns of their factors (erase rows), a bound on the rank

    def spec(self) -> EditSpec:
        """An EditSpec with no directions: what it touches (weights, biases) is all it tells."""
        return EditSpec(mode=self.mode, strength=self.strength, basis=torch.zeros(0, 0))

    @property
    def projection(self) -> bool:
        """W' = W - s (W Q) Q^T with orthonormal Q (``replace`` also moves the bias)."""
        return self.mode in ("project", "replace")

    @property
    def rank(self) -> int | None:
        """The rank of W' - W the recipe gives (before the layer's own size caps it): one direction
        per concept, or every concept's whole rank-k basis with ``subspace``. None for ``uce``: its
        rank is its number of erase rows, which the recipe does not record."""
        if not self.projection:
            return None
        return sum(r or 0 for r in self.ranks) if self.subspace else len(self.ranks)


@dataclass(frozen=True)
class Manifest:
    path: Path
    files: dict[str, str]  # relative POSIX path -> SHA-256
    format: str
    edited: frozenset[tuple[str, str]]  # (component, tensor key as recorded)
    recipe: Recipe
    recipe_sha256: str  # what apply wrote into the ``vidunlearn.recipe`` metadata of its files
    encoder_edit: dict[str, float] = field(default_factory=dict)  # a trained text encoder's tensor -> relative change


def _bad(path: Path, what: str) -> VerifyError:
    return VerifyError(f"manifest {what}", where=str(path), fix=FORGED)


def read_manifest(out: Path) -> Manifest:
    """``out/vidunlearn.json``, read and checked (see the module docstring)."""
    raw, path = read_raw_manifest(out)
    return parse_manifest(raw, path)


def read_raw_manifest(out: Path) -> tuple[object, Path]:
    """``out/vidunlearn.json`` as JSON (size-capped), unchecked, and its path."""
    path = out / "vidunlearn.json"
    try:
        if not path.is_file():
            raise FileNotFoundError(path)
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise VerifyError(f"manifest is {path.stat().st_size} bytes (more than {MAX_MANIFEST_BYTES})",
                              where=str(path), fix=FORGED)
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as exc:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise VerifyError(f"no readable manifest ({type(exc).__name__})", where=str(path),
                          fix="pass a folder written by `vidunlearn apply`") from None
    return raw, path


def parse_manifest(raw: object, path: Path) -> Manifest:
    if not isinstance(raw, dict):
        raise _bad(path, f"is a JSON {type(raw).__name__}, not an object")
    if raw.get("schema") != MANIFEST_SCHEMA or type(raw.get("schema")) is not int:
        raise _bad(path, f"schema {str(raw.get('schema'))[:40]!r} is not {MANIFEST_SCHEMA}")
    output_format = raw.get("format", "diffusers")
    if output_format not in FORMATS:
        raise _bad(path, f"format {str(output_format)[:40]!r} is not one of {', '.join(FORMATS)}")
    recipe = raw.get("recipe")
    try:
        recipe_sha256 = sha256_json(recipe)
    except (ValueError, TypeError, RecursionError):
        raise _bad(path, "recipe cannot be serialised") from None
    return Manifest(path, check_files(raw.get("files"), path), output_format, _edited(raw.get("edited"), path),
                    _recipe(recipe, path), recipe_sha256, _encoder_edit(raw.get("text_encoder_edit"), recipe, path))


def _encoder_edit(records: object, recipe: dict, path: Path) -> dict[str, float]:
    """The trained text encoder's tensors (``apply --adversarial`` with ``site: text_encoder``): listed
    exactly when the recipe says so, never the token embedding table (the attack's space)."""
    from .encoder_edit import TOKEN_TABLES, trains_encoder

    if records is None and not trains_encoder(recipe):
        return {}
    if not trains_encoder(recipe) or not isinstance(records, list) or not records or len(records) > MAX_ENTRIES:
        raise _bad(path, "field 'text_encoder_edit' and the recipe's adversarial site disagree")
    listed: dict[str, float] = {}
    for number, record in enumerate(records):
        name = record.get("tensor") if isinstance(record, dict) else None
        change = record.get("relative_change") if isinstance(record, dict) else None
        if not isinstance(name, str) or name in TOKEN_TABLES or name in listed or type(change) not in (int, float) \
                or not math.isfinite(change):
            raise _bad(path, f"'text_encoder_edit' entry {number} is not a trainable tensor with its relative change")
        listed[name] = float(change)
    return listed


def _plain_relative(rel: str) -> bool:
    parts = rel.split("/")
    return (bool(rel) and "\\" not in rel and "\0" not in rel and not rel.startswith("/")
            and all(p not in ("", ".", "..") for p in parts) and rel != "vidunlearn.json")


def check_files(files: object, path: Path) -> dict[str, str]:
    if not isinstance(files, dict) or not files or len(files) > MAX_ENTRIES:
        raise _bad(path, "field 'files' is not an object of file -> SHA-256")
    for rel, digest in files.items():
        if not _plain_relative(rel):
            raise _bad(path, f"lists {rel[:80]!r}, which is not a file inside the output folder")
        if not isinstance(digest, str) or not DIGEST.fullmatch(digest):
            raise _bad(path, f"SHA-256 of {rel[:80]!r} is not 64 hex digits")
    return dict(files)


def _edited(edited: object, path: Path) -> frozenset[tuple[str, str]]:
    if not isinstance(edited, list) or len(edited) > MAX_ENTRIES:
        raise _bad(path, "field 'edited' is not a list")
    records = set()
    for number, record in enumerate(edited):
        if not (isinstance(record, dict) and isinstance(record.get("component"), str)
                and isinstance(record.get("tensor"), str)):
            raise _bad(path, f"'edited' entry {number} has no 'component' and 'tensor' names")
        records.add((record["component"], record["tensor"]))
    return frozenset(records)


def _tame(pattern: str) -> bool:
    """A regex whose backtracking stays polynomial and small on module names (under ~60
    characters): no repeated group (``(a+)+``, ``(a|a)*``), no back-reference, at most
    MAX_REPEATS open-ended repeats. Python's ``re`` cannot be interrupted, and the manifest may
    be hostile."""
    return (not re.search(r"\)[*+{]", pattern) and not re.search(r"\\[1-9]|\(\?P=", pattern)
            and len(re.findall(r"[*+]|\{\d*,\}", pattern)) <= MAX_REPEATS)


def _recipe(recipe: object, path: Path) -> Recipe:
    if not isinstance(recipe, dict):
        raise _bad(path, "field 'recipe' is not an object")
    sites, modules, mode = recipe.get("sites"), recipe.get("modules"), recipe.get("mode")
    strength, subspace, concepts = recipe.get("strength"), recipe.get("subspace", False), recipe.get("concepts")
    if not isinstance(sites, list) or not sites or not all(isinstance(s, str) and s.count("/") == 1 for s in sites):
        raise _bad(path, "recipe 'sites' is not a non-empty list of 'component/site' names")
    if mode not in MODES:
        raise _bad(path, f"recipe mode {str(mode)[:40]!r} is not one of {', '.join(MODES)}")
    if type(strength) not in (int, float) or not math.isfinite(strength) or strength == 0:
        raise _bad(path, f"recipe strength {str(strength)[:40]!r} is not a finite non-zero number")
    if type(subspace) is not bool:
        raise _bad(path, "recipe 'subspace' is not true or false")
    if modules is not None:
        if not isinstance(modules, str) or len(modules) > 1000:
            raise _bad(path, "recipe 'modules' is not a regex")
        try:
            re.compile(modules)
        except (re.error, RecursionError, OverflowError):
            raise _bad(path, f"recipe 'modules' {modules[:40]!r} is not a valid regex") from None
        if not _tame(modules):
            raise _bad(path, f"recipe 'modules' {modules[:40]!r} repeats a group, refers back, or has more than "
                             f"{MAX_REPEATS} open-ended repeats (matching it could take forever)")
    if not isinstance(concepts, list) or not concepts or len(concepts) > 1000:
        raise _bad(path, "recipe 'concepts' is not a non-empty list")
    ranks: list[int | None] = []
    for number, concept in enumerate(concepts):
        rank = concept.get("rank") if isinstance(concept, dict) else False
        usable = rank is None or (type(rank) is int and 1 <= rank <= 1 << 20)
        if not usable or (subspace and mode != "uce" and rank is None):
            raise _bad(path, f"recipe concept {number} has no usable 'rank'")
        ranks.append(rank)
    edit_rank = recipe.get("edit_rank")
    if edit_rank is not None and not (type(edit_rank) is int and 1 <= edit_rank <= 1 << 20):
        raise _bad(path, "recipe 'edit_rank' is not a positive integer")
    return Recipe(tuple(sites), modules, mode, float(strength), subspace, tuple(ranks), edit_rank)
