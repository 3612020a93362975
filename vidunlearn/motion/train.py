"""Train the motion benchmark model (a small MoMask) on the motion world, on CPU, in MoMask's three
stages, each resumable:

    python -m vidunlearn.motion.train --out models/momask-world --work vidunlearn-work/motion-train

1. ``vq``: the residual VQ-VAE on random 40-row windows of motion features (MoMask's
   ``train_vq.py``: smooth-L1 reconstruction + 0.5 x the same on the joint-position part +
   0.02 x commitment; EMA codebooks with reset; quantizer dropout 0.2);
2. ``mask``: the masked transformer on the base-layer codes of whole motions, conditioned on
   the caption (``train_t2m_transformer.py``: cosine-scheduled masking, 10 % text dropout);
3. ``res``: the residual transformer on all layers' codes (``train_res_transformer.py``).

Data is rendered on the fly from the world (:func:`vidunlearn.motion.world.render`): chunks of
``CHUNK`` motions, chunk i drawn with seed (seed, stage, i), actions balanced, each motion with a
random one of its label's 8 training captions; the held-out ``SYNONYMS`` are never seen. Every
step reseeds torch from (seed, stage, step), so a resumed run draws what an unbroken one would
(up to the thread count's floating-point order). Resume checkpoints (weights, optimizer, EMA
codebook statistics, step) go to ``--work`` every ``--save-every`` steps; a rerun continues;
a finished stage is skipped. The shipped files are written in MoMask's layout
(:mod:`vidunlearn.motion.momask`) at the end of each stage.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from . import world
from .features import RIC, to_features
from .momask import (RES_OPT, TRANS_OPT, UNIT_LENGTH, VQ_OPT, build_mask, build_res, build_vq, load_state,
                     save_stage, stage_dir)

CHUNK = 1024                # motions rendered at a time
TOKENS = (10, 20)           # motion lengths in tokens (40-80 feature rows, 41-81 frames: 2-4 s)
STAGE_SEED = {"vq": 1, "mask": 2, "res": 3}
STD_FLOOR = 1e-2


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def captions_by_label() -> dict[world.Labels, list[str]]:
    table: dict[world.Labels, list[str]] = {}
    for prompt in world.training_prompts():
        table.setdefault(prompt.labels, []).append(prompt.text)
    return table


def render_chunk(seed: int, stage: str, index: int, n: int = CHUNK) -> tuple[list[world.Labels], list[np.ndarray]]:
    """n motions' labels and raw features (4k, 137), k in TOKENS, actions balanced."""
    rng = np.random.default_rng([seed, STAGE_SEED.get(stage, 0), index])
    labels, feats = [], []
    for i in range(n):
        action = world.ACTIONS[int(rng.integers(len(world.ACTIONS)))]
        lab = world.Labels(action, str(rng.choice(list(world.VARIANTS[action]))))
        tokens = int(rng.integers(TOKENS[0], TOKENS[1] + 1))
        motion = world.render(lab, rng, frames=tokens * UNIT_LENGTH + 1)
        labels.append(lab)
        feats.append(to_features(motion))
    return labels, feats


