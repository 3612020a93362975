"""Hashing and copying files: SHA-256 of whole files and of byte streams as they are written (each
file read once, digests remembered by inode for this process), kernel copies of byte ranges, and
hard links that keep a known digest known. The atomic outputs are in :mod:`vidunlearn.fsutil`."""

from __future__ import annotations

import errno
import hashlib
import json
import mmap
import os
import queue
import re
import shutil
import threading
from pathlib import Path

CHUNK = 16 << 20
HASH_BUFFER = 1 << 20  # files are hashed through this much at a time (see read_buffer)


def read_buffer(size: int = HASH_BUFFER) -> memoryview:
    """A reusable buffer to read file data into before hashing it: page-aligned (an anonymous
    ``mmap``) and 1 MiB by default. Measured on 5 GB from the page cache (kernel copy + SHA-256,
    user + sys): 3.8 s through this buffer, 5.3 s through a ``bytearray`` of the same size (its
    data starts 16 bytes into a page: the kernel's copy into it is slow), 4.0 s through 16 MiB
    aligned (it no longer stays in the CPU cache between the copy and the hash)."""
    return memoryview(mmap.mmap(-1, size))


def sha256_file(path: Path) -> str:
    """The SHA-256 of ``path``, always read. Remembered for :func:`known_sha256` (this process
    only) when the file did not change while it was read."""
    digest = hashlib.sha256()
    buffer = read_buffer()
    with open(path, "rb", buffering=0) as handle:
        before = os.fstat(handle.fileno())
        while got := handle.readinto(buffer):
            digest.update(buffer[:got])
        after = os.fstat(handle.fileno())
    hexdigest = digest.hexdigest()
    if _version(before) == _version(after):
        with _READ_LOCK:
            _READ[(before.st_dev, before.st_ino)] = (_version(before), hexdigest)
    return hexdigest


def sha256_files(paths: list[Path]) -> list[str]:
    """:func:`known_sha256` or else :func:`sha256_file` of each path, in order. The files to read
    are hashed on one thread per core (2 to 4; hashlib releases the GIL): a model's text encoder
    is 11 GB in several files on a real Wan folder, hashed before apply writes anything."""
    from concurrent.futures import ThreadPoolExecutor

    known = [known_sha256(path) for path in paths]
    with ThreadPoolExecutor(max_workers=max(2, min(4, os.cpu_count() or 1)), thread_name_prefix="vidunlearn-hash") as pool:
        read = iter(list(pool.map(sha256_file, [p for p, k in zip(paths, known) if k is None])))
    return [k if k is not None else next(read) for k in known]


# The SHA-256 of each file this process has read whole, by file (device, inode), with the version
# it was read at: size, modification and status-change times. A hard link of that file is the
# same inode, so apply need not read the text encoder twice (once for the model's fingerprint,
# once for the manifest): 11 GB on a real Wan folder. The status-change time cannot be set by a
# user and changes with every write, so a file written since it was read is read again.
_READ: dict[tuple[int, int], tuple[tuple[int, int, int], str]] = {}
_READ_LOCK = threading.Lock()


def _version(stat: os.stat_result) -> tuple[int, int, int]:
    return stat.st_size, stat.st_mtime_ns, stat.st_ctime_ns


def _linked(before: os.stat_result, after: os.stat_result) -> None:
    """A new hard link moves the file's status-change time: a digest read at ``before`` stays
    known at ``after`` (same inode, same size and modification time)."""
    key = (before.st_dev, before.st_ino)
    with _READ_LOCK:
        version, digest = _READ.get(key, (None, ""))
        if version == _version(before) and (after.st_dev, after.st_ino) == key \
                and (after.st_size, after.st_mtime_ns) == version[:2]:
            _READ[key] = (_version(after), digest)


_HUB_BLOB = re.compile(r"[0-9a-f]{64}")
TRUST_BLOB_NAME_BYTES = 256 << 20  # re-hashing less costs well under a second


def known_sha256(path: Path) -> str | None:
    """The SHA-256 of ``path`` when it is already known without reading it: a Hugging Face cache
    snapshot links each LFS file to ``blobs/<sha256>``: only blobs of at least
    ``TRUST_BLOB_NAME_BYTES`` are taken by their name (a smaller one, a tokenizer, a config, a
    small text encoder, is re-hashed by the caller, so a blob changed in place is noticed; a large
    blob changed in place with its name kept is not). And :func:`sha256_file` remembers what this
    process read (the same inode, unchanged since). ``vidunlearn verify`` re-reads everything."""
    real = path.resolve()
    if real.parent.name == "blobs" and _HUB_BLOB.fullmatch(real.name) and real.stat().st_size >= TRUST_BLOB_NAME_BYTES:
        return real.name
    try:
        stat = real.stat()
    except OSError:
        return None
    with _READ_LOCK:
        version, digest = _READ.get((stat.st_dev, stat.st_ino), (None, None))
    return digest if version == _version(stat) else None


