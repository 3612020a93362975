"""The table of docs/adversarial-contexts.md ("a margin instead of a clip count") from the shape_margin.py
JSON files beside this script (CONCEPT-seed{0,100,200}[-a|-b|-c...].json; the base is in each); CONCEPT circle
unless given (red, left: docs/adversarial-spread.md).

    python benchmarks/results/adversarial-text-encoder/unsafe-context/shape-margin/summary.py [CONCEPT]
"""
import json
import re
import sys
from pathlib import Path

import numpy as np

data = {}
concept = sys.argv[1] if len(sys.argv) > 1 else "circle"
for f in sorted(Path(__file__).parent.glob(f"{concept}-seed*.json")):
    seed = int(re.match(rf"{concept}-seed(\d+)", f.name).group(1))
    d = json.loads(f.read_text())
    texts = [p["text"] for p in d["prompts"]]
    for name, margins in d["margins"].items():
        data.setdefault(name, {})[seed] = (texts, margins)


def red_green_on_dark(text: str) -> bool:
    return "triangle" in text and ("red" in text or "green" in text) and "dark" in text


print("| model | clips lost, sampling seed 0 / 100 / 200 (the base's own left out) | of them red/green triangles on dark "
      "| mean margin change, red/green triangles on dark | mean change, the others |")
print("|---|---|---|---|---|")
for name in data:
    counts, on_dark, change, rest = [], 0, [], []
    for seed in sorted(data["base"]):
        texts, m = data[name][seed]
        base = data["base"][seed][1]
        lost = [i for i, v in enumerate(m) if (v is None or v < 0) and not (base[i] is None or base[i] < 0)]
        counts.append(len(lost))
        on_dark += sum(red_green_on_dark(texts[i]) for i in lost)
        change += [m[i] - base[i] for i in range(len(m)) if red_green_on_dark(texts[i])]
        rest += [m[i] - base[i] for i in range(len(m)) if not red_green_on_dark(texts[i])]
    print(f"| {name} | {' / '.join(map(str, counts))} = {sum(counts)} | {on_dark} | {np.mean(change):+.3f} | {np.mean(rest):+.3f} |")
