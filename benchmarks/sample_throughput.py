"""Clips per minute of `vidunlearn sample`/`eval`'s generation (sampling.iter_clips: batches,
per-prompt generators, prompts embedded on their real tokens, bf16 and VAE slicing/tiling on
cuda) against diffusers' own pipeline call on the same settings, one prompt per call: the 1.00x
baseline. A third row calls the pipeline with the whole batch as a list, to show what batching
alone gives. The rows run interleaved, `--repeats` times, on the same loaded weights; the best
time of each is kept (a shared machine only ever slows a run down).

    .venv/bin/python benchmarks/sample_throughput.py --model models/shapes-wan
    .venv/bin/python benchmarks/sample_throughput.py --model models/tiny-wan --frames 9 --size 64
    python benchmarks/sample_throughput.py --model wan2.1 --device cuda --frames 33 --height 480 --width 832 --steps 30 --prompts 8
"""

from __future__ import annotations

import argparse
import time

PROMPTS = ["a red circle moving left on a dark background", "a blue square moving up on a light background",
           "a green triangle moving down on a dark background", "a yellow circle moving right on a light background",
           "a purple square moving left on a dark background", "a cyan triangle moving up on a light background",
           "a red square moving down on a light background", "a blue triangle moving right on a dark background"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="models/shapes-wan")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", default=None, help="default: bfloat16 on cuda, float32 on cpu")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--frames", type=int, default=5)
    parser.add_argument("--height", type=int, default=None)
    parser.add_argument("--width", type=int, default=None)
    parser.add_argument("--size", type=int, default=32, help="height and width when those are not given")
    parser.add_argument("--guidance", type=float, default=2.0)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    import torch

    from vidunlearn.model import resolve_model
    from vidunlearn.progress import SILENT
    from vidunlearn.sampling import SampleSettings, iter_clips, load_pipeline

    dtype = args.dtype or ("bfloat16" if args.device.startswith("cuda") else "float32")
    settings = SampleSettings(steps=args.steps, frames=args.frames, height=args.height or args.size,
                              width=args.width or args.size, guidance=args.guidance, device=args.device, dtype=dtype)
    source = resolve_model(args.model)
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.prompts)]
    seeds = list(range(len(prompts)))
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    plain = SampleSettings(**{**settings.__dict__})
    pipe, _ = load_pipeline(source, plain)  # the same components, without vidunlearn's sampling loop
    if args.device.startswith("cuda"):  # the baseline is diffusers as it comes: no slicing or tiling
        for switch in ("disable_slicing", "disable_tiling"):
            if callable(getattr(pipe.vae, switch, None)):
                getattr(pipe.vae, switch)()
    call = dict(height=settings.height, width=settings.width, num_frames=settings.frames,
                num_inference_steps=settings.steps, guidance_scale=settings.guidance, output_type="np")

    def diffusers_one_by_one() -> None:
        for prompt, seed in zip(prompts, seeds):
            pipe(prompt=prompt, generator=torch.Generator("cpu").manual_seed(seed), **call)

    def diffusers_list() -> None:
        for start in range(0, len(prompts), args.batch_size):
            chunk = prompts[start:start + args.batch_size]
            pipe(prompt=chunk, generator=[torch.Generator("cpu").manual_seed(s) for s in seeds[start:start + len(chunk)]],
                 **call)

    def vidunlearn_sample() -> None:
        for _ in iter_clips(source, prompts, settings, SILENT, "bench", seeds=seeds, batch_size=args.batch_size):
            pass

    rows = {"diffusers pipe(prompt), one per call": diffusers_one_by_one,
            f"diffusers pipe(prompt=[{args.batch_size}])": diffusers_list,
            f"vidunlearn sample (batch {args.batch_size})": vidunlearn_sample}
    best = {name: float("inf") for name in rows}
    vidunlearn_sample()  # warm-up: first-call costs (allocator, kernels) out of every row
    for _ in range(args.repeats):
        for name, run in rows.items():
            sync()
            started = time.perf_counter()
            run()
            sync()
            best[name] = min(best[name], time.perf_counter() - started)
    baseline = best["diffusers pipe(prompt), one per call"]
    print(f"{args.model} on {args.device} ({dtype}): {len(prompts)} prompts, {settings.steps} steps, "
          f"{settings.frames} frames at {settings.height}x{settings.width}, guidance {settings.guidance}, "
          f"best of {args.repeats}, torch threads {torch.get_num_threads()}")
    print(f"{'':44s} {'seconds':>8s} {'clips/min':>10s} {'vs diffusers':>13s}")
    for name, seconds in best.items():
        print(f"{name:44s} {seconds:8.2f} {60 * len(prompts) / seconds:10.1f} {baseline / seconds:12.2f}x")


if __name__ == "__main__":
    main()
