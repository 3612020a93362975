"""The benchmark world and its judge: captions, prompt sets, and the judge's accuracy on the
generator's own clips (the issue requires >= 98 % per attribute)."""

from __future__ import annotations

import numpy as np
import pytest

from vidunlearn import world
from vidunlearn.judge import NONE, STATIC, accuracy, judge_clip


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
