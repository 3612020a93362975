"""benchmarks/efficacy.py's edit-size columns on real apply outputs (the session fixture ``made``):
the paper's projection is rank 1, the remap's change has a rank above 1 (at most the tiny model's
24 columns), and the weight change and collateral are what apply recorded."""

from __future__ import annotations

import json
import sys

from conftest import ROOT


def test_edit_size_reads_rank_change_and_collateral(made, tiny_wan):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from efficacy import edit_size

    for name, ranks in (("diffusers", {1}), ("remap", set(range(2, 25)))):
        manifest = json.loads((made[name] / "vidunlearn.json").read_text())
        size = edit_size(made[name], str(tiny_wan))
        assert size["rank"] in ranks, (name, size)
        assert 0 < size["weight_change"] < 2 and size["collateral"] == manifest["collateral"]["mean"] > 0
        assert size["encoder_collateral"] is None   # no trained text encoder in these edits


def test_the_collateral_cell_adds_a_trained_encoders_own():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from efficacy import _collateral

    assert _collateral({"collateral": 0.137, "encoder_collateral": None}) == "13.7"
    assert _collateral({"collateral": 0.137, "encoder_collateral": 0.452}) == "13.7 / encoder 45.2"
    assert _collateral({"collateral": None}) == "-"
