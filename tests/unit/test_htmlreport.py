"""report.html's pieces without a browser: the SVG plot of per-frame concept rates."""

from __future__ import annotations

from vidunlearn.htmlreport import rate_plot


def test_rate_plot_draws_one_line_per_series_base_dashed():
    svg = rate_plot({"circle, base": [1.0, 1.0, 0.5], "circle, edited": [0.0, 0.5, 0.0]})
    assert svg.startswith("<svg") and svg.endswith("</svg>")
    assert svg.count("<polyline") == 2 and svg.count('stroke-dasharray="5 3"') == 2  # line + legend of the base
    points = [p.split(",") for p in svg.split('<polyline points="')[2].split('"')[0].split()]
    ys = [float(y) for _, y in points]
    assert ys[0] == ys[2] > ys[1]  # 0 % drawn below 50 %
