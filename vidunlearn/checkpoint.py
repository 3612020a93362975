"""Write an edited checkpoint by streaming: never instantiate the denoiser.

For every safetensors shard that holds a planned tensor, the output shard keeps the input's
header (key set, dtypes, shapes, byte offsets) with ``vidunlearn.*`` metadata added, copies
every untouched tensor's bytes verbatim and writes the edited tensors in place, one tensor in
memory at a time. Every other file (other shards, configs, text encoder, VAE, tokenizer) is
hard-linked where the file system allows, else copied (always copied with ``copy``); nothing is
re-serialised. Weight files apply does not edit are left out or refused before (:mod:`.weightfiles`).
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .edit import edit_linear
from .errors import ModelError
from .faults import pause_point
from .hashing import StreamHasher, copy_file, copy_range, known_sha256, link_or_copy, sha256_file
from .model import ModelSource, TensorInfo, encode_header, model_files, read_header, tensor_infos
from .plan import PlannedEdit

SKIP_FILES = {"README.md", "vidunlearn.json"}  # replaced by our own card and manifest


def _load(info: TensorInfo) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(str(info.file), framework="pt") as handle:
        return handle.get_tensor(info.key)


def tensor_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.contiguous().view(torch.uint8).numpy().tobytes()


def tensor_view(tensor: torch.Tensor) -> memoryview:
    """The bytes of ``tensor`` as stored (C order), without a copy when it is contiguous. The
    view keeps the tensor alive; the tensor must not be changed while the view is in use."""
    return memoryview(tensor.contiguous().reshape(-1).view(torch.uint8).numpy())


def rewrite_shard(source: Path, destination: Path, edits: dict[str, Callable[[], torch.Tensor]],
                  metadata: dict[str, str], prefetch: int = 2) -> str:
    """Copy ``source`` to ``destination`` replacing the tensors in ``edits`` (key -> producer of
    the new tensor, same dtype and shape). Returns the SHA-256 of the written file.

    Untouched byte ranges are copied by the kernel (``copy_file_range``, as ``cp`` does) while
    a second thread hashes the same ranges of the source together with the header and the
    edited bytes, so the manifest needs no second pass over the output. At most one edited
    tensor per ``prefetch`` step (and a few hash chunks) is in memory at a time, whatever the
    shard's size. ``prefetch=0`` computes each edit when its turn comes, in this thread.
    """
    header, data_start = read_header(source)
    new_header = dict(header)
    new_header["__metadata__"] = {**header.get("__metadata__", {}), **metadata}
    prefix = encode_header(new_header)
    entries = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in header.items() if k != "__metadata__")
    # The edits are computed one or two tensors ahead in a worker thread (torch releases the
    # GIL), so the math overlaps the kernel's copying and the hashing instead of adding to them.
    ahead = _Prefetch([(key, edits[key]) for _, _, key in entries if key in edits], depth=prefetch)
    fin = os.open(source, os.O_RDONLY)
    try:
        fout = os.open(destination, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            with ahead, StreamHasher() as hasher:
                _write_all(fout, prefix, 0)
                hasher.update(prefix)
                out_start, position = len(prefix), 0
                run_start = 0  # untouched tensors since the last edit: one kernel copy for the whole run

                def flush_run(upto: int, key: str) -> None:
                    if upto > run_start:
                        try:
                            copy_range(fin, fout, data_start + run_start, out_start + run_start, upto - run_start)
                        except EOFError:
                            raise ModelError(f"shard ends inside the tensors before {key!r} (truncated file?)",
                                             where=str(source), fix="re-download the model") from None
                        hasher.update_range(fin, data_start + run_start, upto - run_start)

                for begin, end, key in entries:
                    if begin != position:
                        raise ModelError(f"tensor data is not contiguous at {key!r}", where=str(source),
                                         fix="re-download the model")
                    if key in edits:
                        flush_run(begin, key)
                        data = tensor_view(ahead.next(key))  # written and hashed from the tensor itself
                        if data.nbytes != end - begin:
                            raise ModelError(f"edited {key!r} has {data.nbytes} bytes, expected {end - begin}",
                                             where=str(source))
                        _write_all(fout, data, out_start + begin)
                        hasher.update(data)
                        run_start = end
                    position = end
                flush_run(position, "the end")
                return hasher.hexdigest()
        finally:
            os.close(fout)
    finally:
        os.close(fin)


class _Prefetch:
    """Run ``producers`` in order in one worker thread, at most ``depth`` results ahead of the
    consumer. ``next(key)`` returns the next result (and re-raises its error here)."""

    def __init__(self, producers: list[tuple[str, Callable[[], torch.Tensor]]], depth: int) -> None:
        from collections import deque
        from concurrent.futures import ThreadPoolExecutor

        self._todo = deque(producers)
        self._depth = depth
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidunlearn-edit") if depth else None
        self._pending: deque = deque()
        self._fill()

    def _fill(self) -> None:
        while self._pool is not None and self._todo and len(self._pending) < self._depth:
            key, produce = self._todo.popleft()
            self._pending.append((key, self._pool.submit(_one_torch_thread, produce)))

    def next(self, key: str) -> torch.Tensor:
        if self._pool is None:
            expected, produce = self._todo.popleft()
            assert expected == key
            return produce()
        expected, future = self._pending.popleft()
        assert expected == key, (expected, key)
        self._fill()
        return future.result()

    def __enter__(self) -> "_Prefetch":
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            for _, future in self._pending:
                future.cancel()
            self._pool.shutdown(wait=True)


_threads_lock = threading.Lock()
_threads_users = [0, 0]  # [edit workers running a producer, torch's thread count before the first]


def _one_torch_thread(produce: Callable[[], torch.Tensor]) -> torch.Tensor:
    """Run ``produce`` with torch limited to one intra-op thread (in a prefetch worker).

    The copy and hash threads already keep the cores busy: torch's OpenMP threads only spun
    beside them, 3 times the CPU for the same edits on 2 contended cores (0.98 s against 0.35 s
    for the 60 edits of the 1.3B layout). torch's setting is per process: the first worker sets
    it and the last one restores it, so concurrent shard writers share one change."""
    with _threads_lock:
        if _threads_users[0] == 0:
            _threads_users[1] = torch.get_num_threads()
        _threads_users[0] += 1
        torch.set_num_threads(1)  # also this thread's own OpenMP setting, if another worker set it first
    try:
        return produce()
    finally:
        with _threads_lock:
            _threads_users[0] -= 1
            if _threads_users[0] == 0:
                torch.set_num_threads(_threads_users[1])


def _write_all(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def rewrite_shard_in_memory(source: Path, destination: Path, edits: dict[str, Callable[[], torch.Tensor]],
                            metadata: dict[str, str]) -> None:
    """Reference for :func:`rewrite_shard` (tests and benchmarks only): load the whole shard with
    ``safetensors.torch.load_file``, replace the edited tensors and ``save_file`` it again with
    the source metadata merged with ``metadata``. Holds the whole shard in memory."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    with safe_open(str(source), framework="pt") as handle:
        old_metadata = handle.metadata() or {}
    tensors = load_file(str(source))
    for key, produce in edits.items():
        if key not in tensors:
            raise ModelError(f"edited {key!r} is not in the shard", where=str(source))
        new = produce()
        if new.dtype != tensors[key].dtype or new.shape != tensors[key].shape:
            raise ModelError(f"edited {key!r} is {new.dtype} {list(new.shape)}, expected "
                             f"{tensors[key].dtype} {list(tensors[key].shape)}", where=str(source))
        tensors[key] = new.contiguous()
    save_file(tensors, str(destination), metadata={**old_metadata, **metadata})


