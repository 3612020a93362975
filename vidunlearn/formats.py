"""Output formats besides the diffusers folder: a single file with the family's original /
ComfyUI key names (``adapter.keymap``), and the exact low-rank delta as a LoRA.

single-file: one safetensors per denoiser (``transformer.safetensors``; a single-file source keeps
    its own file name and key names). Streamed: untouched tensors are copied byte for byte (or
    converted one at a time with ``save_dtype``), edited ones written from :mod:`layerchange`.
    A family without a keymap is refused in one line (``adapter.single_file_refusal`` says why).
lora: W' = W - s (W Q) Q^T = W + B A with A = Q^T (k, in) and B = -s W Q (out, k), stored as
    ``<name>.lora_A.weight`` / ``.lora_B.weight`` with the names of ``adapter.lora_key``: Wan's
    original names (``diffusion_model.blocks.N.cross_attn.k``, read by diffusers' WanLoraLoaderMixin
    and ComfyUI), else diffusers' ``<component>.<module>``; a bias change b' - b is stored as
    ``....diff_b`` (Wan) or ``....lora_B.bias`` (``adapter.lora_bias``). No alpha tensor: the scale is 1.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .checkpoint import EditRecord, tensor_bytes
from .errors import ModelError, OutputError
from .hashing import StreamHasher, copy_range
from .layerchange import LayerChange, compute_change, read_tensor
from .model import ModelSource, encode_header, read_header
from .plan import PlannedEdit
from .quant import is_fp8

FORMATS = ("diffusers", "single-file", "lora")
ST_DTYPES = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}
SAVE_DTYPES = {"float32": "F32", "bfloat16": "BF16", "float16": "F16"}
LORA_FILE = "pytorch_lora_weights.safetensors"  # the name diffusers' load_lora_weights looks for


def resolve_format(output_format: str | None, save_dtype: str | None, *, single_file: bool, where: str,
                   adapter=None) -> str:
    """The output format to write (default: diffusers, or single-file for a single-file source);
    refuses combinations that cannot be honoured."""
    output_format = output_format or ("single-file" if single_file else "diffusers")
    if output_format not in FORMATS:
        raise OutputError(f"unknown --format {output_format!r}", fix=f"use one of {', '.join(FORMATS)}")
    if output_format == "single-file" and adapter is not None and adapter.keymap is None:
        raise OutputError(f"--format single-file: the {adapter.family} family {adapter.single_file_refusal}",
                          where=where, fix="use --format diffusers or --format lora")
    if output_format == "lora" and adapter is not None and adapter.lora_refusal:
        raise OutputError(f"--format lora: the {adapter.family} family {adapter.lora_refusal}", where=where,
                          fix="leave --format out")
    if single_file and output_format == "diffusers":
        raise OutputError("a single-file --model stays a single file", where=where,
                          fix="use --format single-file or --format lora")
    if save_dtype is not None and save_dtype not in SAVE_DTYPES:
        raise OutputError(f"unknown --save-dtype {save_dtype!r}", fix=f"use one of {', '.join(SAVE_DTYPES)}")
    if save_dtype is not None and output_format == "diffusers":
        raise OutputError("--save-dtype needs --format single-file or lora",
                          fix="the diffusers folder keeps the stored dtype of every tensor")
    return output_format


def lora_file_name(source: ModelSource, component: str) -> str:
    """The first denoiser's LoRA is the file load_lora_weights looks for; another's has its name."""
    first = source.adapter.denoisers[0]
    return LORA_FILE if component == first else f"pytorch_lora_weights_{component}.safetensors"


def single_file_name(source: ModelSource, component: str) -> str:
    file = getattr(source, "file", None)
    return file.name if file is not None else f"{component}.safetensors"


@dataclass
class Report:
    """What a writer did: per-tensor records, fp8 survival per tensor, files written."""

    records: list[EditRecord] = field(default_factory=list)
    survival: dict[str, float] = field(default_factory=dict)
    files: list[str] = field(default_factory=list)
    sha256: dict[str, str] = field(default_factory=dict)  # of the files hashed while written


def write_safetensors(destination: Path, entries: list[tuple[str, str, list[int], int, Callable[[], bytes] | tuple[Path, int, int]]],
                      metadata: dict[str, str], advance: Callable[[int], None] | None = None) -> str:
    """Stream a safetensors file: ``entries`` are (key, dtype, shape, nbytes, producer) where the
    producer is a callable returning the bytes or (file, absolute offset, length) to copy.
    ``advance`` is called with each tensor's byte count (progress). Returns the file's SHA-256,
    computed while writing (``hashing.StreamHasher``, as for rewritten shards)."""
    header: dict = {"__metadata__": metadata}
    offset = 0
    for key, dtype, shape, nbytes, _ in entries:
        header[key] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    with contextlib.ExitStack() as sources, open(destination, "wb") as out, StreamHasher() as hasher:
        opened: dict[Path, int] = {}  # source fds stay open until the hasher has read them
        prefix = encode_header(header)
        out.write(prefix)
        hasher.update(prefix)
        for key, _, _, nbytes, producer in entries:
            if callable(producer):
                data = producer()
                if len(data) != nbytes:
                    raise ModelError(f"{key!r} has {len(data)} bytes, expected {nbytes}", where=str(destination))
                out.write(data)
                hasher.update(data)
                if advance is not None:
                    advance(nbytes)
                continue
            file, begin, length = producer
            if file not in opened:
                opened[file] = sources.enter_context(open(file, "rb")).fileno()
            out.flush()  # the kernel copies at explicit offsets, past Python's buffer
            position = out.tell()
            try:
                copy_range(opened[file], out.fileno(), begin, position, length)
            except EOFError:
                raise ModelError("file ended early", where=str(file), fix="re-download the model") from None
            hasher.update_range(opened[file], begin, length)
            out.seek(position + length)
            if advance is not None:
                advance(nbytes)
        return hasher.hexdigest()


class _Changes:
    """Layer changes computed on first use, dropped once every key of the layer was taken."""

    def __init__(self, source: ModelSource, plan: list[PlannedEdit], report: Report) -> None:
        self.source, self.report = source, report
        self.keys: dict[str, list[str]] = {}  # weight key -> every file key of its layer
        self.by_key: dict[str, PlannedEdit] = {}
        for edit in plan:
            scale = source.scale_info(edit.component, f"{edit.module}.weight")
            keys = [edit.weight.key] + [i.key for i in (edit.bias, scale) if i is not None]
            self.keys[edit.weight.key] = keys
            self.by_key.update({key: edit for key in keys})
        self.cache: dict[str, tuple[LayerChange, set[str]]] = {}

    def get(self, edit: PlannedEdit) -> LayerChange:
        if edit.weight.key not in self.cache:
            change = compute_change(self.source, edit)
            self.cache[edit.weight.key] = (change, set(self.keys.get(edit.weight.key, [])))
            self.report.records.extend(change.records())
            if change.survival is not None:
                self.report.survival[edit.weight.key] = change.survival
        return self.cache[edit.weight.key][0]

    def take(self, key: str) -> torch.Tensor | None:
        """The new tensor for file key ``key``, or None when the edit leaves it as it was."""
        edit = self.by_key[key]
        change = self.get(edit)
        pending = self.cache[edit.weight.key][1]
        pending.discard(key)
        if not pending:
            del self.cache[edit.weight.key]
        return change.stored.get(key)


def write_single_file(source: ModelSource, component: str, plan: list[PlannedEdit], destination: Path,
                      metadata: dict[str, str], save_dtype: str | None, report: Report,
                      advance: Callable[[int], None] | None = None) -> None:
    """One denoiser as one safetensors file with the family's original key names."""
    from safetensors import safe_open

    target = SAVE_DTYPES[save_dtype] if save_dtype else None
    keymap = source.adapter.keymap
    assert keymap is not None, "resolve_format refuses single-file for a family without a keymap"
    changes = _Changes(source, [e for e in plan if e.component == component], report)
    file = getattr(source, "file", None)
    if file is not None:  # a single-file source: its own keys (prefix, fp8 scales, markers) verbatim
        header, start = read_header(file)
        base_meta = header.pop("__metadata__", {})
        items = [(key, key, entry["dtype"], entry["shape"], file, start + entry["data_offsets"][0],
                  entry["data_offsets"][1] - entry["data_offsets"][0]) for key, entry in header.items()]
    else:
        base_meta = {"format": "pt"}
        starts: dict[Path, int] = {}
        items = []
        for name, info in source.tensor_infos(component).items():
            if info.file not in starts:
                with safe_open(str(info.file), framework="pt") as handle:
                    base_meta = {**(handle.metadata() or {}), **base_meta}
                starts[info.file] = read_header(info.file)[1]
            items.append((info.key, keymap.to_original(name), info.dtype, list(info.shape), info.file,
                          starts[info.file] + info.begin, info.end - info.begin))
    if target is not None and any(is_fp8(item[2]) for item in items):
        raise OutputError("--save-dtype cannot convert an fp8 checkpoint", where=str(file),
                          fix="leave --save-dtype out: the fp8 layout and scales are kept")
    entries = []
    for key, out_key, dtype, shape, path, begin, length in sorted(items, key=lambda item: item[1]):
        convert = target is not None and dtype in ST_DTYPES and dtype != target
        out_dtype = target if convert else dtype
        nbytes = length // ST_DTYPES[dtype].itemsize * ST_DTYPES[target].itemsize if convert else length
        if key in changes.by_key:
            def producer(k=key, p=path, c=convert) -> bytes:
                new = changes.take(k)
                tensor = new if new is not None else read_tensor(p, k)
                return tensor_bytes(tensor.to(ST_DTYPES[target]) if c else tensor)
        elif convert:
            producer = (lambda p=path, k=key: tensor_bytes(read_tensor(p, k).to(ST_DTYPES[target])))
        else:
            producer = (path, begin, length)
        entries.append((out_key, out_dtype, list(shape), nbytes, producer))
    report.sha256[destination.name] = write_safetensors(destination, entries, {**base_meta, **metadata}, advance)
    report.files.append(destination.name)


