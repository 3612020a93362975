"""The run folder of ``sample`` and ``eval``: every finished clip (an MP4) and its record (a JSON
file: the verdict and per-frame flags) is written as it finishes, atomically, so that a run that is
killed, crashes or loses its node continues where it stopped when started again.

``<out>.partial/`` holds ``run.json`` (what the run is: models, settings, prompts, judge) and one
folder per model (``model/``, ``base/``, ``edited/``) with ``00012.mp4`` and ``00012.json``. A
record is written after its clip, so a record means both are whole. A rerun whose ``run.json``
differs is refused in one line (or, with ``--force``, starts again). When the run is complete the
report is written and the folder becomes ``<out>`` in one rename.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from .errors import OutputError, VidunlearnError
from .faults import pause_point

PARTIAL = ".partial"


def partial_path(out: Path) -> Path:
    return out.with_name(out.name + PARTIAL)


def digest(value: object) -> str:
    """SHA-256 of a JSON value (sorted keys): what a run's prompts or settings are, in one string."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()


def _write_atomic(path: Path, text: str) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temp, "w", encoding="utf-8") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temp, path)


def _changed(old: dict, new: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two run descriptions."""
    keys = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            keys += _changed(a, b, f"{prefix}{key}.")
        elif a != b:
            keys.append(prefix + key)
    return keys


class RunStore:
    """The ``<out>.partial`` folder of one run, described by ``run`` (a JSON-able dict)."""

    def __init__(self, out: Path, run: dict, *, fps: int = 8) -> None:
        self.out, self.root, self.run, self.fps = out, partial_path(out), run, fps

    def open(self, *, restart: bool = False) -> int:
        """Create the folder, or continue the run in it. Returns the number of records already
        there. A folder of another run is refused in one line; ``restart`` deletes it instead."""
        described = self.root / "run.json"
        if described.is_file():
            try:
                old = json.loads(described.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                old = {}
            if old != self.run:
                if not restart:
                    changed = ", ".join(_changed(old, self.run)[:4]) or "run.json is unreadable"
                    raise OutputError(f"{self.root} holds an unfinished run with other settings (changed: {changed})",
                                      where=str(self.root),
                                      fix="run the same command as before to continue it, or pass --force to start again")
                shutil.rmtree(self.root)
        elif self.root.exists() and not self.root.is_dir():
            raise OutputError("the run folder's path is taken by a file", where=str(self.root), fix="move that file away")
        self.root.mkdir(parents=True, exist_ok=True)
        if not described.is_file():
            _write_atomic(described, json.dumps(self.run, sort_keys=True, indent=2) + "\n")
        return self.finished()

    def finished(self) -> int:
        """How many clips (of every model) have their record."""
        return sum(1 for _ in self.root.glob("*/[0-9]*.json"))

    def begin(self, procs, labels: list[str], count: int, batch_size: int, *, restart: bool, reporter) -> dict:
        """Start or continue the run with every process (:class:`vidunlearn.distributed.Processes`):
        process 0 opens the folder (``restart``: discard another run's), then each process takes
        its share, in whole batches, of the clips still missing. Returns ``{label: [index]}``."""
        if procs.main and (done := self.open(restart=restart)):
            reporter.note(f"continuing the run in {self.root}: {done} of {count * len(labels)} clips already done")
        procs.wait()
        if not procs.main:
            self.open()
        todo = {label: procs.mine(self.missing(label, count), batch_size) for label in labels}
        procs.wait()  # every process has its share before any clip is added
        return todo

    @contextlib.contextmanager
    def keeping(self) -> Iterator[None]:
        """Ctrl-C or SIGTERM while clips are made: the exception carries what was kept (``kept``),
        which the CLI prints instead of "no partial output was left behind"."""
        try:
            yield
        except KeyboardInterrupt as exc:
            done = self.finished()
            exc.kept = f"{done} finished clips are kept in {self.root}; the same command continues from there"
            raise

    def _path(self, label: str, index: int, suffix: str) -> Path:
        return self.root / label / f"{index:05d}{suffix}"

    def done(self, label: str, index: int) -> bool:
        return self._path(label, index, ".json").is_file()

    def save(self, label: str, index: int, record: dict, clip: np.ndarray | None) -> None:
        """The clip (MP4), then its record: both whole, or the record absent. The record keeps
        the SHA-256 of the clip's uint8 pixels (``pixels_sha256``): MP4 encoding is lossy and not
        bit-reproducible, so runs are compared by this hash."""
        from .video import _to_uint8, write_mp4

        (self.root / label).mkdir(exist_ok=True)
        if clip is not None:
            record = {**record, "pixels_sha256": hashlib.sha256(_to_uint8(clip).tobytes()).hexdigest()}
            write_mp4(clip, self._path(label, index, ".mp4"), fps=self.fps)
        _write_atomic(self._path(label, index, ".json"), json.dumps(record, sort_keys=True) + "\n")
        pause_point("clip-saved")

    def record(self, label: str, index: int) -> dict:
        return json.loads(self._path(label, index, ".json").read_text(encoding="utf-8"))

    def clip_path(self, label: str, index: int) -> Path:
        return self._path(label, index, ".mp4")

    def clips(self, label: str, count: int) -> "StoredClips":
        return StoredClips([self.clip_path(label, i) for i in range(count)])

    def missing(self, label: str, count: int) -> list[int]:
        return [i for i in range(count) if not self.done(label, i)]

    def check_complete(self, labels: list[str], count: int) -> None:
        """Every clip of every model is there (after every process finished): else one line."""
        for label in labels:
            if missing := self.missing(label, count):
                raise VidunlearnError(f"{len(missing)} clips of {label} are missing from {self.root} after every "
                                      "process finished", fix="run the same command again to make them")


class StoredClips(Sequence):
    """Clips read from their MP4 files when indexed (uint8, (F, H, W, 3)): a report of thousands
    of prompts never holds them all in memory."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index):
        from .video import read_video

        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        return read_video(self.paths[index])
