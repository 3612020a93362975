"""The floor under `vidunlearn apply` on one shard: a kernel copy and a SHA-256 of the same file,
alone, together and with the hash split over two threads (docs/performance.md, "The decision").

    python benchmarks/copy_hash_floor.py SHARD [--out DIR]

Each step copies ``SHARD`` into ``DIR`` (default: beside the shard) and/or hashes it with apply's
own pieces (``vidunlearn.hashing.copy_range``: ``os.copy_file_range``; ``StreamHasher``: SHA-256
in a thread through a 1 MiB page-aligned buffer), prints its wall time, its CPU (user + sys of
this process, every thread) and the ``sync`` after it, and removes the copy.
The page cache is not dropped (no root): run it twice and read the second pass.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from vidunlearn.hashing import StreamHasher, copy_range  # noqa: E402  (apply's own copy and hash)


def copy(source: Path, destination: Path) -> None:
    """The whole file by ``hashing.copy_range`` (``os.copy_file_range``), as apply copies untouched ranges."""
    fin, fout = os.open(source, os.O_RDONLY), os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        copy_range(fin, fout, 0, 0, source.stat().st_size)
    finally:
        os.close(fin)
        os.close(fout)


def sha256_ranges(source: Path, ranges: list[tuple[int, int]]) -> list[str]:
    """One ``StreamHasher`` (apply's hash thread: 1 MiB page-aligned reads) per byte range, all at once."""
    fd = os.open(source, os.O_RDONLY)
    try:
        hashers = [StreamHasher() for _ in ranges]
        for hasher, (begin, end) in zip(hashers, ranges):
            hasher.update_range(fd, begin, end - begin)
        return [hasher.hexdigest() for hasher in hashers]
    finally:
        os.close(fd)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shard", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    source: Path = args.shard
    destination = (args.out or source.parent) / f".copy-hash-floor-{os.getpid()}"
    size = source.stat().st_size
    steps = {
        "copy": lambda: copy(source, destination),
        "sha256": lambda: sha256_ranges(source, [(0, size)]),
        "copy + sha256": lambda: _together(lambda: copy(source, destination), lambda: sha256_ranges(source, [(0, size)])),
        "sha256 in two halves": lambda: sha256_ranges(source, [(0, size // 2), (size // 2, size)]),
    }
    print(f"{source} ({size / 1e9:.2f} GB), {os.cpu_count()} CPUs")
    for name, step in steps.items():
        os.sync()
        started, cpu = time.perf_counter(), os.times()
        step()
        wall, after = time.perf_counter() - started, os.times()
        synced = time.perf_counter()
        os.sync()
        print(f"  {name:22s} wall {wall:6.2f} s   CPU {after.user - cpu.user + after.system - cpu.system:6.2f} s"
              f"   sync after {time.perf_counter() - synced:5.2f} s")
        destination.unlink(missing_ok=True)


def _together(first, second) -> None:
    thread = threading.Thread(target=first)
    thread.start()
    second()
    thread.join()


if __name__ == "__main__":
    main()
