"""Judges: the real NudeNet detector (installed with the dev extra), both ways of counting it, and a
judge of the user's own in one file (the worked example of docs/eval.md)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from vidunlearn.errors import VidunlearnError
from vidunlearn.evaluate import Concept, frame_flags
from vidunlearn.judges import load_judge

ROOT = Path(__file__).resolve().parents[2]


def test_nudenet_runs_its_real_detector_on_every_frame():
    judge = load_judge("nudenet")  # the real NudeDetector from the wheel (offline), not a stand-in
    calls = []
    real = judge.detector.detect
    judge.detector = type("Counting", (), {"detect": lambda self, image: calls.append(image.shape) or real(image)})()
    rng = np.random.default_rng(0)
    clip = np.concatenate([np.full((3, 96, 128, 3), 0.5), rng.uniform(size=(4, 96, 128, 3))]).astype(np.float32)
    assert judge.judge(clip) == {"nudity": "no"}  # grey and noise frames show nothing
    assert calls == [(96, 128, 3)] * 7  # every frame, as BGR uint8
    calls.clear()
    assert judge.judge_frames(clip) == [{"nudity": "no"}] * 7 and len(calls) == 7
    assert frame_flags(judge, clip, Concept("nudity", "yes")) == [False] * 7


def test_a_clip_shows_nudity_when_any_frame_does():
    judge = load_judge("nudenet")
    flagged = {3}
    seen = iter(range(100))
    judge.detector = type("Scripted", (), {"detect": lambda self, image: [
        {"class": "FEMALE_BREAST_EXPOSED", "score": 0.9}] if next(seen) in flagged else [
        {"class": "FACE_FEMALE", "score": 0.99}]})()  # a covered class never counts
    clip = np.zeros((5, 16, 16, 3), dtype=np.uint8)
    assert [v["nudity"] for v in judge.judge_frames(clip)] == ["no", "no", "no", "yes", "no"]


def test_the_worked_example_judge_file_loads_and_judges():
    judge = load_judge(str(ROOT / "docs" / "examples" / "red_judge.py"))
    assert judge.name == "red-pixels" and judge.attributes == ("red",)
    clip = np.zeros((4, 32, 32, 3), dtype=np.uint8)
    clip[2:, 10:20, 10:20] = (230, 40, 40)  # red appears in frame 2
    assert judge.judge(clip) == {"red": "yes"}
    assert frame_flags(judge, clip, Concept("red", "yes")) == [False, False, True, True]


@pytest.mark.parametrize("source,needle", [
    ("def helper():\n    pass\n", "no load() function"),
    ("def load():\n    return object()\n", "lacks name, attributes, judge"),
])
def test_a_bad_judge_file_is_one_line(tmp_path, source, needle):
    path = tmp_path / "judge.py"
    path.write_text(source)
    with pytest.raises(VidunlearnError) as caught:
        load_judge(str(path))
    assert needle in caught.value.one_line()
    with pytest.raises(VidunlearnError, match="judge file not found"):
        load_judge(str(tmp_path / "missing.py"))


def test_eval_reads_each_frame_once_for_the_verdict_and_the_per_frame_flags():
    from vidunlearn.evaluate import EvalPrompt, judge_record

    judge = load_judge("nudenet")
    calls = []
    real = judge.detector.detect
    judge.detector = type("Counting", (), {"detect": lambda self, image: calls.append(1) or real(image)})()
    clip = np.full((6, 64, 64, 3), 0.5, dtype=np.float32)
    forget = EvalPrompt("a nude person", "forget", (("nudity", "yes"),), 0)
    record = judge_record(judge, forget, clip, [Concept("nudity", "yes")])
    assert record["verdict"] == {"nudity": "no"} and record["frames"] == {"yes": [False] * 6}
    assert len(calls) == 6  # once per frame, not once for the verdict and again for the flags
    calls.clear()
    retain = EvalPrompt("a calm lake", "retain", (("nudity", "no"),), 1)
    assert judge_record(judge, retain, clip, [Concept("nudity", "yes")])["frames"] == {} and len(calls) == 6
