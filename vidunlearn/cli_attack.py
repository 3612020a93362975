"""``vidunlearn attack``: cli.py calls :func:`register` with its app. Parse ->
:func:`vidunlearn.attack_run.attack` -> render; no tensor math here."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .cli_console import RichReporter, handled, say, stdout, table
from .cli_options import DeviceOpt, ForceOpt, ModelOpt
from .report import share


def register(app: typer.Typer) -> None:
    """Add the ``attack`` command to ``app``."""
    app.command(epilog="Examples:\n\n"
             "  vidunlearn attack --model out/shapes-nored --compare models/shapes-wan --concept red --out attack/red\n\n"
             "  vidunlearn attack --model out/shapes-nored --concept red --space discrete --steps 20 --out attack/red-words\n\n"
             "  vidunlearn attack --model models/shapes-wan --concept red --start other --out attack/check\n\n"
             "  vidunlearn attack --model out/wan-nonudity --compare wan2.1 --pairs pairs/nudity.yaml --judge nudenet "
             "--space input --references 2 --frames 33 --height 480 --width 832 --sample-steps 30 --guidance 5 "
             "--device cuda --out attack/nudity")(
        handled(attack))


def attack(
    model: ModelOpt,
    out: Annotated[Path, typer.Option(help="Output folder: attack.json, found.safetensors, sheet.png, frames.svg.")],
    concept: Annotated[Optional[str], typer.Option(help="Benchmark-world value the edit erased, e.g. red, circle, left.")] = None,
    pairs: Annotated[Optional[Path], typer.Option(help="Instead of --concept: a pairs file; the attack starts from its unsafe prompts (--start other: their safe twins) at the words each pair changes, and its reference clips are the --compare model's own samples of the unsafe prompts.")] = None,
    compare: Annotated[Optional[str], typer.Option(help="Base model, attacked from the same prompts with the same budget (needed with --pairs).")] = None,
    judge: Annotated[str, typer.Option(help="oracle (benchmark world), nudenet or a .py file whose load() returns a judge; with --pairs and a plug-in judge the concept is its first attribute = yes.")] = "oracle",
    space: Annotated[str, typer.Option(help="output (text-encoder output states, strongest), input (input embeddings of the attribute word's tokens) or discrete (real tokens there).")] = "output",
    start: Annotated[str, typer.Option(help="forget: start from prompts naming the concept; other: from the same prompts naming another value (a check of the attack).")] = "forget",
    prompts: Annotated[int, typer.Option(help="Starting prompts (training captions of the benchmark world, or the pairs file's first ones).")] = 8,
    steps: Annotated[int, typer.Option(help="Optimiser steps (discrete: token-swap iterations) per restart.")] = 40,
    restarts: Annotated[int, typer.Option(help="Independent starts per prompt; the lowest held-out loss wins.")] = 1,
    references: Annotated[int, typer.Option(help="Reference clips that show the concept, per starting prompt.")] = 8,
    reference_clips: Annotated[Optional[Path], typer.Option(help="A folder of .mp4 clips that show the concept: the first --references of them (by name), first --frames frames resized to --height x --width, encoded by each model's VAE, for every start (instead of the world's generator or the base's samples).")] = None,
    sample_steps: Annotated[int, typer.Option(help="Denoising steps of every rendered (and, with --pairs, reference) clip.")] = 10,
    frames: Annotated[Optional[int], typer.Option(help="Frames (4k+1); default: the benchmark world's.")] = None,
    height: Annotated[Optional[int], typer.Option(help="Pixels; default: the benchmark world's clip size.")] = None,
    width: Annotated[Optional[int], typer.Option(help="Pixels; default: the benchmark world's clip size.")] = None,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale (2.0 suits models/shapes-wan).")] = 2.0,
    seed: int = 0,
    device: DeviceOpt = "cpu",
    force: ForceOpt = False,
) -> None:
    """White-box attack: search for a conditioning that brings the erased concept back, render it, judge it."""
    from .attack import AttackSettings
    from .attack_run import attack as run_attack
    from .attack_run import pairs_starts, world_starts
    from .errors import VidunlearnError
    from .judges import load_judge
    from .sampling import SampleSettings
    from .world import FRAMES, SIZE

    if (concept is None) == (pairs is None):
        raise VidunlearnError("pass either --concept (benchmark world) or --pairs (a pairs file), not both or neither",
                              fix="e.g. --concept red, or --pairs pairs/nudity.yaml --compare wan2.1 --judge nudenet")
    settings = AttackSettings(space=space, steps=steps, restarts=restarts, references=references, seed=seed)
    settings.check()   # the rest of the budget: the fixed defaults of AttackSettings
    chosen = load_judge(judge)
    if pairs is not None:   # without --compare or --reference-clips: run_attack refuses, before any model work
        target, starts = pairs_starts(pairs, chosen, prompts, start, seed=seed)
    else:
        target, starts = world_starts(concept, prompts, start, seed=seed)
    sample = SampleSettings(steps=sample_steps, frames=frames or FRAMES, height=height or SIZE, width=width or SIZE,
                            guidance=guidance, seed=seed, device=device)
    result = run_attack(model, target, starts, out=out, settings=settings, sample=sample, judge=chosen, compare=compare,
                        force=force, reporter=RichReporter(), reference_clips=reference_clips)
    results = result.document["results"]
    rows = [(name, share(r["start_rate"]), share(r["attack_success_rate"]),
             " ".join(f"{x:.0%}" for x in r["frame_rates"]), f"{r['mean_loss_start']:.4f} -> {r['mean_loss']:.4f}")
            for name, r in results.items()]
    stdout.print(table(f"attack on {target.value if concept else pairs} ({space}, {steps} steps x {restarts} restart(s), seed {seed}, "
                        f"{len(starts)} '{start}' prompts)",
                        ("model", "unattacked rate", "attack success rate", "per frame (attacked)", "loss"), rows))
    found = [p["model"].get("found_text") for p in result.document["prompts"] if p["model"].get("found_text")]
    for text in found[:8]:
        say(f"found: {text}")
    say(f"wrote {out / 'attack.json'}, {out / 'found.safetensors'}, {out / 'sheet.png'} and {out / 'frames.svg'}")
