"""``vidunlearn verify OUT [--base BASE]``: is this output exactly what its manifest says?

1. Every file listed in ``vidunlearn.json`` exists with the listed SHA-256, and no file is unlisted.
2. With a base model: every tensor is compared byte for byte with the base's. The tensors that
   differ must be exactly the ones the manifest lists as edited (fp8 scales of edited weights
   may change too); each gets its change norm ||W' - W|| and the numerical rank of W' - W.
   Every other file is byte-identical to the base's.
A LoRA output is checked against its manifest and the base's shapes; its delta B A is reported.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from .errors import VidunlearnError
from .fsutil import sha256_file
from .layerchange import read_tensor
from .model import TensorInfo, read_header
from .quant import SCALE_SUFFIX, dequantize, is_fp8
from .wankeys import LORA_PREFIX, to_diffusers

# singular values below this share of the largest count as zero (stored-precision rounding)
RANK_TOLERANCE = {"F32": 1e-4, "F16": 3e-3, "BF16": 2e-2, "F8_E4M3": 1e-1, "F8_E5M2": 2e-1}


CASTS = {"F32": torch.float32, "BF16": torch.bfloat16, "F16": torch.float16}


class VerifyError(VidunlearnError):
    """The output does not match its manifest or its base."""


@dataclass
class ChangedTensor:
    file: str
    tensor: str
    shape: list[int]
    change_norm: float
    rank: int


@dataclass
class Verification:
    files_checked: int = 0
    changed: list[ChangedTensor] = field(default_factory=list)
    identical_tensors: int = 0
    identical_files: int = 0
    lora_modules_checked: int = 0
    base: str | None = None


def _manifest(out: Path) -> dict:
    path = out / "vidunlearn.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise VerifyError(f"no readable manifest ({type(exc).__name__})", where=str(path),
                          fix="pass a folder written by `vidunlearn apply`") from None


def check_hashes(out: Path, manifest: dict) -> int:
    listed = manifest.get("files") or {}
    for rel, digest in sorted(listed.items()):
        file = out / rel
        if not file.is_file():
            raise VerifyError("file listed in the manifest is missing", where=str(file), fix="re-download or re-run apply")
        if sha256_file(file) != digest:
            raise VerifyError("SHA-256 does not match the manifest: the file changed after apply", where=str(file),
                              fix="re-download it or re-run apply; do not use this output")
    extra = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                   if p.is_file() and p.name != "vidunlearn.json" and p.relative_to(out).as_posix() not in listed)
    if extra:
        raise VerifyError("file not listed in the manifest", where=str(out / extra[0]),
                          fix="remove it, or re-run apply")
    return len(listed)


def _read(info: TensorInfo, start: int) -> bytes:
    with open(info.file, "rb") as handle:
        handle.seek(start + info.begin)
        return handle.read(info.end - info.begin)


def _infos(path: Path) -> tuple[dict[str, TensorInfo], int]:
    header, start = read_header(path)
    return {k: TensorInfo(path, k, v["dtype"], tuple(v["shape"]), *v["data_offsets"])
            for k, v in header.items() if k != "__metadata__"}, start


def _as_float(info: TensorInfo, infos: dict[str, TensorInfo]) -> torch.Tensor:
    """float32 values of a tensor; fp8 dequantised with its ``scale_weight`` when the file has one."""
    tensor = read_tensor(info.file, info.key)
    if is_fp8(info.dtype):
        scale_key = info.key[: -len("weight")] + SCALE_SUFFIX
        return dequantize(tensor, read_tensor(info.file, scale_key) if scale_key in infos else None)
    return tensor.float()


def numerical_rank(delta: torch.Tensor, dtype: str) -> int:
    if delta.ndim != 2:
        return int(bool(delta.abs().max() > 0))
    values = torch.linalg.svdvals(delta.double())
    return int((values > values[0] * RANK_TOLERANCE.get(dtype, 1e-4)).sum()) if values[0] > 0 else 0


def _normal(name: str) -> str:
    try:
        return to_diffusers(name)
    except VidunlearnError:
        return name


def _base_file(out_file: Path, rel: str, manifest: dict, base: Path) -> tuple[Path, dict[str, str]]:
    """The base file an output file came from, and output key -> base key."""
    infos, _ = _infos(out_file)
    if base.is_file():  # a single-file base: same keys
        return base, {k: k for k in infos}
    if manifest.get("format", "diffusers") == "diffusers":
        return base / rel, {k: k for k in infos}
    component = read_header(out_file)[0].get("__metadata__", {}).get("vidunlearn.component", "transformer")
    return base / component, {k: to_diffusers(k) for k in infos if not k.endswith((SCALE_SUFFIX, "scale_input", "scaled_fp8"))}


def compare_with_base(out: Path, manifest: dict, base: Path, result: Verification) -> None:
    from .model import tensor_infos

    edited = {(_normal(r["tensor"])) for r in manifest.get("edited", [])}
    for rel in sorted(manifest.get("files") or {}):
        out_file = out / rel
        if rel == "README.md":
            continue
        if manifest.get("format") == "lora":
            _check_lora_shapes(out_file, base, result)
            continue
        if not rel.endswith(".safetensors"):
            base_file = base / rel
            if not base_file.is_file() or base_file.read_bytes() != out_file.read_bytes():
                raise VerifyError("file differs from the base", where=str(out_file), fix="this output is not the base plus the edit")
            result.identical_files += 1
            continue
        source, names = _base_file(out_file, rel, manifest, base)
        if source.is_file() and out_file.samefile(source):  # a hard link to the base: identical by construction
            result.identical_tensors += len(names)
            continue
        base_infos = tensor_infos(source) if source.is_dir() else _infos(source)[0]
        out_infos, out_start = _infos(out_file)
        starts: dict[Path, int] = {}
        for key, info in sorted(out_infos.items()):
            if key not in names:
                continue
            base_info = base_infos.get(names[key])
            if base_info is None or list(base_info.shape) != list(info.shape):
                raise VerifyError(f"tensor {key!r} is not in the base (or has another shape)", where=str(out_file),
                                  fix="check --base: it must be the model this output was made from")
            if base_info.file not in starts:
                starts[base_info.file] = read_header(base_info.file)[1]
            same_dtype = base_info.dtype == info.dtype
            if same_dtype and _read(info, out_start) == _read(base_info, starts[base_info.file]):
                result.identical_tensors += 1
                continue
            new = _as_float(info, out_infos)
            old = _as_float(base_info, _infos(base_info.file)[0] if is_fp8(base_info.dtype) else {})
            if not same_dtype and info.dtype in CASTS and torch.equal(new, old.to(CASTS[info.dtype]).float()):
                result.identical_tensors += 1  # only converted (--save-dtype): the same values
                continue
            if _normal(key) not in edited and names[key] not in edited and not key.endswith(SCALE_SUFFIX):
                raise VerifyError(f"tensor {key!r} differs from the base but is not listed as edited", where=str(out_file),
                                  fix="this output was modified after apply; do not use it")
            delta = new - old
            result.changed.append(ChangedTensor(rel, key, list(info.shape), float(delta.norm()),
                                                numerical_rank(delta, info.dtype)))


def _check_lora_shapes(out_file: Path, base: Path, result: Verification) -> None:
    """Every LoRA module must exist in the base with the shape B A has."""
    from .model import tensor_infos

    if not out_file.name.endswith(".safetensors"):
        return
    component = read_header(out_file)[0].get("__metadata__", {}).get("vidunlearn.component", "transformer")
    base_infos = ({to_diffusers(k): v for k, v in _infos(base)[0].items() if not k.endswith((SCALE_SUFFIX, "scale_input", "scaled_fp8"))}
                  if base.is_file() else tensor_infos(base / component))
    for change in (c for c in result.changed if c.file == out_file.name):
        info = base_infos.get(to_diffusers(change.tensor))
        if info is None or list(info.shape) != change.shape:
            raise VerifyError(f"LoRA module {change.tensor!r} has no weight of shape {change.shape} in the base",
                              where=str(out_file), fix="check --base: it must be the model this LoRA was made from")
        result.lora_modules_checked += 1


def lora_changes(out: Path, manifest: dict, result: Verification) -> None:
    from safetensors.torch import load_file

    for rel in sorted(manifest.get("files") or {}):
        if not rel.endswith(".safetensors"):
            continue
        tensors = load_file(str(out / rel))
        for key in sorted(k for k in tensors if k.endswith(".lora_A.weight")):
            module = key[: -len(".lora_A.weight")]
            delta = tensors[module + ".lora_B.weight"].float() @ tensors[key].float()
            result.changed.append(ChangedTensor(rel, module.removeprefix(LORA_PREFIX) + ".weight", list(delta.shape),
                                                float(delta.norm()), numerical_rank(delta, "F32")))


def verify(out: Path, base: str | None = None) -> Verification:
    """Check ``out`` against its manifest and, with ``base``, against the base model's files."""
    manifest = _manifest(out)
    result = Verification(files_checked=check_hashes(out, manifest))
    if manifest.get("format") == "lora":
        lora_changes(out, manifest, result)
    if base is not None:
        base_path = Path(base)
        if not base_path.exists():
            from .model import resolve_model

            base_path = resolve_model(base).path
        result.base = str(base_path)
        compare_with_base(out, manifest, base_path, result)
    return result
