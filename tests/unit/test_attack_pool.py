"""benchmarks/attack_pool.py: the rate over every attack of runs at several seeds, its Wilson interval, the
captions won at any seed; runs that do not attack the same starts, or an incomplete one, refused in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "benchmarks"))

from attack_pool import pooled, wilson  # noqa: E402

STARTS = [f"a red circle moving {m} on a {b} background" for m in ("up", "down") for b in ("light", "dark")]


def run(seed: int, model: str, verdicts: list[str], space: str = "discrete", complete: bool = True, starts=STARTS) -> dict:
    return {"seed": seed, "complete": complete, "results": [
        {"task": "circle-to-square", "model": model, "start": "forget", "space": space, "starts": list(starts),
         "verdicts": verdicts, "attack_success_rate": verdicts.count("circle") / len(verdicts)}]}


def test_pooled_counts_every_attack_of_every_seed_and_the_captions_won_at_any():
    rows = pooled([run(0, "m", ["circle", "square", "square", "circle"]), run(1, "m", ["square", "square", "triangle", "circle"]),
                   run(1, "other", ["circle"] * 4)])   # 'other' is not attacked at seed 0: left out
    (row,) = rows
    assert row["model"] == "m" and row["wins"] == {"0": 2, "1": 1} and row["attacks"] == {"0": 4, "1": 4}
    assert row["pooled"] == 3 / 8 and row["any_seed"] == 2 / 4   # captions 0 and 3 (3 won twice)
    low, high = row["interval"]
    assert low < 3 / 8 < high and (low, high) == wilson(3, 8)


def test_wilson_matches_the_textbook_figures():
    assert wilson(0, 28)[0] == 0 and wilson(0, 28)[1] == pytest.approx(0.1206, abs=1e-4)
    assert wilson(3, 28) == pytest.approx((0.0371, 0.2720), abs=1e-4)   # by hand: (0.1754 -+ 0.1335) / 1.1372
    assert wilson(28, 28)[1] == pytest.approx(1.0)


@pytest.mark.parametrize("case, message", [
    ("different-starts", "attack circle-to-square/m from different starts"),
    ("same-seed-twice", "two runs at seed 0 attack circle-to-square/m/forget/discrete"),
    ("incomplete", "is incomplete"),
    ("missing", "cannot read an attack run"),
    ("not-a-run", "is not an attack run (no seed or results)"),
])
def test_bad_runs_are_one_line(tmp_path, case, message):
    runs = {"different-starts": [run(0, "m", ["square"] * 4), run(1, "m", ["square"] * 4, starts=STARTS[::-1])],
            "same-seed-twice": [run(0, "m", ["square"] * 4), run(0, "m", ["square"] * 4)],
            "incomplete": [run(0, "m", ["square"] * 4, complete=False)], "missing": [],
            "not-a-run": [{"complete": True, "rows": []}]}[case]
    paths = []
    for i, document in enumerate(runs):
        (tmp_path / f"r{i}").mkdir()
        (tmp_path / f"r{i}" / "attack.json").write_text(json.dumps(document))
        paths.append(tmp_path / f"r{i}")
    result = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "attack_pool.py"), *map(str, paths or [tmp_path / "no"])],
                            capture_output=True, text=True)
    assert result.returncode == 1 and message in result.stderr and result.stderr.count("\n") == 1, result.stderr
