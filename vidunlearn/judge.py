"""A deterministic oracle for the benchmark world (:mod:`vidunlearn.world`): reads a clip's
frames and reports its background, the object's colour, shape and motion.

API: :func:`judge_clip` (frames uint8 (F, H, W, 3), or float in [0, 1]) -> :class:`Judgement`;
``Judgement.correct(labels)`` -> {attribute: bool}; :func:`shape_margin` (how far a clip is from
being read as another shape, benchmarks/shape_margin.py). When no object is visible, colour, shape and
motion are ``"none"``; a visible object that does not move is ``"static"``.

How it reads a clip:
1. background: the median of the border pixels, nearest of ``BACKGROUNDS``;
2. object: pixels far from the background colour; fewer than ``MIN_AREA`` in most frames -> none;
3. colour: the median colour of the object's core pixels, nearest of ``COLOURS``;
4. shape, from the object's occupancy (each pixel's distance from the background over the
   object's: its share of object colour, whose sum over a window is the object's area whatever
   the blur), median over frames:
   - bottom-heaviness, (area below the middle of the box - area above) / area: the world's upright
     triangle 1/2, circle and square 0; at least ``BOTTOM_HEAVY`` -> triangle;
   - squareness, area / (widest row x tallest column): square 1, circle pi/4; at least
     ``SQUARENESS`` -> square, else circle.
   Both thresholds are the midpoints of the ideal values. Unlike the area over the bounding box of
   the first release, neither moves much when a decoder blurs the outline or tilts the object by
   a few degrees (tests/unit/test_world_judge.py);
5. motion: the least-squares slope of the object's centroid over frames; the larger axis wins.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .world import BACKGROUNDS, COLOURS, Labels

NONE = "none"
STATIC = "static"
MIN_AREA = 12          # pixels an object must cover in a frame to count as visible
OBJECT_DISTANCE = 60.0  # RGB distance from the background that marks a pixel as object
MIN_TRAVEL = 3.0       # px over the clip below which the object is static
BOTTOM_HEAVY = 0.25    # (area below the box's middle - area above) / area at least: triangle
SQUARENESS = (1 + np.pi / 4) / 2  # area / (widest row x tallest column) at least: square
OCCUPANCY_FLOOR = 0.15  # occupancy below this is background noise, not object
WINDOW = 3             # px around the object's box that its occupancy is summed over


@dataclass(frozen=True)
class Judgement(Labels):
    """What the judge read from a clip: the fields of :class:`Labels`, where colour, shape and
    motion may also be "none" (no object) and motion "static"."""

    def correct(self, labels: Labels, attributes: tuple[str, ...] = ("colour", "shape", "motion")) -> dict[str, bool]:
        return {a: self.get(a) == labels.get(a) for a in attributes}


def _nearest(colour: np.ndarray, table: dict[str, tuple[int, int, int]]) -> str:
    names = list(table)
    distances = np.linalg.norm(np.array([table[n] for n in names], np.float32) - colour[None, :], axis=1)
    return names[int(np.argmin(distances))]


def _as_uint8(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3:
        raise ValueError(f"expected frames (F, H, W, 3), got shape {frames.shape}")
    if frames.dtype != np.uint8:
        frames = np.clip(np.rint(frames.astype(np.float32) * 255.0), 0, 255).astype(np.uint8)
    return frames


def _shape_features(occupancy: np.ndarray, x0: int, x1: int, y0: int, y1: int) -> tuple[float, float]:
    """(bottom-heaviness, squareness) of one frame's object, whose half-occupancy box is
    x0..x1, y0..y1 (inclusive pixels)."""
    top = max(y0 - WINDOW, 0)
    window = occupancy[top:y1 + WINDOW + 1, max(x0 - WINDOW, 0):x1 + WINDOW + 1]
    window = np.where(window >= OCCUPANCY_FLOOR, window, 0.0)
    rows = window.sum(axis=1)
    area = float(rows.sum())
    middle = (y0 + y1 + 1) / 2 - top  # in window rows; row r spans [r, r + 1)
    below = np.clip(np.arange(len(rows)) + 1 - middle, 0.0, 1.0)  # share of each row below it
    bottom_heavy = float((rows * below).sum() * 2 - area) / area
    squareness = area / float(rows.max() * window.sum(axis=0).max())
    return bottom_heavy, squareness


def _shape(features: list[tuple[float, float]]) -> str:
    bottom_heavy, squareness = np.median(np.array(features), axis=0)
    if bottom_heavy >= BOTTOM_HEAVY:
        return "triangle"
    return "square" if squareness >= SQUARENESS else "circle"


def _read(frames: np.ndarray) -> tuple[str, str, list, list, list]:
    """(background, colour, shape features, frame indices, centroids) of a clip's object; colour "none"
    when no object is visible, and no features when too few frames show it (steps 1-4 of the module's)."""
    clip = _as_uint8(frames).astype(np.float32)
    border = np.concatenate([clip[:, 0], clip[:, -1], clip[:, :, 0], clip[:, :, -1]], axis=1).reshape(-1, 3)
    background_rgb = np.median(border, axis=0)
    background = _nearest(background_rgb, BACKGROUNDS)

    distance = np.linalg.norm(clip - background_rgb, axis=-1)  # (F, H, W)
    rough = distance > OBJECT_DISTANCE
    visible = rough.reshape(len(clip), -1).sum(axis=1) >= MIN_AREA
    if visible.sum() * 2 <= len(clip):
        return background, NONE, [], [], []

    core = clip[rough & visible[:, None, None]]
    colour_rgb = np.median(core, axis=0)
    colour = _nearest(colour_rgb, COLOURS)

    # Occupancy: each pixel's share of object colour (contrast 0: any pixel off the background is
    # all object). Refined mask: closer to the object's colour than to the background.
    contrast = float(np.linalg.norm(colour_rgb - background_rgb))
    with np.errstate(divide="ignore", invalid="ignore"):
        occupancy = np.clip(np.nan_to_num(distance / contrast, nan=0.0, posinf=1.0), 0.0, 1.0)
    mask = occupancy > 0.5  # so a frame's occupancy area is > 0 wherever the mask has pixels
    features, times, centres = [], [], []
    for f in np.flatnonzero(visible):
        ys, xs = np.nonzero(mask[f])
        if len(xs) < MIN_AREA:
            continue
        features.append(_shape_features(occupancy[f], xs.min(), xs.max(), ys.min(), ys.max()))
        times.append(f)
        centres.append((xs.mean(), ys.mean()))
    if len(times) * 2 <= len(clip):
        return background, colour, [], [], []
    return background, colour, features, times, centres


def judge_clip(frames: np.ndarray) -> Judgement:
    """Judge one clip. ``frames``: uint8 (F, H, W, 3), or float in [0, 1] (as pipelines return)."""
    background, colour, features, times, centres = _read(frames)
    if not features:
        return Judgement(colour, NONE, NONE, background)
    shape = _shape(features)

    t = np.array(times, np.float32)
    c = np.array(centres, np.float32)
    slope = np.polyfit(t, c, 1)[0] * (len(frames) - 1)  # (dx, dy) over the whole clip
    dx, dy = float(slope[0]), float(slope[1])
    if max(abs(dx), abs(dy)) < MIN_TRAVEL:
        motion = STATIC
    elif abs(dx) >= abs(dy):
        motion = "right" if dx > 0 else "left"
    else:
        motion = "down" if dy > 0 else "up"
    return Judgement(colour, shape, motion, background)


def shape_margin(frames: np.ndarray, shape: str) -> float | None:
    """How far a clip's object is inside the judge's region for ``shape`` (triangle, square or circle),
    in the units of the two thresholds of step 4: bottom-heaviness - ``BOTTOM_HEAVY`` for a triangle;
    for a square or circle the smaller of how far it is below ``BOTTOM_HEAVY`` and how far its squareness
    is on its side of ``SQUARENESS``. > 0: the judge reads ``shape``; < 0: another shape; a clip near 0
    is one that a small change of the model tips over. None where the judge reads no shape."""
    features = _read(frames)[2]
    if not features:
        return None
    bottom_heavy, squareness = (float(v) for v in np.median(np.array(features), axis=0))
    if shape == "triangle":
        return bottom_heavy - BOTTOM_HEAVY
    if shape not in ("square", "circle"):
        raise ValueError(f"shape_margin reads triangle, square or circle, not {shape!r}")
    side = squareness - SQUARENESS if shape == "square" else SQUARENESS - squareness
    return min(BOTTOM_HEAVY - bottom_heavy, side)


def accuracy(judgements: list[Judgement], labels: list[Labels],
             attributes: tuple[str, ...] = ("colour", "shape", "motion", "background")) -> dict[str, float]:
    """Share of clips judged correct, per attribute."""
    if len(judgements) != len(labels) or not labels:
        raise ValueError("need as many judgements as labels, at least one")
    return {a: float(np.mean([j.get(a) == lab.get(a) for j, lab in zip(judgements, labels)])) for a in attributes}
