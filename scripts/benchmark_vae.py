"""The benchmark model's VAE stage and the helpers the training stages share (used by
scripts/train_benchmark_model.py, which documents the whole run)."""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from vidunlearn import world


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def progress(total: int, description: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    task = bar.add_task(description, total=total, info="")
    return bar, task


def checkpoint(write, payload, path: Path) -> None:
    """Write a resume checkpoint; a full disk costs the checkpoint, not the run."""
    try:
        write(payload, path)
    except OSError as exc:
        log(f"could not write checkpoint {path} ({exc}); training goes on")


def schedule(step: int, steps: int, start: float, minutes: float, done: int = 0) -> float:
    """Warm-up over 50 steps, then cosine decay to 10 % over the step OR time budget (whichever
    runs out first: on a shared CPU the time budget usually decides)."""
    progress = max(step / steps, (time.time() - start) / (minutes * 60) + done / steps)
    return min(1.0, (step - done + 1) / 50) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def to_tensor(clips: np.ndarray) -> torch.Tensor:
    """uint8 (B, F, H, W, 3) -> float (B, 3, F, H, W) in [-1, 1]."""
    return torch.from_numpy(clips).permute(0, 4, 1, 2, 3).float().div(127.5).sub(1.0)


def to_frames(video: torch.Tensor) -> np.ndarray:
    """float (B, 3, F, H, W) in [-1, 1] -> float (B, F, H, W, 3) in [0, 1]."""
    return video.clamp(-1, 1).add(1).div(2).permute(0, 2, 3, 4, 1).cpu().numpy()


def render_batch(rng: np.random.Generator, labels: list[world.Labels]) -> np.ndarray:
    return np.stack([world.render(lab, rng) for lab in labels])


def away_from_background(x: torch.Tensor) -> torch.Tensor:
    """(B, C, F, H, W) -> (B, 1, F, H, W): each pixel's distance from the clip's corner pixel (the
    background, in the world's clips); large on the object. Used to weight both training losses."""
    return (x - x[..., :1, :1]).abs().sum(dim=1, keepdim=True)


def outline(inside: torch.Tensor) -> torch.Tensor:
    """An object mask (B, 1, F, H, W) -> bool, same shape: pixels whose 3x3 neighbourhood holds both
    object and background, i.e. the object's outline, where a square's corners differ from a circle."""
    flat = inside.float().transpose(1, 2).flatten(0, 1)  # (B*F, 1, H, W)
    grown = torch.nn.functional.max_pool2d(flat, 3, 1, 1)
    shrunk = -torch.nn.functional.max_pool2d(-flat, 3, 1, 1)
    edge = (grown - shrunk) > 0
    return edge.view(inside.shape[0], inside.shape[2], 1, *inside.shape[3:]).transpose(1, 2)


def save_vae(vae, path: Path) -> None:
    from safetensors.torch import save_file

    checkpoint(save_file, {k: v.contiguous() for k, v in vae.state_dict().items()}, path)


# ---- stage 1: VAE ----------------------------------------------------------------------------------

def frame_wise(vae) -> None:
    """Zero every causal convolution's taps on earlier frames, and keep them zero in training.

    The VAE then codes each frame on its own (scale_factor_temporal is 1): exact, since Wan's VAE
    otherwise mixes frames only through those taps (its norms and attention act per frame). It
    trains on single frames, five times cheaper per clip, and all motion is left to the denoiser.
    """
    from diffusers.models.autoencoders.autoencoder_kl_wan import WanCausalConv3d

    for module in vae.modules():
        if isinstance(module, WanCausalConv3d) and module.kernel_size[0] > 1:
            mask = torch.zeros_like(module.weight)
            mask[:, :, -1] = 1.0  # causal padding: the last temporal tap is the current frame
            with torch.no_grad():
                module.weight.mul_(mask)
            module.weight.register_hook(lambda grad, mask=mask: grad * mask)


def train_vae(args, work: Path, device: str, vae_config: dict):
    from diffusers import AutoencoderKLWan
    from safetensors.torch import load_file

    torch.manual_seed(args.seed)
    z = vae_config["z_dim"]
    if args.decoder_width:
        vae_config = {**vae_config, "decoder_base_dim": args.decoder_width}
    vae = AutoencoderKLWan(**vae_config, latents_mean=[0.0] * z, latents_std=[1.0] * z).to(device)
    if vae_config["scale_factor_temporal"] == 1:
        frame_wise(vae)
    path = work / "vae.safetensors"
    if path.exists():
        saved = load_file(path)
        width, expected = saved["decoder.conv_out.weight"].shape[1], vae.decoder.conv_out.weight.shape[1]
        if width != expected:
            if not args.decoder_width:
                raise SystemExit(f"error: {path} has a decoder of width {width}, not {expected}: "
                                 f"pass --decoder-width {width}, or a new --work")
            # --decoder-width changed: keep the encoder (so the latents, and a denoiser trained on
            # them, stay valid) and start a fresh decoder; stage 1b then trains it from scratch.
            vae.load_state_dict({k: v for k, v in saved.items() if k.startswith(("encoder.", "quant_conv."))},
                                strict=False)
            for marker in ("decoder.json", "refine.json"):
                (work / marker).unlink(missing_ok=True)
            log(f"VAE: encoder from {path}, a fresh decoder of width {vae_config['decoder_base_dim']}")
            return finetune_decoder(args, work, device, vae)
        vae.load_state_dict(saved)
        if not args.vae_continue:
            log(f"VAE: reusing {path}")
            return finetune_decoder(args, work, device, vae)
        log(f"VAE: continuing from {path}")
    fit_vae(args, vae, list(vae.parameters()), args.vae_lr, args.vae_steps, args.vae_minutes, device, "VAE",
            args.seed)
    save_vae(vae, path)
    return finetune_decoder(args, work, device, vae)


def finetune_decoder(args, work: Path, device: str, vae, minutes: float | None = None, marker: str = "decoder.json",
                     pool=None):
    """Train the decoder alone, the encoder frozen. The latents, and so a denoiser already trained on
    them, stay valid; only the decoded pixels get sharper. Stage 1b (--decoder-minutes) trains on
    fresh clips' own latents; stage 3b (--refine-minutes, marker refine.json) on ``pool()`` (built
    only when there is training left): latents the denoiser refined, each paired with the clip it
    started from (see refined_pool).
    ``minutes`` (default --decoder-minutes) is the total for this --work: the marker records what was
    done, and a rerun with a larger total trains the remainder (a fresh optimizer and warm-up)."""
    minutes = args.decoder_minutes if minutes is None else minutes
    path = work / marker
    done = json.loads(path.read_text()) if path.exists() else {"minutes": 0.0, "steps": 0, "runs": []}
    remaining = minutes - done["minutes"]
    if remaining <= 0:
        return vae.eval()
    parameters = list(vae.decoder.parameters()) + list(vae.post_quant_conv.parameters())
    for p in vae.parameters():
        p.requires_grad_(False)
    for p in parameters:
        p.requires_grad_(True)
    # Fresh clips (or pool draws) for each run: the seed moves on by the steps already done.
    steps = fit_vae(args, vae, parameters, args.decoder_lr, args.vae_steps, remaining, device, path.stem,
                    args.seed + 7 + done["steps"], None if pool is None else pool())
    save_vae(vae, work / "vae.safetensors")
    done = {"minutes": minutes, "steps": done["steps"] + steps,
            "runs": done["runs"] + [{"steps": steps, "minutes": remaining, "lr": args.decoder_lr}]}
    checkpoint(lambda text, path: path.write_text(text), json.dumps(done), path)
    return vae.eval()


def refined_pool(rng: np.random.Generator, vae, denoise, labels: list[world.Labels], per_label: int,
                 max_noise: float, latent_stats, device: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Stage 3b's data: fresh clips of every label, their latents noised to a random level in
    [0, max_noise] (a fifth left clean) and brought back by ``denoise(x, label indices, levels)``
    (normalised latents; the trained denoiser with the clip's caption). Returns (latents, clips in
    [-1, 1]): the decoder learns to draw each clip from what the denoiser made of it, so it reads
    the denoiser's latents, not only the encoder's. It sees latents only, never captions: a shape it
    draws is a shape the denoiser put there."""
    mean, std = latent_stats
    chosen = [i for i in range(len(labels)) for _ in range(per_label)]
    clips = render_batch(rng, [labels[i] for i in chosen])
    x0 = (encode(vae, clips, device) - mean) / std
    levels = torch.from_numpy(rng.uniform(0.0, max_noise, len(chosen))).float()
    levels[torch.from_numpy(rng.random(len(chosen)) < 0.2)] = 0.0
    noise = torch.from_numpy(rng.standard_normal(x0.shape)).float()
    start = (1 - levels.view(-1, 1, 1, 1, 1)) * x0 + levels.view(-1, 1, 1, 1, 1) * noise
    index = torch.tensor(chosen)
    out = [denoise(start[i:i + 144], index[i:i + 144], levels[i:i + 144]) for i in range(0, len(chosen), 144)]
    return torch.cat(out).cpu() * std + mean, to_tensor(clips)


def fit_vae(args, vae, parameters, lr: float, steps: int, minutes: float, device: str, name: str, seed: int,
            pool: tuple[torch.Tensor, torch.Tensor] | None = None) -> int:
    """Train ``parameters`` of the VAE as a near-deterministic autoencoder on clips drawn with ``seed``,
    or, given a ``pool`` of (latents, clips), its decoder on batches drawn from it; returns the steps run."""
    per_frame = vae.config.scale_factor_temporal == 1
    rng = np.random.default_rng(seed)
    optimiser = torch.optim.AdamW(parameters, lr=lr, weight_decay=0.0)
    start = time.time()
    bar, task = progress(steps, name)
    step = 0
    with bar:
        for step in range(steps):
            if pool is None:
                x = to_tensor(render_batch(rng, [world.random_labels(rng) for _ in range(args.vae_batch)]))
                if per_frame:  # a frame-wise VAE trains on every frame of the batch as a one-frame clip
                    x = x.permute(0, 2, 1, 3, 4).reshape(-1, 3, 1, world.SIZE, world.SIZE)
                x = x.to(device)
                posterior = vae.encode(x).latent_dist
                # Deterministic (the posterior mode): sampling with the initial unit variance drowns the
                # signal and the decoder learns to ignore the latents (measured: no object after 260 steps).
                z = posterior.mode()
            else:
                idx = torch.from_numpy(rng.integers(len(pool[0]), size=args.vae_batch))
                z, x, posterior = pool[0][idx].to(device), pool[1][idx].to(device), None
            y = vae.decode(z).sample
            # The object is a small part of each frame: weight its pixels (those that differ
            # from the corner pixel, i.e. the background) so it is learnt first, not last.
            inside = away_from_background(x) > 0.1
            weight = 1.0 + args.object_weight * inside.float()
            if args.edge_weight:
                weight = weight + args.edge_weight * outline(inside).float()
            recon = (weight * ((y - x).abs() + (y - x).pow(2))).mean() / weight.mean()
            loss = recon if posterior is None else recon + args.kl_weight * posterior.kl().mean() / x[0].numel()
            optimiser.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(parameters, 1.0)
            for group in optimiser.param_groups:
                group["lr"] = lr * schedule(step, steps, start, minutes)
            optimiser.step()
            bar.update(task, advance=1, info=f"recon {recon.item():.4f}")
            if step % 50 == 0:
                log(f"{name} step {step} recon {recon.item():.4f}")
            if time.time() - start > minutes * 60:
                log(f"{name}: time budget reached after {step + 1} steps")
                break
    log(f"{name} trained in {time.time() - start:.0f} s")
    return step + 1


@torch.no_grad()
def encode(vae, clips: np.ndarray, device: str, batch: int = 32) -> torch.Tensor:
    out = []
    for i in range(0, len(clips), batch):
        out.append(vae.encode(to_tensor(clips[i:i + batch]).to(device)).latent_dist.mode().cpu())
    return torch.cat(out)


@torch.no_grad()
def decode(vae, latents: torch.Tensor, device: str, batch: int = 32) -> np.ndarray:
    return np.concatenate([to_frames(vae.decode(latents[i:i + batch].to(device)).sample) for i in range(0, len(latents), batch)])
