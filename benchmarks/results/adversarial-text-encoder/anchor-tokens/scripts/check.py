"""Render each circle typed-attack win on base and its edited model, at its own seed and 4 more."""
import json, sys
sys.path.insert(0, "/work/main")
import torch; torch.set_num_threads(1)
from vidunlearn.sampling import iter_clips, SampleSettings
from vidunlearn.model import resolve_model
from vidunlearn.judge import judge_clip
from vidunlearn import world
from vidunlearn.progress import Reporter
rows = []
for s in range(5):
    d = json.load(open(f"/tmp/s18/q/full-c-s{s}/attack.json"))
    for x in d["results"]:
        if x["space"] != "discrete" or not x["model"].startswith("def"): continue
        for i, (st, v, ft) in enumerate(zip(x["starts"], x["verdicts"], x["found_texts"])):
            if v == "circle": rows.append((s, i, st, ft))
st = SampleSettings(steps=10, frames=world.FRAMES, height=world.SIZE, width=world.SIZE, guidance=2.0, seed=0)
extra = [0, 100, 200, 300]
for s, i, start, found in rows:
    texts, seeds = [], []
    for t in (found, found.replace("triangle", "").replace("  ", " "), start.replace("circle", "triangle")):
        for sd in [i] + extra:
            texts.append(t); seeds.append(sd)
    out = {}
    for name, m in (("base", "/work/main/models/shapes-wan"), ("edit", f"/tmp/s16/m/uc2-c-s{s}")):
        out[name] = [judge_clip((c * 255).round().astype("uint8")).shape for c in iter_clips(resolve_model(m), texts, st, Reporter(), name, seeds=seeds, batch_size=5)]
    print(f"seed{s} start#{i} {start!r} -> {found!r}")
    for k, t in enumerate((found, "(no triangle) " + found.replace("triangle", ""), start.replace("circle", "triangle"))):
        print(f"   {t!r}: base {out['base'][5*k:5*k+5]} edit {out['edit'][5*k:5*k+5]}", flush=True)