class StreamHasher:
    """SHA-256 of a file being written as a sequence of pieces (bytes-like objects, or ranges of
    another file), computed in a worker thread so that hashing overlaps the copy (hashlib releases
    the GIL). Pieces are hashed in the order they are fed; the queue is bounded, so at most a few
    pieces wait in memory. Use as a context manager; :meth:`hexdigest` joins the worker.

    Ranges are read with ``preadv`` into one reused :func:`read_buffer`. (Hashing through an
    ``mmap`` of the source saves another 0.3 s per 5 GB, but would turn an I/O error or a
    truncation of the source into SIGBUS instead of an error.)"""

    def __init__(self, max_pending: int = 4) -> None:
        self._digest = hashlib.sha256()
        self._buffer = read_buffer()
        self._queue: queue.Queue = queue.Queue(maxsize=max_pending)
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="vidunlearn-sha256", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            if self._error is not None:
                continue  # drain, so that feeders never block
            try:
                if isinstance(item, tuple):
                    fd, offset, length = item
                    while length > 0:  # into one reused buffer: no fresh pages to fault in per chunk
                        got = os.preadv(fd, [self._buffer[:min(HASH_BUFFER, length)]], offset)
                        if not got:
                            raise OSError(errno.EIO, "file ended early while hashing")
                        self._digest.update(self._buffer[:got])
                        offset += got
                        length -= got
                else:
                    self._digest.update(item)
            except BaseException as error:  # re-raised in hexdigest()
                self._error = error

    def update(self, data: bytes | memoryview) -> None:
        """Hash ``data`` after the pieces fed before it. It is hashed later, in the worker: the
        caller must not change it (a memoryview keeps its object alive, not unchanged)."""
        self._queue.put(data)

    def update_range(self, fd: int, offset: int, length: int) -> None:
        """Hash ``length`` bytes of the open file ``fd`` from ``offset`` (read with pread, so the
        caller's file position is untouched). ``fd`` must stay open until :meth:`hexdigest`."""
        self._queue.put((fd, offset, length))

    def hexdigest(self) -> str:
        self.close()
        if self._error is not None:
            raise self._error
        return self._digest.hexdigest()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()

    def __enter__(self) -> "StreamHasher":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_NO_KERNEL_COPY = {errno.EXDEV, errno.ENOSYS, errno.EINVAL, errno.EOPNOTSUPP, errno.EBADF, errno.EPERM}


def copy_range(source_fd: int, destination_fd: int, source_offset: int, destination_offset: int, length: int) -> None:
    """Copy ``length`` bytes between open files at explicit offsets. Uses ``os.copy_file_range``
    (the kernel copies page cache to page cache, as ``cp`` does; on some file systems it shares
    extents) and falls back to pread/pwrite where the kernel cannot. Raises EOFError when the
    source ends early; other OSErrors (ENOSPC, EIO) propagate."""
    kernel = hasattr(os, "copy_file_range")
    while length > 0:
        step = min(length, 1 << 30)
        if kernel:
            try:
                done = os.copy_file_range(source_fd, destination_fd, step, source_offset, destination_offset)
            except OSError as error:
                if error.errno not in _NO_KERNEL_COPY:
                    raise
                kernel, done = False, -1
            if done == 0:
                raise EOFError(f"source ended {length} bytes early")
            if done < 0:
                continue
        else:
            data = os.pread(source_fd, min(step, CHUNK), source_offset)
            if not data:
                raise EOFError(f"source ended {length} bytes early")
            done = 0
            while done < len(data):
                done += os.pwrite(destination_fd, data[done:] if done else data, destination_offset + done)
        source_offset += done
        destination_offset += done
        length -= done


def sha256_json(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def link_or_copy(source: Path, destination: Path) -> str:
    """Hard-link ``source`` (following symlinks, e.g. a Hub cache) to ``destination``, else copy.
    Returns "link" or "copy"."""
    real = source.resolve()
    destination.parent.mkdir(parents=True, exist_ok=True)
    before = os.stat(real)
    try:
        os.link(real, destination)
    except OSError:
        shutil.copyfile(real, destination)
        return "copy"
    _linked(before, os.stat(destination))
    return "link"


def copy_file(source: Path, destination: Path) -> str:
    """Copy ``source`` (following symlinks) into the new file ``destination`` with
    ``os.copy_file_range``: a reflink where the file system shares extents (Btrfs, XFS), else
    the kernel copies the bytes. Never a hard link: writing into one file leaves the other as
    it was. Returns "copy"."""
    real = source.resolve()
    destination.parent.mkdir(parents=True, exist_ok=True)
    fin = os.open(real, os.O_RDONLY)
    try:
        fout = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            copy_range(fin, fout, 0, 0, os.fstat(fin).st_size)
        except EOFError:
            raise OSError(errno.EIO, "the file shrank while it was copied", str(real)) from None
        finally:
            os.close(fout)
    finally:
        os.close(fin)
    return "copy"