@dataclass(frozen=True)
class EditRecord:
    component: str
    tensor: str
    shape: list[int]
    dtype: str
    change_norm: float
    relative_change: float


@dataclass(frozen=True)
class WrittenCheckpoint:
    records: list[EditRecord]  # one per edited tensor, sorted
    actions: dict[str, str]  # relative path -> "link" | "copy" | "rewrite"
    sha256: dict[str, str]  # relative path -> SHA-256 of every file written


def write_checkpoint(source: ModelSource, destination: Path, plan: list[PlannedEdit], metadata: dict[str, str],
                     advance: Callable[[int], None] | None = None, workers: int | None = None, *,
                     leave_out: frozenset[Path] = frozenset(), copy: bool = False) -> WrittenCheckpoint:
    """Write the whole edited pipeline folder into ``destination`` (which exists and is empty),
    without the files whose real paths are in ``leave_out``. Files that are not rewritten are
    hard-linked to the base's where the file system allows (so writing into one changes the
    other), or copied: always with ``copy``.

    Rewritten shards are hashed while they are written. Linked or copied files take their
    SHA-256 from the Hub cache's blob name when there is one, else are hashed in a background
    thread while the shards are rewritten. ``advance`` is called with the bytes of each file
    handled (for a progress bar).
    """
    from concurrent.futures import ThreadPoolExecutor

    by_file: dict[Path, dict[str, PlannedEdit]] = {}
    for edit in plan:
        assert edit.spec is not None
        for key in edit.keys:
            info = edit.weight if key == edit.weight.key else edit.bias
            assert info is not None
            by_file.setdefault(info.file.resolve(), {})[key] = edit
    records: list[EditRecord] = []

    def producer(edit: PlannedEdit, key: str) -> Callable[[], torch.Tensor]:
        def run() -> torch.Tensor:
            weight = _load(edit.weight)
            bias = None
            if edit.bias is not None and edit.spec is not None and edit.spec.touches_bias:
                bias = _load(edit.bias)  # a weight-only edit never reads the bias
            new_weight, new_bias = edit_linear(weight, bias, edit.spec)
            old, new = (weight, new_weight) if key == edit.weight.key else (bias, new_bias)
            assert old is not None and new is not None
            old32 = old.float()  # the norms double as the NaN/Inf check
            old_norm = float(torch.linalg.vector_norm(old32))
            # W' - W in one new float32 buffer, float32 operands only (mixed-dtype ops are slow)
            change = float(torch.linalg.vector_norm(new.to(torch.float32, copy=True).sub_(old32)))
            if not (math.isfinite(old_norm) and math.isfinite(change)):
                raise ModelError(f"tensor {key!r} contains NaN or Inf{'' if math.isfinite(old_norm) else ' in the base model'}",
                                 where=str(edit.weight.file), fix="check the model weights and the refusal vectors")
            records.append(EditRecord(edit.component, key, list(old.shape), str(old.dtype).removeprefix("torch."),
                                      change, change / max(old_norm, 1e-12)))
            return new

        return run

    actions: dict[str, str] = {}
    digests: dict[str, object] = {}
    shards = workers or default_shard_workers()
    # Shards are rewritten ``shards`` at a time (each copies, hashes and edits on its own threads);
    # linked files are hashed on one more thread. A failure anywhere cancels what has not started.
    with ThreadPoolExecutor(max_workers=shards, thread_name_prefix="vidunlearn-shard") as rewriters, \
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="vidunlearn-hash") as hashers:
        pending = []
        try:
            for file in model_files(source.path):
                rel = file.relative_to(source.path).as_posix()
                if rel in SKIP_FILES or file.resolve() in leave_out:
                    continue
                target = destination / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                edits = by_file.get(file.resolve())
                if edits:
                    job = {key: producer(edit, key) for key, edit in edits.items()}
                    digests[rel] = rewriters.submit(rewrite_shard, file, target, job, metadata)
                    actions[rel] = "rewrite"
                    pending.append((digests[rel], file))
                    continue
                actions[rel] = copy_file(file, target) if copy else link_or_copy(file, target)
                digests[rel] = known_sha256(file) or hashers.submit(sha256_file, target)
                if advance is not None:
                    advance(file.stat().st_size)
                pause_point("file-written")
            for future, file in pending:
                future.result()  # re-raises the first failure here
                if advance is not None:
                    advance(file.stat().st_size)
                pause_point("file-written")
        except BaseException:
            for future, _ in pending:
                future.cancel()
            raise
        sha256 = {rel: d if isinstance(d, str) else d.result() for rel, d in sorted(digests.items())}  # type: ignore[attr-defined]
    return WrittenCheckpoint(sorted(records, key=lambda r: (r.component, r.tensor)), actions, sha256)