def write_lora(source: ModelSource, component: str, plan: list[PlannedEdit], destination: Path,
               metadata: dict[str, str], save_dtype: str | None, report: Report) -> None:
    """The exact delta of one denoiser's edit as a rank-k LoRA (float32 unless ``save_dtype``)."""
    dtype = ST_DTYPES[SAVE_DTYPES[save_dtype or "float32"]]
    tensors: dict[str, torch.Tensor] = {}
    for edit in (e for e in plan if e.component == component):
        assert edit.spec is not None
        change = compute_change(source, edit)
        report.records.extend(change.records())
        if change.survival is not None:
            report.survival[edit.weight.key] = change.survival
        name = source.adapter.lora_key(component, edit.module)
        rank = max(edit.spec.rank, 1)
        if edit.spec.touches_weight and edit.spec.right is not None:  # uce, remap: W + lambda (W A) B^T
            up = edit.spec.strength * (change.weight @ edit.spec.basis.float())  # (out, n)
            down = edit.spec.right.float().T  # (n, in)
        elif edit.spec.touches_weight:
            basis = edit.spec.basis.float()  # (in, k)
            up = -edit.spec.strength * (change.weight @ basis)  # (out, k)
            down = basis.T  # (k, in)
        else:  # bias-only edit: an all-zero factor pair keeps loaders' A/B bookkeeping happy
            up = torch.zeros(change.weight.shape[0], rank)
            down = torch.zeros(rank, change.weight.shape[1])
        tensors[f"{name}.lora_A.weight"] = down.to(dtype).contiguous().clone()
        tensors[f"{name}.lora_B.weight"] = up.to(dtype).contiguous()
        if edit.spec.touches_bias and change.bias is not None and change.new_bias is not None:
            tensors[f"{name}.{source.adapter.lora_bias}"] = (change.new_bias.float() - change.bias.float()).to(dtype)
    if not tensors:
        raise OutputError(f"the edit changes nothing in {component}", fix="check --strength and --sites")
    # written by write_safetensors, not safetensors' save_file: its header follows a hash map's
    # order, so the bytes (and SHA-256) changed from run to run
    code = SAVE_DTYPES[save_dtype or "float32"]
    entries = [(key, code, list(tensor.shape), tensor.numel() * dtype.itemsize, lambda t=tensor: tensor_bytes(t))
               for key, tensor in sorted(tensors.items())]
    report.sha256[destination.name] = write_safetensors(destination, entries, dict(sorted({"format": "pt", **metadata}.items())))
    destination.chmod(0o644)
    report.files.append(destination.name)


def write_format(source: ModelSource, destination: Path, plan: list[PlannedEdit], output_format: str,
                 metadata: dict[str, str], save_dtype: str | None,
                 advance: Callable[[int], None] | None = None) -> Report:
    """Write every denoiser of ``source`` as ``output_format`` ("single-file" or "lora") into the
    folder ``destination``. ``advance`` gets bytes written (single-file) or 1 per denoiser (lora)."""
    report = Report()
    for component in source.denoisers:
        if output_format == "single-file":
            write_single_file(source, component, plan, destination / single_file_name(source, component),
                              {**metadata, "vidunlearn.component": component}, save_dtype, report, advance)
        elif output_format == "lora":
            write_lora(source, component, plan, destination / lora_file_name(source, component),
                       {**metadata, "vidunlearn.component": component}, save_dtype, report)
            if advance is not None:
                advance(1)
        else:
            raise OutputError(f"unknown --format {output_format!r}", fix=f"use one of {FORMATS}")
    report.records.sort(key=lambda r: (r.component, r.tensor))
    return report
