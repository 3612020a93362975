"""The retain clips an edit lost, from `vidunlearn eval` outputs (eval.json), each marked when the
training saw its prompt (the pairs file's neutral, retain, safe and target prompts, and with
``--keep-context K`` the prompts ``keep_context: K`` builds) or when it is one of the unsafe prompts'
own contexts (``keep_context``'s prompts, built or not).

    vidunlearn eval --model out/c2s --concept circle --steps 10 --retain 1000 --paraphrase 2 --out eval/c2s
    python benchmarks/retain_losses.py --pairs pairs/bench/circle-to-square.yaml eval/c2s/eval.json
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("evals", type=Path, nargs="+", help="eval.json files of `vidunlearn eval`")
    parser.add_argument("--pairs", type=Path, required=True, help="the pairs file the edits were trained from")
    parser.add_argument("--keep-context", type=int, default=0, metavar="K", help="the edits' keep_context")
    args = parser.parse_args()

    from vidunlearn.pairs import load_pairs
    from vidunlearn.remap import context_prompts, target_prompts

    concept = load_pairs(args.pairs)
    contexts = set(context_prompts(concept, 1000))
    trained = {*concept.neutral, *concept.retain, *concept.safe, *target_prompts(concept)[0],
               *context_prompts(concept, args.keep_context)}
    for path in args.evals:
        clips = json.loads(path.read_text())["prompts"]
        retain = [c for c in clips if c["group"] == "retain"]
        lost = [c for c in retain if any(c["verdict"].get(k, v) != v for k, v in c["labels"].items())]
        shown = {g: f"{sum(c['shows_concept'] for c in clips if c['group'] == g)} of {sum(c['group'] == g for c in clips)}"
                 for g in ("forget", "paraphrase")}
        print(f"{path}: {len(lost)} of {len(retain)} retain clips lost ({sum(c['text'] not in trained for c in lost)} of the "
              f"{sum(c['text'] not in trained for c in retain)} not trained on; {sum(c['text'] in contexts for c in lost)} of the "
              f"{sum(c['text'] in contexts for c in retain)} in the unsafe prompts' contexts); the concept shown in forget "
              f"{shown['forget']}, paraphrase {shown['paraphrase']}")
        for c in lost:
            marks = [m for m, hit in (("trained on", c["text"] in trained), ("an unsafe prompt's context", c["text"] in contexts)) if hit]
            print(f"  lost: {c['text']} (seed {c['seed']}) -> {c['verdict']}{' [' + ', '.join(marks) + ']' if marks else ''}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
