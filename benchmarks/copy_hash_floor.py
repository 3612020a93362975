"""The floor under `vidunlearn apply` on one shard: a kernel copy and a SHA-256 of the same file,
alone, together and with the hash split over two threads (docs/performance.md, "The decision").

    python benchmarks/copy_hash_floor.py SHARD [--out DIR]

Each step copies ``SHARD`` into ``DIR`` (default: beside the shard) with ``os.copy_file_range``
and/or hashes it through a 1 MiB page-aligned buffer (as ``vidunlearn.hashing`` does), prints its
wall time, its CPU (user + sys of this process) and the ``sync`` after it, and removes the copy.
The page cache is not dropped (no root): run it twice and read the second pass.
"""

from __future__ import annotations

import argparse
import hashlib
import mmap
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path


def copy(source: Path, destination: Path) -> None:
    size = source.stat().st_size
    fin, fout = os.open(source, os.O_RDONLY), os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        done = 0
        while done < size:
            done += os.copy_file_range(fin, fout, min(1 << 30, size - done), done, done)
    finally:
        os.close(fin)
        os.close(fout)


def sha256_range(source: Path, begin: int, end: int) -> str:
    buffer, digest = memoryview(mmap.mmap(-1, 1 << 20)), hashlib.sha256()
    fd = os.open(source, os.O_RDONLY)
    try:
        while begin < end:
            got = os.preadv(fd, [buffer[:min(1 << 20, end - begin)]], begin)
            digest.update(buffer[:got])
            begin += got
    finally:
        os.close(fd)
    return digest.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("shard", type=Path)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    source: Path = args.shard
    destination = (args.out or source.parent) / f".copy-hash-floor-{os.getpid()}"
    size = source.stat().st_size
    halves = [(0, size // 2), (size // 2, size)]
    steps = {
        "copy": lambda: copy(source, destination),
        "sha256": lambda: sha256_range(source, 0, size),
        "copy + sha256": lambda: _together(lambda: copy(source, destination), lambda: sha256_range(source, 0, size)),
        "sha256 in two halves": lambda: list(ThreadPoolExecutor(2).map(lambda r: sha256_range(source, *r), halves)),
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
