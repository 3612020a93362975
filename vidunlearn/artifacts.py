"""Cached artifacts: safetensors tensors + JSON metadata with a schema version checked on read.

``activations.safetensors``  per site ``{site}.{group}`` (N, H) float32 token activations and
                             ``{site}.{group}.lengths`` (n,) int64, group in unsafe/safe/neutral.
``refusal.safetensors``      per site ``{site}.direction`` (H,), ``.refusal`` (H,), ``.basis``
                             (H, k), ``.eigenvalues`` (k,), ``.safe_mean`` (H,); with method remap
                             also ``.left`` and ``.right`` (H, n), the factors of M = I + A B^T.
Metadata (safetensors ``__metadata__``, all strings): ``vidunlearn.schema``, ``vidunlearn.kind``,
``vidunlearn.json`` (everything else, sorted-key JSON). See docs/artifacts.md.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import __version__
from .errors import ArtifactError
from .fsutil import atomic_output

SCHEMA = 1
GROUPS = ("unsafe", "safe", "neutral", "target", "anchor")
# absent in activations written by earlier versions: the safe prompts stand in for the targets,
# and there are no anchor prompts
OPTIONAL_GROUPS: dict[str, str | None] = {"target": "safe", "anchor": None}


def _save(path: Path, tensors: dict[str, torch.Tensor], kind: str, meta: dict, replace: bool = True) -> None:
    header = {"vidunlearn.schema": str(SCHEMA), "vidunlearn.kind": kind,
              "vidunlearn.json": json.dumps(meta, sort_keys=True), "vidunlearn.sha256": _checksum(tensors)}
    data = safetensors_bytes(tensors, header)
    with atomic_output(path, replace=replace, wait=replace) as temp:  # a cache queues behind a concurrent writer
        temp.write_bytes(data)


def _checksum(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over every tensor's name, dtype, shape and bytes (sorted by name): a flipped bit
    in a cache file is caught on read, not silently reused."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].contiguous()
        digest.update(f"{name}\0{tensor.dtype}\0{list(tensor.shape)}\0".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def safetensors_bytes(tensors: dict[str, torch.Tensor], metadata: dict[str, str]) -> bytes:
    """A safetensors file's bytes, bit-identical from run to run (:func:`_canonical`)."""
    from safetensors.torch import save

    return _canonical(save({k: v.contiguous() for k, v in tensors.items()}, metadata=metadata))


def _canonical(data: bytes) -> bytes:
    """The same safetensors bytes with a sorted-key header: safetensors writes ``__metadata__``
    in hash-map order, which changes from run to run; artifacts must be bit-identical."""
    from .model import encode_header

    length = int.from_bytes(data[:8], "little")
    return encode_header(json.loads(data[8:8 + length]), sort_keys=True) + data[8 + length:]


def _bad(path: Path, what: str, step: str) -> ArtifactError:
    return ArtifactError(what, where=str(path), fix=f"delete it and re-run {step}")


def _load(path: Path, kind: str) -> tuple[dict[str, torch.Tensor], dict]:
    from safetensors import SafetensorError
    from safetensors.torch import load_file, safe_open

    if not path.is_file():
        raise ArtifactError(f"{kind} file not found", where=str(path), fix=f"run the step that writes it first")
    try:
        with safe_open(str(path), framework="pt") as handle:
            header = handle.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError, TypeError, OverflowError, MemoryError) as exc:
        raise ArtifactError(f"not a readable safetensors file ({(str(exc).splitlines() or [''])[0][:120]})", where=str(path),
                            fix="delete it and re-run the step that writes it") from None
    if header.get("vidunlearn.kind") != kind:
        raise ArtifactError(f"not a vidunlearn {kind} file (kind {header.get('vidunlearn.kind')!r})", where=str(path),
                            fix=f"pass the {kind} file written by vidunlearn")
    if header.get("vidunlearn.schema") != str(SCHEMA):
        raise ArtifactError(f"schema {header.get('vidunlearn.schema')!r}, this vidunlearn reads {SCHEMA}", where=str(path),
                            fix="re-run the step with this version of vidunlearn")
    try:
        meta = json.loads(header["vidunlearn.json"])
    except (KeyError, ValueError, RecursionError):
        meta = None
    if not isinstance(meta, dict) or not isinstance(meta.get("sites"), list) or \
            not all(isinstance(site, str) for site in meta["sites"]):
        raise ArtifactError("metadata is missing or corrupt", where=str(path), fix="delete it and re-run") from None
    if header.get("vidunlearn.sha256") != _checksum(tensors):
        raise ArtifactError("tensor data does not match its checksum (corrupted or edited)", where=str(path),
                            fix="delete it and re-run the step that writes it")
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not torch.isfinite(tensor).all():
            raise ArtifactError(f"tensor {name!r} contains NaN or Inf", where=str(path), fix="delete it and re-run")
    return tensors, meta


