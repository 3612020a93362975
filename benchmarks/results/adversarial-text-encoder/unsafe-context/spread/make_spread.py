"""The screen's pairs file (circle-to-square-spread.yaml beside this script): pairs/bench/circle-to-square.yaml with
its neutral prompts reordered so that `unsafe_context: 2`, which takes keep prompts in list order, builds its ten
unsafe prompts where the erase prompts so far are farthest (greedy: the largest smallest word distance to every
erase prompt so far, then the largest sum of distances; ties in list order). Only neutral prompts are moved (the
retain list is the same), and none whose built prompt is one of the attack's eight held-out starts
(attack-starts.json), so the attack protocol stays the same. A screen, not vidunlearn's builder.

    python benchmarks/results/adversarial-text-encoder/unsafe-context/spread/make_spread.py
"""
import json
from pathlib import Path

import yaml

HERE = Path(__file__).parent
ROOT = HERE.parents[4]
source = yaml.safe_load((ROOT / "pairs/bench/circle-to-square.yaml").read_text())
starts = set(json.loads((HERE / "attack-starts.json").read_text()))


def built(text: str) -> str:
    return " ".join("circle" if i == 2 else w for i, w in enumerate(text.split()))


def distance(a: str, b: str) -> int:
    return sum(x != y for x, y in zip(a.split(), b.split()))


erase = [p["unsafe"] for p in source["pairs"]]
seen = set(erase) | set(source["neutral"]) | set(source["retain"])
candidates = [n for n in source["neutral"] if len(n.split()) == 9 and built(n) not in starts]
picks = []
for _ in range(10):
    best = max((c for c in candidates if built(c) not in seen),
               key=lambda c: (min(distance(built(c), e) for e in erase), sum(distance(built(c), e) for e in erase)))
    candidates.remove(best)
    seen.add(built(best))
    erase.append(built(best))
    picks.append(best)
source["neutral"] = picks + [n for n in source["neutral"] if n not in picks]
source["description"] += " (screen: neutral prompts reordered so that unsafe_context builds spread contexts)"
out = HERE / "circle-to-square-spread.yaml"
out.write_text("# screen copy of pairs/bench/circle-to-square.yaml, neutral reordered\n" + yaml.safe_dump(source, sort_keys=False, width=200))
print("\n".join(built(p) for p in picks))
