"""report.html's pieces without a browser: the per-frame concept rate and its SVG plot."""

from __future__ import annotations

import numpy as np

from vidunlearn import world
from vidunlearn.htmlreport import frame_rates, rate_plot
from vidunlearn.judges.oracle import OracleJudge


def test_frame_rates_judge_each_frame_alone_with_the_oracle():
    rng = np.random.default_rng(0)
    circle = world.render(world.Labels("red", "circle", "left", "dark"), rng)
    square = world.render(world.Labels("red", "square", "up", "light"), rng)
    blank = np.zeros_like(circle)
    mixed = np.concatenate([circle[:2], blank[2:]])  # the circle vanishes after frame 2
    judge = OracleJudge()
    shows = lambda clip: judge.judge(clip)["shape"] == "circle"
    assert frame_rates([circle, circle], shows) == [1.0] * world.FRAMES
    assert frame_rates([square], shows) == [0.0] * world.FRAMES
    assert frame_rates([circle, mixed], shows) == [1.0, 1.0] + [0.5] * (world.FRAMES - 2)


def test_rate_plot_draws_one_line_per_series_base_dashed():
    svg = rate_plot({"circle, base": [1.0, 1.0, 0.5], "circle, edited": [0.0, 0.5, 0.0]})
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<polyline") == 2 and svg.count('stroke-dasharray="5 3"') == 2  # line + legend of the base
    points = [p.split(",") for p in svg.split('<polyline points="')[2].split('"')[0].split()]
    ys = [float(y) for _, y in points]
    assert ys[0] == ys[2] > ys[1]  # 0 % drawn below 50 %
