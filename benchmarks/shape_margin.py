"""How far each retain clip is from being read as another shape, for the base and edited models: the
oracle judge's shape rule as a distance (vidunlearn.judge.shape_margin: > 0 read as its shape, < 0 lost),
on the retain clips `vidunlearn eval --concept C --retain R` renders (the same prompts, seeds and
sampling; --forget must match the eval's, since the retain prompts' seeds follow the forget prompts').

A lost retain clip is a 0/1 event; the margin says how near the base's own clip already was to the
judge's boundary and how far each edit moved it (docs/adversarial-contexts.md: the circle's lost
triangles are the base's two most borderline ones, and the closed-form remap alone tips one over).

    python benchmarks/shape_margin.py --folders remap=out/c2s,held=out/c2s-held --concept circle
    python benchmarks/shape_margin.py --folders held=out/c2s-held --lowest 8 --json margins.json
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from efficacy_variants import checked_folders  # noqa: E402


def margins(model: str, texts: list[str], shapes: list[str], seeds: list[int], settings, reporter, label: str) -> list:
    """shape_margin of each prompt's clip under its labelled shape (None: no shape read)."""
    from vidunlearn.judge import shape_margin
    from vidunlearn.model import resolve_model
    from vidunlearn.sampling import iter_clips

    clips = iter_clips(resolve_model(model), texts, settings, reporter, label, seeds=seeds, batch_size=8)
    return [shape_margin(clip, shape) for clip, shape in zip(clips, shapes)]


def summary(base: list, runs: dict[str, list]) -> list[tuple[str, ...]]:
    """Per model: clips whose shape is read wrong, the smallest margin, the mean change against the base."""
    rows = []
    for name, values in {"base": base, **runs}.items():
        pairs = [(b, v) for b, v in zip(base, values) if b is not None and v is not None]
        wrong = sum(v is None or v < 0 for v in values)
        smallest = min((v for v in values if v is not None), default=None)
        rows.append((name, str(len(values)), str(wrong), "none read" if smallest is None else f"{smallest:.3f}",
                     "-" if name == "base" or not pairs else f"{np.mean([v - b for b, v in pairs]):+.3f}"))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folders", required=True, help="NAME=PATH,... edited model folders")
    parser.add_argument("--model", default="models/shapes-wan", help="the base model")
    parser.add_argument("--concept", default="circle", help="the erased value, as `vidunlearn eval --concept`")
    parser.add_argument("--forget", type=int, default=12, help="the eval's --forget (it sets the retain prompts' seeds)")
    parser.add_argument("--retain", type=int, default=1000, help="the eval's --retain (1000: every retain caption)")
    parser.add_argument("--seed", type=int, default=0, help="the eval's --seed")
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--lowest", type=int, default=6, help="also list the base's this many lowest-margin clips")
    parser.add_argument("--json", type=Path, help="also write every clip's margins here")
    args = parser.parse_args()
    folders = checked_folders(parser, args.folders)
    if args.lowest < 0 or args.retain < 1 or args.forget < 0 or args.steps < 1:
        parser.error("--lowest, --forget must be >= 0 and --retain, --steps >= 1")

    import torch

    from vidunlearn import world
    from vidunlearn.cli_console import RichReporter, stdout, table
    from vidunlearn.errors import VidunlearnError
    from vidunlearn.evaluate import Counts, world_eval_set
    from vidunlearn.sampling import SampleSettings

    torch.set_num_threads(1)
    try:
        eval_set = world_eval_set([args.concept], Counts(forget=args.forget, retain=args.retain, paraphrase=0), seed=args.seed)
    except VidunlearnError as exc:
        parser.error(str(exc))
    retain = [p for p in eval_set.prompts if p.group == "retain"]
    texts, seeds, shapes = [p.text for p in retain], [p.seed for p in retain], [p.label("shape") for p in retain]
    settings = SampleSettings(steps=args.steps, frames=world.FRAMES, height=world.SIZE, width=world.SIZE,
                              guidance=args.guidance, seed=args.seed)
    reporter, started = RichReporter(), time.perf_counter()
    base = margins(args.model, texts, shapes, seeds, settings, reporter, "base")
    runs = {name: margins(path, texts, shapes, seeds, settings, reporter, name) for name, path in folders}

    def cell(value) -> str:
        return "none" if value is None else f"{value:.3f}" + (" lost" if value < 0 else "")

    order = sorted(range(len(texts)), key=lambda i: (base[i] is not None, base[i] if base[i] is not None else 0.0))
    lost = {i for values in runs.values() for i, v in enumerate(values) if v is None or v < 0}
    shown = [i for i in order if i in lost or i in order[:args.lowest]]
    rows = [(texts[i], str(seeds[i]), cell(base[i]), *(cell(runs[n][i]) for n, _ in folders)) for i in shown]
    stdout.print(table(f"{args.concept}: the retain clips an edit loses and the base's {args.lowest} nearest another shape "
                       "(shape margin; < 0: lost)",
                       ("prompt", "seed", "base", *(n for n, _ in folders)), rows))
    stdout.print(table(f"{args.concept}: {len(texts)} retain clips, {args.steps} steps",
                       ("model", "clips", "shape read wrong", "smallest margin", "mean change vs base"), summary(base, runs)))
    print(f"wall time {time.perf_counter() - started:.0f} s")
    if args.json:
        args.json.write_text(json.dumps({"concept": args.concept, "settings": vars(args) | {"json": str(args.json)},
                                         "prompts": [{"text": t, "seed": s, "shape": sh} for t, s, sh in zip(texts, seeds, shapes)],
                                         "margins": {"base": base, **runs}}, indent=1) + "\n")
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
