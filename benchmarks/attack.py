"""Attack benchmark (issue 16): does an erased concept come back under a white-box attack?

For each task (red, circle-to-square, moving left; the pairs of benchmarks/efficacy.py) and each
edit variant (the default remap, the paper's projection, UCE; built exactly as the efficacy
benchmark builds them, with `api.apply`), attack the edited model from training captions that
name the concept (`--start forget`) in each search space (output states, input embeddings, real
tokens; vidunlearn/attack.py) and print the attack success rate beside the same prompts'
unattacked rate and the base model's rate on them.

Two checks of the attack itself come first in every task, from prompts that name ANOTHER value
of the attribute (`--start other`: the concept is asked for by no word): the base model, and a
deliberately weak edit (the default at strength 0.3). An attack that works brings the concept
back in most of their clips.

    python benchmarks/attack.py                                  # the full table (about an hour on 2 busy cores)
    python benchmarks/attack.py --tasks red --spaces output --prompts 4

Writes OUT/attack.json and OUT/attack.md. Seeds are fixed; the budget is printed with the table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from efficacy import PAIRS, ROOT, TASKS, markdown  # noqa: E402  (the efficacy benchmark's tasks)
from efficacy_variants import ALL, HOLD_OUT_ORDERS, apply_kwargs, as_apply_kwargs, built_unsafe, checked_folders, folder_args  # noqa: E402  (its variants)

ATTACK_TASKS = ("red", "circle-to-square", "left")
WEAK = {"mode": "remap", "strength": 0.3}   # the check: a deliberately weak edit
STEPS = {"output": 40, "input": 40, "discrete": 10}   # the fixed budget per space (see docs/attack.md)
HEADER = ["task", "model", "start", "space", "unattacked %", "attack success %", "per frame, attacked %",
          "base unattacked %", "loss start -> found", "s"]


def base_rate(model: str, concept, starts, sample, judge) -> float:
    """The base model's rate on the starting prompts, unattacked, by the path `vidunlearn eval` uses."""
    from vidunlearn.evaluate import EvalPrompt, EvalSet, run_model

    prompts = tuple(EvalPrompt(s.text, "forget", s.target, s.seed) for s in starts)
    run = run_model(model, EvalSet((concept,), prompts, "attack starts"), judge, sample, batch_size=16)
    return run.metrics["forget_rate"]


