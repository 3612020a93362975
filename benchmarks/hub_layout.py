"""Checkpoint folders laid out exactly like the Hub's Wan Diffusers repos (real config, real key
names and shapes, huggingface_hub's 5 GB shards, index json), with random values: the inputs of
benchmarks/apply_vs_copy.py and benchmarks/extract_cost.py. Written one tensor at a time."""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

_WAN = {"patch_size": [1, 2, 2], "attention_head_dim": 128, "text_dim": 4096, "freq_dim": 256,
        "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "image_dim": None,
        "added_kv_proj_dim": None, "rope_max_seq_len": 1024}
LAYOUTS = {  # transformer/config.json of the Hub's Diffusers repos (the keys that set the sizes)
    "1.3b": {**_WAN, "num_attention_heads": 12, "in_channels": 16, "out_channels": 16, "ffn_dim": 8960,
             "num_layers": 30},  # Wan-AI/Wan2.1-T2V-1.3B-Diffusers
    "5b": {**_WAN, "num_attention_heads": 24, "in_channels": 48, "out_channels": 48, "ffn_dim": 14336,
           "num_layers": 30},  # Wan-AI/Wan2.2-TI2V-5B-Diffusers
    "14b": {**_WAN, "num_attention_heads": 40, "in_channels": 16, "out_channels": 16, "ffn_dim": 13824,
            "num_layers": 40},  # Wan-AI/Wan2.1-T2V-14B-Diffusers (and each Wan2.2 A14B expert)
}
DTYPES = {"float32": ("F32", 4), "bfloat16": ("BF16", 2)}
MAX_SHARD = 5 * 10**9  # huggingface_hub's "5GB"
WEIGHTS = "diffusion_pytorch_model"


# ------------------------------------------------------------------------------------- build
def _layout(config: dict) -> tuple[dict, list[tuple[str, tuple[int, ...]]]]:
    """(config to save, [(key, shape)] in state_dict order) from the model on the meta device."""
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel

    with init_empty_weights():
        model = WanTransformer3DModel(**config)
    entries = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    return dict(model.config), entries


def _split(entries: list[tuple[str, tuple[int, ...]]], itemsize: int) -> list[list[tuple[str, tuple[int, ...]]]]:
    """huggingface_hub.split_torch_state_dict_into_shards' greedy rule, in state_dict order."""
    shards: list[list] = [[]]
    size = 0
    for key, shape in entries:
        nbytes = math.prod(shape) * itemsize
        if shards[-1] and size + nbytes > MAX_SHARD:
            shards.append([])
            size = 0
        shards[-1].append((key, shape))
        size += nbytes
    return shards


POOL_ELEMENTS = 1 << 26  # 64 Mi random values, sliced at random offsets (randn of 14 B values is slow here)


def _write_shard(path: Path, entries: list[tuple[str, tuple[int, ...]]], seed: int, dtype: str) -> int:
    """A safetensors file as safetensors' own writer lays it out (one dtype: sorted by name), with
    random values (slices of a random pool at random offsets), written one tensor at a time."""
    import struct

    import torch

    code, itemsize = DTYPES[dtype]
    entries = sorted(entries)
    header: dict = {"__metadata__": {"format": "pt"}}
    offset = 0
    for key, shape in entries:
        nbytes = math.prod(shape) * itemsize
        header[key] = {"dtype": code, "shape": list(shape), "data_offsets": [offset, offset + nbytes]}
        offset += nbytes
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    generator = torch.Generator().manual_seed(seed)
    pool = torch.randn(POOL_ELEMENTS, generator=generator).mul_(0.02).to(getattr(torch, dtype))
    temp = path.with_name(path.name + ".partial")
    with open(temp, "wb") as handle:
        handle.write(struct.pack("<Q", len(raw)) + raw)
        for key, shape in entries:
            remaining = math.prod(shape)
            while remaining:
                start = int(torch.randint(0, POOL_ELEMENTS // 2, (1,), generator=generator))
                take = min(remaining, POOL_ELEMENTS - start)
                handle.write(pool[start:start + take].view(torch.uint8).numpy().tobytes())
                remaining -= take
    os.replace(temp, path)
    return path.stat().st_size


def build(root: Path, layout: str, dtype: str) -> Path:
    name = f"wan{layout.replace('.', '')}-{dtype}"
    model = root / name
    marker = root / f"{name}.built"
    if marker.is_file() and model.is_dir():
        print(f"reusing {model} (delete {marker} to rebuild)")
        return model
    shutil.rmtree(model, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    from vidunlearn.tiny import build_tiny_wan

    with tempfile.TemporaryDirectory(dir=root) as tmp:
        tiny = build_tiny_wan(Path(tmp) / "tiny", shard_bytes=None)
        model.mkdir()
        for name in ("text_encoder", "tokenizer", "vae", "scheduler"):
            shutil.copytree(tiny / name, model / name)
        shutil.copyfile(tiny / "model_index.json", model / "model_index.json")
    config, entries = _layout(LAYOUTS[layout])
    transformer = model / "transformer"
    transformer.mkdir()
    import diffusers

    config = {"_class_name": "WanTransformer3DModel", "_diffusers_version": diffusers.__version__,
              **{k: v for k, v in config.items() if not k.startswith("_")}}
    (transformer / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    itemsize = DTYPES[dtype][1]
    shards = _split(entries, itemsize)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards, start=1):
        shard_name = f"{WEIGHTS}-{i:05d}-of-{len(shards):05d}.safetensors"
        size = _write_shard(transformer / shard_name, shard, seed=i, dtype=dtype)
        total += sum(math.prod(s) * itemsize for _, s in shard)
        weight_map.update({k: shard_name for k, _ in shard})
        print(f"  wrote {shard_name}: {size / 1e9:.3f} GB, {len(shard)} tensors", flush=True)
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    (transformer / f"{WEIGHTS}.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    marker.write_text(json.dumps({"config": LAYOUTS[layout], "dtype": dtype, "tensors": len(entries),
                                  "bytes": total}) + "\n")
    print(f"built {model} in {time.perf_counter() - started:.1f} s; {len(entries)} tensors, "
          f"{sum(math.prod(s) for _, s in entries) / 1e9:.3f} B params; builder peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return model
