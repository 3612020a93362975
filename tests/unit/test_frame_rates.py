"""Per-frame concept rate (evaluate.frame_rates) on generator clips: no model."""

from __future__ import annotations

import numpy as np

from vidunlearn import world
from vidunlearn.evaluate import Concept, frame_rates
from vidunlearn.judges import load_judge


def test_a_colour_that_returns_in_later_frames_shows_per_frame_and_a_motion_in_every_window():
    judge = load_judge("oracle")
    red = [world.render(world.Labels("red", s, "left", "dark"), np.random.default_rng(i))
           for i, s in enumerate(("circle", "square", "triangle", "circle"))]
    green = [world.render(world.Labels("green", s, "left", "dark"), np.random.default_rng(i))
             for i, s in enumerate(("circle", "square", "triangle", "circle"))]
    # the first two clips are green in frames 0-1 and red from frame 2 on (temporal re-emergence)
    clips = [np.concatenate([g[:2], r[2:]]) if i < 2 else r for i, (r, g) in enumerate(zip(red, green))]
    assert frame_rates(judge, clips, Concept("colour", "red")) == [0.5, 0.5, 1.0, 1.0, 1.0]
    assert frame_rates(judge, clips, Concept("motion", "left")) == [1.0] * 5
    assert frame_rates(judge, green, Concept("colour", "red")) == [0.0] * 5
    assert frame_rates(judge, [], Concept("colour", "red")) == []


def test_the_cli_prints_each_models_per_frame_rate_at_most_17_frames():
    from vidunlearn.report import frame_lines

    document = {"concepts": [{"attribute": "nudity", "value": "yes"}], "base": None,
                "metrics": {"frame_rates_by_concept": {"yes": [0, 0.5, 1, 1, 1]}}}
    assert frame_lines(document) == ["clips showing nudity by frame, model: f0 0%  f1 50%  f2 100%  f3 100%  f4 100%"]
    document["metrics"]["frame_rates_by_concept"]["yes"] = [f / 32 for f in range(33)]
    document["base"] = {"metrics": {"frame_rates_by_concept": {"yes": [1.0] * 33}}}
    base, model = frame_lines(document)
    assert base.startswith("clips showing nudity by frame, base: f0 100%  f2 100%") and base.count("%") == 17
    assert model.endswith("f30 94%  f32 100%")
