"""File-system helpers: atomic outputs, hashing, hard links. Nothing half-written is ever left
at a final path: every output is written to a hidden temporary sibling and renamed into place."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from .errors import OutputError

CHUNK = 16 << 20


def _temp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def check_writable(path: Path, *, force: bool, what: str = "output") -> None:
    """Refuse an existing ``path`` without ``force``; refuse an unwritable parent."""
    if path.exists() and not force:
        raise OutputError(f"{what} already exists", where=str(path), fix="pass --force to replace it, or choose another path")
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not os.access(parent, os.W_OK):
        raise OutputError("destination folder is not writable", where=str(parent), fix="choose a writable --out")


@contextlib.contextmanager
def atomic_output(path: Path, *, directory: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; on success rename it into place (replacing an
    existing ``path``), on any failure delete it. The final path is never half-written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = _temp_sibling(path)
    if directory:
        temp.mkdir()
    try:
        yield temp
        if path.is_dir() and not path.is_symlink():
            old = _temp_sibling(path)
            os.replace(path, old)
            os.replace(temp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(temp, path)
    except BaseException:
        if temp.is_dir():
            shutil.rmtree(temp, ignore_errors=True)
        else:
            temp.unlink(missing_ok=True)
        raise


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_json(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def write_json(path: Path, value: object) -> None:
    """Sorted keys, indented, trailing newline: stable diffs."""
    path.write_text(json.dumps(value, sort_keys=True, indent=2) + "\n", encoding="utf-8")


def link_or_copy(source: Path, destination: Path) -> str:
    """Hard-link ``source`` (following symlinks, e.g. a Hub cache) to ``destination``, else copy.
    Returns "link" or "copy"."""
    real = source.resolve()
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(real, destination)
        return "link"
    except OSError:
        shutil.copyfile(real, destination)
        return "copy"
