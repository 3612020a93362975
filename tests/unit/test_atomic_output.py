"""fsutil.atomic_output: stale siblings of killed runs are cleaned (live ones kept), a failed swap
restores the replaced output, write errors become one-line OutputErrors, and nothing is left."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vidunlearn import fsutil
from vidunlearn.errors import OutputError
from vidunlearn.fsutil import atomic_output


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_stale_siblings_of_dead_runs_are_removed_live_ones_kept(tmp_path):
    out = tmp_path / "out"
    dead = tmp_path / f".out.tmp-{_dead_pid()}-0123abcd"
    dead.mkdir()
    (dead / "half.safetensors").write_bytes(b"x" * 10)
    stale_file = tmp_path / f".out.tmp-{_dead_pid()}-89abcdef"
    stale_file.write_bytes(b"partial")
    live = tmp_path / f".out.tmp-{os.getppid()}-0123abcd"  # a concurrent run: its process is alive
    live.mkdir()
    unrelated = tmp_path / ".other.tmp-1-0123abcd"
    unrelated.mkdir()
    with atomic_output(out, directory=True) as temp:
        (temp / "a").write_text("done")
    assert (out / "a").read_text() == "done"
    assert not dead.exists() and not stale_file.exists() and live.exists() and unrelated.exists()


def test_failed_swap_restores_the_replaced_output(tmp_path, monkeypatch):
    out = tmp_path / "out"
    out.mkdir()
    (out / "old").write_text("previous result")
    real_replace = os.replace
    calls = []

    def flaky(src, dst):
        calls.append((src, dst))
        if len(calls) == 2:  # moving the new folder into place fails
            raise OSError(errno.EIO, "Input/output error", str(dst))
        return real_replace(src, dst)

    monkeypatch.setattr(fsutil.os, "replace", flaky)
    with pytest.raises(OutputError, match="Input/output error"):
        with atomic_output(out, directory=True) as temp:
            (temp / "new").write_text("new result")
    monkeypatch.setattr(fsutil.os, "replace", real_replace)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (out / "old").read_text() == "previous result"


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS, errno.EDQUOT, errno.EIO])
def test_write_errors_become_one_line_and_leave_nothing(tmp_path, code):
    out = tmp_path / "file.safetensors"
    with pytest.raises(OutputError) as info:
        with atomic_output(out) as temp:
            temp.write_bytes(b"partial")
            raise OSError(code, os.strerror(code), str(temp))
    assert os.strerror(code) in str(info.value) and "\n" not in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_dev_full_is_a_real_enospc(tmp_path, monkeypatch):
    """/dev/full fails every write with ENOSPC: link the temporary file name to it."""
    if not Path("/dev/full").exists():
        pytest.skip("no /dev/full")
    out = tmp_path / "a.bin"
    with pytest.raises(OutputError, match="No space left on device"):
        with atomic_output(out) as temp:
            temp.symlink_to("/dev/full")
            with open(temp, "wb") as handle:
                handle.write(b"x" * 1_000_000)
                handle.flush()
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("directory", [True, False])
def test_an_output_path_that_is_a_symlink_is_replaced_not_written_through(tmp_path, directory):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "keep").write_text("untouched")
    target = elsewhere if directory else elsewhere / "keep"
    out = tmp_path / "out"
    out.symlink_to(target)
    with atomic_output(out, directory=directory) as temp:
        if directory:
            (temp / "new").write_text("new")
        else:
            temp.write_text("new")
    assert not out.is_symlink()
    assert (elsewhere / "keep").read_text() == "untouched" and sorted(p.name for p in elsewhere.iterdir()) == ["keep"]


def test_a_folder_in_the_way_of_an_output_file_is_never_replaced(tmp_path):
    folder = tmp_path / "activations.safetensors"
    folder.mkdir()
    (folder / "precious").write_text("keep me")
    with pytest.raises(OutputError, match="folder is in the way"):
        with atomic_output(folder) as temp:
            temp.write_bytes(b"data")
    assert (folder / "precious").read_text() == "keep me" and sorted(p.name for p in tmp_path.iterdir()) == [folder.name]
