"""The JSON header that opens a safetensors file: writing it, and reading and checking it
without reading any tensor data (moved out of model.py, unchanged)."""

from __future__ import annotations

import json
import math
import os
import struct
from pathlib import Path

from .errors import ModelError
from .modelfiles import special_kind

MAX_HEADER_BYTES = 100 << 20
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1,
               "U16": 2, "U32": 4, "U64": 8, "F8_E4M3": 1, "F8_E5M2": 1, "F8_E8M0": 1, "F8_E4M3FNUZ": 1,
               "F8_E5M2FNUZ": 1, "C64": 8}  # any other dtype (a typo, or sub-byte F4/F6) is refused
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "F8_E8M0", "F8_E4M3FNUZ", "F8_E5M2FNUZ"})


def encode_header(header: dict, *, sort_keys: bool = False) -> bytes:
    """The bytes that open a safetensors file: the little-endian u64 length, then the compact
    JSON ``header`` padded with spaces to a multiple of 8 (as safetensors' own writer pads)."""
    raw = json.dumps(header, sort_keys=sort_keys, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def read_header(path: Path) -> tuple[dict, int]:
    """Parse a safetensors header without reading tensor data. Returns (header, data_start).
    Only a regular file is opened (a FIFO would block the read forever)."""
    try:
        kind = special_kind(os.stat(path).st_mode)
        if kind is not None:
            raise ValueError(f"{kind}, not a regular file")
        with open(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
            kind = special_kind(os.fstat(handle.fileno()).st_mode)  # replaced since the stat?
            if kind is not None:
                raise ValueError(f"{kind}, not a regular file")
            raw = handle.read(8)
            if len(raw) != 8:
                raise ValueError("file shorter than 8 bytes")
            (length,) = struct.unpack("<Q", raw)
            if length > MAX_HEADER_BYTES:
                raise ValueError(f"header length {length} is implausible")
            header = json.loads(handle.read(length))
        data_end = _check_entries(header)
        size = path.stat().st_size
        if size != 8 + length + data_end:
            raise ValueError(f"{size} bytes, its header describes {8 + length + data_end}: truncated or padded")
    except (OSError, ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ModelError(f"not a readable safetensors file ({str(exc)[:160]})", where=str(path),
                         fix="re-download the model or check the file") from None
    return header, 8 + length


def _check_entries(header: object) -> int:
    """Validate a parsed safetensors header; return the end of the data section. The tensors'
    byte ranges must tile the data section from 0 with no hole and no overlap (safetensors'
    own loader refuses anything else, with a traceback)."""
    if not isinstance(header, dict):
        raise ValueError("header is not a JSON object")
    ranges: list[tuple[int, int, str]] = []
    for key, entry in header.items():
        if key == "__metadata__":
            if not isinstance(entry, dict) or not all(isinstance(v, str) for v in entry.values()):
                raise ValueError("__metadata__ is not a string mapping")
            continue
        ok = (isinstance(entry, dict) and isinstance(entry.get("dtype"), str)
              and isinstance(entry.get("shape"), list) and all(type(d) is int and d >= 0 for d in entry["shape"])
              and isinstance(entry.get("data_offsets"), list) and len(entry["data_offsets"]) == 2
              and all(type(o) is int for o in entry["data_offsets"])
              and 0 <= entry["data_offsets"][0] <= entry["data_offsets"][1])
        if not ok:
            raise ValueError(f"malformed entry for tensor {key[:80]!r}")
        begin, stop = entry["data_offsets"]
        size = DTYPE_BYTES.get(entry["dtype"])
        if size is None:
            raise ValueError(f"tensor {key[:80]!r} has unknown dtype {entry['dtype'][:20]!r}")
        if stop - begin != size * math.prod(entry["shape"]):
            raise ValueError(f"tensor {key[:80]!r} has {stop - begin} bytes, its shape needs {size * math.prod(entry['shape'])}")
        ranges.append((begin, stop, key))
    end = 0
    for begin, stop, key in sorted(ranges):
        if begin != end:
            raise ValueError(f"tensor {key[:80]!r} starts at byte {begin}, the tensor before it ends at {end}: "
                             f"{'a hole' if begin > end else 'an overlap'} in the data section")
        end = stop
    return end
