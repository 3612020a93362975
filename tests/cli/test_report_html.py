"""`eval --html`: report.html, rendered in a real headless Chromium (Debian's `chromium`).

The report comes from the real CLI on the tiny model (an edited output against its base), so the
recipe and the manifest's hashes are in it. A copy of it gets a probe script (and only the CSP
change that lets that script run) which writes what the browser sees into the page; Chromium
dumps the DOM. A screenshot of the report itself must not be blank. Skipped, with the reason,
where no Chromium is installed."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from vidunlearn.cli import app
from vidunlearn.htmlreport import CSP

ROOT = Path(__file__).resolve().parents[2]
BROWSER = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
needs_browser = pytest.mark.skipif(BROWSER is None, reason="no headless Chromium here (Debian: apt-get install chromium)")
PROBE = """<script>
function probe() {
  const videos = [...document.querySelectorAll('#clips video')];
  const cells = [...document.querySelectorAll('#metrics tr')].map(r => [...r.cells].map(c => c.textContent));
  const table = document.getElementById('metrics').getBoundingClientRect();
  const plot = document.querySelector('svg');
  document.getElementById('probe').textContent = JSON.stringify({
    videos: videos.length, loaded: videos.filter(v => v.readyState >= 2 && v.videoWidth > 0).length,
    errors: videos.filter(v => v.error).length, cells: cells, table_h: table.height, table_w: table.width,
    plot_w: plot ? plot.getBoundingClientRect().width : 0, hashes: document.querySelectorAll('#hashes tr').length});
}
window.addEventListener('load', () => setTimeout(probe, 1500));
</script><pre id="probe">pending</pre>"""


def _chromium(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                           "--virtual-time-budget=5000", *args], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(tiny_wan, tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report")
    runner = CliRunner()
    applied = runner.invoke(app, ["apply", "--model", str(tiny_wan), "--pairs", str(ROOT / "pairs" / "violence.yaml"),
                                  "--out", str(root / "edited"), "--work-dir", str(root / "work"), "--no-collateral"])
    assert applied.exit_code == 0, applied.output
    result = runner.invoke(app, ["eval", "--model", str(root / "edited"), "--compare", str(tiny_wan), "--concept", "red",
                                 "--out", str(root / "eval"), "--html", "--steps", "1", "--forget", "2", "--retain", "2",
                                 "--paraphrase", "1", "--batch-size", "4"])
    assert result.exit_code == 0, result.output
    assert "report.html" in result.output
    return root / "eval" / "report.html"


def test_report_is_self_contained(report):
    text = report.read_text(encoding="utf-8")
    assert CSP in text  # the browser refuses every network request
    urls = re.findall(r"(?:https?:)?//[^\s\"'<>)]+", re.sub(r'"data:[^"]*"', '""', text))
    assert urls == ["http://www.w3.org/2000/svg"] * len(urls)  # the SVG namespace only, never fetched
    prompts = sum(json.loads((report.parent / "eval.json").read_text())["metrics"]["counts"].values())
    assert text.count('src="data:video/mp4;base64,') == 2 * prompts  # base and edited, every prompt
    assert "Recipe SHA-256" in text and "transformer/" in text  # the manifest's hashes of the edited model


@needs_browser
def test_report_renders_in_chromium_table_and_videos(report, tmp_path):
    probed = tmp_path / "probed.html"
    text = report.read_text(encoding="utf-8")
    probed.write_text(text.replace(CSP, CSP + "; script-src 'unsafe-inline'").replace("</body>", PROBE + "</body>"))
    dom = _chromium("--dump-dom", probed.as_uri())
    found = re.search(r'<pre id="probe">(.*?)</pre>', dom.stdout, re.S)
    assert found and found.group(1) != "pending", dom.stderr[-2000:]
    seen = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    document = json.loads((report.parent / "eval.json").read_text())
    prompts = sum(document["metrics"]["counts"].values())
    assert seen["videos"] == 2 * prompts and seen["loaded"] == seen["videos"] and seen["errors"] == 0, seen
    assert seen["cells"][0] == ["metric", "base", "edited"] and seen["table_h"] > 50 and seen["table_w"] > 200, seen
    assert [row[0] for row in seen["cells"][1:]][0] == "forget rate: red"
    assert seen["plot_w"] > 100 and seen["hashes"] > 5, seen

    shot = tmp_path / "shot.png"
    _chromium(f"--screenshot={shot}", "--window-size=1100,900", report.as_uri())
    pixels = np.asarray(Image.open(shot).convert("RGB")).astype(int)
    assert pixels.shape[:2] == (900, 1100)
    assert (pixels.std(axis=(0, 1)) > 10).all()  # not a blank page: text, table rules, the plot
