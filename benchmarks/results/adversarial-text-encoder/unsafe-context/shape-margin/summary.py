"""The table of docs/adversarial-contexts.md ("a margin instead of a clip count") from the shape_margin.py
JSON files beside this script (circle-seed{0,100,200}[-a|-b|-c].json; the base is in each).

    python benchmarks/results/adversarial-text-encoder/unsafe-context/shape-margin/summary.py
"""
import json
import re
from pathlib import Path

import numpy as np

data = {}
for f in sorted(Path(__file__).parent.glob("circle-seed*.json")):
    seed = int(re.match(r"circle-seed(\d+)", f.name).group(1))
    d = json.loads(f.read_text())
    texts = [p["text"] for p in d["prompts"]]
    for name, margins in d["margins"].items():
        data.setdefault(name, {})[seed] = (texts, margins)


def red_green_on_dark(text: str) -> bool:
    return "triangle" in text and ("red" in text or "green" in text) and "dark" in text


print("| model | clips lost, sampling seed 0 / 100 / 200 (the base's own left out) | of them red/green triangles on dark "
      "| mean margin change, red/green triangles on dark | mean change, the other 88 |")
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
