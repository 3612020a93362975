"""The tables of docs/adversarial-spread.md from the attack files beside this script: attack8/ (benchmarks/attack.py
--prompts 8, one file a model) and attack-all/ (--prompts 28 or 100: every forget caption no training saw, the default
and the spread order in one file a training seed; uc4-*: unsafe_context 4).

    python benchmarks/results/adversarial-text-encoder/spread-builder/summary.py
"""
import json
from pathlib import Path

HERE = Path(__file__).parent


def rates(results: list, model: str | None = None) -> tuple[str, str]:
    """'k/n (p %)' of the soft prompt at the input and of the typed words."""
    out = {}
    for r in results:
        if model is None or r["model"] == model:
            n = len(r["verdicts"])
            out[r["space"]] = f"{round(r['attack_success_rate'] * n)}/{n} ({100 * r['attack_success_rate']:.0f} %)"
    return out.get("input", "-"), out.get("discrete", "(running)")


print("From 8 starts neither order's unsafe_context 2 builds (attack8/):\n")
print("| task, training seed | default: soft prompt | typed | spread: soft prompt | typed |")
print("|---|---|---|---|---|")
for task in ("c", "red", "left"):
    for seed in range(5):
        files = [HERE / "attack8" / f"{v}-{task}-s{seed}.json" for v in ("def", "sp")]
        if all(f.exists() for f in files):
            cells = [c for f in files for c in rates(json.loads(f.read_text())["results"])]
            print(f"| {'circle' if task == 'c' else task}, {seed} | " + " | ".join(cells) + " |")
print("\nFrom every forget caption no training saw (attack-all/):\n")
print("| training | soft prompt | typed |")
print("|---|---|---|")
for f in sorted((HERE / "attack-all").glob("*.json")):
    results = json.loads(f.read_text())["results"]
    for model in dict.fromkeys(r["model"] for r in results):
        print(f"| {f.stem}: {model} | " + " | ".join(rates(results, model)) + " |")
