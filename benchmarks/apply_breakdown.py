"""Where one `vidunlearn apply` spends its time: wall spans and CPU of each part, thread by thread.

cProfile sees one thread; apply's work runs on several (a copy thread and a hash thread per shard,
an edit worker per shard, a hash thread for linked files). This runs ``api.apply`` in this process
with the parts of interest wrapped: for each, the number of calls, when the first began and the
last ended (seconds since this process started), the wall time summed over calls (overlapping
calls add up) and the CPU time of the calling thread (``time.thread_time``: user + sys of that
thread alone; torch's own OpenMP threads are not in it, see "other threads" at the end).

    python benchmarks/apply_breakdown.py MODEL REFUSAL OUT

OUT is written, then deleted. Used by ``apply_vs_copy.py --breakdown``.
"""

from __future__ import annotations

import os
import resource
import time

STARTED = time.perf_counter()

import shutil  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from collections import defaultdict  # noqa: E402
from functools import cached_property  # noqa: E402
from pathlib import Path  # noqa: E402

import vidunlearn.api as api  # noqa: E402
import vidunlearn.card as card  # noqa: E402
import vidunlearn.checkpoint as checkpoint  # noqa: E402
import vidunlearn.hashing as hashing  # noqa: E402
import vidunlearn.model as model  # noqa: E402

IMPORTED = time.perf_counter()
SPANS: dict[str, list[tuple[float, float, float]]] = defaultdict(list)  # part -> [(start, end, thread CPU)]
LOCK = threading.Lock()
PARTS = [(checkpoint, "rewrite_shard"), (checkpoint, "copy_range"), (checkpoint, "_load"), (checkpoint, "edit_linear"),
         (checkpoint, "_write_all"), (checkpoint, "link_or_copy"), (checkpoint, "sha256_file"),
         (api, "write_checkpoint"), (api, "verify_layout"), (api, "check_free_space"), (api, "plan_edits"),
         (card, "build_card")]


def timed(label: str, function):
    def wrapper(*args, **kwargs):
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return function(*args, **kwargs)
        finally:
            with LOCK:
                SPANS[label].append((start - STARTED, time.perf_counter() - STARTED, time.thread_time() - cpu))
    return wrapper


def instrument() -> None:
    for module, name in PARTS:
        setattr(module, name, timed(name, getattr(module, name)))
    hashing.StreamHasher._run = timed("StreamHasher thread", hashing.StreamHasher._run)
    fingerprint = cached_property(timed("fingerprint", model.ModelSource.__dict__["fingerprint"].func))
    fingerprint.__set_name__(model.ModelSource, "fingerprint")
    model.ModelSource.fingerprint = fingerprint


def main() -> None:
    source, refusal, out = (Path(a) for a in sys.argv[1:4])
    instrument()
    shutil.rmtree(out, ignore_errors=True)
    os.sync()
    before = resource.getrusage(resource.RUSAGE_SELF)
    begin = time.perf_counter()
    api.apply(str(source), out=out, refusal=[refusal], recipe=api.EditRecipe(mode="project", method="cpca"),
              output=api.OutputOptions(collateral=False))  # as apply_vs_copy.py
    end = time.perf_counter()
    after = resource.getrusage(resource.RUSAGE_SELF)
    user, system = after.ru_utime - before.ru_utime, after.ru_stime - before.ru_stime
    print(f"imports {IMPORTED - STARTED:.2f} s (CPU {before.ru_utime + before.ru_stime:.2f} s); api.apply "
          f"{end - begin:.2f} s wall, CPU {user + system:.2f} s (user {user:.2f}, sys {system:.2f}); "
          f"load average {os.getloadavg()[0]:.1f}")
    print("| part | calls | first start s | last end s | wall s (summed) | thread CPU s |\n|---|---:|---:|---:|---:|---:|")
    threads = 0.0
    for name, rows in sorted(SPANS.items(), key=lambda item: item[1][0][0]):
        cpu = sum(r[2] for r in rows)
        if name in ("rewrite_shard", "StreamHasher thread", "edit_linear", "_load", "fingerprint"):
            threads += cpu  # the disjoint ones: copy_range and _write_all run inside rewrite_shard
        print(f"| {name} | {len(rows)} | {min(r[0] for r in rows):.2f} | {max(r[1] for r in rows):.2f} | "
              f"{sum(r[1] - r[0] for r in rows):.2f} | {cpu:.2f} |")
    print(f"| other threads and the main thread's rest (torch's OpenMP threads, norms, card, checks) | | | | | "
          f"{user + system - threads:.2f} |")
    print(f"| api.apply returned | | | {end - STARTED:.2f} | | |")
    shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
