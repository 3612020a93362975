"""Pairs files with conditioning images: validated in one line each, hashed into the pairs' SHA-256."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from vidunlearn.errors import PairsError
from test_pairs import GOOD as TEXT  # the same pairs, without images
from vidunlearn.pairs import load_pairs

IMAGES = """version: 1
concept: violence
pairs:
  - unsafe: "a man stabs a man"
    safe: "a man greets a man"
    unsafe_image: images/knife.png
    safe_image: images/spoon.png
  - unsafe: "a woman shoots a car"
    safe: "a woman photographs a car"
    unsafe_image: images/gun.jpg
    safe_image: images/camera.png
neutral:
  - {prompt: "a cat sleeps", image: images/cat.png}
  - {prompt: "a river flows", image: images/river.png}
  - "a tree in the wind"
"""


def _png(path: Path, color=(200, 0, 0), size=(16, 16), kind="PNG") -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path, kind)


@pytest.fixture
def folder(tmp_path):
    for i, name in enumerate(["knife.png", "spoon.png", "camera.png", "cat.png", "river.png"]):
        _png(tmp_path / "images" / name, (40 * i, 10, 200 - 30 * i))
    _png(tmp_path / "images" / "gun.jpg", (90, 90, 90), kind="JPEG")
    (tmp_path / "p.yaml").write_text(IMAGES)
    return tmp_path


def test_a_file_without_images_hashes_as_before(tmp_path):
    path = tmp_path / "p.yaml"
    path.write_text(TEXT)
    concept = load_pairs(path)
    assert concept.sha256 == hashlib.sha256(TEXT.encode()).hexdigest()
    assert not concept.has_images and concept.neutral_images == () and concept.images == ()
    assert concept.pairs[0].unsafe_image is None


def test_images_load_resolved_and_in_order(folder):
    concept = load_pairs(folder / "p.yaml")
    assert concept.has_images
    assert [Path(p).name for p in concept.unsafe_images] == ["knife.png", "gun.jpg"]
    assert [Path(p).name for p in concept.safe_images] == ["spoon.png", "camera.png"]
    assert [Path(p).name for p in concept.neutral_images] == ["cat.png", "river.png"]
    assert concept.neutral == ("a cat sleeps", "a river flows", "a tree in the wind")
    assert dict(concept.images)["images/knife.png"] == hashlib.sha256((folder / "images/knife.png").read_bytes()).hexdigest()


def test_an_image_change_changes_the_hash(folder):
    before = load_pairs(folder / "p.yaml").sha256
    assert before != hashlib.sha256(IMAGES.encode()).hexdigest()
    _png(folder / "images" / "spoon.png", (1, 2, 3))
    assert load_pairs(folder / "p.yaml").sha256 != before


@pytest.mark.parametrize("edit, message", [
    (lambda f: (f / "images/spoon.png").unlink(), r"p\.yaml:\d+ \[pairs\[0\]\.safe_image\].*'images/spoon.png' not found"),
    (lambda f: (f / "images/spoon.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really"), r"\[pairs\[0\]\.safe_image\].*does not decode"),
    (lambda f: _png(f / "images/spoon.png", kind="GIF"), r"is GIF, not PNG or JPEG"),
    (lambda f: _png(f / "images/spoon.png", size=(4097, 2)), r"is 4097x2 \(limit 4096x4096\)"),
    (lambda f: (f / "p.yaml").write_text(IMAGES.replace("images/spoon.png", "../spoon.png")), r"leaves the pairs file's folder"),
    (lambda f: (f / "p.yaml").write_text(IMAGES.replace("images/spoon.png", "/etc/passwd")), r"is not relative"),
    (lambda f: (f / "p.yaml").write_text(IMAGES.replace("images/spoon.png", "images")), r"is not a file"),
    (lambda f: (f / "p.yaml").write_text(IMAGES.replace("    unsafe_image: images/gun.jpg\n    safe_image: images/camera.png\n", "")),
     r"\[pairs\[1\]\].*some pairs carry images and some do not"),
    (lambda f: (f / "p.yaml").write_text(IMAGES.replace("    safe_image: images/spoon.png\n", "")), r"expected exactly"),
    (lambda f: (f / "p.yaml").write_text(IMAGES.replace("{prompt: \"a river flows\", image: images/river.png}", "\"a river\"")),
     r"\[neutral\].*the pairs carry images but 1 neutral entries do"),
    (lambda f: (f / "p.yaml").write_text(IMAGES.replace("image: images/cat.png", "img: images/cat.png")), r"\[neutral\[0\]\].*expected exactly"),
    (lambda f: (f / "p.yaml").write_text(IMAGES.replace("image: images/cat.png", "image: 3")), r"\[neutral\[0\]\.image\]: expected an image path"),
])
def test_bad_images_are_one_line_errors(folder, edit, message):
    edit(folder)
    with pytest.raises(PairsError, match=message) as info:
        load_pairs(folder / "p.yaml")
    assert "\n" not in str(info.value)


def test_a_link_out_of_the_folder_is_refused(folder, tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside") / "x.png"
    _png(outside)
    (folder / "images/spoon.png").unlink()
    os.symlink(outside, folder / "images/spoon.png")
    with pytest.raises(PairsError, match="leaves the pairs file's folder"):
        load_pairs(folder / "p.yaml")


def test_an_oversized_file_is_refused(folder, monkeypatch):
    import vidunlearn.pairs as pairs

    monkeypatch.setattr(pairs, "MAX_IMAGE_BYTES", 10)
    with pytest.raises(PairsError, match=r"bytes \(limit 10\)"):
        load_pairs(folder / "p.yaml")
