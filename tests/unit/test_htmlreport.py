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


def test_a_large_eval_embeds_at_most_html_rows_failures_first(tmp_path, monkeypatch):
    import numpy as np

    import vidunlearn.evalrun as evalrun
    from vidunlearn.evaluate import Concept, EvalPrompt, EvalSet, ModelRun

    monkeypatch.setattr(evalrun, "HTML_ROWS", 3)
    prompts = tuple(EvalPrompt(f"a red thing {i}", "forget", (("colour", "red"),), i) for i in range(6))
    verdicts = [{"colour": "red" if i in (1, 4) else "blue"} for i in range(6)]  # 1 and 4 still show red
    read = []

    class Clips:
        def __getitem__(self, i):
            read.append(i)
            return np.zeros((3, 8, 8, 3), dtype=np.uint8)

    metrics = {"frame_rates_by_concept": {"red": [0.0, 0.0, 0.0]}}
    run = ModelRun({"name": "m"}, verdicts, metrics, Clips())
    document = {"concepts": [{"attribute": "colour", "value": "red"}], "judge": {"name": "oracle", "attributes": ["colour"]},
                "model": {"name": "m"}, "base": None, "metrics": {"forget_rate": 1 / 3, "rest_kept": None,
                "retain_accuracy": {"colour": None}, "paraphrase_leak": None, "counts": {"forget": 6, "retain": 0,
                "paraphrase": 0}}, "settings": {
                "steps": 1, "frames": 3, "height": 8, "width": 8, "guidance": 1.0, "seed": 0}, "tool_version": "x"}
    evalrun._html(tmp_path / "r.html", EvalSet((Concept("colour", "red"),), prompts, "t"), [("model", run)], document,
                  tmp_path, evalrun.SampleSettings(steps=1, frames=3, height=16, width=16))
    html = (tmp_path / "r.html").read_text()
    assert sorted(read) == [0, 1, 4]  # both failures, then the first of the rest; nothing else decoded
    assert html.count("<video") == 3 and "3 more prompts are not shown here" in html
