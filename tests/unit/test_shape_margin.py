"""benchmarks/shape_margin.py renders the clips `vidunlearn eval` judges (same prompts, seeds and sampling) and
reports the oracle's shape rule as a margin: its sign agrees with the eval's verdicts, and a folder holding the
base's own weights moves no margin."""

from __future__ import annotations

import json
import sys

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))


def test_margins_follow_the_eval_verdicts_and_the_base_as_a_folder_moves_none(tmp_path, monkeypatch, capsys):
    import shape_margin

    from vidunlearn import world
    from vidunlearn.evaluate import Counts, run_model, world_eval_set
    from vidunlearn.judge import shape_margin as shape_margin_of
    from vidunlearn.judges import load_judge
    from vidunlearn.sampling import SampleSettings

    base = ROOT / "models" / "shapes-wan"
    copy = tmp_path / "copy"   # the base's own files under another path (a link: no 90 MB copy)
    copy.symlink_to(base, target_is_directory=True)
    out = tmp_path / "margins.json"
    monkeypatch.setattr(sys, "argv", ["shape_margin", "--model", str(base), "--folders", f"copy={copy}", "--concept", "red",
                                      "--forget", "2", "--retain", "6", "--steps", "3", "--json", str(out)])
    assert shape_margin.main() == 0
    assert "shape read wrong" in capsys.readouterr().out
    document = json.loads(out.read_text())
    assert document["margins"]["copy"] == document["margins"]["base"]

    eval_set = world_eval_set(["red"], Counts(forget=2, retain=6, paraphrase=0), seed=0)
    settings = SampleSettings(steps=3, frames=world.FRAMES, height=world.SIZE, width=world.SIZE, guidance=2.0)
    run = run_model(str(base), eval_set, load_judge("oracle"), settings)
    retain = [(p, v, c) for p, v, c in zip(eval_set.prompts, run.verdicts, run.clips) if p.group == "retain"]
    assert [p.text for p, _, _ in retain] == [p["text"] for p in document["prompts"]]
    for (prompt, verdict, clip), margin in zip(retain, document["margins"]["base"]):
        assert margin == shape_margin_of(clip, prompt.label("shape"))   # the eval's own clip, to the bit
        assert margin is None if verdict["shape"] == "none" else (margin > 0) == (verdict["shape"] == prompt.label("shape"))


def test_bad_input_is_one_line(tmp_path, monkeypatch):
    import shape_margin

    for argv in (["--folders", "nope"], ["--folders", f"x={tmp_path}", "--retain", "0"],
                 ["--folders", f"x={tmp_path}", "--concept", "blorp"]):
        monkeypatch.setattr(sys, "argv", ["shape_margin", *argv])
        with pytest.raises(SystemExit) as stopped:
            shape_margin.main()
        assert stopped.value.code == 2


def test_summary_counts_lost_and_unread_clips():
    from shape_margin import summary

    rows = summary([0.1, None, 0.2], {"blank": [None, None, None], "edit": [0.05, -0.1, -0.2]})
    assert rows[0] == ("base", "3", "1", "0.100", "-")
    assert rows[1] == ("blank", "3", "3", "none read", "-")
    assert rows[2] == ("edit", "3", "2", "-0.200", "-0.225")   # the change over clips both read: (-0.05 - 0.4) / 2
