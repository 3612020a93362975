"""File-system helpers: atomic outputs, output locks, free space and where an output may go.
Nothing half-written is ever left at a final path: every output is written to a hidden temporary
sibling and renamed into place. Hashing and copying: :mod:`vidunlearn.hashing`."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import uuid
from collections.abc import Collection, Iterable, Iterator
from pathlib import Path

from .errors import OutputError

TEMP_MARK = ".tmp-"


def _temp_sibling(path: Path) -> Path:
    return path.with_name(f".{path.name}{TEMP_MARK}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def _remove(path: Path) -> None:
    """Delete a file, a symlink (not its target) or a folder tree; ignore errors."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(OSError):
            path.unlink()


def remove_stale_temps(path: Path) -> list[Path]:
    """Delete temporary siblings of ``path`` left by killed runs (their process is gone).
    Siblings of live processes (a concurrent run) are left alone. Returns what was removed."""
    removed = []
    pattern = re.compile(rf"^\.{re.escape(path.name)}{re.escape(TEMP_MARK)}(\d+)-[0-9a-f]{{8}}$")
    if not path.parent.is_dir():
        return removed
    for sibling in path.parent.iterdir():
        match = pattern.match(sibling.name)
        if match and int(match.group(1)) != os.getpid() and not _alive(int(match.group(1))):
            _remove(sibling)
            removed.append(sibling)
    return removed


