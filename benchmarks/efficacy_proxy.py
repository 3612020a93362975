"""The efficacy benchmark's proxy mode (``benchmarks/efficacy.py --proxy``): no video. The untrained
benchmark architecture (random denoiser, the real all-MiniLM-L6-v2 encoder) and a nearest-centroid
probe on its K/V features, fitted on the base model's features of the 144 training captions: it
measures whether an edit removes the concept from what the model reads, and only it."""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def build_untrained_model(out: Path) -> Path:
    """The benchmark architecture (scripts/train_benchmark_model.py), random denoiser, seed 0."""
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    sys.path.insert(0, str(ROOT / "scripts"))
    import train_benchmark_model as recipe

    torch.manual_seed(0)
    transformer = WanTransformer3DModel(**recipe.TRANSFORMER_CONFIG).eval()
    vae = AutoencoderKLWan(**recipe.VAE_CONFIG).eval()
    z = recipe.VAE_CONFIG["z_dim"]
    recipe.save_pipeline(out, transformer, vae, (torch.zeros(z), torch.ones(z)))
    return out


class ProbeJudge:
    """Nearest class centroid per attribute on the K/V features of a model (proxy mode)."""

    name = "kv-probe"
    attributes = ("colour", "shape", "motion")

    def __init__(self, model: str):
        from vidunlearn import world

        self.captions = [(world.caption(lab), lab) for lab in world.all_labels()]
        self.texts: dict[str, object] = {}
        base = self.features(model, [c for c, _ in self.captions])
        self.centre = base.mean(dim=0)
        self.scale = base.std(dim=0).clamp_min(1e-6)
        z = (base - self.centre) / self.scale
        self.centroids = {}
        for attribute in self.attributes:
            values = world.vocabulary(attribute)
            self.centroids[attribute] = (values, __import__("torch").stack(
                [z[[i for i, (_, lab) in enumerate(self.captions) if lab.get(attribute) == v]].mean(0) for v in values]))

    def states(self, model: str, texts: list[str]):
        from vidunlearn.model import resolve_model
        from vidunlearn.textpath import encode_prompts, load_text_encoder

        missing = [t for t in texts if t not in self.texts]
        if missing:
            import torch

            tokenizer, encoder = load_text_encoder(resolve_model(model), "cpu", torch.float32)
            for text, state in zip(missing, encode_prompts(tokenizer, encoder, missing, 512, "cpu")):
                self.texts[text] = state
        return [self.texts[t] for t in texts]

    def features(self, model: str, texts: list[str]):
        import torch
        from diffusers import WanTransformer3DModel

        transformer = WanTransformer3DModel.from_pretrained(Path(model) / "transformer").eval()
        rows = []
        with torch.no_grad():
            for state in self.states(model, texts):
                x = transformer.condition_embedder.text_embedder(state[None])
                rows.append(torch.cat([torch.cat([b.attn2.to_k(x), b.attn2.to_v(x)], dim=-1).mean(dim=1)[0]
                                       for b in transformer.blocks]))
        return torch.stack(rows)

    def verdicts(self, model: str, texts: list[str]) -> list[dict[str, str]]:
        z = (self.features(model, texts) - self.centre) / self.scale
        out = [{} for _ in texts]
        for attribute, (values, centroids) in self.centroids.items():
            nearest = __import__("torch").cdist(z, centroids).argmin(dim=1)
            for row, index in zip(out, nearest.tolist()):
                row[attribute] = values[index]
        return out


def probe_run(judge: ProbeJudge, model: str, eval_set):
    from vidunlearn.evaluate import ModelRun, score

    verdicts = judge.verdicts(model, [p.text for p in eval_set.prompts])
    metrics = score(list(eval_set.prompts), verdicts, list(eval_set.concepts), judge.attributes)
    return ModelRun({"name": model}, verdicts, metrics)