def default_shard_workers() -> int:
    """Shards rewritten at once: one per CPU core, at most 4. Each keeps a copy thread (mostly
    kernel time) and a hash thread busy, so together they use about two cores per shard when
    they can, and one shard's hashing overlaps another's copy when they cannot. Memory grows by
    at most ``prefetch`` edited tensors per shard."""
    return max(1, min(4, os.cpu_count() or 1))


def hash_outputs(destination: Path) -> dict[str, str]:
    """SHA-256 of every file below ``destination`` (relative POSIX paths, sorted)."""
    return {p.relative_to(destination).as_posix(): sha256_file(p)
            for p in sorted(destination.rglob("*")) if p.is_file()}


def verify_layout(source: ModelSource, written: Path, leave_out: frozenset[Path] = frozenset()) -> None:
    """Check a written pipeline folder before it is renamed into place: every file of the
    source but those left out is there (non-shard files with their size), and every denoiser's
    shards parse (header and file size) with the source's tensor names, dtypes, shapes and byte lengths."""
    for file in model_files(source.path):
        rel = file.relative_to(source.path)
        target = written / rel
        if rel.as_posix() not in SKIP_FILES and file.resolve() not in leave_out and (
                not target.is_file() or target.stat().st_size != file.stat().st_size and target.suffix != ".safetensors"):
            raise ModelError("the written checkpoint is incomplete", where=str(rel), fix="re-run apply")
    layout = lambda infos: {k: (v.dtype, v.shape, v.end - v.begin) for k, v in infos.items()}
    for component in source.denoisers:
        if layout(tensor_infos(written / component, source.variant)) != layout(source.tensor_infos(component)):
            raise ModelError("the written checkpoint's tensors differ from the base model's", where=component,
                             fix="re-run apply")
