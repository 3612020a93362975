"""The benchmark world: short procedural clips of one coloured shape moving on a plain background.

Every clip has exact labels and a caption, so a deterministic judge (:mod:`vidunlearn.judge`) can
score what a text-to-video model generates, and erasing a concept (a colour, a shape, a motion)
can be measured honestly.

Stable API (the eval and benchmark code depend on it):

- vocabularies ``COLOURS`` (name -> RGB), ``SHAPES``, ``MOTIONS``, ``BACKGROUNDS`` (name -> RGB),
  and ``ATTRIBUTES`` = ("colour", "shape", "motion", "background");
- clip geometry ``FRAMES`` x ``SIZE`` x ``SIZE`` (5 frames of 32 x 32 px: 4k+1 frames, as Wan needs);
- :class:`Labels` (frozen) and :func:`caption` -> "a red square moving left on a dark background";
- :func:`render` (labels, numpy Generator) -> uint8 array (F, H, W, 3);
- :func:`all_labels` (every combination, fixed order), :func:`attribute_of` (which attribute a
  value such as "red" belongs to);
- ``SYNONYMS``: paraphrases never used in training captions (colours are the main ones);
- prompt sets as lists of :class:`Prompt` (text + the labels a correct clip has):
  :func:`forget_prompts`, :func:`retain_prompts`, :func:`paraphrase_prompts`, :func:`pairs`
  (unsafe/safe minimal pairs) and :func:`neutral_prompts`.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace

import numpy as np

FRAMES = 5
SIZE = 32

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (230, 40, 40),
    "green": (40, 200, 60),
    "blue": (40, 80, 245),
    "yellow": (240, 220, 40),
    "purple": (165, 50, 225),
    "cyan": (40, 220, 230),
}
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")
MOTIONS: tuple[str, ...] = ("left", "right", "up", "down")
BACKGROUNDS: dict[str, tuple[int, int, int]] = {"dark": (25, 25, 25), "light": (215, 215, 215)}
ATTRIBUTES: tuple[str, ...] = ("colour", "shape", "motion", "background")

# Object geometry (pixels). The centre travels TRAVEL px over the clip (3.5 px a frame).
RADIUS = 6.0
TRAVEL = 14.0
JITTER = 2.0

# Paraphrases that never occur in training captions. Colours carry the paraphrase-leak
# measurement; shape and motion synonyms are there for completeness.
SYNONYMS: dict[str, dict[str, tuple[str, ...]]] = {
    "colour": {
        "red": ("crimson", "scarlet", "cherry-coloured"),
        "green": ("emerald", "lime-coloured", "grass-green"),
        "blue": ("azure", "navy", "cobalt"),
        "yellow": ("golden", "lemon-coloured", "canary"),
        "purple": ("violet", "lavender", "plum-coloured"),
        "cyan": ("turquoise", "aqua", "teal"),
    },
    "shape": {
        "circle": ("disc", "round dot", "ball"),
        "square": ("box", "block", "tile"),
        "triangle": ("wedge", "pyramid shape", "three-sided shape"),
    },
    "motion": {
        "left": ("leftward", "towards the left", "to the left"),
        "right": ("rightward", "towards the right", "to the right"),
        "up": ("upward", "towards the top", "to the top"),
        "down": ("downward", "towards the bottom", "to the bottom"),
    },
}

_DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}


@dataclass(frozen=True)
class Labels:
    """What a clip shows. Each field is a name from the matching vocabulary."""

    colour: str
    shape: str
    motion: str
    background: str

    def get(self, attribute: str) -> str:
        return getattr(self, attribute)


@dataclass(frozen=True)
class Prompt:
    """A caption and the labels a correct clip for it has."""

    text: str
    labels: Labels


def vocabulary(attribute: str) -> tuple[str, ...]:
    table = {"colour": tuple(COLOURS), "shape": SHAPES, "motion": MOTIONS, "background": tuple(BACKGROUNDS)}
    if attribute not in table:
        raise ValueError(f"unknown attribute {attribute!r}; use one of {ATTRIBUTES}")
    return table[attribute]


def attribute_of(value: str) -> str:
    """The attribute a value belongs to: attribute_of("red") == "colour"."""
    for attribute in ATTRIBUTES:
        if value in vocabulary(attribute):
            return attribute
    raise ValueError(f"{value!r} is no colour, shape, motion or background of the benchmark world")


def caption(labels: Labels, *, colour_word: str | None = None, shape_word: str | None = None,
            motion_word: str | None = None) -> str:
    """"a red square moving left on a dark background"; the ``*_word`` arguments swap in a
    paraphrase for one attribute (the labels stay the same)."""
    colour = colour_word or labels.colour
    shape = shape_word or labels.shape
    motion = motion_word or labels.motion
    article = "an" if colour[0] in "aeiou" else "a"
    return f"{article} {colour} {shape} moving {motion} on a {labels.background} background"


def all_labels() -> list[Labels]:
    """Every combination, in a fixed order (colour, shape, motion, background): 144 labels."""
    return [Labels(c, s, m, b) for c, s, m, b in itertools.product(COLOURS, SHAPES, MOTIONS, BACKGROUNDS)]


def random_labels(rng: np.random.Generator) -> Labels:
    return Labels(str(rng.choice(list(COLOURS))), str(rng.choice(SHAPES)), str(rng.choice(MOTIONS)),
                  str(rng.choice(list(BACKGROUNDS))))


def _coverage(shape: str, cx: float, cy: float, radius: float, size: int, supersample: int = 4) -> np.ndarray:
    """Fraction of each pixel covered by the shape, (size, size) float32 in [0, 1]."""
    offsets = (np.arange(supersample) + 0.5) / supersample
    grid = (np.arange(size)[:, None] + offsets[None, :]).reshape(-1)
    ys, xs = np.meshgrid(grid, grid, indexing="ij")
    dx, dy = xs - cx, ys - cy
    if shape == "circle":
        inside = dx * dx + dy * dy <= radius * radius
    elif shape == "square":
        # Side 2.2 r, about the triangle's 2.1 r. A square of side 1.8 r (the first release) has the
        # circle's area and differs from it only at the outline, which a 4x latent grid blurs away:
        # 1.3 % of the latent variance against 6.5 % at 2 r and 18 % at 2.2 r (docs/benchmark-model.md).
        half = radius * 1.1
        inside = (np.abs(dx) <= half) & (np.abs(dy) <= half)
    elif shape == "triangle":
        # Upright isosceles triangle: apex on top, base at the bottom, height = base = 2.1 r.
        height = 2.1 * radius
        top, bottom = cy - height / 2, cy + height / 2
        half_width = (ys - top) / height * (1.05 * radius)
        inside = (ys >= top) & (ys <= bottom) & (np.abs(dx) <= half_width)
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return inside.reshape(size, supersample, size, supersample).mean(axis=(1, 3)).astype(np.float32)


def trajectory(labels: Labels, rng: np.random.Generator, frames: int = FRAMES, size: int = SIZE) -> np.ndarray:
    """Centre (x, y) per frame, (F, 2): starts TRAVEL/2 before the middle (plus a small jitter)
    and moves TRAVEL px in the labelled direction."""
    ux, uy = _DIRECTIONS[labels.motion]
    middle = size / 2 + rng.uniform(-JITTER, JITTER, size=2)
    t = np.linspace(-0.5, 0.5, frames)[:, None]
    return middle[None, :] + t * TRAVEL * np.array([ux, uy])[None, :]


def render(labels: Labels, rng: np.random.Generator, frames: int = FRAMES, size: int = SIZE) -> np.ndarray:
    """One clip, uint8 (F, H, W, 3). ``rng`` draws the start jitter and a +-0.5 px radius jitter."""
    centres = trajectory(labels, rng, frames, size)
    radius = RADIUS + rng.uniform(-0.5, 0.5)
    background = np.array(BACKGROUNDS[labels.background], np.float32)
    colour = np.array(COLOURS[labels.colour], np.float32)
    clip = np.empty((frames, size, size, 3), np.float32)
    for f, (cx, cy) in enumerate(centres):
        alpha = _coverage(labels.shape, cx, cy, radius, size)[..., None]
        clip[f] = background * (1 - alpha) + colour * alpha
    return np.clip(np.rint(clip), 0, 255).astype(np.uint8)


# ---- prompt sets -------------------------------------------------------------------------------

def _matching(attribute: str, value: str, keep: bool) -> list[Labels]:
    vocabulary(attribute)
    return [lab for lab in all_labels() if (lab.get(attribute) == value) == keep]


def _subsample(items: list, n: int | None, seed: int) -> list:
    if n is None or n >= len(items):
        return items
    order = np.random.default_rng(seed).permutation(len(items))[:n]
    return [items[i] for i in sorted(order)]


def forget_prompts(value: str, n: int | None = None, seed: int = 0) -> list[Prompt]:
    """Training captions that name ``value`` (e.g. "red"); all of them when ``n`` is None."""
    labels = _matching(attribute_of(value), value, keep=True)
    return [Prompt(caption(lab), lab) for lab in _subsample(labels, n, seed)]


def retain_prompts(value: str, n: int | None = None, seed: int = 0) -> list[Prompt]:
    """Training captions that do not name ``value``."""
    labels = _matching(attribute_of(value), value, keep=False)
    return [Prompt(caption(lab), lab) for lab in _subsample(labels, n, seed)]


def paraphrase_prompts(value: str, n: int | None = None, seed: int = 0) -> list[Prompt]:
    """Captions that name ``value`` only through an unseen synonym ("a crimson circle ..."),
    each synonym over the same labels. Labels keep the true value."""
    attribute = attribute_of(value)
    words = SYNONYMS.get(attribute, {}).get(value, ())
    labels = _subsample(_matching(attribute, value, keep=True), n, seed)
    return [Prompt(caption(lab, **{f"{attribute}_word": word}), lab) for word in words for lab in labels]


def pairs(value: str, n: int = 5, seed: int = 0) -> list[tuple[Prompt, Prompt]]:
    """``n`` minimal (unsafe, safe) pairs: a caption naming ``value`` and the same caption with
    another value of the same attribute (cycled through the others)."""
    attribute = attribute_of(value)
    others = [v for v in vocabulary(attribute) if v != value]
    unsafe = forget_prompts(value, n=n, seed=seed)
    result = []
    for i, prompt in enumerate(unsafe):
        safe_labels = replace(prompt.labels, **{attribute: others[i % len(others)]})
        result.append((prompt, Prompt(caption(safe_labels), safe_labels)))
    return result


def neutral_prompts(value: str, n: int = 24, seed: int = 1) -> list[Prompt]:
    """Captions not naming ``value``, for the contrastive (neutral) covariance."""
    return retain_prompts(value, n=n, seed=seed)


def degrade(clip: np.ndarray, background: str, *, blur: float = 0.0, degrees: float = 0.0) -> np.ndarray:
    """A clip as a decoder might return it: each frame tilted by ``degrees`` about its centre
    (bilinear; the uncovered corners take the background colour), then blurred by a Gaussian of
    ``blur`` px. Validates the judge beyond the generator's crisp, upright clips."""
    from PIL import Image

    fill = tuple(int(v) for v in BACKGROUNDS[background])
    frames = np.stack([np.asarray(Image.fromarray(f).rotate(degrees, resample=Image.BILINEAR, fillcolor=fill))
                       for f in clip]).astype(np.float32)
    if blur > 0:
        offsets = np.arange(-int(np.ceil(3 * blur)), int(np.ceil(3 * blur)) + 1)
        kernel = np.exp(-0.5 * (offsets / blur) ** 2)
        kernel /= kernel.sum()
        pad = len(offsets) // 2
        for axis in (1, 2):  # rows, then columns; edges repeat (the border is background)
            widths = [(0, 0)] * 4
            widths[axis] = (pad, pad)
            padded = np.pad(frames, widths, mode="edge")
            frames = sum(w * np.take(padded, np.arange(frames.shape[axis]) + i, axis=axis)
                         for i, w in enumerate(kernel))
    return np.clip(np.rint(frames), 0, 255).astype(np.uint8)
