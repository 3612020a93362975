"""Figures for docs/outputs.md: LoRA size vs full checkpoint, and fp8 edit survival, at the real
Wan2.1 shapes (1.3B and 14B).

1. Sizes. The transformer's real key names and shapes come from ``WanTransformer3DModel`` built
   on the meta device from the real configs (no weights). The full checkpoint size is the sum
   of numel x bytes per element. The LoRA file is actually written by
   :func:`vidunlearn.formats.write_safetensors` with random factors of the exact shapes (one
   concept under the paper's projection: rank 1; under the default remap: rank n, the unsafe prompts'
   tokens, e.g. 52-54 for a benchmark pairs file; every block's attn2.to_k/to_v) and its size
   measured on disk, at each rank of ``--ranks``.
2. fp8 survival. RANDOM Gaussian weights of the real attn2 shape (std 0.02), quantised to
   float8_e4m3fn with a per-tensor scale as ComfyUI's fp8_scaled files do, edited with a random
   orthonormal Q of rank k at strength s, re-quantised with the same scale. Real weights are not
   Gaussian: treat these as an indication; `apply` measures survival on the real tensors.

    python benchmarks/output_formats.py [--ranks 1,64,256]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

CONFIGS = {
    "Wan2.1 1.3B": {"num_attention_heads": 12, "attention_head_dim": 128, "ffn_dim": 8960, "num_layers": 30},
    "Wan2.1 14B": {"num_attention_heads": 40, "attention_head_dim": 128, "ffn_dim": 13824, "num_layers": 40},
}
COMMON = {"patch_size": [1, 2, 2], "in_channels": 16, "out_channels": 16, "text_dim": 4096, "freq_dim": 256,
          "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6}


def sizes(ranks: list[int]) -> None:
    from accelerate import init_empty_weights
    from diffusers import WanTransformer3DModel

    from vidunlearn.formats import write_safetensors
    from vidunlearn.adapters.wankeys import LORA_PREFIX, to_original

    columns = [f"LoRA rank {r} {label}" for r in ranks for label in ("float32", "bf16")]
    print("| model | full transformer bf16 | fp32 | " + " | ".join(columns) + " |")
    print("|---|---|---|" + "---|" * len(columns))
    for name, config in CONFIGS.items():
        with init_empty_weights():
            model = WanTransformer3DModel(**COMMON, **config)
        numel = sum(p.numel() for p in model.state_dict().values())
        dim = config["num_attention_heads"] * config["attention_head_dim"]
        row = [name, f"{numel * 2 / 1e9:.2f} GB", f"{numel * 4 / 1e9:.2f} GB"]
        for rank, dtype, label in ((r, d, l) for r in ranks for d, l in ((torch.float32, "F32"), (torch.bfloat16, "BF16"))):
            entries = []
            for block in range(config["num_layers"]):
                for kv in ("to_k", "to_v"):
                    module = LORA_PREFIX + to_original(f"blocks.{block}.attn2.{kv}")
                    for suffix, shape in ((".lora_A.weight", [rank, dim]), (".lora_B.weight", [dim, rank])):
                        data = torch.randn(shape).to(dtype).view(torch.uint8).numpy().tobytes()
                        entries.append((module + suffix, label, shape, len(data), lambda d=data: d))
            with tempfile.TemporaryDirectory() as folder:
                path = Path(folder) / "lora.safetensors"
                write_safetensors(path, entries, {"format": "pt"})
                row.append(f"{path.stat().st_size / 1e6:.2f} MB")
        print("| " + " | ".join(row) + " |")


def survival_table() -> None:
    from vidunlearn.quant import dequantize, quantize, survival

    torch.manual_seed(0)
    print("\n| attn2 weight | rank k | strength | ||dW||/||W|| | survival |")
    print("|---|---|---|---|---|")
    for name, dim in (("1.3B (1536 x 1536)", 1536), ("14B (5120 x 5120)", 5120)):
        weight = torch.randn(dim, dim) * 0.02
        scale = weight.abs().max() / torch.finfo(torch.float8_e4m3fn).max
        base = dequantize((weight / scale).to(torch.float8_e4m3fn), scale)
        for rank in (1, 4):
            basis, _ = torch.linalg.qr(torch.randn(dim, rank))
            for strength in (1.0, 0.5):
                edited = base - strength * (base @ basis) @ basis.T
                codes, new_scale = quantize(edited, scale, torch.float8_e4m3fn)
                kept = survival(base, edited, base, dequantize(codes, new_scale))
                relative = float((edited - base).norm() / base.norm())
                print(f"| {name} | {rank} | {strength} | {relative:.2%} | {kept:.2f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--ranks", default="1,64,256", help="LoRA ranks to write and measure (comma-separated)")
    sizes([int(r) for r in parser.parse_args().ranks.split(",")])
    survival_table()