def write(args, rows, results, budgets, sample, variants, seconds, console, final: bool = False) -> None:
    """OUT/attack.json and OUT/attack.md (rewritten after every row, so a long run keeps what it measured)."""
    from rich.table import Table

    budget = "; ".join(f"{s}: {b.steps} steps x {b.restarts} restart, lr {b.learning_rate or '-'}, {b.references} "
                       f"reference clips, {b.draws} draws/step" + (f", span {b.span}, {b.candidates} candidates, top {b.top_k}"
                                                                   if s != "output" else "") for s, b in budgets.items())
    title = (f"attack success on `{Path(args.model).name}`, {args.prompts} starting prompts per task"
             f"{' (none of them a pairs prompt)' if args.held_out else ''}, seed {args.seed}, "
             f"clips: {sample.steps} UniPC steps, guidance {sample.guidance}")
    args.out.mkdir(parents=True, exist_ok=True)
    document = {"model": args.model, "prompts": args.prompts, "held_out": args.held_out,
                "held_out_context": args.held_out_context, "seed": args.seed, "sampling": sample.__dict__,
                "budgets": {s: b.__dict__ for s, b in budgets.items()}, "weak": WEAK, "complete": final,
                "variants": {v: ALL[v] for v in variants},
                "folders": dict(folder_args(args.folders)), "results": results, "seconds": round(seconds, 1)}
    (args.out / "attack.json").write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    (args.out / "attack.md").write_text(markdown(title, rows, HEADER) + f"\nBudget: {budget}.\n\n"
                                        f"Wall time {seconds:.0f} s{'' if final else ' (incomplete)'}.\n")
    if final:
        table = Table(title=title, caption=budget)
        for column in HEADER:
            table.add_column(column)
        for r in rows:
            table.add_row(*r)
        console.print(table)
        console.print(f"wall time {seconds:.0f} s; wrote {args.out / 'attack.json'} and {args.out / 'attack.md'}",
                      highlight=False)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "shapes-wan"))
    parser.add_argument("--tasks", default=",".join(ATTACK_TASKS), help=f"comma-separated subset of {list(TASKS)}")
    parser.add_argument("--variants", default="default,paper,uce", help=f"comma-separated names from {list(ALL)}")
    parser.add_argument("--folders", default="", metavar="NAME=PATH,...",
                        help="also attack these edited model folders (made with `vidunlearn apply` for the task's concept), "
                             "each as a variant named NAME, from the same starts with the same budget")
    parser.add_argument("--spaces", default="output,input,discrete")
    parser.add_argument("--prompts", type=int, default=4, help="starting prompts per task")
    parser.add_argument("--no-checks", action="store_true", help="skip the base / weak-edit checks from 'other' prompts")
    parser.add_argument("--held-out", action="store_true",
                        help="start from captions that are not the pairs' own unsafe prompts (the default starts, seed 0, "
                             "are all four among them: fair to a closed form, not to an edit trained on those prompts)")
    parser.add_argument("--held-out-context", type=int, default=0, metavar="K",
                        help="with --held-out, also none of the unsafe prompts that the adversarial setting unsafe_context: K "
                             "builds from the pairs (vidunlearn.remap.unsafe_context_pairs): every start unseen by such a training")
    parser.add_argument("--held-out-order", choices=HOLD_OUT_ORDERS, default="list",
                        help="with --held-out-context: the unsafe_context_order whose prompts no start is (both: either "
                             "order's, to attack edits of both from the same starts)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--budget", type=int, default=1, metavar="K",
                        help="K times the fixed budget: each space's steps x K and K restarts (a check that a low rate "
                             "is not a search that stalls; the reported figures are at K = 1)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--device", default="cpu", help="where each edit is trained, attacked and rendered (e.g. cuda)")
    args = parser.parse_args()

    import diffusers
    import torch
    import transformers
    from rich.console import Console

    from vidunlearn import api, world
    from vidunlearn.attack import AttackSettings
    from vidunlearn.attack_run import attack_model, summary, world_starts
    from vidunlearn.judges import load_judge
    from vidunlearn.pairs import load_pairs
    from vidunlearn.sampling import SampleSettings

    torch.set_num_threads(1)  # measured 10x faster than 2 threads on the shared 2-core machine
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.set_verbosity_error()
    console = Console(width=200)
    tasks = [t for t in args.tasks.split(",") if t]
    variants = [v for v in args.variants.split(",") if v]
    spaces = [s for s in args.spaces.split(",") if s]
    folders = checked_folders(parser, args.folders)
    for name in tasks + variants + spaces:
        if name not in TASKS and name not in ALL and name not in STEPS:
            parser.error(f"unknown task, variant or space {name!r}")
    judge = load_judge("oracle")
    sample = SampleSettings(steps=10, frames=world.FRAMES, height=world.SIZE, width=world.SIZE, guidance=2.0,
                            seed=args.seed, device=args.device)
    if args.budget < 1:
        parser.error("--budget K needs K >= 1")
    budgets = {s: AttackSettings(space=s, steps=STEPS[s] * args.budget, restarts=args.budget, seed=args.seed) for s in spaces}
    work = Path(tempfile.mkdtemp(prefix="vidunlearn-attack-"))
    rows, results, started = [], [], time.time()
    try:
        for task in tasks:
            files, values = TASKS[task]
            value = values[0]
            pairs = [PAIRS / f for f in files]
            # with --held-out none of the pairs' unsafe prompts, nor those unsafe_context K builds
            exclude = tuple(u for c in map(load_pairs, pairs) for u in (
                *c.unsafe, *(built for built, _ in built_unsafe(c, args.held_out_context, args.held_out_order)))) if args.held_out else ()
            concept, forget = world_starts(value, args.prompts, "forget", seed=args.seed, exclude=exclude)
            _, other = world_starts(value, args.prompts, "other", seed=args.seed, exclude=exclude)
            base = base_rate(args.model, concept, forget, sample, judge)
            runs = [] if args.no_checks else [("base", args.model, "other", other), ("weak", None, "other", other)]
            runs += [(v, None, "forget", forget) for v in variants] + [(n, p, "forget", forget) for n, p in folders]
            for name, model, start, starts in runs:
                if model is None:
                    model = str(work / task / name)
                    if not Path(model).exists():
                        api.apply(args.model, out=Path(model), pairs=pairs, work_dir=work / "cache", force=True,
                                  output=api.OutputOptions(collateral=False), load=api.LoadOptions(device=args.device),
                                  **(as_apply_kwargs(WEAK) if name == "weak" else apply_kwargs(name)))
                for space in spaces:
                    run = attack_model(model, concept, starts, budgets[space], sample, judge, label=f"{task}/{name}")
                    found = summary(run, concept, judge)
                    found.pop("model")
                    texts = [t for t in run.texts if t]
                    results.append({"task": task, "model": name, "start": start, "space": space, **found,
                                    "base_unattacked": base, "found_texts": texts,
                                    "starts": [s.text for s in starts],   # per prompt: what the judge read
                                    "verdicts": [v.get(concept.attribute) for v in run.verdicts],
                                    "start_verdicts": [v.get(concept.attribute) for v in run.start_verdicts]})
                    pct = lambda x: f"{100 * x:.0f}"
                    rows.append([task, name, start, space, pct(found["start_rate"]), pct(found["attack_success_rate"]),
                                 " ".join(pct(x) for x in found["frame_rates"]), pct(base),
                                 f"{found['mean_loss_start']:.3f} -> {found['mean_loss']:.3f}", f"{found['seconds']:.0f}"])
                    console.print(" | ".join(rows[-1]) + (f" | found: {'; '.join(texts[:3])}" if texts else ""),
                                  highlight=False)
                    write(args, rows, results, budgets, sample, variants, time.time() - started, console)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write(args, rows, results, budgets, sample, variants, time.time() - started, console, final=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
