"""``eval --html``: one self-contained ``report.html`` a publisher can attach to a release.

It holds the metrics table, base and edited clips side by side for every prompt (H.264 MP4s
inline as ``data:`` URIs, failures first), the per-frame concept rate as an inline SVG plot, and,
when the evaluated model is a vidunlearn output, its recipe and the SHA-256 of its files from
``vidunlearn.json``. A Content-Security-Policy forbids every network request: it opens offline.
"""

from __future__ import annotations

import base64
import json
import tempfile
from dataclasses import dataclass
from html import escape
from pathlib import Path

import numpy as np

from .report import metric_rows, settings_line, share

CSP = "default-src 'none'; img-src data:; media-src data:; style-src 'unsafe-inline'"
STYLE = """body{font:15px/1.4 system-ui,sans-serif;margin:24px;color:#111;max-width:1100px}
table{border-collapse:collapse;margin:8px 0 20px}td,th{border:1px solid #ccc;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f3f3f3}tr.fail{background:#fde2e2}.num{text-align:right}.mono{font:12px monospace;word-break:break-all}
video{width:128px;height:128px;image-rendering:pixelated;background:#000}.fail-mark{color:#b40000;font-weight:bold}
.ok-mark{color:#007828}.note{color:#555}"""
COLOURS = ("#b40000", "#1f5fbf", "#7a3db8", "#c77800")  # one per concept; base dashed, edited solid


@dataclass(frozen=True)
class ClipPair:
    """One prompt's row: its text, group (and why it failed), verdict lines, clips (base, edited or just model)."""

    prompt: str
    group: str
    verdicts: tuple[str, ...]
    clips: tuple[np.ndarray, ...]
    failed: bool