def normalisation(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Feature mean and std (MoMask's meta/mean.npy, std.npy) over one chunk of its own seed."""
    _, feats = render_chunk(seed, "stats", 0)
    rows = np.concatenate(feats)
    return rows.mean(0).astype(np.float32), np.maximum(rows.std(0), STD_FLOOR).astype(np.float32)


def lr_at(step: int, steps: int, lr: float, warmup: int = 100) -> float:
    """Linear warm-up, then cosine decay to 5 %."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * (step - warmup) / max(1, steps - warmup))))


def progress(total: int, description: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    bar = Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn(), TextColumn("{task.fields[info]}"))
    return bar, bar.add_task(description, total=total, info="")


class Stage:
    """Resume bookkeeping for one stage: ``<work>/<stage>.pt`` holds {model, optimizer, ema, step, seconds}."""

    def __init__(self, work: Path, stage: str, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.path, self.model, self.optimizer = work / f"{stage}.pt", model, optimizer
        self.step, self.seconds = 0, 0.0
        if self.path.is_file():
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            for layer, ema in zip(getattr(getattr(model, "quantizer", None), "layers", []), state.get("ema", [])):
                layer.load_ema_state(ema)
            self.step, self.seconds = int(state["step"]), float(state["seconds"])
            log(f"{stage}: resuming at step {self.step} ({self.seconds / 60:.1f} min done)")

    def save(self, started: float) -> None:
        layers = getattr(getattr(self.model, "quantizer", None), "layers", [])
        state = {"model": self.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                 "ema": [layer.ema_state() for layer in layers], "step": self.step,
                 "seconds": self.seconds + time.time() - started}
        temp = self.path.with_suffix(".partial")
        torch.save(state, temp)
        temp.replace(self.path)


def train_vq(out: Path, work: Path, steps: int, seed: int, save_every: int) -> None:
    opt = dict(VQ_OPT)
    folder = stage_dir(out, str(opt["name"]))
    mean, std = normalisation(seed)
    (folder / "meta").mkdir(parents=True, exist_ok=True)
    np.save(folder / "meta" / "mean.npy", mean)
    np.save(folder / "meta" / "std.npy", std)
    torch.manual_seed(seed)
    vq = build_vq(opt)
    optimizer = torch.optim.AdamW(vq.parameters(), lr=float(opt["lr"]), betas=(0.9, 0.99), weight_decay=0.0)
    run_stage("vq", vq, optimizer, out, work, steps, seed, save_every, opt,
              lambda step, chunk: vq_step(vq, chunk, step, seed, opt, mean, std))


def vq_step(vq, chunk, step: int, seed: int, opt: dict, mean, std) -> tuple[torch.Tensor, str]:
    rng = np.random.default_rng([seed, 11, step])
    window, batch = int(opt["window_size"]), int(opt["batch_size"])
    _, feats = chunk
    rows = []
    for i in rng.integers(len(feats), size=batch):
        start = int(rng.integers(len(feats[i]) - window + 1))
        rows.append((feats[i][start:start + window] - mean) / std)
    x = torch.from_numpy(np.stack(rows))
    pred, commit, perplexity = vq(x)
    rec = F.smooth_l1_loss(pred, x)
    explicit = F.smooth_l1_loss(pred[..., RIC], x[..., RIC])
    loss = rec + float(opt["loss_vel"]) * explicit + float(opt["commit"]) * commit
    return loss, f"rec {rec.item():.4f} ric {explicit.item():.4f} ppl {float(perplexity):.0f}"


def run_stage(stage: str, model, optimizer, out: Path, work: Path, steps: int, seed: int, save_every: int,
              opt: dict, step_fn, chunk_fn=None) -> None:
    state = Stage(work, stage, model, optimizer)
    if state.step >= steps:
        log(f"{stage}: done ({steps} steps, {state.seconds / 60:.1f} min)")
        save_stage(out, stage, opt, model.state_dict(), 0, state.step)
        return
    chunk_fn = chunk_fn or (lambda index: render_chunk(seed, stage, index))
    chunk_steps = 250
    started = time.time()
    model.train()
    bar, task = progress(steps, stage)
    chunk_index, chunk = -1, None
    with bar:
        bar.update(task, completed=state.step)
        while state.step < steps:
            if state.step // chunk_steps != chunk_index:
                chunk_index = state.step // chunk_steps
                chunk = chunk_fn(chunk_index)
            torch.manual_seed(seed * 1_000_003 + STAGE_SEED[stage] * 100_003 + state.step)
            for group in optimizer.param_groups:
                group["lr"] = lr_at(state.step, steps, float(opt["lr"]))
            loss, info = step_fn(state.step, chunk)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            state.step += 1
            bar.update(task, advance=1, info=info)
            if not bar.console.is_terminal and state.step % 100 == 0:
                log(f"{stage} {state.step}/{steps}: {info}")
            if state.step % save_every == 0 or state.step == steps:
                state.save(started)
    state.seconds += time.time() - started
    state.save(time.time())
    log(f"{stage}: {steps} steps in {state.seconds / 60:.1f} min (all sessions); last: {info}")
    save_stage(out, stage, opt, model.state_dict(), 0, state.step)


@torch.no_grad()
def encode_chunk(vq, chunk, mean, std) -> tuple[list[world.Labels], list[torch.Tensor]]:
    """Whole motions -> code indices (T', Q), batched by length."""
    labels, feats = chunk
    vq.eval()
    codes: list[torch.Tensor | None] = [None] * len(feats)
    by_length: dict[int, list[int]] = {}
    for i, f in enumerate(feats):
        by_length.setdefault(len(f), []).append(i)
    for length, members in by_length.items():
        x = torch.from_numpy((np.stack([feats[i] for i in members]) - mean) / std)
        ids, _ = vq.encode(x)
        for i, row in zip(members, ids):
            codes[i] = row
    return labels, codes  # type: ignore[return-value]


def token_batch(chunk, step: int, seed: int, batch: int, cond_table: dict[str, torch.Tensor],
                captions: dict[world.Labels, list[str]], noise: float):
    """(ids (B, T, Q) padded with 0, lengths (B,), text vectors (B, 512))."""
    rng = np.random.default_rng([seed, 12, step])
    labels, codes = chunk
    picks = rng.integers(len(codes), size=batch)
    lengths = torch.tensor([len(codes[i]) for i in picks])
    ids = torch.zeros(batch, int(lengths.max()), codes[0].shape[-1], dtype=torch.long)
    texts = []
    for row, i in enumerate(picks):
        ids[row, : len(codes[i])] = codes[i]
        options = captions[labels[i]]
        texts.append(options[int(rng.integers(len(options)))])
    cond = torch.stack([cond_table[t] for t in texts])
    if noise > 0:  # text-vector noise on the 384 used components, for unseen wordings
        cond[:, :384] += noise * torch.from_numpy(rng.standard_normal((batch, 384)).astype(np.float32))
    return ids, lengths, cond


def train_transformer(stage: str, out: Path, work: Path, steps: int, seed: int, save_every: int, noise: float) -> None:
    from .text import TextEncoder

    opt = dict(TRANS_OPT if stage == "mask" else RES_OPT)
    vq_opt = dict(VQ_OPT)
    vq = build_vq(vq_opt)
    vq.load_state_dict(load_state(out, "vq", str(vq_opt["name"])))
    meta = stage_dir(out, str(vq_opt["name"])) / "meta"
    mean, std = np.load(meta / "mean.npy"), np.load(meta / "std.npy")
    captions = captions_by_label()
    texts = [t for options in captions.values() for t in options]
    cond_table = dict(zip(texts, TextEncoder()(texts)))
    torch.manual_seed(seed + STAGE_SEED[stage])
    model = build_mask(opt, vq_opt) if stage == "mask" else build_res(opt, vq_opt)
    optimizer = torch.optim.AdamW(model.parameters(), lr=float(opt["lr"]), betas=(0.9, 0.99), weight_decay=1e-5)
    opt["text_encoder"] = TextEncoder.name
    opt["text_noise"] = noise

    def step_fn(step, chunk):
        ids, lengths, cond = token_batch(chunk, step, seed, int(opt["batch_size"]), cond_table, captions, noise)
        loss, _, acc = model(ids[..., 0], cond, lengths) if stage == "mask" else model(ids, cond, lengths)
        return loss, f"ce {loss.item():.3f} acc {acc:.2f}"

    run_stage(stage, model, optimizer, out, work, steps, seed, save_every, opt, step_fn,
              chunk_fn=lambda index: encode_chunk(vq, render_chunk(seed, stage, index), mean, std))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=Path("models/momask-world"))
    parser.add_argument("--work", type=Path, default=Path("vidunlearn-work/motion-train"),
                        help="resume checkpoints (delete it to start over)")
    parser.add_argument("--vq-steps", type=int, default=3000)
    parser.add_argument("--mask-steps", type=int, default=8000)
    parser.add_argument("--res-steps", type=int, default=3000)
    parser.add_argument("--stages", default="vq,mask,res")
    parser.add_argument("--seed", type=int, default=3407)
    parser.add_argument("--save-every", type=int, default=200)
    parser.add_argument("--text-noise", type=float, default=0.3)
    parser.add_argument("--threads", type=int, default=1,
                        help="1 is fastest on a shared CPU (more threads spin against the other jobs)")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.work.mkdir(parents=True, exist_ok=True)
    stages = args.stages.split(",")
    started = time.time()
    if "vq" in stages:
        train_vq(args.out, args.work, args.vq_steps, args.seed, args.save_every)
    if "mask" in stages:
        train_transformer("mask", args.out, args.work, args.mask_steps, args.seed, args.save_every, args.text_noise)
    if "res" in stages:
        train_transformer("res", args.out, args.work, args.res_steps, args.seed, args.save_every, args.text_noise)
    log(f"this run: {(time.time() - started) / 60:.1f} min wall")


if __name__ == "__main__":
    main()
