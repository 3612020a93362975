"""From refusal vectors or activations to one :class:`EditSpec` per site: what ``apply`` writes
into every layer that reads the site (the math is in edit.py, factorize.py and remap.py)."""

from __future__ import annotations

import torch

from .artifacts import ActivationSet, RefusalVectors
from .edit import MODES, EditSpec, orthonormal_basis, uce_factors
from .errors import ArtifactError, VidunlearnError
from .factorize import uce_embeddings
from .model import ModelSource
from .remap import compose


def edit_specs(concepts: list[RefusalVectors], mode: str, strength: float, subspace: bool = False
               ) -> dict[str, EditSpec]:
    """One spec per site: the concepts' directions stacked and re-orthonormalised (QR). With
    ``subspace``, each concept contributes its whole rank-k basis B instead of p (a rank-k edit)."""
    if mode not in MODES:
        raise VidunlearnError(f"unknown --mode {mode!r}", fix=f"use one of {MODES}")
    common = set.intersection(*(set(c.sites) for c in concepts))
    if not common:
        raise ArtifactError("the refusal vectors share no site", fix="extract all concepts with the same --site")
    specs: dict[str, EditSpec] = {}
    if mode == "remap":
        missing = [c.concept for c in concepts if not all(c.sites[site].has_remap for site in common)]
        if missing:
            raise ArtifactError(f"refusal vectors of {missing} hold no remap factors (factorized with another --method)",
                                fix="re-run factorize with --method remap, or pass --mode project")
        for site in sorted(common):
            left, right = compose([(c.sites[site].left, c.sites[site].right) for c in concepts])
            specs[site] = EditSpec(mode="remap", strength=strength, basis=left, right=right)
        return specs
    for site in sorted(common):
        vectors = [c.sites[site] for c in concepts]
        columns = [v.basis for v in vectors] if subspace else [v.direction[:, None] for v in vectors]
        basis = orthonormal_basis(torch.cat(columns, dim=1))
        safe_mean = torch.stack([v.safe_mean for v in vectors]).mean(dim=0)
        refusal = torch.stack([v.refusal for v in vectors]).sum(dim=0)
        specs[site] = EditSpec(mode=mode, strength=strength, basis=basis, safe_mean=safe_mean, refusal=refusal)
    return specs


def uce_specs(activations: list[ActivationSet], strength: float, preserve_weight: float, level: str
              ) -> dict[str, EditSpec]:
    """One UCE spec per site shared by all concepts: their erase/target rows stacked, their
    preserve rows (neutral and safe tokens) pooled, solved jointly (see edit.uce_factors)."""
    common = set.intersection(*(set(a.sites) for a in activations))
    if not common:
        raise ArtifactError("the activations share no site", fix="extract all concepts with the same --site")
    specs: dict[str, EditSpec] = {}
    for site in sorted(common):
        parts = [uce_embeddings(a.tokens[site]["unsafe"], a.tokens[site]["safe"], a.tokens[site]["neutral"], level)
                 for a in activations]
        erase, target, preserve = (torch.cat([part[i] for part in parts]) for i in range(3))
        left, right = uce_factors(erase, target, preserve, preserve_weight)
        specs[site] = EditSpec(mode="uce", strength=strength, basis=left, right=right)
    return specs


def check_same_model(vectors: RefusalVectors, source: ModelSource, where: str) -> None:
    recorded = (vectors.meta.get("model") or {}).get("fingerprint")
    if recorded != source.fingerprint:
        name = (vectors.meta.get("model") or {}).get("name", "another model")
        raise ArtifactError(f"refusal vectors were computed on {name!r}, not on this model", where=where,
                            fix="re-run extract and factorize on this model, or pass --pairs to apply")
