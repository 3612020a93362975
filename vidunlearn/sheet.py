"""The contact sheet (PNG) that ``eval`` and ``sample`` write: a grid a person reads at a glance.

One row per prompt: on the left the prompt and its verdicts, legible at 100 % zoom (FreeType
text, 15/13 px), then one strip of evenly spaced frames per column (``base``, ``edited``) side by
side. Judged rows are marked FAIL or ok; failed rows come first, on a pink background.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .video import _atomic_target, _pick_frames, _to_uint8

PAD = 8                 # px around the sheet and between a row's parts
FRAME_GAP = 2           # px between the frames of one strip
COLUMN_GAP = 16         # px between the strips of two columns
MIN_FRAME_H = 96        # frames are upscaled (nearest, integer factor) to at least this height
TEXT_W = 380            # px of the text panel
PROMPT_PX, NOTE_PX = 15, 13
FAIL_BG, OK_BG, RULE = (253, 226, 226), (255, 255, 255), (210, 210, 210)
FAIL_INK, OK_INK, INK, GREY = (180, 0, 0), (0, 120, 40), (0, 0, 0), (90, 90, 90)


@dataclass(frozen=True)
class SheetRow:
    prompt: str
    clips: tuple[np.ndarray, ...]   # one clip (F, H, W, 3) per column, float in [0, 1] or uint8
    lines: tuple[str, ...] = ()     # verdicts and the like, printed under the prompt
    tag: str = ""                   # e.g. the prompt's group, printed before the status
    failed: bool | None = None      # None: not judged (``sample``): no FAIL/ok mark


def _wrap(text: str, font: ImageFont.FreeTypeFont, width: int, draw: ImageDraw.ImageDraw) -> list[str]:
    """Greedy word wrap to ``width`` px (a word longer than the width gets a line of its own)."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        line = ""
        for word in paragraph.split(" "):
            candidate = f"{line} {word}" if line else word
            if line and draw.textlength(candidate, font=font) > width:
                lines.append(line)
                line = word
            else:
                line = candidate
        lines.append(line)
    return lines


def _text_block(row: SheetRow, fonts: tuple, draw: ImageDraw.ImageDraw) -> list[tuple[str, object, tuple]]:
    """(text, font, colour) lines of a row's text panel."""
    big, small = fonts
    status = " · ".join(([] if row.failed is None else ["FAIL" if row.failed else "ok"]) + ([row.tag] if row.tag else []))
    block = [(status, small, FAIL_INK if row.failed else OK_INK if row.failed is False else GREY)] if status else []
    block += [(line, big, INK) for line in _wrap(row.prompt, big, TEXT_W, draw)]
    block += [(line, small, GREY) for note in row.lines for line in _wrap(note, small, TEXT_W, draw)]
    return block


def _line_h(font: ImageFont.FreeTypeFont) -> int:
    ascent, descent = font.getmetrics()
    return ascent + descent + 2


def _strip(clip: np.ndarray, frames: int) -> np.ndarray:
    """``frames`` evenly spaced frames of ``clip`` upscaled and joined left to right: (H', W', 3)."""
    picked = _pick_frames(_to_uint8(clip), frames)
    scale = max(1, math.ceil(MIN_FRAME_H / picked.shape[1]))
    picked = picked.repeat(scale, axis=1).repeat(scale, axis=2)
    k, h, w, _ = picked.shape
    strip = np.full((h, k * w + (k - 1) * FRAME_GAP, 3), 255, dtype=np.uint8)
    for i, frame in enumerate(picked):
        strip[:, i * (w + FRAME_GAP): i * (w + FRAME_GAP) + w] = frame
    return strip


def compare_sheet(rows: list[SheetRow], columns: tuple[str, ...], path: Path, frames: int = 4,
                  footer: str = "") -> None:
    """Write the PNG grid: a header (``columns`` over their strips), then one row per
    :class:`SheetRow`, failed rows first (otherwise in the given order), then ``footer``.
    Raises ``ValueError`` on no rows, a row with another number of clips than ``columns``, or a bad clip."""
    if not rows:
        raise ValueError("compare_sheet needs at least one row")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    if any(len(r.clips) != len(columns) for r in rows):
        raise ValueError(f"every row needs one clip per column {columns}")
    rows = sorted(rows, key=lambda r: not r.failed)  # None sorts with ok  # stable: failures first, order kept otherwise
    fonts = (ImageFont.load_default(size=PROMPT_PX), ImageFont.load_default(size=NOTE_PX))
    draw = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    strips = [[_strip(clip, frames) for clip in row.clips] for row in rows]
    blocks = [_text_block(row, fonts, draw) for row in rows]
    column_w = [max(s[c].shape[1] for s in strips) for c in range(len(columns))]
    heights = [max(max(s.shape[0] for s in row_strips), sum(_line_h(f) for _, f, _ in block))
               for row_strips, block in zip(strips, blocks)]
    header_h = _line_h(fonts[0]) + PAD
    footer_h = _line_h(fonts[1]) + PAD if footer else 0
    width = PAD + TEXT_W + PAD + sum(column_w) + COLUMN_GAP * (len(columns) - 1) + PAD
    height = PAD + header_h + sum(h + 2 * PAD + 1 for h in heights) + footer_h + PAD
    sheet = Image.new("RGB", (width, height), "white")
    canvas = ImageDraw.Draw(sheet)
    x0 = PAD + TEXT_W + PAD
    canvas.text((PAD, PAD), "prompt and verdict", fill=INK, font=fonts[0])
    for c, name in enumerate(columns):
        canvas.text((x0 + sum(column_w[:c]) + COLUMN_GAP * c, PAD), name, fill=INK, font=fonts[0])
    y = PAD + header_h
    for row, row_strips, block, h in zip(rows, strips, blocks, heights):
        canvas.rectangle((0, y, width - 1, y + h + 2 * PAD - 1), fill=FAIL_BG if row.failed else OK_BG)
        ty = y + PAD
        for text, font, colour in block:
            canvas.text((PAD, ty), text, fill=colour, font=font)
            ty += _line_h(font)
        for c, strip in enumerate(row_strips):
            sheet.paste(Image.fromarray(strip), (x0 + sum(column_w[:c]) + COLUMN_GAP * c, y + PAD))
        y += h + 2 * PAD
        canvas.line((0, y, width - 1, y), fill=RULE)
        y += 1
    if footer:
        canvas.text((PAD, y + PAD // 2), footer, fill=GREY, font=fonts[1])
    with _atomic_target(Path(path)) as tmp:
        sheet.save(tmp, format="PNG")
