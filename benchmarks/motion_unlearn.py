"""Latent Code Replacement on the motion benchmark model (models/momask-world): before / after.

1. Selection (seed --select-seed, never the evaluation seed): --select-per-prompt samples of each of
   the 32 violent and 88 safe training captions; forget = those judged kick or punch, retain = those
   judged as their caption's action; LCR (vidunlearn/motion/lcr.py) picks and replaces codes and
   the patched model is written to disk in MoMask's layout and loaded back (weights_only).
2. Evaluation (vidunlearn/motion/metrics.py; seed --seed, N = --per-prompt samples a prompt, lengths 40-80 frames):
   - forget rate: violent training captions judged kick or punch;
   - forget -> safe: the same samples judged as a safe action (not "none"): the motion-world
     reading of "rest kept" (the captions have no other attribute to keep; see the docs);
   - retain accuracy: safe training captions judged as their own action;
   - paraphrase leak: the 48 held-out violent paraphrases (world.SYNONYMS) judged kick or punch;
   - FD: Frechet distance between Gaussian fits of a per-motion summary (mean and std over frames
     of the 137 features of features.py: 274 numbers, each divided by its std over the real
     motions), against real world motions of the same labels ("vs real"), and for retain also
     against base samples at seed + 1 ("vs base'"). The noise floor is FD(base at seed, base at
     seed + 1) on the same prompts; target: retain FD vs base' <= 1.25 x the floor.

Variant "uce" (the paper's comparison on the text path): no selection samples; UCE's closed form on
cond_emb of both transformers (vidunlearn/motion/uce.py), written in MoMask's layout and loaded back.

    python benchmarks/motion_unlearn.py --per-prompt 10 --seed 0
    python benchmarks/motion_unlearn.py --per-prompt 10 --seed 0 --variants lcr-k64 uce
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vidunlearn.motion import lcr, metrics, uce  # noqa: E402
from vidunlearn.motion.momask import load_model  # noqa: E402

# name, k, layers, target rule: the authors' default first, then at most two documented variants.
VARIANTS = {
    "lcr-k16": (16, (0,), "index0"),
    "lcr-k64": (64, (0,), "index0"),
    "lcr-k64-retaintop": (64, (0,), "retain-top"),
}
# The paper's comparison on the text path (vidunlearn/motion/uce.py): UCE's closed form on cond_emb of
# both transformers, the 32 violent captions onto their safe twins, the 88 safe captions kept (lambda 1).
TEXT_VARIANTS = {"uce": 1.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/momask-world"))
    parser.add_argument("--per-prompt", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--select-seed", type=int, default=1000)
    parser.add_argument("--select-per-prompt", type=int, default=4)
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS) + list(TEXT_VARIANTS))
    parser.add_argument("--json", type=Path, help="write the rows and the replaced codes here")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    base = load_model(args.model)
    forget, retain = lcr.collect_sets(base, args.select_per_prompt, args.select_seed)
    print(f"selection: seed {args.select_seed}, {args.select_per_prompt} a caption: {len(forget)} of "
          f"{32 * args.select_per_prompt} violent samples judged kick/punch (forget set), {len(retain)} of "
          f"{88 * args.select_per_prompt} safe samples judged right (retain set)")

    b0 = metrics.evaluate(base, args.per_prompt, args.seed)
    b1 = metrics.evaluate(base, args.per_prompt, args.seed + 1, paraphrase=False)
    ref = metrics.reference(b0, args.seed, b1)
    floor_f, floor_r = ref.floor_forget, ref.floor_retain

    rows = {"base": metrics.measure(b0, ref)}
    edits = {}
    for name in args.variants:
        if name in TEXT_VARIANTS:
            pairs, keep = uce.uce_sets()
            weights, uresult = uce.uce_weights(base, pairs, keep, preserve_weight=TEXT_VARIANTS[name])
            with tempfile.TemporaryDirectory() as tmp:
                patched = load_model(uce.write_patched(args.model, Path(tmp) / name, base, weights, uresult))
            patched.text = base.text
            rows[name] = metrics.measure(metrics.evaluate(patched, args.per_prompt, args.seed), ref)
            edits[name] = json.loads(uresult.to_json())
            continue
        k, layers, target = VARIANTS[name]
        books, result = lcr.lcr(base, forget, retain, k=k, layers=layers, target_rule=target, seed=args.select_seed)
        with tempfile.TemporaryDirectory() as tmp:
            folder = lcr.write_patched(args.model, Path(tmp) / name, books, result)
            patched = load_model(folder)
        patched.text = base.text
        rows[name] = metrics.measure(metrics.evaluate(patched, args.per_prompt, args.seed), ref)
        edits[name] = json.loads(result.to_json())

    n = args.per_prompt
    print(f"evaluation: seed {args.seed}, N = {n} a prompt (forget {32 * n}, retain {88 * n}, paraphrase {48 * n} "
          f"samples); FD noise floor (base seed {args.seed} vs {args.seed + 1}): forget {floor_f:.2f}, "
          f"retain {floor_r:.2f}; {time.time() - started:.0f} s")
    print("| model | forget rate | forget -> safe action | retain acc | paraphrase leak | FD forget vs real "
          "| FD retain vs real | FD retain vs base' | retain FD / floor |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        print(f"| {name} | {r['forget_rate']:.1f} % | {r['forget_to_safe']:.1f} % | {r['retain_acc']:.1f} % | "
              f"{r['para_leak']:.1f} % | {r['fd_forget_real']:.2f} | {r['fd_retain_real']:.2f} | "
              f"{r['fd_retain_base']:.2f} | {r['fd_retain_base'] / floor_r:.2f} |")
    for name, e in edits.items():
        if name in TEXT_VARIANTS:
            change = ", ".join(f"{stage} {v:.3f}" for stage, v in e["change"].items())
            print(f"{name}: {e['n_unsafe']} unsafe -> twin, {e['n_keep']} kept, lambda {e['preserve_weight']}, "
                  f"ridge {e['ridge']}; ||W' - W|| / ||W|| of cond_emb: {change}")
            continue
        for layer in e["layers"]:
            key = str(layer)
            pairs = ", ".join(f"{c} ({f}/{r})" for c, f, r in
                              zip(e["codes"][key], e["forget_counts"][key], e["retain_counts"][key]))
            print(f"{name} layer {layer}: {len(e['codes'][key])} codes -> row {e['target'][key]}; "
                  f"code (forget/retain motions using it): {pairs}")
        print(f"{name}: " + "; ".join(e["notes"]))
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "rows": rows,
                                         "floor": {"forget": floor_f, "retain": floor_r}, "edits": edits},
                                        indent=1) + "\n")


if __name__ == "__main__":
    main()
