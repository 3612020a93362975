"""Tests for vidunlearn.video: MP4 round trips, side-by-side, atomic writes."""

from __future__ import annotations

import types
from pathlib import Path

import av
import numpy as np
import pytest

import vidunlearn.video as video_mod
from vidunlearn.video import _to_uint8, read_video, side_by_side, write_mp4


def _gradient_clip(f: int, h: int, w: int) -> np.ndarray:
    """A smooth float clip (f, h, w, 3) in [0, 1]: horizontal/vertical ramps drifting over time."""
    t = np.linspace(0.0, 1.0, f)[:, None, None]
    y = np.linspace(0.0, 1.0, h)[None, :, None]
    x = np.linspace(0.0, 1.0, w)[None, None, :]
    r = 0.2 + 0.6 * x + 0.0 * y + 0.1 * t
    g = 0.2 + 0.6 * y + 0.0 * x + 0.1 * t
    b = 0.5 + 0.3 * (x - y) / 2 + 0.0 * t
    return np.stack([r, g, b], axis=-1).astype(np.float32)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.rglob("*") if p.is_file())


def test_to_uint8_converts_and_validates() -> None:
    values = np.array([0.0, 0.5, 1.0, 2.0, -1.0, np.nan], dtype=np.float32)
    out = _to_uint8(values.reshape(1, 1, 2, 3))
    assert out.dtype == np.uint8
    assert out.ravel().tolist() == [0, 128, 255, 255, 0, 0]
    u = np.arange(12, dtype=np.uint8).reshape(1, 2, 2, 3)
    assert np.array_equal(_to_uint8(u), u)
    with pytest.raises(ValueError):
        _to_uint8(np.zeros((2, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError):
        _to_uint8(np.zeros((2, 4, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError):
        _to_uint8(np.zeros((2, 4, 4, 3), dtype=np.int64))


def test_roundtrip_keeps_frame_count_and_size(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "dir" / "clip.mp4"
    write_mp4(_gradient_clip(9, 32, 48), path, fps=8)
    assert path.is_file()
    assert _leftovers(tmp_path) == ["clip.mp4"]
    back = read_video(path)
    assert back.dtype == np.uint8
    assert back.shape == (9, 32, 48, 3)
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264"
        assert stream.average_rate == 8


def test_roundtrip_pixels_close_to_input(tmp_path: Path) -> None:
    clip = _gradient_clip(9, 32, 48)
    path = tmp_path / "clip.mp4"
    write_mp4(clip, path)
    back = read_video(path).astype(np.float64)
    expected = _to_uint8(clip).astype(np.float64)
    mae = np.abs(back - expected).mean()
    assert mae < 10, mae
    # Sanity check that the metric can fail: the clip is not confused with its reverse.
    assert np.abs(back - expected[:, :, ::-1]).mean() > 10


def test_uint8_input_roundtrip(tmp_path: Path) -> None:
    clip = _to_uint8(_gradient_clip(5, 16, 16))
    path = tmp_path / "u8.mp4"
    write_mp4(clip, path, fps=4)
    back = read_video(path)
    assert back.shape == clip.shape
    assert np.abs(back.astype(int) - clip.astype(int)).mean() < 10


def test_odd_size_is_padded_to_even(tmp_path: Path) -> None:
    clip = _gradient_clip(5, 17, 33)
    path = tmp_path / "odd.mp4"
    write_mp4(clip, path)
    back = read_video(path)
    assert back.shape == (5, 18, 34, 3)
    # The original region survives; padding replicates the edge.
    assert np.abs(back[:, :17, :33].astype(int) - _to_uint8(clip).astype(int)).mean() < 10
    assert np.abs(back[:, 17, :33].astype(int) - back[:, 16, :33].astype(int)).mean() < 10


def test_overwrite_replaces_existing_file(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_mp4(_gradient_clip(3, 16, 16), path)
    write_mp4(_gradient_clip(7, 16, 24), path)
    assert read_video(path).shape == (7, 16, 24, 3)
    assert _leftovers(tmp_path) == ["clip.mp4"]


@pytest.mark.parametrize(
    "bad",
    [
        np.zeros((4, 8, 8), dtype=np.uint8),
        np.zeros((4, 8, 8, 4), dtype=np.uint8),
        np.zeros((0, 8, 8, 3)),
    ],
)
def test_failed_write_leaves_nothing(tmp_path: Path, bad: np.ndarray) -> None:
    path = tmp_path / "clip.mp4"
    with pytest.raises(ValueError):
        write_mp4(bad, path)
    assert not path.exists()
    assert not path.with_name(path.name + ".partial").exists()
    assert _leftovers(tmp_path) == []


def test_failure_mid_encode_removes_partial_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = {"n": 0}
    partial = tmp_path / "clip.mp4.partial"

    def flaky_from_ndarray(image: np.ndarray, format: str) -> av.VideoFrame:
        calls["n"] += 1
        if calls["n"] == 70:
            assert partial.exists()  # the temporary file really was being written
            raise RuntimeError("encoder exploded")
        return av.VideoFrame.from_ndarray(image, format=format)

    fake_frame = types.SimpleNamespace(from_ndarray=flaky_from_ndarray)
    fake_av = types.SimpleNamespace(open=av.open, VideoFrame=fake_frame)
    monkeypatch.setattr(video_mod, "av", fake_av)
    with pytest.raises(RuntimeError, match="encoder exploded"):
        write_mp4(_gradient_clip(80, 16, 16), tmp_path / "clip.mp4")
    assert calls["n"] == 70
    assert _leftovers(tmp_path) == []


def test_failed_overwrite_keeps_old_file(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    write_mp4(_gradient_clip(3, 16, 16), path)
    before = path.read_bytes()
    with pytest.raises(ValueError):
        write_mp4(np.zeros((3, 16, 16), dtype=np.uint8), path)
    assert path.read_bytes() == before
    assert _leftovers(tmp_path) == ["clip.mp4"]


def test_side_by_side_shape_and_gap() -> None:
    a = np.zeros((4, 10, 6, 3), dtype=np.uint8)
    b = np.full((4, 10, 8, 3), 0.5, dtype=np.float32)
    out = side_by_side([a, b], gap=3)
    assert out.dtype == np.uint8
    assert out.shape == (4, 10, 6 + 3 + 8, 3)
    assert (out[:, :, :6] == 0).all()
    assert (out[:, :, 6:9] == 255).all()
    assert (out[:, :, 9:] == 128).all()
    three = side_by_side([a, a, a])
    assert three.shape == (4, 10, 6 * 3 + 4 * 2, 3)
    assert side_by_side([a], gap=5).shape == a.shape


def test_side_by_side_rejects_mismatch() -> None:
    a = np.zeros((4, 10, 6, 3), dtype=np.uint8)
    with pytest.raises(ValueError, match="frame counts"):
        side_by_side([a, np.zeros((5, 10, 6, 3), dtype=np.uint8)])
    with pytest.raises(ValueError):
        side_by_side([a, np.zeros((4, 12, 6, 3), dtype=np.uint8)])
    with pytest.raises(ValueError):
        side_by_side([])