def _check_not_folder(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        raise OutputError("a folder is in the way of this output file", where=str(path),
                          fix="pass a file path, e.g. FOLDER/activations.safetensors")


def check_writable(path: Path, *, force: bool, what: str = "output", file: bool = False) -> None:
    """Refuse an existing ``path`` (a dangling symlink too) without ``force``, a folder where a
    ``file`` goes, a path that is or contains the current folder, and an unwritable parent."""
    if file:
        _check_not_folder(path)
    here = Path.cwd().resolve()
    if path.name in ("", ".", "..") or path.resolve() == here or path.resolve() in here.parents:
        raise OutputError(f"{what} is or contains the current folder", where=str(path),
                          fix="name a new folder, e.g. --out out/wan-noviolence")
    if os.path.lexists(path) and not force:
        raise OutputError(f"{what} already exists", where=str(path), fix="pass --force to replace it, or choose another path")
    parent = _existing_parent(path)
    if not os.access(parent, os.W_OK):
        raise OutputError("destination folder is not writable", where=str(parent), fix="choose a writable --out")


def _existing_parent(path: Path) -> Path:
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    return parent


def check_free_space(path: Path, sources: list[Path], rewritten: set[Path], copy: bool = False) -> None:
    """Refuse before writing when the file system of ``path`` cannot hold the output: the
    ``rewritten`` files always, the other ``sources`` too when they are copied or cannot be
    hard-linked (another file system). An estimate; a write that still fails is an OutputError as well."""
    parent = _existing_parent(path)
    device = parent.stat().st_dev
    need = sum(f.stat().st_size for f in sources if copy or f in rewritten or f.resolve().stat().st_dev != device)
    free = shutil.disk_usage(parent).free
    if need > free:
        raise OutputError(f"the output needs about {need / 2**20:,.1f} MiB, the file system has {free / 2**20:,.1f} MiB free",
                          where=str(path), fix="free disk space or choose another --out; nothing was written")


def check_apart(out: Path, inputs: Iterable[tuple[str, Path | str | None]], what: str = "--out", *,
                may_hold_out: Collection[str] = ()) -> None:
    """Refuse an output that is, contains or lies inside one of the ``inputs`` ((description,
    path) pairs; a None path is skipped): replacing it would delete or corrupt that input. An
    input whose description is in ``may_hold_out`` (a cache folder) may hold the output, but
    not be it or lie inside it."""
    target = out.resolve()
    for name, source in inputs:
        if source is None:
            continue
        real = Path(source).resolve()
        inside = real in target.parents and name not in may_hold_out
        if target == real or target in real.parents or inside:
            raise OutputError(f"{what} overlaps {name} {source}", where=str(out),
                              fix=f"write the output to a path apart from {name}")


def _lock_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.lock")


@contextlib.contextmanager
def output_lock(path: Path, *, wait: bool = False) -> Iterator[None]:
    """Hold an exclusive lock (``flock``) on the file ``.NAME.lock`` beside ``path`` while the
    output is written; the file is deleted afterwards. Without ``wait``, a path another run holds
    is an :class:`OutputError` at once. The kernel drops the lock of a killed run, so a lock file
    it leaves behind is simply taken over. On a file system without flock (some network or FUSE
    mounts) the output is written unlocked; the no-replace rename still refuses to replace."""
    import fcntl

    lock = _lock_path(path)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise OutputError("another run is writing this output", where=str(path),
                              fix="wait for it to finish, or choose another --out") from None
        except OSError as error:
            if error.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                os.close(fd)
                raise
            break  # no flock here: unlocked
        try:
            held, named = os.fstat(fd), os.stat(lock)
            if (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino):
                break
        except FileNotFoundError:
            pass
        os.close(fd)  # the holder deleted the file as we opened it: take the new one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            lock.unlink()
        os.close(fd)


def _exists_error(path: Path) -> OutputError:
    return OutputError("output already exists (written by another run meanwhile)", where=str(path),
                       fix="pass --force to replace it, or choose another path; nothing was replaced")


def _rename_no_replace(temp: Path, path: Path, directory: bool) -> None:
    """Move ``temp`` to ``path`` only if nothing is there: a file by hard link (EEXIST when taken),
    a folder by rename (which refuses a non-empty folder, a file or a symlink in the way)."""
    try:
        if directory:
            if os.path.lexists(path) and not (path.is_dir() and not path.is_symlink() and not any(path.iterdir())):
                raise _exists_error(path)
            os.rename(temp, path)
        else:
            try:
                os.link(temp, path)
                os.unlink(temp)
            except OSError as error:  # no hard links here (some FUSE or FAT mounts): check, then rename
                if error.errno not in (errno.EPERM, errno.EOPNOTSUPP, errno.ENOSYS, errno.EMLINK) or os.path.lexists(path):
                    raise
                os.replace(temp, path)
    except OSError as error:
        if error.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise _exists_error(path) from None
        raise


@contextlib.contextmanager
def atomic_output(path: Path, *, directory: bool = False, replace: bool = True, wait: bool = False) -> Iterator[Path]:
    """Yield a temporary sibling of ``path``; on success rename it into place, on any failure
    delete it. The final path is never half-written.

    The whole write holds :func:`output_lock` (``wait``: queue behind another writer instead of
    failing). Without ``replace``, an output that exists is refused under the lock, and the
    final rename never replaces one that appears meanwhile: two runs never lose each other's
    output. Temporary siblings of killed runs are removed first. An OSError (disk full,
    read-only file system, ...) becomes an :class:`OutputError`; a replaced folder is restored if
    the swap fails.
    """
    from .faults import pause_point

    if not directory:
        _check_not_folder(path)
    moved_away: Path | None = None
    temp = _temp_sibling(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with output_lock(path, wait=wait):
            if not replace and os.path.lexists(path):
                raise _exists_error(path)
            remove_stale_temps(path)
            if directory:
                temp.mkdir()
            yield temp
            pause_point("before-rename" if directory else "artifact-written")
            if not replace:
                _rename_no_replace(temp, path, directory)
            elif directory and os.path.lexists(path):
                moved_away = _temp_sibling(path)  # a folder cannot be renamed over; a symlink is replaced, never followed
                os.replace(path, moved_away)
                os.replace(temp, path)
                _remove(moved_away)
            else:
                os.replace(temp, path)
    except BaseException as exc:
        if moved_away is not None and os.path.lexists(moved_away) and not os.path.lexists(path):
            os.replace(moved_away, path)
        _remove(temp)
        if isinstance(exc, OSError):
            raise OutputError(f"I/O error while writing the output ({exc.strerror or exc}{': ' + str(exc.filename) if exc.filename else ''})",
                              where=str(path), fix="free disk space or choose a writable --out; nothing was written") from None
        raise


def write_json(path: Path, value: object) -> None:
    """Sorted keys, indented, trailing newline: stable diffs."""
    path.write_text(json.dumps(value, sort_keys=True, indent=2) + "\n", encoding="utf-8")
