"""Which token's drift makes an edited model render a prompt differently from the base: each prompt
rendered by the edited model (its remapped denoiser) from its trained encoder's states, from the base
encoder's, and from the trained states with the base's put back at chosen tokens (the word you name,
its neighbours), then judged by the oracle.

The nineteenth session's question (docs/adversarial-tokens.md): the default's typed-attack wins on the
circle read "a yellow triangle flu moving up ...", which the base renders as a triangle and the default
as a circle; is it the junk word's state, or the triangle's own?

    python benchmarks/token_states.py out/c2s-default --word triangle \\
        "a yellow triangle flu moving up on a dark background"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folder", help="an edited model folder carrying a trained text encoder")
    parser.add_argument("prompts", nargs="+", help="the prompts to render")
    parser.add_argument("--word", required=True, help="the word whose token (and its neighbours') states are swapped")
    parser.add_argument("--base", default="models/shapes-wan")
    parser.add_argument("--seeds", default="0,100,200,300,400,500,600,700", help="sampling seeds, one clip each")
    args = parser.parse_args()
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        parser.error(f"--seeds {args.seeds!r} must be comma-separated whole numbers")

    import torch

    from vidunlearn import world
    from vidunlearn.attack import encode
    from vidunlearn.attack_run import render
    from vidunlearn.encoder_edit import prompt_ids
    from vidunlearn.errors import VidunlearnError
    from vidunlearn.judge import judge_clip
    from vidunlearn.model import resolve_model
    from vidunlearn.sampling import SampleSettings, load_pipeline
    from vidunlearn.textpath import load_text_encoder

    torch.set_num_threads(1)
    try:
        edited, base = resolve_model(args.folder), resolve_model(args.base)
    except VidunlearnError as exc:
        parser.error(str(exc))
    sample = SampleSettings(steps=10, frames=world.FRAMES, height=world.SIZE, width=world.SIZE, guidance=2.0, seed=0)
    pipe, compact = load_pipeline(edited, sample)
    tokenizer, base_encoder = load_text_encoder(base, "cpu", torch.float32)
    length = edited.adapter.max_sequence_length
    for text in args.prompts:
        ids = prompt_ids(tokenizer, text, length, "cpu")
        pieces = tokenizer.convert_ids_to_tokens(ids.tolist())
        if args.word not in pieces:
            parser.error(f"{text!r} has no token {args.word!r}: name a word of the prompt with --word")
        at = pieces.index(args.word)
        near = [k for k in (at - 1, at + 1) if 0 < k < len(pieces) - 1]
        with torch.no_grad():
            before, after = encode(base_encoder, ids[None])[0], encode(pipe.text_encoder, ids[None])[0]
        drift = ((after - before).norm(dim=-1) / before.norm(dim=-1)).tolist()
        print(text)
        print("  drift per token: " + " ".join(f"{p}:{d:.2f}" for p, d in zip(pieces, drift)))
        mixes = {"trained": after, "base": before}
        for name, where in ((f"base at {args.word}", [at]), ("base at its neighbours", near),
                            (f"base at {args.word} + neighbours", [at, *near])):
            mixes[name] = after.clone()
            mixes[name][where] = before[where]
        mixes["trained at its neighbours only"] = before.clone()
        mixes["trained at its neighbours only"][near] = after[near]
        for name, states in mixes.items():
            clips = render(pipe, compact, length, [states] * len(seeds), seeds, sample)
            shapes = [judge_clip((c * 255).round().astype("uint8")).shape for c in clips]
            print(f"  {name:34s} " + " ".join(s[:2] for s in shapes), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
