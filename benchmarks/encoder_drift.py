"""How far trained text encoders moved prompts' states: the relative change of each folder's encoder
output against the base's, || E'(x) - E(x) ||_F / || E(x) ||_F over every real token of a prompt set,
on three sets: the 500 everyday prompts `apply` measures its collateral on (never trained on), the 100
everyday anchor prompts (``anchor_unrelated`` trains on them), and the benchmark world's 144 captions.

    python benchmarks/encoder_drift.py --base models/shapes-wan out/c2s-default out/c2s-au3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folders", type=Path, nargs="+", help="edited model folders carrying a trained text encoder")
    parser.add_argument("--base", default="models/shapes-wan")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()

    import torch

    from vidunlearn import world
    from vidunlearn.collateral import anchor_prompts, collateral_prompts, states_change
    from vidunlearn.model import resolve_model
    from vidunlearn.textpath import encode_prompts, load_text_encoder

    torch.set_num_threads(1)
    sets = {"unrelated (500, measured)": list(collateral_prompts()), "unrelated (100, anchor_unrelated's)": list(anchor_prompts()),
            "world captions (144)": [world.caption(labels) for labels in world.all_labels()]}
    base = resolve_model(args.base)
    length = base.adapter.max_sequence_length
    tokenizer, encoder = load_text_encoder(base, "cpu", torch.float32)
    before = {name: encode_prompts(tokenizer, encoder, texts, length, "cpu") for name, texts in sets.items()}
    figures = {}
    for folder in args.folders:
        tokenizer, encoder = load_text_encoder(resolve_model(str(folder)), "cpu", torch.float32)
        figures[str(folder)] = {name: states_change(before[name], encode_prompts(tokenizer, encoder, texts, length, "cpu"))[0]
                                for name, texts in sets.items()}
        print(f"{folder}: " + "; ".join(f"{name} {100 * v:.1f} %" for name, v in figures[str(folder)].items()), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"base": args.base, "figures": figures}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
