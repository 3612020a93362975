"""Checkpoint folders laid out exactly like the Hub's repos of every supported family (real config,
real key names and shapes), with random values: the inputs of benchmarks/apply_vs_copy.py and
benchmarks/extract_cost.py. A Diffusers repo's denoiser is cut in huggingface_hub's 5 GB shards
with the index json; a family with its own folder layout (``Adapter.layout``: Open-Sora 2.0) gets
its one denoiser file at the folder's root, as its Hub repo has it (no shards, no config.json).
Written one tensor at a time. Only the denoiser is real-size; the other components come from the
family's tiny pipeline (vidunlearn/tiny_families). ``blocks``: a REDUCED build (fewer blocks,
every other size real) for checking the benchmark code cheaply; its figures are not the model's."""

from __future__ import annotations

import json
import math
import os
import resource
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Layout:
    """One Hub repo's denoiser: its family, component, class (diffusers', or the family's own), the
    config keys that set the sizes, the repo it mirrors, and the dtype the Hub stores it in."""

    family: str
    component: str
    denoiser: str
    config: dict
    repo: str
    dtype: str


_WAN = {"patch_size": [1, 2, 2], "attention_head_dim": 128, "text_dim": 4096, "freq_dim": 256,
        "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "image_dim": None,
        "added_kv_proj_dim": None, "rope_max_seq_len": 1024}
_COG = {"attention_head_dim": 64, "in_channels": 16, "out_channels": 16, "time_embed_dim": 512, "text_embed_dim": 4096,
        "patch_size": 2, "max_text_seq_length": 226, "sample_width": 90, "sample_height": 60, "sample_frames": 49,
        "temporal_compression_ratio": 4}
