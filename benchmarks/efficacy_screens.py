"""Screens of the remap default that are not options of ``vidunlearn apply``: benchmarks/efficacy.py
with extra variants (every other argument is efficacy.py's).

- ``anchor<W>`` (W in 0.2, 0.3, 0.5): the default with the everyday anchor prompts preserved at
  weight W (a share of the preserve weight) instead of vidunlearn.remap.ANCHOR_WEIGHT (0.1). Each
  such apply factorizes afresh (the refusal cache key does not hold the anchor weight).
- ``joint`` / ``joint-l1``: several concepts' remaps solved as ONE least-squares problem (every
  concept's erase and target rows stacked, their preserve rows pooled, the anchors once) instead
  of composed, at the default's lambda (1.25 for several concepts) / at lambda 1. Built through
  apply's ``harden`` hook (vidunlearn.harden.hardened_factors replaced; its recipe says harden 1).

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


def apply(*args, anchor_weight: float | None = None, **kwargs):
    if anchor_weight is None:
        return _apply(*args, **kwargs)
    _anchor["weight"] = anchor_weight
    try:
        return _apply(*args, **{**kwargs, "no_cache": True})
    finally:
        _anchor["weight"] = remap.ANCHOR_WEIGHT


def joint_factors(groups, gram, preserve_weight, rounds, ridge=harden.RIDGE):
    """One remap for all concepts (``rounds`` ignored: no RECE round is run)."""
    rows = lambda key: [t for g in groups for t in g[key]]
    return _fit(rows("unsafe"), rows("target"), rows("neutral") + rows("safe"), preserve_weight, groups[0]["anchor"])


api.remap_factors = harden.remap_factors = remap_factors
api.apply = apply
harden.hardened_factors = joint_factors
for weight in (0.2, 0.3, 0.5):
    efficacy.ALL[f"anchor{weight}"] = {"mode": "remap", "anchor_weight": weight}
efficacy.ALL["joint"] = {"mode": "remap", "harden": 1}
efficacy.ALL["joint-l1"] = {"mode": "remap", "harden": 1, "strength": 1.0}

if __name__ == "__main__":
    sys.exit(efficacy.main())
