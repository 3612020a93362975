"""`apply --dry-run` against the real Hub config of every family's sizes (benchmarks/hub_layout.py
LAYOUTS: the real config.json, real key names and shapes, 5 GB shards and index json; Open-Sora:
its one unsharded file): the denoiser is built on the meta device and checked against the shard
headers. The shards are sparse files (real headers, no data), so no weights are written or read."""

from __future__ import annotations

import sys

import pytest

from conftest import ROOT
from vidunlearn import api
from vidunlearn.adapters import ADAPTERS
from vidunlearn.model import resolve_model

sys.path.insert(0, str(ROOT / "benchmarks"))
from hub_layout import LAYOUTS, build  # noqa: E402

FAMILIES = {a.family for a in ADAPTERS}
# layout -> the number of layers the family's default sites edit at that size (I2V: text and image paths)
EXPECTED = {"1.3b": 60, "5b": 60, "14b": 80, "i2v-14b": 160, "ltx-2b": 56, "cogvideox-2b": 1, "cogvideox-5b": 1,
            "hunyuan-13b": 2, "zeroscope-1.7b": 32, "open-sora-v2": 1}


@pytest.mark.parametrize("layout", [name for name, spec in LAYOUTS.items() if spec.family in FAMILIES])
def test_dry_run_plans_the_real_hub_layout(layout, tmp_path_factory):
    from apply_vs_copy import make_refusal

    root = tmp_path_factory.mktemp("hub-layouts")
    spec = LAYOUTS[layout]
    model = build(root, layout, spec.dtype, sparse=True)
    refusal = root / "refusal.safetensors"
    make_refusal(model, refusal)
    result = api.apply(str(model), out=root / "out", refusal=[refusal],
                       recipe=api.EditRecipe(mode="project", method="cpca"), output=api.OutputOptions(collateral=False),
                       dry_run=True)
    assert len(result.plan) == EXPECTED[layout]
    source = resolve_model(str(model))  # a pipeline folder, or a family's own layout (Open-Sora: one file)
    assert result.checked == len(source.tensor_infos(spec.component))  # every tensor against the meta-device model
    assert not (root / "out").exists()
