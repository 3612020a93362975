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
