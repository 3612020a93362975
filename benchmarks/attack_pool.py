"""Pool runs of benchmarks/attack.py at several seeds into one attack success rate per model and space.

One run attacks each starting caption once (one search at the fixed budget, one clip judged; its
``--seed`` draws the search's noise and the clip's sampling seed). From all 28 unseen circle captions
one prompt is 3.6 points, and a second seed moves a model's rate by more than that (docs/attack.md,
"How sure a rate is"). Each run is a sample of the same attack; this prints, for every (task, model,
space): the wins at each seed, the rate over every attack of every run with its 95 % Wilson interval,
and, for scale, the share of captions won at any seed (an attacker who may try each caption once per
seed and keep the best clip: more than the fixed budget).

    python benchmarks/attack.py --tasks circle-to-square --prompts 100 --seed 1 ... --out atk-seed1
    python benchmarks/attack_pool.py atk-seed0 atk-seed1 atk-seed2 [--json pooled.json]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from efficacy import TASKS, markdown  # noqa: E402  (each task's concept value)

HEADER = ["task", "model", "space", "wins at each seed", "pooled attack success %", "95 % interval", "captions won at any seed %"]


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of k successes in n trials."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre, half = p + z * z / (2 * n), z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return (centre - half) / (1 + z * z / n), (centre + half) / (1 + z * z / n)


def load(folder: Path) -> dict:
    path = folder / "attack.json" if folder.is_dir() else folder
    try:
        document = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise SystemExit(f"error: cannot read an attack run at {path}: {exc} (pass benchmarks/attack.py's --out folders)")
    if not isinstance(document, dict) or not isinstance(document.get("results"), list) or "seed" not in document:
        raise SystemExit(f"error: {path} is not an attack run (no seed or results): pass benchmarks/attack.py's --out folders")
    if not document.get("complete"):
        raise SystemExit(f"error: the attack run at {path} is incomplete (it stopped before its table): run it to the end")
    return document


def pooled(documents: list[dict]) -> list[dict]:
    """One row per (task, model, start, space) attacked at every seed of the runs (a seed's models may come in
    several runs); every seed's run must attack it from the same starts."""
    groups: dict[tuple, dict[int, dict]] = {}
    for document in documents:
        for r in document["results"]:
            key = (r["task"], r["model"], r["start"], r["space"])
            if document["seed"] in groups.setdefault(key, {}):
                raise SystemExit(f"error: two runs at seed {document['seed']} attack {'/'.join(key)}: pass each seed once")
            groups[key][document["seed"]] = r
    seeds, rows = {d["seed"] for d in documents}, []
    for (task, model, start, space), by_seed in groups.items():
        if set(by_seed) != seeds:
            continue   # a model not attacked at every seed
        value = TASKS[task][1][0]
        starts = {tuple(r["starts"]) for r in by_seed.values()}
        if len(starts) != 1:
            raise SystemExit(f"error: the runs attack {task}/{model} from different starts: use the same --prompts and "
                             f"--held-out options at every seed")
        wins = {seed: [v == value for v in r["verdicts"]] for seed, r in sorted(by_seed.items())}
        k, n = sum(sum(w) for w in wins.values()), sum(len(w) for w in wins.values())
        low, high = wilson(k, n)
        union = [any(w[i] for w in wins.values()) for i in range(len(next(iter(starts))))]
        rows.append({"task": task, "model": model, "start": start, "space": space,
                     "wins": {str(s): sum(w) for s, w in wins.items()}, "attacks": {str(s): len(w) for s, w in wins.items()},
                     "pooled": k / n, "interval": [low, high], "any_seed": sum(union) / len(union)})
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="benchmarks/attack.py --out folders (or their attack.json)")
    parser.add_argument("--json", type=Path, help="also write the pooled rows here")
    args = parser.parse_args()
    documents = [load(p) for p in args.runs]
    rows = pooled(documents)
    if not rows:
        raise SystemExit("error: no (task, model, space) is attacked at every seed of these runs: pass runs of the same models")
    pct = lambda x: f"{100 * x:.0f}"
    table = [[r["task"], r["model"], r["space"],
              " / ".join(f"{r['wins'][s]} of {r['attacks'][s]} (seed {s})" for s in r["wins"]),
              pct(r["pooled"]), f"{pct(r['interval'][0])}-{pct(r['interval'][1])}", pct(r["any_seed"])] for r in rows]
    seeds = sorted({d["seed"] for d in documents})
    print(markdown(f"attack success pooled over seeds {', '.join(map(str, seeds))} ({len(args.runs)} runs)", table, HEADER))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
