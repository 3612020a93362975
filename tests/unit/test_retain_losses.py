"""benchmarks/retain_losses.py: the retain clips an eval lost, marked trained-on or an unsafe prompt's context."""

from __future__ import annotations

import json
import subprocess
import sys

from conftest import ROOT


def test_lost_retain_clips_are_counted_and_marked(tmp_path):
    clip = lambda text, group, shape, seen: {"text": text, "group": group, "seed": 1, "shows_concept": False,
                                             "labels": {"shape": shape}, "verdict": {"shape": seen}}
    prompts = [clip("a red triangle moving up on a dark background", "retain", "triangle", "circle"),   # a context
               clip("a red square moving down on a dark background", "retain", "square", "circle"),     # a neutral prompt
               clip("a green triangle moving left on a light background", "retain", "triangle", "triangle"),
               clip("a red circle moving left on a light background", "forget", "circle", "square")]
    (tmp_path / "eval.json").write_text(json.dumps({"prompts": prompts}))
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "retain_losses.py"), "--pairs",
                             str(ROOT / "pairs" / "bench" / "circle-to-square.yaml"), str(tmp_path / "eval.json")],
                            capture_output=True, text=True, cwd=ROOT, check=True)
    assert "2 of 3 retain clips lost (1 of the 2 not trained on; 1 of the 1 in the unsafe prompts' contexts)" in result.stdout
    assert "forget 0 of 1" in result.stdout
    assert "a red triangle moving up on a dark background (seed 1) -> {'shape': 'circle'} [an unsafe prompt's context]" in result.stdout
    assert "a red square moving down on a dark background (seed 1) -> {'shape': 'circle'} [trained on]" in result.stdout
