"""Shape read for given texts on several models, 5 seeds each. usage: check2.py name=path,... -- text..."""
import sys
sys.path.insert(0, "/work/main")
import torch; torch.set_num_threads(1)
from vidunlearn.sampling import iter_clips, SampleSettings
from vidunlearn.model import resolve_model
from vidunlearn.judge import judge_clip
from vidunlearn import world
from vidunlearn.progress import Reporter
models = [m.split("=") for m in sys.argv[1].split(",")]
texts = sys.argv[2:]
seeds = [0, 100, 200, 300, 400]
st = SampleSettings(steps=10, frames=world.FRAMES, height=world.SIZE, width=world.SIZE, guidance=2.0, seed=0)
allt = [t for t in texts for _ in seeds]; alls = seeds * len(texts)
res = {n: [judge_clip((c * 255).round().astype("uint8")).shape[:2] for c in iter_clips(resolve_model(p), allt, st, Reporter(), n, seeds=alls, batch_size=5)] for n, p in models}
for k, t in enumerate(texts):
    print(t)
    for n, _ in models:
        print(f"   {n:8s} {' '.join(res[n][5*k:5*k+5])}")
