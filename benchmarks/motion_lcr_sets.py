"""How apply's LCR builds its forget and retain sets from a pairs file, and how many codes it
replaces: the sweep that chose the momask family's default (docs/motion-benchmark.md, "The default,
chosen by measurement"). Each variant is LCR as ``vidunlearn apply --method lcr`` computes it
(selection seed 1000, pairs/motion-violence.yaml), put into a copy of the model in memory and
measured as ``vidunlearn eval`` measures it (vidunlearn/motion/metrics.py) at ``--seed``, N = 10.

Variants: "tok-sN-kK": the model's token ids for N samples a prompt (what apply does), K codes of
each score; "enc-sN-kK": the same samples decoded to motion and encoded again by the RVQ-VAE (as the
authors encode dataset motions).

    python benchmarks/motion_lcr_sets.py --seed 0
    python benchmarks/motion_lcr_sets.py --seed 1 --variants tok-s32-k64 tok-s16-k48
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vidunlearn.motion import lcr, metrics  # noqa: E402
from vidunlearn.motion.apply import MotionOptions, sampled_codes  # noqa: E402
from vidunlearn.motion.momask import decode, load_runs, sample_tokens  # noqa: E402
from vidunlearn.pairs import load_pairs  # noqa: E402
from vidunlearn.progress import SILENT  # noqa: E402

VARIANTS = ["tok-s8-k64", "tok-s8-k32", "tok-s8-k48", "tok-s16-k48", "tok-s16-k64", "tok-s32-k64",
            "enc-s8-k48", "enc-s8-k64", "enc-s16-k64"]


def encoded_codes(model, texts: list[str], samples: int, seed: int) -> list[np.ndarray]:
    """The samples of :func:`sampled_codes` (the same :func:`sample_tokens`), decoded and encoded again."""
    return [codes for _, ids, tokens in sample_tokens(model, texts, samples, seed)
            for codes in lcr.encode_motions(model, decode(model, ids, tokens))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/momask-world"))
    parser.add_argument("--pairs", type=Path, default=Path("pairs/motion-violence.yaml"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--per-prompt", type=int, default=10)
    parser.add_argument("--variants", nargs="+", default=VARIANTS)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    base, _ = load_runs(args.model)
    concept = load_pairs(args.pairs)
    unsafe, kept = list(concept.unsafe), [*concept.safe, *concept.neutral]
    select = MotionOptions().seed
    first = metrics.evaluate(base, args.per_prompt, args.seed)
    ref = metrics.reference(first, args.seed, metrics.evaluate(base, args.per_prompt, args.seed + 1, paraphrase=False))
    rows = {"base": metrics.measure(first, ref)}
    for name in args.variants:
        kind, samples, k = name.split("-")
        sets = [sampled_codes(base, texts, int(samples[1:]), select, SILENT, "") if kind == "tok"
                else encoded_codes(base, texts, int(samples[1:]), select) for texts in (unsafe, kept)]
        books, _ = lcr.lcr_codes(base, *sets, k=int(k[1:]), seed=select)
        model = copy.deepcopy(base)
        model.text = base.text
        lcr.apply_books(model, books)
        rows[name] = metrics.measure(metrics.evaluate(model, args.per_prompt, args.seed), ref)
    print(f"eval seed {args.seed}, N = {args.per_prompt}, selection seed {select}, {args.pairs}; "
          f"retain noise floor {ref.floor_retain:.2f}; {time.time() - started:.0f} s")
    print("| variant | forget rate | retain acc | paraphrase leak | retain FD / floor |")
    print("|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['forget_rate']:.1f} % | {r['retain_acc']:.1f} % | {r['para_leak']:.1f} % | "
              f"{r['fd_retain_base'] / ref.floor_retain:.2f} |")


if __name__ == "__main__":
    main()
