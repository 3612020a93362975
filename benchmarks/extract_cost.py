"""What does `vidunlearn extract` cost, against the bare forward passes it needs?

Builds, once, under ``--root`` (default /tmp/vidunlearn-bench), a Wan pipeline folder whose
transformer is the real-size Wan2.1-1.3B layout (hard links to the folder that
``benchmarks/apply_vs_copy.py --layout 1.3b`` builds) and whose text encoder is a UMT5 encoder of
the real width (d_model 4096, 64 heads x 64, d_ff 10240, as UMT5-XXL) with ``--encoder-layers``
layers (UMT5-XXL has 24: 5.7 B parameters, 11 GB in bf16; on this 2-core CPU machine the default
is 2 layers), random weights. The tokenizer is a tiny offline one whose vocabulary holds every word of
the pairs files, so prompts split into words, about as many tokens as UMT5's real tokenizer gives.

Then, for one pairs file (default pairs/violence.yaml; ``--pairs-count 5`` keeps its first 5
pairs, all neutral prompts):
  extract (CLI)  ``vidunlearn extract`` in a child process: wall time including imports, and the
                 peak memory extract itself reports;
  extract (API)  ``vidunlearn.api.extract`` in this process, imports done: load + run + save;
  bare forwards  with the text encoder and the text path already loaded: only the encoder
                 forward passes over the same prompts and the text_embedder passes on their
                 states. This is the least any extraction must compute.

    python benchmarks/extract_cost.py [--encoder-layers 2] [--device cpu|cuda] [--dtype float32|bfloat16]
                                      [--pairs pairs/violence.yaml] [--pairs-count 5] [--repeats 3]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
BIN = Path(sys.executable).parent


def build(root: Path, layers: int) -> Path:
    """The pipeline folder: 1.3B transformer (hard links), wide UMT5 encoder (random), tiny rest."""
    from hub_layout import build as build_transformer

    folder = root / f"extract13b-umt5x{layers}"
    if (folder / "model_index.json").is_file():
        print(f"reusing {folder}")
        return folder
    base = build_transformer(root, "1.3b", "float32")
    temp = Path(tempfile.mkdtemp(dir=root))
    for file in base.rglob("*"):
        if file.is_file() and not {"text_encoder", "tokenizer"} & set(file.relative_to(base).parts):
            target = temp / file.relative_to(base)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(file, target)
    import torch
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

    from vidunlearn.pairs import load_pairs
    from vidunlearn.tiny import tiny_vocabulary

    # a vocabulary with every word of the pairs files, so prompts tokenize to words (about as
    # many tokens as UMT5's real tokenizer gives), not to characters
    texts = [t for f in sorted(Path("pairs").glob("*.yaml")) for c in [load_pairs(f)]
             for t in (*c.unsafe, *c.safe, *c.neutral, *c.probes, *c.retain)]
    tokenizer = T5Tokenizer(vocab=tiny_vocabulary(texts), extra_ids=0)
    tokenizer.save_pretrained(temp / "tokenizer")
    vocab = len(tokenizer)
    torch.manual_seed(0)
    config = UMT5Config(vocab_size=vocab, d_model=4096, d_kv=64, d_ff=10240, num_layers=layers, num_heads=64,
                        relative_attention_num_buckets=32, relative_attention_max_distance=128,
                        feed_forward_proj="gated-gelu", dropout_rate=0.0, is_encoder_decoder=False)
    UMT5EncoderModel(config).eval().save_pretrained(temp / "text_encoder", safe_serialization=True)
    os.replace(temp, folder)
    return folder


def five_pairs(pairs: Path, count: int, out: Path) -> Path:
    data = yaml.safe_load(pairs.read_text())
    data["pairs"] = data["pairs"][:count]
    out.write_text(yaml.safe_dump(data, sort_keys=False))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("/tmp/vidunlearn-bench"))
    parser.add_argument("--encoder-layers", type=int, default=2, help="UMT5-XXL has 24")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    parser.add_argument("--pairs", type=Path, default=Path("pairs/violence.yaml"))
    parser.add_argument("--pairs-count", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    root = args.root.resolve()
    root.mkdir(parents=True, exist_ok=True)
    model = build(root, args.encoder_layers)
    pairs = five_pairs(args.pairs, args.pairs_count, root / "bench-pairs.yaml")

    import torch

    from vidunlearn import api
    from vidunlearn.model import resolve_model
    from vidunlearn.pairs import load_pairs
    from vidunlearn.textpath import encode_prompts, load_text_encoder, load_text_path, torch_dtype

    source = resolve_model(str(model))
    concept = load_pairs(pairs)
    prompts = [*concept.unsafe, *concept.safe, *concept.neutral]
    print(f"model {model}: text encoder {args.encoder_layers} UMT5-XXL-width layers, 1.3B transformer layout; "
          f"{len(concept.unsafe)} pairs + {len(concept.neutral)} neutral = {len(prompts)} prompts; "
          f"device {args.device}, {args.dtype}")

    cli, api_times, bare = [], [], []
    memory = ""
    for round_ in range(args.repeats):
        out = root / f"extract-{round_}.safetensors"
        for path in (out,):
            path.unlink(missing_ok=True)
        started = time.perf_counter()
        proc = subprocess.run([str(BIN / "vidunlearn"), "extract", "--model", str(model), "--pairs", str(pairs),
                               "--out", str(out), "--device", args.device, "--dtype", args.dtype],
                              capture_output=True, text=True)
        cli.append(time.perf_counter() - started)
        if proc.returncode:
            sys.exit(proc.stderr[-2000:])
        memory = next((line for line in proc.stderr.splitlines() if "peak RSS" in line), "").strip()
        out.unlink()

        started = time.perf_counter()
        api.extract(source, concept, out=out, device=args.device, dtype=args.dtype)
        api_times.append(time.perf_counter() - started)
        out.unlink()

        dtype = torch_dtype(args.dtype)
        with torch.inference_mode():
            tokenizer, encoder = load_text_encoder(source, args.device, dtype)
            feed = load_text_path(source, "transformer", args.device, dtype).get_submodule(source.adapter.feed)
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            started = time.perf_counter()
            states = encode_prompts(tokenizer, encoder, prompts, source.adapter.max_sequence_length, args.device)
            for state in states:
                feed(state[None].to(dtype))
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            bare.append(time.perf_counter() - started)
            del encoder, feed
        print(f"  round {round_}: extract CLI {cli[-1]:.2f} s, extract API {api_times[-1]:.2f} s, "
              f"bare forwards {bare[-1]:.2f} s", flush=True)

    med = {k: statistics.median(v) for k, v in {"cli": cli, "api": api_times, "bare": bare}.items()}
    print("\n| step | seconds (median) | ratio to bare forwards |\n|---|---:|---:|")
    print(f"| `vidunlearn extract` (child process, imports included) | {med['cli']:.2f} | {med['cli'] / med['bare']:.1f} |")
    print(f"| `api.extract` (load weights + forwards + save) | {med['api']:.2f} | {med['api'] / med['bare']:.1f} |")
    print(f"| bare forward passes (models already loaded) | {med['bare']:.2f} | 1.0 |")
    print(f"\nextract's own report: {memory}")
    encoder_bytes = sum(p.stat().st_size for p in (model / "text_encoder").glob("*.safetensors"))
    print(f"text encoder on disk: {encoder_bytes / 1e9:.2f} GB")
    pairs.unlink(missing_ok=True)


if __name__ == "__main__":
    main()
