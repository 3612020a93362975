"""How well the motion judge (vidunlearn/motion/judge.py) reads the motion world's own motions:
renders N seeded motions per action (variants and lengths drawn from the seed), optionally adds
Gaussian noise of --noise metres to every joint coordinate, judges them, and prints the
confusion matrix (rows: true action; columns: judged), the accuracy, the side accuracy of the
one-limb actions, and each feature's range per action (--features).

    python benchmarks/motion_judge.py
    python benchmarks/motion_judge.py --per-action 300 --seed 1 --noise 0.005 --features
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vidunlearn.motion import world  # noqa: E402
from vidunlearn.motion.judge import LABELS, accuracy, confusion, judge_motion  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-action", type=int, default=100, help="motions per action (7 actions)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--noise", type=float, default=0.0, help="std of Gaussian noise added, metres")
    parser.add_argument("--features", action="store_true", help="also print each feature's range per action")
    args = parser.parse_args()
    if args.per_action < 1:
        parser.error(f"--per-action must be at least 1, got {args.per_action}")
    if args.noise < 0:
        parser.error(f"--noise must be >= 0, got {args.noise}")

    start = time.perf_counter()
    labels = world.balanced_labels(args.per_action, seed=args.seed)
    rng = np.random.default_rng(args.seed)
    motions = [world.render(lab, rng) for lab in labels]
    noise = np.random.default_rng(args.seed + 1)
    if args.noise > 0:
        motions = [m + noise.normal(0.0, args.noise, m.shape).astype(np.float32) for m in motions]
    judged = [judge_motion(m) for m in motions]
    seconds = time.perf_counter() - start

    table = confusion(judged, labels)
    width = max(len(name) for name in LABELS) + 1
    print(f"{len(labels)} motions ({args.per_action} per action), seed {args.seed}, noise {args.noise} m, "
          f"{seconds:.1f} s to render and judge")
    print("true \\ judged".ljust(14) + "".join(name.rjust(width) for name in LABELS))
    for action, row in zip(world.ACTIONS, table):
        print(action.ljust(14) + "".join(str(v).rjust(width) for v in row))
    print(f"accuracy {100 * accuracy(judged, labels):.2f} %")
    sided = [(j, lab) for j, lab in zip(judged, labels)
             if lab.action in ("wave", "kick", "punch") and j.action == lab.action]
    if sided:
        print(f"side correct (wave, kick, punch judged right) {100 * np.mean([j.side == lab.variant for j, lab in sided]):.2f} %")
    if args.features:
        names = [k for k in judged[0].features.as_dict() if not k.endswith("_side")] if judged[0].features else []
        for action in world.ACTIONS:
            rows = [j.features.as_dict() for j, lab in zip(judged, labels) if lab.action == action and j.features]
            print(action + ": " + ", ".join(f"{k} {min(r[k] for r in rows):.2f}..{max(r[k] for r in rows):.2f}"
                                             for k in names))


if __name__ == "__main__":
    main()
