"""Small PNG examples for docs/report.md from one apply + eval run: the model card (rendered),
the top of the contact sheet, and a screenshot of report.html (headless Chromium).

    python scripts/doc_examples.py --card OUT/README.md --eval EVAL_FOLDER --docs docs/examples

Needs Chromium (Debian: apt-get install chromium) and markdown-it-py (installed with rich).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

CARD_CSS = """body{font:15px/1.45 system-ui,sans-serif;margin:20px 28px;max-width:820px;color:#111}
table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:3px 8px}th{background:#f3f3f3}
pre{background:#f6f6f6;padding:8px;font-size:12px;overflow:hidden}code{font-size:13px}
.meta{font:12px monospace;background:#fafafa;border:1px solid #e4e4e4;padding:6px;white-space:pre}"""


def _browser() -> str:
    found = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if found is None:
        raise SystemExit("no Chromium found: apt-get install chromium")
    return found


def screenshot(html: Path, png: Path, width: int, height: int) -> None:
    subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--virtual-time-budget=5000", f"--window-size={width},{height}", f"--screenshot={png}",
                    html.resolve().as_uri()], check=True, capture_output=True, timeout=120)


def trim(png: Path, keep: int = 16) -> None:
    """Cut the white rows below the content, keep ``keep`` px of margin; save as a small palette PNG."""
    image = Image.open(png).convert("RGB")
    pixels = np.asarray(image)
    inked = np.where((pixels < 245).any(axis=(1, 2)))[0]
    bottom = min(image.size[1], int(inked.max()) + keep) if inked.size else image.size[1]
    image.crop((0, 0, image.size[0], bottom)).quantize(colors=128).save(png, optimize=True)


def card_html(readme: Path) -> str:
    from markdown_it import MarkdownIt

    text = readme.read_text(encoding="utf-8")
    front = re.match(r"---\n(.*?)\n---\n", text, re.S)
    meta = f'<div class="meta">{front.group(1)}</div>' if front else ""
    body = MarkdownIt("commonmark").enable("table").render(text[front.end():] if front else text)
    return f'<!doctype html><meta charset="utf-8"><style>{CARD_CSS}</style><body>{meta}{body}</body>'


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--card", type=Path, required=True, help="README.md of an apply output")
    parser.add_argument("--eval", type=Path, required=True, help="eval --html output folder")
    parser.add_argument("--docs", type=Path, default=Path("docs/examples"))
    parser.add_argument("--sheet-height", type=int, default=820, help="px of the contact sheet's top to keep")
    args = parser.parse_args()
    args.docs.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as folder:
        page = Path(folder) / "card.html"
        page.write_text(card_html(args.card), encoding="utf-8")
        screenshot(page, args.docs / "card.png", 900, 2400)
    trim(args.docs / "card.png")
    screenshot(args.eval / "report.html", args.docs / "report.png", 1000, 1700)
    trim(args.docs / "report.png")
    sheet = Image.open(args.eval / "sheet.png").convert("RGB")
    sheet.crop((0, 0, sheet.size[0], min(args.sheet_height, sheet.size[1]))).quantize(colors=128).save(
        args.docs / "sheet.png", optimize=True)
    for name in ("card.png", "sheet.png", "report.png"):
        path = args.docs / name
        print(f"{path}  {Image.open(path).size}  {path.stat().st_size // 1024} KiB")


if __name__ == "__main__":
    main()
