"""Reference clips of ``vidunlearn attack``: clips that show the concept, as the normalised latents
the searches denoise. Three sources: the benchmark world's generator (exact), the base model's own
samples (``--pairs``, :func:`vidunlearn.attack_run.sampled_references`), and a folder of the user's
MP4 clips (``--reference-clips``, :func:`read_reference_clips`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .errors import VidunlearnError

MAX_CLIP_BYTES = 512 * 1024 * 1024   # one reference file; a clip of a few seconds is a few MB
MAX_CLIPS = 256


def encode_clips(vae, clips: np.ndarray):
    """(K, C, F', H', W') latents of uint8 clips (K, F, H, W, 3): the VAE's posterior mode,
    normalised with the VAE config's latents mean and std as WanPipeline decodes."""
    import torch

    x = torch.from_numpy(np.ascontiguousarray(clips)).float().div(127.5).sub(1.0).permute(0, 4, 1, 2, 3)  # (K, 3, F, H, W)
    with torch.no_grad():
        z = vae.encode(x.to(vae.device, vae.dtype)).latent_dist.mode().float()
    mean = torch.tensor(vae.config.latents_mean, device=z.device).view(1, -1, 1, 1, 1)
    std = torch.tensor(vae.config.latents_std, device=z.device).view(1, -1, 1, 1, 1)
    return (z - mean) / std


def reference_latents(vae, target: dict[str, str], n: int, seed: int):
    """(n, C, F', H', W') latents of ``n`` benchmark-world generator clips with labels ``target``."""
    from . import world

    labels = world.Labels(**target)
    return encode_clips(vae, np.stack([world.render(labels, np.random.default_rng(seed + i)) for i in range(n)]))


def read_reference_clips(folder: Path, n: int, frames: int, height: int, width: int) -> np.ndarray:
    """The first ``n`` MP4 files of ``folder`` (sorted by name) as uint8 clips (K, frames, height,
    width, 3): each clip's first ``frames`` frames, each frame resized to width x height (no crop).
    One line for a missing or empty folder, an oversized or undecodable file, a clip too short."""
    import av
    from PIL import Image

    if not folder.is_dir():
        raise VidunlearnError("the reference clip folder does not exist", where=str(folder),
                              fix="pass a folder of .mp4 clips that show the concept")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() == ".mp4" and p.is_file())[:min(n, MAX_CLIPS)]
    if not files:
        raise VidunlearnError("no .mp4 file in the reference clip folder", where=str(folder),
                              fix="put clips that show the concept there as .mp4 files")
    clips = []
    for path in files:
        if path.stat().st_size > MAX_CLIP_BYTES:
            raise VidunlearnError(f"reference clip is {path.stat().st_size} bytes (limit {MAX_CLIP_BYTES})", where=str(path),
                                  fix="cut it to the few seconds the attack reads")
        taken = []
        try:
            with av.open(str(path), mode="r") as container:
                for frame in container.decode(video=0):
                    taken.append(np.asarray(frame.to_image().convert("RGB").resize((width, height), Image.BICUBIC)))
                    if len(taken) == frames:
                        break
        except (av.FFmpegError, ValueError, OSError) as exc:
            raise VidunlearnError(f"cannot decode the reference clip: {str(exc).splitlines()[0][:200]}", where=str(path),
                                  fix="re-encode it as H.264 MP4") from None
        if len(taken) < frames:
            raise VidunlearnError(f"reference clip has {len(taken)} frames, the attack reads {frames}", where=str(path),
                                  fix="use longer clips, or a smaller --frames")
        clips.append(np.stack(taken))
    return np.stack(clips)
