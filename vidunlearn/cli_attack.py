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
             "  vidunlearn attack --model models/shapes-wan --concept red --start other --out attack/check")(
        handled(attack))


def attack(
    model: ModelOpt,
    out: Annotated[Path, typer.Option(help="Output folder: attack.json, found.safetensors, sheet.png.")],
    concept: Annotated[str, typer.Option(help="Benchmark-world value the edit erased, e.g. red, circle, left.")],
    compare: Annotated[Optional[str], typer.Option(help="Base model, attacked from the same prompts with the same budget.")] = None,
    space: Annotated[str, typer.Option(help="output (text-encoder output states, strongest), input (input embeddings of the attribute word's tokens) or discrete (real tokens there).")] = "output",
    start: Annotated[str, typer.Option(help="forget: start from prompts naming the concept; other: from the same prompts naming another value (a check of the attack).")] = "forget",
    prompts: Annotated[int, typer.Option(help="Starting prompts (training captions of the benchmark world).")] = 8,
    steps: Annotated[int, typer.Option(help="Optimiser steps (discrete: token-swap iterations) per restart.")] = 40,
    restarts: Annotated[int, typer.Option(help="Independent starts per prompt; the lowest held-out loss wins.")] = 1,
    seed: int = 0,
    device: DeviceOpt = "cpu",
    force: ForceOpt = False,
) -> None:
    """White-box attack: search for a conditioning that brings the erased concept back, render it, judge it."""
    from .attack import AttackSettings
    from .attack_run import attack as run_attack
    from .attack_run import world_starts
    from .sampling import SampleSettings
    from .world import FRAMES, SIZE

    settings = AttackSettings(space=space, steps=steps, restarts=restarts, seed=seed)  # the rest: the fixed budget
    settings.check()
    target, starts = world_starts(concept, prompts, start, seed=seed)
    sample = SampleSettings(steps=10, frames=FRAMES, height=SIZE, width=SIZE, guidance=2.0, seed=seed, device=device)
    result = run_attack(model, target, starts, out=out, settings=settings, sample=sample, compare=compare, force=force,
                        reporter=RichReporter())
    results = result.document["results"]
    rows = [(name, share(r["start_rate"]), share(r["attack_success_rate"]),
             " ".join(f"{x:.0%}" for x in r["frame_rates"]), f"{r['mean_loss_start']:.4f} -> {r['mean_loss']:.4f}")
            for name, r in results.items()]
    stdout.print(table(f"attack on {concept} ({space}, {steps} steps x {restarts} restart(s), seed {seed}, "
                        f"{len(starts)} '{start}' prompts)",
                        ("model", "unattacked rate", "attack success rate", "per frame (attacked)", "loss"), rows))
    found = [p["model"].get("found_text") for p in result.document["prompts"] if p["model"].get("found_text")]
    for text in found[:8]:
        say(f"found: {text}")
    say(f"wrote {out / 'attack.json'}, {out / 'found.safetensors'} and {out / 'sheet.png'}")
