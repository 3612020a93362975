"""The motion benchmark's measurements (vidunlearn/motion/metrics.py) against naive formulas. No
sampling: a few seconds."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import linalg

from vidunlearn.motion import metrics, world


def test_frechet_matches_the_formula_and_divides_by_the_scale():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(200, 4)), rng.normal(1.0, 2.0, size=(150, 4))
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    naive = ((a.mean(0) - b.mean(0)) ** 2).sum() + np.trace(s1 + s2 - 2 * np.real(linalg.sqrtm(s1 @ s2)))
    assert metrics.frechet(a, b, 1.0) == pytest.approx(naive)
    scale = np.array([1.0, 10.0, 0.1, 3.0])
    assert metrics.frechet(a * scale, b * scale, scale) == pytest.approx(naive)
    assert abs(metrics.frechet(a, a, 1.0)) < 1e-6
    # two Gaussians with the same covariance: the squared distance of the means (4 x 3^2)
    assert metrics.frechet(a, a + 3.0, 1.0) == pytest.approx(36.0)


def test_rates_count_what_the_judge_read():
    kick, punch = world.forget_prompts()[0], world.forget_prompts()[-1]
    walk = next(p for p in world.retain_prompts() if p.labels.action == "walk")
    motion = np.zeros((40, 22, 3), np.float32)
    samples = {"forget": [(kick, motion, "kick"), (punch, motion, "none"), (kick, motion, "walk"), (punch, motion, "punch")],
               "retain": [(walk, motion, "walk"), (walk, motion, "run")],
               "para": [(kick, motion, "kick"), (kick, motion, "none"), (kick, motion, "none"), (kick, motion, "none")]}
    assert metrics.rates(samples) == {"forget_rate": 50.0, "forget_to_safe": 25.0, "retain_acc": 50.0, "para_leak": 25.0}
    assert "para_leak" not in metrics.rates({k: v for k, v in samples.items() if k != "para"})
    assert metrics.sample_count(2) == 2 * (32 + 88 + 48) and metrics.sample_count(2, paraphrase=False) == 2 * 120


def test_real_like_depends_only_on_labels_lengths_and_seed():
    prompts = world.forget_prompts()[:3]
    short = [(p, np.zeros((48, 22, 3)), "kick") for p in prompts]
    other = [(p, np.ones((48, 22, 3)), "none") for p in prompts]
    assert np.array_equal(metrics.real_like(short, 0), metrics.real_like(other, 0))
    assert metrics.real_like(short, 0).shape == (3, 274)
    assert not np.array_equal(metrics.real_like(short, 0), metrics.real_like(short, 1))
