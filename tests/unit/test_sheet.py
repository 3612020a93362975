"""The contact sheet (vidunlearn.sheet): a grid, one row per prompt, columns side by side,
failures first, text at a legible size, written atomically."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from vidunlearn.sheet import FAIL_BG, MIN_FRAME_H, PAD, TEXT_W, SheetRow, compare_sheet


def _clip(value: int, f: int = 9, h: int = 32, w: int = 32) -> np.ndarray:
    return np.full((f, h, w, 3), value, dtype=np.uint8)


def test_grid_one_row_per_prompt_columns_side_by_side_failures_first(tmp_path: Path) -> None:
    rows = [SheetRow("a red square moving left", (_clip(10), _clip(20)), ("base: red square left",), "retain", False),
            SheetRow("a red circle moving up", (_clip(30), _clip(40)), ("edited: red circle up",), "forget", True),
            SheetRow("a blue circle", (_clip(50), _clip(60)), (), "forget", False)]
    path = tmp_path / "sheet.png"
    compare_sheet(rows, ("base", "edited"), path, frames=4)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sheet.png"]
    pixels = np.asarray(Image.open(path).convert("RGB"))
    height, width, _ = pixels.shape
    frame = MIN_FRAME_H  # 32 px frames upscaled x3
    strip = 4 * frame + 3 * 2
    assert width == PAD + TEXT_W + PAD + 2 * strip + 16 + PAD  # a grid, not one tall column
    assert height < width
    # frames of each row sit side by side: base strip then edited strip, at the same height
    x_base, x_edited = PAD + TEXT_W + PAD, PAD + TEXT_W + PAD + strip + 16
    found = []
    for y in range(height):
        if (pixels[y, x_base] == pixels[y, x_base + strip - 1]).all() and pixels[y, x_base, 0] in (10, 30, 50):
            found.append((int(pixels[y, x_base, 0]), int(pixels[y, x_edited, 0])))
    order = list(dict.fromkeys(found))
    assert order == [(30, 40), (10, 20), (50, 60)]  # the failed row first, then the given order
    # the failed row is on the failure background and its band holds dark text in the text panel
    first_band = pixels[PAD + 30: PAD + 30 + frame]
    assert (first_band[:, PAD + TEXT_W - 2] == FAIL_BG).all()
    assert (pixels[:, PAD:PAD + TEXT_W] < 100).all(axis=2).sum() > 200  # text is drawn


def test_text_is_legible_size_and_wraps_long_prompts(tmp_path: Path) -> None:
    short, long = tmp_path / "short.png", tmp_path / "long.png"
    compare_sheet([SheetRow("a circle", (_clip(0),))], ("edited",), short)
    compare_sheet([SheetRow("a very long prompt " * 12, (_clip(0),))], ("edited",), long)
    a, b = Image.open(short), Image.open(long)
    assert a.size[0] == b.size[0]  # wrapped, not widened
    assert b.size[1] > a.size[1]   # more lines
    pixels = np.asarray(a.convert("L"))
    ink_rows = np.where((pixels[:, PAD:PAD + TEXT_W] < 128).any(axis=1))[0]
    assert ink_rows.max() - ink_rows.min() >= 10  # glyphs at least ~10 px tall, not the 6 px bitmap font


def test_bad_input_writes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "sheet.png"
    with pytest.raises(ValueError):
        compare_sheet([], ("base",), path)
    with pytest.raises(ValueError):
        compare_sheet([SheetRow("x", (_clip(0),))], ("base", "edited"), path)
    with pytest.raises(ValueError):
        compare_sheet([SheetRow("x", (np.zeros((3, 8, 8)),))], ("base",), path)
    assert not list(tmp_path.iterdir())


def test_failed_save_removes_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken_save(self: Image.Image, fp: Path, format: str | None = None, **kw: object) -> None:
        Path(fp).write_bytes(b"half a png")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        compare_sheet([SheetRow("x", (_clip(0),))], ("base",), tmp_path / "sheet.png")
    assert not list(tmp_path.iterdir())
