"""Video I/O: H.264 MP4s via PyAV and side-by-side clips (the PNG contact sheet: :mod:`vidunlearn.sheet`).

Every clip is a numpy array of shape ``(F, H, W, 3)`` (frames, height, width, RGB), either float
in ``[0, 1]`` or ``uint8``. Files are written atomically: into a ``<name>.partial`` sibling that
replaces the target only once it is complete, and is removed if anything fails.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import av
import numpy as np

_CRF = 18


def _to_uint8(frames: np.ndarray) -> np.ndarray:
    """Validate a clip and return it as contiguous ``uint8`` of shape ``(F, H, W, 3)``.

    Floats are clipped to ``[0, 1]`` and scaled by 255 (NaN becomes 0); ``uint8`` passes through.
    Raises ``ValueError`` for another shape or dtype, or an empty clip.
    """
    arr = np.asarray(frames)
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"expected frames of shape (F, H, W, 3), got {arr.shape}")
    if min(arr.shape[:3]) == 0:
        raise ValueError(f"expected a non-empty clip, got shape {arr.shape}")
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if np.issubdtype(arr.dtype, np.floating):
        arr = np.nan_to_num(arr.astype(np.float32), nan=0.0)
        return np.ascontiguousarray((np.clip(arr, 0.0, 1.0) * 255.0).round().astype(np.uint8))
    raise ValueError(f"expected float frames in [0, 1] or uint8, got dtype {arr.dtype}")


@contextlib.contextmanager
def _atomic_target(path: Path) -> Iterator[Path]:
    """Yield a temp sibling of ``path``; move it onto ``path`` on success, delete it on error."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_mp4(frames: np.ndarray, path: Path, fps: int = 8) -> None:
    """Encode a clip ``(F, H, W, 3)`` (float in [0, 1] or uint8) as H.264 MP4 at ``path``.

    libx264, yuv420p, CRF 18. yuv420p needs even sides, so an odd height or width is padded by
    one edge-replicated pixel at the bottom/right: the file holds ``(H + H % 2, W + W % 2)``.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    with _atomic_target(Path(path)) as tmp:
        clip = _to_uint8(frames)
        _, h, w, _ = clip.shape
        if h % 2 or w % 2:
            clip = np.pad(clip, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        with av.open(str(tmp), mode="w", format="mp4") as container:
            stream = container.add_stream("libx264", rate=Fraction(fps))
            stream.width = clip.shape[2]
            stream.height = clip.shape[1]
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(_CRF)}
            for index, image in enumerate(clip):
                # libx264 through PyAV 18 is not bit-reproducible: the same tiny clip encoded 100 times gave 2 to 4
                # different files (pixels up to 28/255 apart), single-threaded too. Converting and timestamping each
                # frame here makes it rarer; clips are compared by their pixels' SHA-256 (runstore), never by file.
                frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuv420p")
                frame.pts, frame.time_base = index, Fraction(1, fps)
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)


def read_video(path: Path) -> np.ndarray:
    """Decode every frame of the first video stream of ``path`` as ``uint8`` ``(F, H, W, 3)``."""
    with av.open(str(path), mode="r") as container:
        frames = [f.to_ndarray(format="rgb24") for f in container.decode(video=0)]
    if not frames:
        raise ValueError(f"{path}: no video frames could be decoded")
    return np.stack(frames)


def side_by_side(videos: list[np.ndarray], gap: int = 4) -> np.ndarray:
    """Join clips ``(F, H, W_i, 3)`` left to right with ``gap`` white columns between them.

    Returns ``uint8`` ``(F, H, sum(W_i) + gap * (len(videos) - 1), 3)``. Raises ``ValueError`` if
    the list is empty, ``gap`` is negative, or frame counts or heights differ.
    """
    if not videos:
        raise ValueError("side_by_side needs at least one video")
    if gap < 0:
        raise ValueError(f"gap must be >= 0, got {gap}")
    clips = [_to_uint8(v) for v in videos]
    counts = {c.shape[0] for c in clips}
    if len(counts) != 1:
        raise ValueError(f"videos have different frame counts: {[c.shape[0] for c in clips]}")
    heights = {c.shape[1] for c in clips}
    if len(heights) != 1:
        raise ValueError(f"videos have different heights: {[c.shape[1] for c in clips]}")
    f, h = clips[0].shape[:2]
    spacer = np.full((f, h, gap, 3), 255, dtype=np.uint8)
    parts: list[np.ndarray] = []
    for i, c in enumerate(clips):
        if i:
            parts.append(spacer)
        parts.append(c)
    return np.concatenate(parts, axis=2)


def _pick_frames(clip: np.ndarray, n: int) -> np.ndarray:
    """Return ``k = min(n, F)`` evenly spaced frames ``(k, H, W, 3)``, first and last included."""
    k = min(n, clip.shape[0])
    idx = np.linspace(0, clip.shape[0] - 1, k).round().astype(int)
    return clip[idx]
