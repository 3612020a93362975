"""Does each change found by ``verify --base`` have the recipe's shape? (math in :mod:`verify_math`)

Per changed weight W (out, in), with c the recipe's rank (:attr:`Recipe.rank`) capped by the layer:

- ``project``/``replace``: rank(W' - W) = c exactly (c concept directions, or with ``--subspace``
  every concept's rank-k basis): at most c singular values above the rounding bound, at least c
  above RANK_TOLERANCE alone (fp8: only at most c, since re-quantisation can round part of the
  edit away), and W' - W = -s (W Q) Q^T with the recipe's strength s and Q its top-c right singular
  vectors, up to rounding; every changed weight of one site shares that Q (the same directions
  removed from every layer that reads the site); a ``replace`` bias change s (W Q)(Q^T m) lies in
  the column space of the weight's change.
- ``uce``, ``remap``: W' - W = s (W A) B^T has rank at most the factors' columns (the erase rows),
  which apply records as the recipe's ``edit_rank``: a larger rank fails; every changed weight of a
  site has its rows in one shared span(B) (checkable where the change is narrower than the layer);
  where the change is (and that nothing else changed) is checked. Without ``edit_rank`` (outputs of earlier versions) the
  rank is reported, not bounded.
- ``bias``: no weight changes; a bias change -s W r is not bounded (r is any vector).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from .quant import is_fp8
from .verify import ChangedTensor, Verification
from .verify_manifest import Recipe, VerifyError
from .verify_math import WeightChange, outside_columns, outside_rows, rounding_noise, subspace_sine, weight_change

MODIFIED = "this output was modified after apply; do not use it"


@dataclass(frozen=True)
class Target:
    """One tensor the recipe changes: ``kind`` "weight" or "bias" of ``module`` at ``site``."""

    site: str
    component: str
    module: str
    kind: str


@dataclass(frozen=True)
class _Bias:
    target: Target
    where: str
    delta: torch.Tensor
    noise: float


class SiteChecks:
    """Collects every planned change as it is found, checks it alone, then (``finish``) per site."""

    def __init__(self, targets: dict[tuple[str, str], Target], recipe: Recipe, result: Verification) -> None:
        self.targets, self.recipe, self.result = targets, recipe, result
        self.seen: set[tuple[str, str]] = set()
        self.files: set[Path] = set()  # output files with a changed tensor
        self.weights: dict[str, list[tuple[str, WeightChange]]] = {}  # site -> (where, change)
        self.columns: dict[tuple[str, str], WeightChange] = {}  # (component, module) -> its best-resolved change
        self.biases: list[_Bias] = []

    def add(self, target: Target, file: Path, rel: str, key: str, old: torch.Tensor, new: torch.Tensor, dtype: str,
            scale: float | None, noise: float | None = None) -> None:
        """A planned tensor ``key`` of output file ``rel`` changed from ``old`` to ``new`` (float32),
        stored as ``dtype`` (fp8 with ``scale``); ``noise``: its rounding bound when it is not
        ``new`` rounded to ``dtype`` (a LoRA's B A)."""
        self.seen.add((target.component, f"{target.module}.{target.kind}"))
        self.files.add(file)
        where = f"{file} ({key})"
        delta = new - old
        if noise is None:
            noise = rounding_noise(new, dtype, scale)
        if target.kind == "bias":
            self.biases.append(_Bias(target, where, delta, noise))
            self.result.changed.append(ChangedTensor(rel, key, list(old.shape), float(delta.norm()), 1))
            return
        expected = min(self.recipe.rank, *old.shape) if self.recipe.rank is not None else None
        change = weight_change(old, delta, dtype, noise, expected,
                               self.recipe.strength if self.recipe.projection else None)
        self.result.changed.append(ChangedTensor(rel, key, list(old.shape), change.norm, change.rank))
        self._check_weight(where, change, expected, dtype)
        bound = self.recipe.edit_rank if not self.recipe.projection else None
        if bound is not None and change.rank > bound:
            raise VerifyError(f"W' - W has rank {change.rank}; the recipe's {self.recipe.mode} edit has rank at most "
                              f"{bound} (its factors' columns)", where=where, fix=MODIFIED)
        self.weights.setdefault(target.site, []).append((where, change))
        best = self.columns.get((target.component, target.module))
        if best is None or change.spread < best.spread:
            self.columns[(target.component, target.module)] = change

    def _why(self) -> str:
        count = len(self.recipe.ranks)
        if self.recipe.subspace:
            return f"{count} concept(s) with --subspace, ranks {list(self.recipe.ranks)}"
        return f"{count} concept direction(s)"

    def _check_weight(self, where: str, change: WeightChange, expected: int | None, dtype: str) -> None:
        if expected is not None and change.rank > expected:
            raise VerifyError(f"W' - W has rank {change.rank}; the recipe's edit has rank {expected} ({self._why()})",
                              where=where, fix=MODIFIED)
        if expected is not None and change.relative_rank < expected and not is_fp8(dtype):
            raise VerifyError(f"W' - W has rank {change.relative_rank}; the recipe's edit has rank {expected} "
                              f"({self._why()}): part of the edit is missing", where=where, fix=MODIFIED)
        if change.residual is not None and change.tolerance is not None and change.residual > change.tolerance:
            raise VerifyError(f"W' - W is not -s (W Q) Q^T with the recipe's strength s = {self.recipe.strength:g} "
                              f"(residual {change.residual / max(change.norm, 1e-30):.1%} of |W' - W|, rounding allows "
                              f"{change.tolerance / max(change.norm, 1e-30):.1%})", where=where, fix=MODIFIED)

    def finish(self) -> None:
        missing = sorted(set(self.targets) - self.seen)
        if missing:
            raise VerifyError(f"the recipe edits {missing[0][0]}/{missing[0][1]}, which is unchanged or absent in the "
                              "output", where=str(self.result.base), fix=MODIFIED)
        for site, changes in sorted(self.weights.items()):
            if self.recipe.projection:
                self._shared_directions(site, changes)
            elif self.recipe.mode in ("uce", "remap"):
                self._shared_rows(site, changes)
        if self.recipe.mode == "replace":
            for bias in self.biases:
                self._bias_in_columns(bias)

    def _shared_directions(self, site: str, changes: list[tuple[str, WeightChange]]) -> None:
        """Every changed weight of ``site`` removes the same directions Q (up to rounding)."""
        reference = min(changes, key=lambda item: item[1].spread)[1]
        for where, change in changes:
            same = change.rows.shape == reference.rows.shape  # the same number of directions removed
            sine = subspace_sine(change.rows, reference.rows) if same else 1.0
            if sine > 2 * (change.spread + reference.spread) + 1e-3:
                raise VerifyError(f"W' - W removes other directions than the rest of site {site} (sin of the angle "
                                  f"{sine:.2g}); one edit removes the same directions from every layer of a site",
                                  where=where, fix=MODIFIED)

    def _shared_rows(self, site: str, changes: list[tuple[str, WeightChange]]) -> None:
        """uce, remap: W' - W = s (W A) B^T with one B per site, so the rows of every changed weight
        of ``site`` lie in the widest one's row space (up to rounding; measured on dW, see
        :func:`~vidunlearn.verify_math.outside_rows`). Vacuous where the widest change is of
        full rank in its input or its output width (a layer narrower than the erase rows, as in the
        tiny test models): its rows are then a part of span(B) only, and another layer's rows may
        be another part (two 16-output layers of HunyuanVideo's tiny site, B of rank > 16)."""
        widest = max(changes, key=lambda item: (item[1].rows.shape[1], -item[1].spread))[1]
        if widest.rows.shape[1] >= min(widest.rows.shape[0], widest.columns.shape[0]):
            return
        for where, change in changes:
            outside, allowed = outside_rows(change, widest)
            if outside > allowed:
                share = outside / max(float(change.singular[0]), 1e-30) if change.singular is not None else 1.0
                raise VerifyError(f"W' - W changes other input directions than the rest of site {site} ({share:.1%} "
                                  f"of its largest change); a {self.recipe.mode} edit is W + s (W A) B^T with one B "
                                  "for every layer of a site", where=where, fix=MODIFIED)

    def _bias_in_columns(self, bias: _Bias) -> None:
        """replace: b' - b = s (W Q)(Q^T m) lies in the column space of W' - W = -s (W Q) Q^T."""
        weight = self.columns.get((bias.target.component, bias.target.module))
        if weight is None:
            raise VerifyError("the bias changed, its weight did not; mode 'replace' changes both", where=bias.where,
                              fix=MODIFIED)
        norm = float(bias.delta.norm())
        outside = outside_columns(bias.delta, weight.columns)
        allowed = 1e-4 * norm + 2 * bias.noise + 2 * weight.spread * norm * math.sqrt(max(weight.columns.shape[1], 1))
        if outside > allowed:
            raise VerifyError(f"b' - b is not in the column space of W' - W ({outside / max(norm, 1e-30):.1%} of it "
                              "outside): not the recipe's 'replace' edit", where=bias.where, fix=MODIFIED)