@dataclass
class ActivationSet:
    """Token activations per site and prompt group. ``meta`` carries model, pairs and cache key."""

    tokens: dict[str, dict[str, list[torch.Tensor]]]   # site -> group -> [(T_i, H)]
    meta: dict = field(default_factory=dict)

    @property
    def sites(self) -> list[str]:
        return sorted(self.tokens)

    def save(self, path: Path, *, replace: bool = True) -> None:
        tensors: dict[str, torch.Tensor] = {}
        for site, groups in self.tokens.items():
            for group, items in groups.items():
                if not items:
                    continue
                tensors[f"{site}.{group}"] = torch.cat([t.float() for t in items])
                tensors[f"{site}.{group}.lengths"] = torch.tensor([t.shape[0] for t in items], dtype=torch.int64)
        _save(path, tensors, "activations", {**self.meta, "tool_version": __version__}, replace)

    @classmethod
    def load(cls, path: Path) -> ActivationSet:
        tensors, meta = _load(path, "activations")
        tokens: dict[str, dict[str, list[torch.Tensor]]] = {}
        for site in meta.get("sites", []):
            tokens[site] = {}
            for group in GROUPS:
                name = group if f"{site}.{group}" in tensors or group not in OPTIONAL_GROUPS else OPTIONAL_GROUPS[group]
                if name is None:
                    tokens[site][group] = []
                    continue
                flat, lengths = tensors.get(f"{site}.{name}"), tensors.get(f"{site}.{name}.lengths")
                if (flat is None or lengths is None or flat.dim() != 2 or not flat.is_floating_point()
                        or lengths.dim() != 1 or lengths.dtype != torch.int64 or int(lengths.sum()) != flat.shape[0]
                        or (lengths < 1).any() or not len(lengths)):
                    raise _bad(path, f"tensors for {site}/{group} are missing or inconsistent", "extract")
                tokens[site][group] = list(torch.split(flat, lengths.tolist()))
        if not tokens:
            raise ArtifactError("no sites recorded", where=str(path), fix="delete it and re-run extract")
        return cls(tokens=tokens, meta=meta)


@dataclass
class SiteVectors:
    direction: torch.Tensor   # (H,)
    refusal: torch.Tensor     # (H,)
    basis: torch.Tensor       # (H, k)
    eigenvalues: torch.Tensor  # (k,)
    safe_mean: torch.Tensor   # (H,)
    left: torch.Tensor | None = None   # (H, n) remap factor A (method remap): M = I + A B^T
    right: torch.Tensor | None = None  # (H, n) remap factor B

    @property
    def has_remap(self) -> bool:
        return self.left is not None and self.right is not None


@dataclass
class RefusalVectors:
    """Per-site refusal directions of one concept. ``meta["stats"][site]`` holds the norms,
    the retained share and the data rank, so a user can see why an edit will or will not bite."""

    sites: dict[str, SiteVectors]
    meta: dict = field(default_factory=dict)

    @property
    def concept(self) -> str:
        return str(self.meta.get("concept", "?"))

    def save(self, path: Path, *, replace: bool = True) -> None:
        tensors = {f"{s}.{k}": getattr(v, k) for s, v in self.sites.items()
                   for k in ("direction", "refusal", "basis", "eigenvalues", "safe_mean", "left", "right")
                   if getattr(v, k) is not None}
        _save(path, tensors, "refusal", {**self.meta, "tool_version": __version__}, replace)

    @classmethod
    def load(cls, path: Path) -> RefusalVectors:
        tensors, meta = _load(path, "refusal")
        sites: dict[str, SiteVectors] = {}
        for site in meta.get("sites", []):
            try:
                sites[site] = SiteVectors(**{k: tensors[f"{site}.{k}"] for k in
                                             ("direction", "refusal", "basis", "eigenvalues", "safe_mean")})
            except KeyError as exc:
                raise ArtifactError(f"tensor {exc.args[0]!r} is missing", where=str(path), fix="delete it and re-run factorize") from None
            v = sites[site]
            hidden = v.direction.shape[0] if v.direction.dim() == 1 else -1
            if not (hidden > 0 and all(t.is_floating_point() for t in (v.direction, v.refusal, v.basis, v.eigenvalues, v.safe_mean))
                    and v.refusal.shape == v.safe_mean.shape == (hidden,) and v.basis.dim() == 2
                    and v.basis.shape[0] == hidden and v.eigenvalues.shape == (v.basis.shape[1],) and v.basis.shape[1] > 0
                    and abs(float(v.direction.norm()) - 1) < 1e-3):
                raise _bad(path, f"tensors for {site} have inconsistent shapes or a non-unit direction", "factorize")
            left, right = tensors.get(f"{site}.left"), tensors.get(f"{site}.right")
            if (left is None) != (right is None) or left is not None and not (
                    left.dim() == 2 and left.shape == right.shape and left.shape[0] == hidden and left.shape[1] > 0
                    and left.is_floating_point() and right.is_floating_point()):
                raise _bad(path, f"remap factors for {site} are missing one half or have inconsistent shapes", "factorize")
            v.left, v.right = left, right
        if not sites:
            raise ArtifactError("no sites recorded", where=str(path), fix="delete it and re-run factorize")
        return cls(sites=sites, meta=meta)
