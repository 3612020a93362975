"""Screens of the remap default that are not options of ``vidunlearn apply``: benchmarks/efficacy.py
with extra variants (every other argument is efficacy.py's).

- ``anchor<W>`` (W in 0.2, 0.3, 0.5): the default with the everyday anchor prompts preserved at
  weight W (a share of the preserve weight) instead of vidunlearn.remap.ANCHOR_WEIGHT (0.1). Each
  such apply factorizes afresh (the refusal cache key does not hold the anchor weight).
- ``joint`` / ``joint-l1``: several concepts' remaps solved as ONE least-squares problem (every
  concept's erase and target rows stacked, their preserve rows pooled, the anchors once) instead
  of composed, at the default's lambda (1.25 for several concepts) / at lambda 1. Built through
  apply's ``harden`` hook (vidunlearn.harden.hardened_factors replaced; its recipe says harden 1).
- ``null<E>`` (E in 0.9, 0.99, 0.999): SPEED's null-space constraint instead of the soft preserve
  term (:func:`null_space_factors`), through the same hook. The efficacy benchmark's own
  ``*harden*`` variants are not RECE under this script.

    python benchmarks/efficacy_screens.py --steps 10 --seeds 0,1,2,5,7 --variants default,anchor0.2,anchor0.3 \
        --base-from benchmarks/results/efficacy-remap-strength1.25-seeds0-1-2-5-7.json
    python benchmarks/efficacy_screens.py --steps 10 --seeds 0,1,2,5,7 --tasks red+circle,red+circle-to-square,red+circle-apart \
        --variants default,joint,joint-l1 --base-from benchmarks/results/efficacy-remap-strength1.25-seeds0-1-2-5-7.json
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import efficacy  # noqa: E402

from vidunlearn import api, harden, remap  # noqa: E402

_fit = remap.remap_factors
_apply = api.apply
_anchor = {"weight": remap.ANCHOR_WEIGHT}


def remap_factors(*args, **kwargs):
    kwargs.setdefault("anchor_weight", _anchor["weight"])
    return _fit(*args, **kwargs)


def apply(*args, anchor_weight: float | None = None, screen: str | None = None, **kwargs):
    _hook["factors"] = SCREENS.get(screen)
    if anchor_weight is None:
        return _apply(*args, **kwargs)
    _anchor["weight"] = anchor_weight
    try:
        return _apply(*args, **{**kwargs, "load": api.LoadOptions(no_cache=True)})
    finally:
        _anchor["weight"] = remap.ANCHOR_WEIGHT


def joint_factors(groups, gram, preserve_weight):
    """One remap for all concepts."""
    rows = lambda key: [t for g in groups for t in g[key]]
    return _fit(rows("unsafe"), rows("target"), rows("neutral") + rows("safe"), preserve_weight, groups[0]["anchor"])


def null_space_factors(energy: float):
    """SPEED's constraint (Li et al., ICLR 2026), read for the remap: each concept's change acts only
    on the null space of its preserved rows (neutral, safe and anchor tokens), here the complement
    P = I - U U^T of their top singular directions holding ``energy`` of their squared norm (all 128
    directions carry some, so an exact null space is empty); no soft preserve term:
    M = I + A B^T, A = (T - E)^T, B = G^-1 P E^T, G = P E^T E P + mu I (mu: UCE's ridge rule)."""
    import torch

    from vidunlearn.edit import UCE_RIDGE
    from vidunlearn.remap import aligned_rows, compose

    def factors(groups, gram, preserve_weight):
        out = []
        for g in groups:
            erase, goal = aligned_rows(g["unsafe"], g["target"])
            keep = torch.cat([t.double() for t in g["neutral"] + g["safe"] + g["anchor"]])
            _, values, vectors = torch.linalg.svd(keep, full_matrices=False)
            share = (values ** 2).cumsum(0) / (values ** 2).sum()
            k = int((share < energy).sum()) + 1
            null = torch.eye(keep.shape[1], dtype=torch.float64) - vectors[:k].T @ vectors[:k]
            projected = erase @ null
            g_matrix = projected.T @ projected
            mu = max(UCE_RIDGE * float(g_matrix.diagonal().sum()) / g_matrix.shape[0], 1e-12)
            right = torch.linalg.solve(g_matrix + mu * torch.eye(g_matrix.shape[0], dtype=torch.float64), projected.T)
            out.append(((goal - erase).T.float(), right.float()))
        return compose(out)
    return factors


_hook = {"factors": None}


def hardened_factors(groups, gram, preserve_weight, rounds, ridge=harden.RIDGE):
    """apply's ``harden`` hook, standing in for the screen chosen (``rounds`` ignored: no RECE round)."""
    return _hook["factors"](groups, gram, preserve_weight)


api.remap_factors = harden.remap_factors = remap_factors
api.apply = apply
harden.hardened_factors = hardened_factors
for weight in (0.2, 0.3, 0.5):
    efficacy.ALL[f"anchor{weight}"] = {"mode": "remap", "anchor_weight": weight}
SCREENS = {"joint": joint_factors, **{f"null{e}": null_space_factors(e) for e in (0.9, 0.99, 0.999)}}
efficacy.ALL["joint"] = {"mode": "remap", "harden": 1, "screen": "joint"}
efficacy.ALL["joint-l1"] = {"mode": "remap", "harden": 1, "strength": 1.0, "screen": "joint"}
for energy in (0.9, 0.99, 0.999):
    efficacy.ALL[f"null{energy}"] = {"mode": "remap", "harden": 1, "screen": f"null{energy}"}

if __name__ == "__main__":
    sys.exit(efficacy.main())
