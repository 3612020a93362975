"""The benchmark world and its judge: captions, prompt sets, and the judge's accuracy on the
generator's own clips (the issue requires >= 98 % per attribute)."""

from __future__ import annotations

import numpy as np
import pytest

from vidunlearn import world
from vidunlearn.judge import NONE, STATIC, accuracy, judge_clip, shape_margin


def test_caption_and_vocabulary():
    labels = world.Labels("red", "square", "left", "dark")
    assert world.caption(labels) == "a red square moving left on a dark background"
    assert world.caption(labels, colour_word="azure") == "an azure square moving left on a dark background"
    assert len(world.all_labels()) == len(world.COLOURS) * len(world.SHAPES) * len(world.MOTIONS) * len(world.BACKGROUNDS)
    assert world.attribute_of("red") == "colour" and world.attribute_of("up") == "motion"
    with pytest.raises(ValueError):
        world.attribute_of("octagon")


def test_render_shape_dtype_and_determinism():
    labels = world.Labels("blue", "circle", "down", "light")
    a = world.render(labels, np.random.default_rng(3))
    b = world.render(labels, np.random.default_rng(3))
    assert a.shape == (world.FRAMES, world.SIZE, world.SIZE, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)


def test_synonyms_never_occur_in_training_captions():
    training_words = {w for lab in world.all_labels() for w in world.caption(lab).split()}
    for value, words in world.SYNONYMS["colour"].items():
        for word in words:
            assert word not in training_words, (value, word)


def test_prompt_sets_split_on_the_concept():
    forget = world.forget_prompts("red")
    retain = world.retain_prompts("red")
    assert forget and retain and len(forget) + len(retain) == len(world.all_labels())
    assert all("red" in p.text.split() and p.labels.colour == "red" for p in forget)
    assert all("red" not in p.text.split() and p.labels.colour != "red" for p in retain)
    para = world.paraphrase_prompts("red", n=4)
    assert len(para) == 4 * len(world.SYNONYMS["colour"]["red"])
    assert all(p.labels.colour == "red" and "red" not in p.text.split() for p in para)
    for unsafe, safe in world.pairs("circle", n=5):
        assert unsafe.labels.shape == "circle" and safe.labels.shape != "circle"
        assert unsafe.text.replace("circle", safe.labels.shape) == safe.text
    assert world.forget_prompts("up", n=6, seed=1) == world.forget_prompts("up", n=6, seed=1)


def test_judge_is_at_least_98_percent_accurate_on_generator_clips():
    rng = np.random.default_rng(2026)
    labels = [world.random_labels(rng) for _ in range(300)]
    judgements = [judge_clip(world.render(lab, rng)) for lab in labels]
    scores = accuracy(judgements, labels)
    assert min(scores.values()) >= 0.98, scores


def test_judge_reads_float_frames_and_reports_none_and_static():
    labels = world.Labels("green", "triangle", "right", "dark")
    clip = world.render(labels, np.random.default_rng(0))
    assert judge_clip(clip.astype(np.float32) / 255.0).correct(labels) == {"colour": True, "shape": True, "motion": True}
    empty = np.full_like(clip, 25)
    verdict = judge_clip(empty)
    assert (verdict.colour, verdict.shape, verdict.motion) == (NONE, NONE, NONE)
    frozen = np.repeat(clip[:1], len(clip), axis=0)
    assert judge_clip(frozen).motion == STATIC


@pytest.mark.parametrize("blur, degrees", [(1.0, 0.0), (0.0, 8.0), (0.0, -8.0), (0.7, 5.0)])
def test_judge_reads_blurred_and_tilted_generator_clips(blur, degrees):
    """A decoder softens outlines and may tilt an object a little; the judge must still read the
    shape (the first release's area-over-box rule read every square tilted by 8 degrees as a circle)."""
    rng = np.random.default_rng(7)
    labels = world.all_labels()
    clips = [world.degrade(world.render(lab, rng), lab.background, blur=blur, degrees=degrees) for lab in labels]
    scores = accuracy([judge_clip(c) for c in clips], labels)
    assert min(scores.values()) >= 0.98, scores


def test_degrade_blurs_and_tilts_without_moving_the_object():
    labels = world.Labels("red", "square", "up", "dark")
    clip = world.render(labels, np.random.default_rng(1))
    assert np.array_equal(world.degrade(clip, "dark"), clip)
    soft = world.degrade(clip, "dark", blur=1.0)
    assert soft.shape == clip.shape and soft.dtype == np.uint8
    assert abs(int(soft.astype(int).sum()) - int(clip.astype(int).sum())) < 0.01 * clip.astype(int).sum()
    assert (soft != clip).any() and soft.max() <= clip.max()
    tilted = world.degrade(clip, "dark", degrees=30.0)
    assert (tilted != clip).any()


def test_judge_reads_any_clip_without_failing():
    """Edited models draw odd things: noise, an object that changes colour between frames, a
    frame all object. The judge must still answer with names from the vocabularies."""
    rng = np.random.default_rng(3)
    base = world.render(world.Labels("red", "square", "left", "dark"), rng)
    two_colours = base.copy()
    two_colours[2:][two_colours[2:, ..., 0] > 100] = world.COLOURS["cyan"]
    full = base.copy()
    full[1, 2:-2, 2:-2] = world.COLOURS["green"]
    clips = [rng.integers(0, 256, base.shape, dtype=np.uint8) for _ in range(10)] + [two_colours, full]
    for clip in clips:
        verdict = judge_clip(clip)
        assert verdict.shape in (*world.SHAPES, NONE)
        assert verdict.motion in (*world.MOTIONS, STATIC, NONE)
        assert verdict.colour in (*world.COLOURS, NONE)


def test_shape_margin_is_positive_exactly_where_the_judge_reads_the_shape():
    """shape_margin (benchmarks/shape_margin.py) is the judge's own shape rule as a distance: its sign
    follows the verdict on clean, blurred, tilted and random clips, a clean render sits well inside its
    shape, and blurring an upright triangle brings it nearer the boundary."""
    rng = np.random.default_rng(11)
    clips = [(world.degrade(world.render(lab, rng), lab.background, blur=blur, degrees=deg), lab.shape)
             for lab in world.all_labels()[::3] for blur, deg in ((0.0, 0.0), (1.5, 0.0), (0.7, 12.0))]
    clips += [(rng.integers(0, 256, clips[0][0].shape, dtype=np.uint8), shape) for shape in world.SHAPES]
    read = 0
    for clip, shape in clips:
        margin, verdict = shape_margin(clip, shape), judge_clip(clip).shape
        if verdict == NONE:
            assert margin is None
            continue
        read += 1
        for other in world.SHAPES:
            m = shape_margin(clip, other)
            assert m == 0 or (m > 0) == (verdict == other), (other, verdict, m)
    assert read >= len(clips) - len(world.SHAPES)
    triangle = world.render(world.Labels("red", "triangle", "right", "dark"), np.random.default_rng(0))
    assert shape_margin(triangle, "triangle") > 0.15   # the world's triangle: 1/2 against the threshold's 1/4
    assert shape_margin(world.degrade(triangle, "dark", blur=2.0), "triangle") < shape_margin(triangle, "triangle")
    with pytest.raises(ValueError, match="triangle, square or circle"):
        shape_margin(triangle, "none")
