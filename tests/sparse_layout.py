"""Real-size denoiser folders that cost no disk: the real config.json, and safetensors shards
whose headers name every tensor of the model (built on the meta device) with its real shape,
split at huggingface_hub's 5 GB like the Hub's repos, with the index json; the data part of
each file is a hole (``truncate``), so it reads as zeros and occupies nothing. Enough for
everything that reads headers and configs only (``apply --dry-run``, plan checks)."""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

ITEMSIZE = {"F32": 4, "BF16": 2, "F16": 2}
MAX_SHARD = 5 * 10**9  # huggingface_hub's "5GB"
WEIGHTS = "diffusion_pytorch_model"


def layout(class_name: str, config: dict) -> list[tuple[str, tuple[int, ...]]]:
    """[(key, shape)] of diffusers' ``class_name`` built from ``config`` on the meta device, in state_dict order."""
    import diffusers
    from accelerate import init_empty_weights

    cls = getattr(diffusers, class_name)
    with init_empty_weights():
        model = cls.from_config({k: v for k, v in config.items() if not k.startswith("_")})
    return [(key, tuple(value.shape)) for key, value in model.state_dict().items()]


def split(entries: list[tuple[str, tuple[int, ...]]], itemsize: int, max_shard: int = MAX_SHARD) -> list[list]:
    """huggingface_hub.split_torch_state_dict_into_shards' greedy rule, in state_dict order."""
    shards: list[list] = [[]]
    size = 0
    for key, shape in entries:
        nbytes = math.prod(shape) * itemsize
        if shards[-1] and size + nbytes > max_shard:
            shards.append([])
            size = 0
        shards[-1].append((key, shape))
        size += nbytes
    return shards


def write_sparse_file(path: Path, entries: list[tuple[str, tuple[int, ...]]], dtype: str = "BF16") -> int:
    """One safetensors file as safetensors lays it out (sorted by name), data a hole; returns its size."""
    itemsize = ITEMSIZE[dtype]
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for key, shape in sorted(entries):
        nbytes = math.prod(shape) * itemsize
        header[key] = {"dtype": dtype, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    total = 8 + len(raw) + offset
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        handle.truncate(total)
    return total


def write_sparse_denoiser(folder: Path, class_name: str, config: dict, dtype: str = "BF16",
                          max_shard: int = MAX_SHARD) -> list[tuple[str, tuple[int, ...]]]:
    """``folder`` (a pipeline's ``transformer/``, ``unet/``...) with ``config`` as config.json and
    sparse shards of every tensor ``class_name`` has for it; returns [(key, shape)]."""
    import diffusers

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    saved = {"_class_name": class_name, "_diffusers_version": diffusers.__version__,
             **{k: v for k, v in config.items() if not k.startswith("_")}}
    (folder / "config.json").write_text(json.dumps(saved, indent=2, sort_keys=True) + "\n")
    entries = layout(class_name, config)
    shards = split(entries, ITEMSIZE[dtype], max_shard)
    if len(shards) == 1:
        write_sparse_file(folder / f"{WEIGHTS}.safetensors", entries, dtype)
        return entries
    weight_map, total = {}, 0
    for i, shard in enumerate(shards, start=1):
        name = f"{WEIGHTS}-{i:05d}-of-{len(shards):05d}.safetensors"
        write_sparse_file(folder / name, shard, dtype)
        total += sum(math.prod(shape) * ITEMSIZE[dtype] for _, shape in shard)
        weight_map.update({key: name for key, _ in shard})
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (folder / f"{WEIGHTS}.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return entries
