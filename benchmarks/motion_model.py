"""How well the motion benchmark model (models/momask-world, a small MoMask) does what its captions
say, read by the motion judge (vidunlearn/motion/judge.py).

For each action: N samples, the i-th from that action's training captions in turn (or, with
--paraphrase, from its held-out SYNONYMS wordings), length drawn in 40-80 frames from the seed;
text -> masked transformer -> residual transformer -> RVQ-VAE decoder -> joint positions -> judge.
Prints the confusion matrix (rows: the caption's action; columns: judged) and per-action accuracy.
--reconstruct instead judges decode(encode(motion)) of world motions (the tokenizer alone).

    python benchmarks/motion_model.py --per-action 40 --seed 0
    python benchmarks/motion_model.py --per-action 40 --seed 0 --paraphrase
    python benchmarks/motion_model.py --per-action 40 --seed 0 --reconstruct
"""

from __future__ import annotations

import argparse
import sys
import time
from types import SimpleNamespace
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vidunlearn.motion import world  # noqa: E402
from vidunlearn.motion.features import from_features, to_features  # noqa: E402
from vidunlearn.motion.judge import LABELS, judge_motion  # noqa: E402
from vidunlearn.motion.momask import SAMPLING, UNIT_LENGTH, generate, load_model, load_vq  # noqa: E402


def prompts_for(action: str, paraphrase: bool) -> list[str]:
    if paraphrase:
        return [p.text for p in world.paraphrase_prompts((action,))]
    return [p.text for p in world.training_prompts((action,))]


def lengths(n: int, rng: np.random.Generator) -> list[int]:
    return [UNIT_LENGTH * int(k) for k in rng.integers(10, 21, size=n)]


def sample_action(model, action: str, n: int, seed: int, paraphrase: bool, **sampling) -> list[str]:
    """Judged actions of n generated motions for ``action``'s captions."""
    texts = prompts_for(action, paraphrase)
    texts = [texts[i % len(texts)] for i in range(n)]
    rng = np.random.default_rng([seed, world.ACTIONS.index(action)])
    motions = generate(model, texts, lengths(n, rng), seed=seed * 100 + world.ACTIONS.index(action),
                       **sampling)
    return [judge_motion(m).action for m in motions]


@torch.no_grad()
def reconstruct_action(model, action: str, n: int, seed: int) -> list[str]:
    rng = np.random.default_rng([seed, world.ACTIONS.index(action), 7])
    judged = []
    for frames in lengths(n, rng):
        lab = world.Labels(action, str(rng.choice(list(world.VARIANTS[action]))))
        feats = (to_features(world.render(lab, rng, frames=frames + 1)) - model.mean) / model.std
        ids, _ = model.vq.encode(torch.from_numpy(feats[None]).float())
        out = model.vq.forward_decoder(ids)[0].numpy() * model.std + model.mean
        judged.append(judge_motion(from_features(out)).action)
    return judged


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=Path("models/momask-world"))
    parser.add_argument("--per-action", type=int, default=40)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--paraphrase", action="store_true", help="held-out wordings (SYNONYMS) instead of training captions")
    parser.add_argument("--reconstruct", action="store_true", help="judge the RVQ-VAE's round trip of world motions")
    parser.add_argument("--cond-scale", type=float, default=SAMPLING["cond_scale"], help="masked transformer's guidance")
    parser.add_argument("--res-cond-scale", type=float, default=SAMPLING["res_cond_scale"], help="residual's guidance")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    if args.reconstruct:
        vq, mean, std, _ = load_vq(args.model)
        model = SimpleNamespace(vq=vq, mean=mean, std=std)
    else:
        model = load_model(args.model)
    what = "reconstructions" if args.reconstruct else ("paraphrase prompts" if args.paraphrase else "training captions")
    table = np.zeros((len(world.ACTIONS), len(LABELS)), dtype=int)
    for row, action in enumerate(world.ACTIONS):
        judged = (reconstruct_action(model, action, args.per_action, args.seed) if args.reconstruct
                  else sample_action(model, action, args.per_action, args.seed, args.paraphrase,
                                   cond_scale=args.cond_scale, res_cond_scale=args.res_cond_scale))
        for j in judged:
            table[row, LABELS.index(j)] += 1
    total = table.sum()
    guidance = "" if args.reconstruct else f", guidance {args.cond_scale:g} / {args.res_cond_scale:g}"
    print(f"{total} motions ({args.per_action} per action) from {what}, seed {args.seed}{guidance}, "
          f"{time.time() - started:.1f} s to load, generate and judge")
    print("true \\ judged " + "".join(f"{name:>6}" for name in LABELS) + "  accuracy")
    for row, action in enumerate(world.ACTIONS):
        print(f"{action:<14}" + "".join(f"{v:>6}" for v in table[row])
              + f"  {100 * table[row, row] / table[row].sum():6.1f} %")
    correct = sum(table[i, i] for i in range(len(world.ACTIONS)))
    print(f"accuracy {100 * correct / total:.2f} %")
    violent = [world.ACTIONS.index(a) for a in world.VIOLENT_ACTIONS]
    as_violent = sum(table[i, world.ACTIONS.index(a)] for i in violent for a in world.VIOLENT_ACTIONS)
    print(f"violent captions judged kick or punch {100 * as_violent / table[violent].sum():.2f} %")


if __name__ == "__main__":
    main()
