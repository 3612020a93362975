"""How well the oracle judge (vidunlearn/judge.py) reads the benchmark world's clips when they come
back softened or tilted, as a decoder may return them: every label combination rendered with a
seed, degraded by vidunlearn.world.degrade (Gaussian blur of --blurs px, tilt of --tilts degrees),
judged; prints the accuracy per attribute for each setting, and the worst one.

    python benchmarks/judge_robustness.py
    python benchmarks/judge_robustness.py --blurs 0 1 2 --tilts 0 10 --copies 2 --json out.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from vidunlearn import world  # noqa: E402
from vidunlearn.judge import accuracy, judge_clip  # noqa: E402


def measure(blurs: list[float], tilts: list[float], copies: int, seed: int) -> list[dict]:
    labels = world.all_labels() * copies
    rng = np.random.default_rng(seed)
    clips = [world.render(lab, rng) for lab in labels]
    rows = []
    for blur in blurs:
        for tilt in tilts:
            judged = [judge_clip(world.degrade(c, lab.background, blur=blur, degrees=tilt))
                      for c, lab in zip(clips, labels)]
            rows.append({"blur_px": blur, "tilt_degrees": tilt, "clips": len(labels),
                         "accuracy": accuracy(judged, labels)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--blurs", type=float, nargs="+", default=[0.0, 0.5, 1.0, 1.5])
    parser.add_argument("--tilts", type=float, nargs="+", default=[0.0, 4.0, 8.0, 12.0])
    parser.add_argument("--copies", type=int, default=1, help="clips per label combination (144 labels)")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    if args.copies < 1:
        parser.error(f"--copies must be at least 1, got {args.copies}")
    rows = measure(args.blurs, args.tilts, args.copies, args.seed)
    attributes = list(rows[0]["accuracy"])
    print("| blur px | tilt deg | " + " | ".join(attributes) + " |")
    print("|---:|---:|" + "---:|" * len(attributes))
    for row in rows:
        cells = " | ".join(f"{100 * row['accuracy'][a]:.1f}" for a in attributes)
        print(f"| {row['blur_px']:g} | {row['tilt_degrees']:g} | {cells} |")
    worst = min(rows, key=lambda r: min(r["accuracy"].values()))
    print(f"worst: blur {worst['blur_px']:g} px, tilt {worst['tilt_degrees']:g} deg: "
          f"{100 * min(worst['accuracy'].values()):.1f} % ({worst['clips']} clips a setting)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")


if __name__ == "__main__":
    main()