_W = ("wan", "transformer", "WanTransformer3DModel")
LAYOUTS = {  # <component>/config.json of the Hub's Diffusers repos (the keys that set the sizes)
    "1.3b": Layout(*_W, {**_WAN, "num_attention_heads": 12, "in_channels": 16, "out_channels": 16, "ffn_dim": 8960,
                         "num_layers": 30}, "Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "float32"),
    "5b": Layout(*_W, {**_WAN, "num_attention_heads": 24, "in_channels": 48, "out_channels": 48, "ffn_dim": 14336,
                       "num_layers": 30}, "Wan-AI/Wan2.2-TI2V-5B-Diffusers", "bfloat16"),
    "14b": Layout(*_W, {**_WAN, "num_attention_heads": 40, "in_channels": 16, "out_channels": 16, "ffn_dim": 13824,
                        "num_layers": 40}, "Wan-AI/Wan2.1-T2V-14B-Diffusers (and each Wan2.2 A14B expert)", "bfloat16"),
    "i2v-14b": Layout("wan-i2v", "transformer", "WanTransformer3DModel", {
        **_WAN, "num_attention_heads": 40, "in_channels": 36, "out_channels": 16, "ffn_dim": 13824, "num_layers": 40,
        "image_dim": 1280, "added_kv_proj_dim": 5120}, "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers (and -720P-)", "bfloat16"),
    "ltx-2b": Layout("ltx", "transformer", "LTXVideoTransformer3DModel", {
        "in_channels": 128, "out_channels": 128, "patch_size": 1, "patch_size_t": 1, "num_attention_heads": 32,
        "attention_head_dim": 64, "cross_attention_dim": 2048, "num_layers": 28, "caption_channels": 4096,
        "qk_norm": "rms_norm_across_heads", "activation_fn": "gelu-approximate", "norm_elementwise_affine": False,
        "norm_eps": 1e-6, "attention_bias": True, "attention_out_bias": True}, "Lightricks/LTX-Video", "float32"),
    "cogvideox-2b": Layout("cogvideox", "transformer", "CogVideoXTransformer3DModel", {
        **_COG, "num_attention_heads": 30, "num_layers": 30, "use_rotary_positional_embeddings": False},
        "THUDM/CogVideoX-2b", "float16"),
    "cogvideox-5b": Layout("cogvideox", "transformer", "CogVideoXTransformer3DModel", {
        **_COG, "num_attention_heads": 48, "num_layers": 42, "use_rotary_positional_embeddings": True},
        "THUDM/CogVideoX-5b", "bfloat16"),
    "hunyuan-13b": Layout("hunyuan", "transformer", "HunyuanVideoTransformer3DModel", {
        "in_channels": 16, "out_channels": 16, "num_attention_heads": 24, "attention_head_dim": 128, "num_layers": 20,
        "num_single_layers": 40, "num_refiner_layers": 2, "mlp_ratio": 4.0, "patch_size": 2, "patch_size_t": 1,
        "qk_norm": "rms_norm", "guidance_embeds": True, "text_embed_dim": 4096, "pooled_projection_dim": 768,
        "rope_theta": 256.0, "rope_axes_dim": [16, 56, 56]}, "hunyuanvideo-community/HunyuanVideo", "bfloat16"),
    "zeroscope-1.7b": Layout("zeroscope", "unet", "UNet3DConditionModel", {
        "sample_size": 32, "in_channels": 4, "out_channels": 4, "attention_head_dim": 64, "cross_attention_dim": 1024,
        "block_out_channels": [320, 640, 1280, 1280], "layers_per_block": 2, "norm_num_groups": 32,
        "down_block_types": ["CrossAttnDownBlock3D"] * 3 + ["DownBlock3D"],
        "up_block_types": ["UpBlock3D"] + ["CrossAttnUpBlock3D"] * 3}, "ali-vilab/text-to-video-ms-1.7b", "float32"),
    # not diffusers: MMDiTConfig of hpcaitech/Open-Sora configs/diffusion/inference/256px.py (the file has
    # no config; vidunlearn.adapters.opensora.mmdit_config reads it back from the shapes)
    "open-sora-v2": Layout("opensora", "transformer", "MMDiTModel", {
        "in_channels": 64, "vec_in_dim": 768, "context_in_dim": 4096, "hidden_size": 3072, "mlp_ratio": 4.0,
        "num_heads": 24, "depth": 19, "depth_single_blocks": 38, "axes_dim": [16, 56, 56], "theta": 10_000,
        "qkv_bias": True, "guidance_embed": False, "cond_embed": True, "fused_qkv": False, "patch_size": 2},
        "hpcai-tech/Open-Sora-v2", "bfloat16"),
}
BLOCK_KEYS = ("num_layers", "num_single_layers", "depth", "depth_single_blocks")  # what ``blocks`` caps
DTYPES = {"float32": ("F32", 4), "bfloat16": ("BF16", 2), "float16": ("F16", 2)}
MAX_SHARD = 5 * 10**9  # huggingface_hub's "5GB"
WEIGHTS = "diffusion_pytorch_model"


# ------------------------------------------------------------------------------------- build
def adapter_of(layout: Layout):
    from vidunlearn.adapters import ADAPTERS

    return next(a for a in ADAPTERS if a.family == layout.family)


def sized(layout: Layout, blocks: int | None) -> dict:
    """``layout.config``, with every block count (BLOCK_KEYS) capped at ``blocks`` (None: real)."""
    if blocks is None:
        return layout.config
    keys = [k for k in BLOCK_KEYS if k in layout.config]
    if not keys or blocks < 1:
        raise SystemExit(f"--blocks needs a count >= 1 and a layout with one of {BLOCK_KEYS}")
    return {**layout.config, **{k: min(blocks, layout.config[k]) for k in keys}}


def _layout(layout: Layout, config: dict) -> tuple[dict, list[tuple[str, tuple[int, ...]]]]:
    """(config to save, [(key, shape)] in state_dict order) from the model on the meta device."""
    from accelerate import init_empty_weights

    adapter = adapter_of(layout)
    with init_empty_weights():
        if adapter.layout is not None:  # the family's own module tree (the tool's dry run builds the same)
            model = adapter.denoiser_type().from_config(config)
        else:
            import diffusers

            model = getattr(diffusers, layout.denoiser)(**config)
    entries = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
    return (dict(model.config) if adapter.layout is None else config), entries


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


def _write_shard(path: Path, entries: list[tuple[str, tuple[int, ...]]], seed: int, dtype: str,
                 sparse: bool = False) -> int:
    """A safetensors file as safetensors' own writer lays it out (one dtype: sorted by name), with
    random values (slices of a random pool at random offsets), written one tensor at a time.
    ``sparse``: the real header, then the file extended to its full length without writing the
    data (all zeros, no disk used): enough for a plan or a ``--dry-run``, which read headers only."""
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
    temp = path.with_name(path.name + ".partial")
    if sparse:
        with open(temp, "wb") as handle:
            handle.write(struct.pack("<Q", len(raw)) + raw)
            handle.truncate(8 + len(raw) + offset)
        os.replace(temp, path)
        return path.stat().st_size
    generator = torch.Generator().manual_seed(seed)
    pool = torch.randn(POOL_ELEMENTS, generator=generator).mul_(0.02).to(getattr(torch, dtype))
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


def build(root: Path, layout: str, dtype: str, sparse: bool = False, blocks: int | None = None) -> Path:
    """The model folder of ``layout`` under ``root`` (reused when built before); ``sparse``:
    headers only, see :func:`_write_shard` (the tests' real-size dry runs); ``blocks``: REDUCED,
    every block count capped at ``blocks`` (see :func:`sized`)."""
    spec = LAYOUTS[layout]
    own = adapter_of(spec).layout  # a family's own folder layout: its one denoiser file at the root
    config = sized(spec, blocks)
    name = f"wan{layout.replace('.', '')}-{dtype}" if spec.family == "wan" else f"{layout}-{dtype}"
    name += (f"-{blocks}blocks" if blocks is not None else "") + ("-sparse" if sparse else "")
    model = root / name
    marker = root / f"{name}.built"
    if marker.is_file() and model.is_dir():
        print(f"reusing {model} (delete {marker} to rebuild)")
        return model
    shutil.rmtree(model, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    from vidunlearn.tiny_families import build as build_tiny

    denoiser_entry = own.denoiser_file if own is not None else spec.component
    with tempfile.TemporaryDirectory(dir=root) as tmp:
        tiny = build_tiny(spec.family, Path(tmp) / "tiny")
        model.mkdir()
        for entry in tiny.iterdir():  # every other component (and model_index.json) from the tiny pipeline
            if entry.name != denoiser_entry:
                (shutil.copytree if entry.is_dir() else shutil.copyfile)(entry, model / entry.name)
    saved, entries = _layout(spec, config)  # saved: the diffusers config.json's contents
    itemsize = DTYPES[dtype][1]
    if own is not None:  # the Hub's one file, not sharded, no config.json (the tool reads it from the shapes)
        size = _write_shard(model / own.denoiser_file, entries, seed=1, dtype=dtype, sparse=sparse)
        total = sum(math.prod(s) * itemsize for _, s in entries)
        print(f"  wrote {own.denoiser_file}: {size / 1e9:.3f} GB, {len(entries)} tensors", flush=True)
    else:
        total = _write_diffusers(model / spec.component, spec, saved, entries, dtype, sparse)
    marker.write_text(json.dumps({"config": config, "repo": spec.repo, "dtype": dtype, "tensors": len(entries),
                                  "bytes": total, "blocks": blocks}) + "\n")
    print(f"built {model} in {time.perf_counter() - started:.1f} s; {len(entries)} tensors, "
          f"{sum(math.prod(s) for _, s in entries) / 1e9:.3f} B params"
          f"{f' (REDUCED: at most {blocks} blocks per stack)' if blocks is not None else ''}; builder peak RSS "
          f"{resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")
    return model


def _write_diffusers(denoiser: Path, spec: Layout, config: dict, entries: list, dtype: str, sparse: bool) -> int:
    """config.json, the 5 GB shards and (more than one shard) the index json of a Diffusers component."""
    import diffusers

    denoiser.mkdir()
    config = {"_class_name": spec.denoiser, "_diffusers_version": diffusers.__version__,
              **{k: v for k, v in config.items() if not k.startswith("_")}}
    (denoiser / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True) + "\n")
    itemsize = DTYPES[dtype][1]
    shards = _split(entries, itemsize)
    weight_map, total = {}, 0
    for i, shard in enumerate(shards, start=1):  # one shard: huggingface_hub's plain name, no index
        shard_name = f"{WEIGHTS}-{i:05d}-of-{len(shards):05d}.safetensors" if len(shards) > 1 else f"{WEIGHTS}.safetensors"
        size = _write_shard(denoiser / shard_name, shard, seed=i, dtype=dtype, sparse=sparse)
        total += sum(math.prod(s) * itemsize for _, s in shard)
        weight_map.update({k: shard_name for k, _ in shard})
        print(f"  wrote {shard_name}: {size / 1e9:.3f} GB, {len(shard)} tensors", flush=True)
    if len(shards) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (denoiser / f"{WEIGHTS}.safetensors.index.json").write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    return total
