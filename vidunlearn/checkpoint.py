"""Write an edited checkpoint by streaming: never instantiate the denoiser.

For every safetensors shard that holds a planned tensor, the output shard keeps the input's
header (key set, dtypes, shapes, byte offsets) with ``vidunlearn.*`` metadata added, copies
every untouched tensor's bytes verbatim and writes the edited tensors in place, one tensor in
memory at a time. Every other file (other shards, configs, text encoder, VAE, tokenizer) is
hard-linked where the file system allows, else copied; nothing is re-serialised.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .edit import EditSpec, edit_linear
from .errors import ModelError
from .fsutil import CHUNK, link_or_copy, sha256_file
from .faults import pause_point
from .model import ModelSource, TensorInfo, model_files, read_header, tensor_infos

SKIP_FILES = {"README.md", "vidunlearn.json"}  # replaced by our own card and manifest


@dataclass(frozen=True)
class PlannedEdit:
    """One linear layer to rewrite. ``site`` is ``component/site_name``."""

    component: str
    module: str
    site: str
    weight: TensorInfo
    bias: TensorInfo | None
    spec: EditSpec | None  # None in a dry run, before any direction is known

    @property
    def keys(self) -> list[str]:
        assert self.spec is not None
        keys = [self.weight.key] if self.spec.touches_weight else []
        if self.spec.touches_bias and self.bias is not None:
            keys.append(self.bias.key)
        return keys


def plan_edits(source: ModelSource, specs: dict[str, EditSpec | None], module_filter: str | None) -> list[PlannedEdit]:
    """Every layer each site's spec applies to (``site key -> spec``; a None spec plans a dry
    run), checked against the shard headers alone.

    Fails when a targeted module is missing or its input size differs from the direction's.
    """
    adapter = source.adapter
    plan: list[PlannedEdit] = []
    for site_key, spec in sorted(specs.items()):
        component, site_name = site_key.split("/", 1)
        if component not in source.denoisers:
            raise ModelError(f"component {component!r} is not in this model (has {source.denoisers})",
                             where=str(source.path), fix="use refusal vectors extracted from this model")
        infos = tensor_infos(source.component_dir(component))
        modules = adapter.targets_matching(adapter.site(site_name), source.config(component), module_filter)
        if not modules:
            raise ModelError(f"--sites {module_filter!r} matches no target layer of {site_key}",
                             fix="use a regex on module names such as 'attn2.to_k'")
        for module in modules:
            weight = infos.get(f"{module}.weight")
            if weight is None:
                raise ModelError(f"targeted module {module!r} is missing", where=str(source.component_dir(component)),
                                 fix="the checkpoint does not match its config")
            hidden = spec.basis.shape[0] if spec is not None else weight.shape[-1]
            if len(weight.shape) != 2 or weight.shape[1] != hidden:
                raise ModelError(f"{module}.weight has shape {list(weight.shape)}, the direction has size {hidden}",
                                 where=component, fix="the refusal vectors come from another model")
            bias = infos.get(f"{module}.bias")
            if spec is not None and spec.touches_bias and bias is None:
                raise ModelError(f"mode {spec.mode!r} needs {module}.bias, which is absent", fix="use --mode project")
            plan.append(PlannedEdit(component, module, site_key, weight, bias, spec))
    return plan


def _load(info: TensorInfo) -> torch.Tensor:
    from safetensors import safe_open

    with safe_open(str(info.file), framework="pt") as handle:
        return handle.get_tensor(info.key)


def _to_bytes(tensor: torch.Tensor) -> bytes:
    return tensor.contiguous().view(torch.uint8).numpy().tobytes()


def _copy_range(source, destination, length: int) -> None:
    while length > 0:
        chunk = source.read(min(CHUNK, length))
        if not chunk:
            raise ModelError("shard ended early", where=str(source.name), fix="re-download the model")
        destination.write(chunk)
        length -= len(chunk)


def rewrite_shard(source: Path, destination: Path, edits: dict[str, Callable[[], torch.Tensor]],
                  metadata: dict[str, str]) -> None:
    """Copy ``source`` to ``destination`` replacing the tensors in ``edits`` (key -> producer of
    the new tensor, same dtype and shape)."""
    header, data_start = read_header(source)
    new_header = dict(header)
    new_header["__metadata__"] = {**header.get("__metadata__", {}), **metadata}
    raw = json.dumps(new_header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    entries = sorted((v["data_offsets"][0], v["data_offsets"][1], k) for k, v in header.items() if k != "__metadata__")
    with open(source, "rb") as fin, open(destination, "wb") as fout:
        fout.write(struct.pack("<Q", len(raw)) + raw)
        position = 0
        for begin, end, key in entries:
            if begin != position:
                raise ModelError(f"tensor data is not contiguous at {key!r}", where=str(source))
            if key in edits:
                data = _to_bytes(edits[key]())
                if len(data) != end - begin:
                    raise ModelError(f"edited {key!r} has {len(data)} bytes, expected {end - begin}", where=str(source))
                fout.write(data)
                fin.seek(data_start + end)
            else:
                fin.seek(data_start + begin)
                _copy_range(fin, fout, end - begin)
            position = end


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


def write_checkpoint(source: ModelSource, destination: Path, plan: list[PlannedEdit], metadata: dict[str, str],
                     advance: Callable[[int], None] | None = None) -> tuple[list[EditRecord], dict[str, str]]:
    """Write the whole edited pipeline folder into ``destination`` (which exists and is empty).

    Returns the per-tensor change records and {relative path: "link"|"copy"|"rewrite"}.
    ``advance`` is called with the bytes of each file handled (for a progress bar).
    """
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
            bias = _load(edit.bias) if edit.bias is not None else None
            new_weight, new_bias = edit_linear(weight, bias, edit.spec)
            old, new = (weight, new_weight) if key == edit.weight.key else (bias, new_bias)
            assert old is not None and new is not None
            change = float((new.float() - old.float()).norm())
            records.append(EditRecord(edit.component, key, list(old.shape), str(old.dtype).removeprefix("torch."),
                                      change, change / max(float(old.float().norm()), 1e-12)))
            return new

        return run

    actions: dict[str, str] = {}
    for file in model_files(source.path):
        rel = file.relative_to(source.path)
        if rel.as_posix() in SKIP_FILES:
            continue
        target = destination / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        edits = by_file.get(file.resolve())
        if edits:
            rewrite_shard(file, target, {key: producer(edit, key) for key, edit in edits.items()}, metadata)
            actions[rel.as_posix()] = "rewrite"
        else:
            actions[rel.as_posix()] = link_or_copy(file, target)
        if advance is not None:
            advance(file.stat().st_size)
        pause_point("file-written")
    return sorted(records, key=lambda r: (r.component, r.tensor)), actions


def hash_outputs(destination: Path) -> dict[str, str]:
    """SHA-256 of every file below ``destination`` (relative POSIX paths, sorted)."""
    return {p.relative_to(destination).as_posix(): sha256_file(p)
            for p in sorted(destination.rglob("*")) if p.is_file()}
