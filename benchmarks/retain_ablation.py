"""Where does a trained text encoder lose a retain clip? (issue 16; docs/adversarial-encoder.md)

For the retain clips of an eval file (`vidunlearn eval`'s eval.json, its `prompts`, or a file with a
`clips` list of the same rows: text, seed, group) whose prompt names a triangle, render each with
the trained model and print the judge's bottom-heaviness (the triangle test: 0.25 or more; `*` marks
a clip not judged a triangle), for the base model, the closed-form edit and the trained one. Then,
for every clip the trained model loses, render it again with the base encoder's states put back at
some token places of the prompt (the shape word, the words after it, the colour word, every word but
the shape, the special tokens) and at the negative prompt (""), and print what the judge reads: the
places whose base states bring the triangle back are where the drift that rounds it lives.

    python benchmarks/retain_ablation.py \\
        --eval benchmarks/results/adversarial-text-encoder/triangles/eval-trained-default-seed2-retain.json \\
        --model /tmp/c2s-s2 --closed-form /tmp/c2s-cf --base models/shapes-wan

Clips: 10 steps, guidance 2.0, 5 frames at 32 x 32 (the efficacy benchmark's).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from vidunlearn import judge  # noqa: E402
from vidunlearn.attack_run import load_attacked, places_span, render  # noqa: E402
from vidunlearn.sampling import SampleSettings  # noqa: E402
from vidunlearn.textpath import encode_prompts  # noqa: E402

SAMPLE = SampleSettings(steps=10, frames=5, height=32, width=32, guidance=2.0, device="cpu", dtype="float32")


class Model:
    def __init__(self, path: str) -> None:
        _, self.pipe, self.compact, self.length = load_attacked(path, SAMPLE)
        self.name = Path(path).name

    def states(self, texts: list[str]) -> list[torch.Tensor]:
        with torch.no_grad():
            return encode_prompts(self.pipe.tokenizer, self.pipe.text_encoder, texts, self.length, "cpu")

    def judged(self, states: torch.Tensor, negative: torch.Tensor, seed: int) -> tuple[str, float]:
        """(the judge's shape, the clip's median bottom-heaviness) of one clip from these states (the
        judge's own triangle rule as a distance, :func:`vidunlearn.judge.shape_margin`, plus its line)."""
        clip = render(self.pipe, self.compact, self.length, [states], [seed], SAMPLE, negative=negative)[0]
        margin = judge.shape_margin(clip, "triangle")
        return judge.judge_clip(clip).shape, (float("nan") if margin is None else margin + judge.BOTTOM_HEAVY)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--eval", required=True, help="vidunlearn eval's eval.json, or a JSON file with a 'clips' list")
    parser.add_argument("--model", required=True, help="the trained model's folder")
    parser.add_argument("--base", default=str(ROOT / "models" / "shapes-wan"))
    parser.add_argument("--closed-form", help="the closed-form edit's folder (optional)")
    args = parser.parse_args()
    data = json.loads(Path(args.eval).read_text())
    clips = [c for c in data.get("clips", data.get("prompts", []))
             if c["group"] == "retain" and "triangle" in c["text"].split()]
    texts = [c["text"] for c in clips]
    base, trained = Model(args.base), Model(args.model)
    rows = [base, *([Model(args.closed_form)] if args.closed_form else []), trained]
    print("bottom-heaviness of each triangle retain clip (0.25 or more: a triangle; *: not judged one)")
    print("clips:", "; ".join(f"{t} (seed {c['seed']})" for t, c in zip(texts, clips)))
    lost = []
    for model in rows:
        states = model.states([*texts, SAMPLE.negative_prompt])
        cells = []
        for i, (c, s) in enumerate(zip(clips, states)):
            shape, heavy = model.judged(s, states[-1], c["seed"])
            cells.append(f"{heavy:.2f}{'' if shape == 'triangle' else '*'}")
            if model is trained and shape != "triangle":
                lost.append(i)
        print(f"  {model.name[:24]:24s}", " ".join(cells))
    mine, theirs = trained.states([*texts, ""]), base.states([*texts, ""])
    for i in lost:
        m, b = mine[i], theirs[i]
        words = texts[i].split()
        at = words.index("triangle")
        tokens = {k: places_span(trained.pipe.tokenizer, texts[i], (k,), 1)[1] for k in range(len(words))}
        shape, n = tokens[at], m.shape[0]
        places = {"the shape word": shape, "the words after it": [t for k in range(at + 1, len(words)) for t in tokens[k]],
                  "the colour word": tokens[at - 1], "every word but the shape": [k for k in range(n) if k not in shape],
                  "the special tokens": [0, n - 1]}
        read = {}
        for name, where in places.items():
            mixed = m.clone()
            mixed[where] = b[where]
            read[name] = trained.judged(mixed, mine[-1], clips[i]["seed"])[0]
        read["the negative prompt"] = trained.judged(m, theirs[-1], clips[i]["seed"])[0]
        print(f"{texts[i]} (seed {clips[i]['seed']}): the base's states at "
              + "; ".join(f"{k}: {v}" for k, v in read.items()))


if __name__ == "__main__":
    main()
