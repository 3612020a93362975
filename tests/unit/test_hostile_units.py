"""A hostile tester's findings on pure functions (issue 20): duplicate YAML keys, invisible
prompts, Hub-cache blobs changed in place, credentials in a Hub endpoint, and outputs that
another run takes or holds while this one writes."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from vidunlearn import fsutil, hashing, hub
from vidunlearn.errors import OutputError, PairsError
from vidunlearn.fsutil import atomic_output
from vidunlearn.hashing import known_sha256
from vidunlearn.pairs import load_pairs

VALID = ("version: 1\nconcept: x\npairs:\n  - {unsafe: a man stabs a man, safe: a man greets a man}\n"
         "  - {unsafe: a knife fight, safe: a pillow fight}\nneutral: [a cat, a dog]\n")


def _pairs(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "p.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# ------------------------------------------------------------------------- duplicate keys
@pytest.mark.parametrize("text, key, line", [
    (VALID + "concept: y\n", "concept", 7),  # PyYAML keeps y, this loader's lookup x
    (VALID.replace("safe: a pillow fight}", "safe: a pillow fight, safe: a knife fight}"), "safe", 5),
    (VALID + "neutral: [a bird, a fish]\n", "neutral", 7),
])
def test_duplicate_keys_are_refused_with_their_line(tmp_path, text, key, line):
    load_pairs(_pairs(tmp_path, VALID))  # the file without the duplicate is valid
    with pytest.raises(PairsError, match=f"p.yaml:{line}: duplicate key '{key}'"):
        load_pairs(_pairs(tmp_path, text))


# ------------------------------------------------------------------------- invisible text
@pytest.mark.parametrize("safe, message", [
    ("\u200b", "only invisible"),  # zero-width space
    ("\u200b\u200d\u2060\ufeff", "only invisible"),  # zero-width joiner, word joiner, BOM
    ("a man \u200bstabs a man", "identical"),  # the same words with a zero-width space inside
    ("A MAN STABS A MAN", "identical"),
    ("\uff41 man stabs a man", "identical"),  # a fullwidth 'a' (NFKC folds it)
])
def test_invisible_or_disguised_prompts_are_refused(tmp_path, safe, message):
    with pytest.raises(PairsError, match=message):
        load_pairs(_pairs(tmp_path, VALID.replace("safe: a man greets a man", f"safe: \"{safe}\"")))


def test_a_pair_repeated_with_invisible_characters_is_a_duplicate(tmp_path):
    text = VALID.replace("neutral:", "  - {unsafe: \"a man \u200bstabs a man\", safe: a man greets a man}\nneutral:")
    with pytest.raises(PairsError, match="the same pair appears twice"):
        load_pairs(_pairs(tmp_path, text))


# ------------------------------------------------------------------ Hub blobs changed in place
def test_a_small_hub_blob_is_rehashed_not_trusted_by_its_name(tmp_path):
    data = b"tokenizer or text encoder bytes" * 100
    blob = tmp_path / "blobs" / hashlib.sha256(data).hexdigest()
    blob.parent.mkdir()
    blob.write_bytes(data)
    link = tmp_path / "snapshots" / "rev" / "file.safetensors"
    link.parent.mkdir(parents=True)
    link.symlink_to(blob)
    blob.write_bytes(data.replace(b"text", b"TEXT"))  # changed in place: same name, same size
    assert known_sha256(link) is None  # the caller hashes the content


def test_a_large_hub_blob_is_known_by_its_name(tmp_path, monkeypatch):
    monkeypatch.setattr(hashing, "TRUST_BLOB_NAME_BYTES", 16)
    blob = tmp_path / "blobs" / ("ab" * 32)
    blob.parent.mkdir()
    blob.write_bytes(b"x" * 32)
    assert known_sha256(blob) == "ab" * 32


# ------------------------------------------------------------------- credentials in endpoints
@pytest.mark.parametrize("url, shown", [
    ("https://user:hunter2@hub.example.com/api", "https://***@hub.example.com/api"),
    ("http://token@127.0.0.1:8080", "http://***@127.0.0.1:8080"),
    ("https://huggingface.co", "https://huggingface.co"),
])
def test_endpoint_credentials_are_redacted(url, shown):
    assert hub.redact_url(url) == shown


# --------------------------------------------------------------------- concurrent writers
def test_an_output_taken_by_another_run_meanwhile_is_not_replaced(tmp_path):
    """The other run renames its folder into place while this one writes: without replace,
    this run fails and the other's output survives."""
    out = tmp_path / "out"
    with pytest.raises(OutputError, match="already exists"):
        with atomic_output(out, directory=True, replace=False) as temp:
            (temp / "mine").write_text("second run")
            out.mkdir()
            (out / "theirs").write_text("first run")
    assert [p.name for p in out.iterdir()] == ["theirs"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no temporary sibling, no lock file


def test_a_file_taken_by_another_run_meanwhile_is_not_replaced(tmp_path):
    out = tmp_path / "activations.safetensors"
    with pytest.raises(OutputError, match="already exists"):
        with atomic_output(out, replace=False) as temp:
            temp.write_bytes(b"second")
            out.write_bytes(b"first")
    assert out.read_bytes() == b"first" and sorted(p.name for p in tmp_path.iterdir()) == [out.name]


def test_an_output_another_run_holds_is_refused_at_once(tmp_path):
    out = tmp_path / "out"
    with fsutil.output_lock(out):  # another open file description: flock conflicts as with another process
        assert (tmp_path / ".out.lock").exists()
        with pytest.raises(OutputError, match="another run is writing"):
            with atomic_output(out, directory=True) as temp:
                (temp / "x").write_text("never")
    assert not out.exists() and not (tmp_path / ".out.lock").exists()


def test_a_lock_file_left_by_a_killed_run_is_taken_over(tmp_path):
    out = tmp_path / "out"
    (tmp_path / ".out.lock").write_text("")  # the kernel dropped its lock with the process
    with atomic_output(out, directory=True, replace=False) as temp:
        (temp / "x").write_text("done")
    assert (out / "x").read_text() == "done" and sorted(os.listdir(tmp_path)) == ["out"]


def test_a_file_system_without_hard_links_still_takes_a_free_output(tmp_path, monkeypatch):
    import errno

    def no_links(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(fsutil.os, "link", no_links)
    out = tmp_path / "refusal.safetensors"
    with atomic_output(out, replace=False) as temp:
        temp.write_bytes(b"done")
    assert out.read_bytes() == b"done" and sorted(os.listdir(tmp_path)) == [out.name]