def rate_plot(series: dict[str, list[float]], group: int = 2) -> str:
    """An inline SVG line plot (360 x 150) of per-frame rates in [0, 1]: ``{"circle, edited": [...]}``;
    each ``group`` consecutive series share a colour (a name ending in "base" is dashed)."""
    w, h, left, bottom = 360, 150, 36, 24
    longest = max(len(v) for v in series.values())
    x = lambda i: left + (w - left - 10) * (i / max(longest - 1, 1))
    y = lambda v: 10 + (h - bottom - 10) * (1 - v)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h + 18 * len(series)}" role="img">',
             f'<line x1="{left}" y1="{y(0)}" x2="{w - 10}" y2="{y(0)}" stroke="#888"/>',
             f'<line x1="{left}" y1="{y(1)}" x2="{left}" y2="{y(0)}" stroke="#888"/>',
             f'<text x="4" y="{y(1) + 4}" font-size="11">100%</text><text x="12" y="{y(0) + 4}" font-size="11">0%</text>',
             f'<text x="{left}" y="{h - 4}" font-size="11">frame 1</text>',
             f'<text x="{w - 60}" y="{h - 4}" font-size="11">frame {longest}</text>']
    for n, (name, values) in enumerate(series.items()):
        colour = COLOURS[(n // group) % len(COLOURS)]
        dash = ' stroke-dasharray="5 3"' if name.endswith("base") else ""
        points = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, v in enumerate(values))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="2"{dash}/>')
        parts.append(f'<line x1="{left}" y1="{h + 10 + 18 * n}" x2="{left + 24}" y2="{h + 10 + 18 * n}" '
                     f'stroke="{colour}" stroke-width="2"{dash}/>')
        parts.append(f'<text x="{left + 30}" y="{h + 14 + 18 * n}" font-size="12">{escape(name)}</text>')
    return "".join(parts) + "</svg>"


def mp4_data_uri(clip: np.ndarray, fps: int) -> str:
    """``data:video/mp4;base64,...`` of ``clip`` encoded as :func:`vidunlearn.video.write_mp4` does."""
    from .video import write_mp4

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "clip.mp4"
        write_mp4(clip, path, fps=fps)
        return "data:video/mp4;base64," + base64.b64encode(path.read_bytes()).decode("ascii")


def provenance_html(model_path: Path) -> str:
    """The recipe and the files' SHA-256 of a vidunlearn output, or a line saying why there are none."""
    from .errors import VidunlearnError
    from .verify_manifest import read_manifest

    if not (model_path / "vidunlearn.json").is_file():
        return '<p class="note">The evaluated model is not a vidunlearn output (no vidunlearn.json): no recipe to show.</p>'
    try:
        manifest = read_manifest(model_path)
        recipe = json.loads((model_path / "vidunlearn.json").read_text(encoding="utf-8"))["recipe"]
    except VidunlearnError as exc:
        return f'<p class="note">vidunlearn.json could not be read: {escape(exc.one_line())}</p>'
    rows = "".join(f'<tr><td class="mono">{escape(name)}</td><td class="mono">{escape(digest)}</td></tr>'
                   for name, digest in sorted(manifest.files.items()))
    return (f'<h2>Recipe</h2><pre class="mono">{escape(json.dumps(recipe, indent=2, sort_keys=True))}</pre>'
            f'<p>Recipe SHA-256: <span class="mono">{escape(manifest.recipe_sha256)}</span></p>'
            f'<h2>Files (SHA-256 from vidunlearn.json)</h2><table id="hashes"><tr><th>file</th><th>SHA-256</th></tr>'
            f'{rows}</table>')


def render(document: dict, pairs: list[ClipPair], columns: tuple[str, ...], fps: int, plot: str | None,
           plot_note: str, model_path: Path, clips_note: str = "") -> str:
    """The report's HTML text. ``plot``: an SVG or None; ``plot_note``: what it leaves out, and why;
    ``clips_note``: what the clip table leaves out."""
    concepts = ", ".join(c["value"] for c in document["concepts"])
    has_base = document.get("base") is not None
    metrics = "".join(f"<tr><td>{escape(m)}</td>" + (f'<td class="num">{share(b)}</td>' if has_base else "") +
                      f'<td class="num">{share(e)}</td></tr>' for m, b, e in metric_rows(document, per_concept=True))
    header = "<th>base</th><th>edited</th>" if has_base else "<th>model</th>"
    clip_rows = []
    for pair in sorted(pairs, key=lambda p: not p.failed):
        mark = '<span class="fail-mark">FAIL</span>' if pair.failed else '<span class="ok-mark">ok</span>'
        videos = "".join(f'<td><video src="{mp4_data_uri(c, fps)}" autoplay loop muted playsinline></video></td>'
                         for c in pair.clips)
        clip_rows.append(f'<tr class="{"fail" if pair.failed else "ok"}"><td>{mark} {escape(pair.group)}</td>'
                         f'<td>{escape(pair.prompt)}<br><span class="note">{"<br>".join(map(escape, pair.verdicts))}'
                         f'</span></td>{videos}</tr>')
    plot_html = (plot or "") + (f'<p class="note">{escape(plot_note)}</p>' if plot_note else "")
    base_name = escape(str((document.get("base") or {}).get("model", {}).get("name", "")))
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<title>vidunlearn eval: {escape(concepts)}</title><style>{STYLE}</style></head><body>
<h1>eval: {escape(concepts)}</h1>
<p>Model <b>{escape(str(document["model"].get("name", "")))}</b>{f" against the base <b>{base_name}</b>" if has_base else ""}.
Measured with {escape(settings_line(document))}.</p>
<h2>Metrics</h2>
<table id="metrics"><tr><th>metric</th>{header}</tr>{metrics}</table>
<h2>Concept rate per frame</h2>
<p class="note">Share of the forget prompts whose frame shows the concept they name (a frame judged alone; a motion on the three frames around it).</p>
{plot_html}
<h2>Clips</h2>
<table id="clips"><tr><th>verdict</th><th>prompt</th>{"".join(f"<th>{escape(c)}</th>" for c in columns)}</tr>
{"".join(clip_rows)}</table>
{f'<p class="note">{escape(clips_note)}</p>' if clips_note else ""}
{provenance_html(model_path)}
<p class="note">Written by vidunlearn {escape(str(document.get("tool_version", "")))} (eval.json holds every verdict).</p>
</body></html>
"""
