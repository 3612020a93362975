"""The floor under the discrete attack (issue 16): how often does a model draw the concept when the
concept's word is replaced by random typeable words, with no search?

From the attack benchmark's held-out starting prompts (``benchmarks/attack.py --held-out``: forget
captions that are not the pairs' prompts), the span the discrete attack searches (the concept's
word widened to 2 tokens) is filled ``--fills`` times with tokens drawn uniformly from the discrete
attack's own vocabulary (``vidunlearn.attack.allowed_tokens``, the concept's words banned), each
fill rendered with the start's seed and judged by the oracle. A rate near the discrete attack's
success rate would say the attack finds nothing a random guess does not; a rate of 0 says what it
finds it found by searching.

    OMP_NUM_THREADS=1 python benchmarks/random_fills.py --task red --models models/shapes-wan,out/shapes-nored
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from efficacy import PAIRS, ROOT, TASKS  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="red", choices=["red", "circle-to-square", "left"])
    parser.add_argument("--models", default=str(ROOT / "models" / "shapes-wan"), help="comma-separated model folders")
    parser.add_argument("--prompts", type=int, default=4, help="held-out starting prompts")
    parser.add_argument("--fills", type=int, default=8, help="random fills per prompt")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    import numpy as np
    import torch

    from vidunlearn import world
    from vidunlearn.attack import allowed_tokens, random_tokens
    from vidunlearn.attack_run import load_attacked, places_span, render, world_starts
    from vidunlearn.judges import load_judge
    from vidunlearn.pairs import load_pairs
    from vidunlearn.sampling import SampleSettings
    from vidunlearn.textpath import encode_prompts

    torch.set_num_threads(1)
    files, values = TASKS[args.task]
    pairs = [load_pairs(PAIRS / f) for f in files]
    concept, starts = world_starts(values[0], args.prompts, "forget", seed=args.seed,
                                   exclude=tuple(u for p in pairs for u in p.unsafe))
    sample = SampleSettings(steps=10, frames=world.FRAMES, height=world.SIZE, width=world.SIZE, guidance=2.0, seed=0)
    judge = load_judge("oracle")
    print(f"{args.task}: {args.prompts} held-out prompts x {args.fills} random fills of the attacked span, seed {args.seed}")
    for model in args.models.split(","):
        _, pipe, compact, length = load_attacked(model, sample)
        tokenizer = pipe.tokenizer
        allowed = allowed_tokens(tokenizer, {concept.value})
        generator = torch.Generator().manual_seed(args.seed)
        texts, seeds = [], []
        for start in starts:
            ids, span = places_span(tokenizer, start.text, start.places, 2)
            for _ in range(args.fills):  # drawn as the discrete attack's random restarts draw them
                filled = torch.tensor(ids)
                filled[span] = random_tokens(allowed, len(span), generator)
                texts.append(tokenizer.decode(filled.tolist(), skip_special_tokens=True))
                seeds.append(start.seed)
        with torch.no_grad():
            states = encode_prompts(tokenizer, pipe.text_encoder, texts, length, sample.device)
        verdicts = [judge.judge(c)[concept.attribute] for c in render(pipe, compact, length, states, seeds, sample)]
        hits = [v == concept.value for v in verdicts]
        per = [f"{100 * np.mean(hits[i * args.fills:(i + 1) * args.fills]):.0f}" for i in range(len(starts))]
        print(f"{model}: {concept.value} in {sum(hits)} of {len(hits)} clips ({100 * np.mean(hits):.0f} %); "
              f"per prompt {' '.join(per)} %; verdicts {dict(Counter(verdicts).most_common())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
