"""Efficacy benchmark: erase a colour, a shape, a motion and two concepts at once from the trained
benchmark model with one `vidunlearn apply` each (5 pairs), for our default and every comparison,
the shape and the two concepts both with safe twins of mixed shapes (circle.yaml: square or
triangle) and with one safe shape (circle-to-square.yaml), the two concepts also from pairs files
that keep them apart (red-apart.yaml, circle-apart.yaml), and print the before/after table
(forget rate, rest kept, retain accuracy per attribute, paraphrase leak).

    python benchmarks/efficacy.py --model models/shapes-wan --quick       # a few prompts and steps
    python benchmarks/efficacy.py --model models/shapes-wan                # the full run
    python benchmarks/efficacy.py --tasks red --variants default,uce       # a subset

`--variants tuning` runs the open choices instead (subspace edits, alpha, strength, level, site;
replace-mode and UCE settings).
`--proxy` (benchmarks/efficacy_proxy.py) measures without generating video, for as long as no trained model exists: it builds
the benchmark architecture UNTRAINED (random denoiser, the real pretrained all-MiniLM-L6-v2 text
encoder), and replaces "generate a clip and judge it" by "read what the edited cross-attention
layers read and classify it": the features are the K and V outputs of every block's attn2, mean
over the prompt's real tokens; the judge is a nearest-centroid probe per attribute fitted on the
BASE model's features of all 144 training captions. It measures whether an edit removes the
concept from what the model reads, and only it; it does not see pad tokens, attention or
classifier-free guidance (so it flatters `bias`, which CFG cancels in a real model).
Each run calls the same library path as `vidunlearn apply` (api.apply, pairs files under
pairs/bench/) and the same eval path as `vidunlearn eval` (evaluate.run_model with the oracle
judge); the pairs' own prompts are held out of the eval prompts. Seeds are fixed. The table is
also written to OUT/efficacy.json and OUT/efficacy.md.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

# the variants (benchmarks/ is on sys.path)
from efficacy_variants import ALL, HOLD_OUT_ORDERS, TUNING, VARIANTS, apply_kwargs, checked_folders, trained_on

ROOT = Path(__file__).resolve().parent.parent
PAIRS = ROOT / "pairs" / "bench"

# task -> (pairs files, world values)
TASKS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "red": (("red.yaml",), ("red",)),
    "circle": (("circle.yaml",), ("circle",)),
    # the same circle pairs with one safe shape (square) for all five: a consistent replacement
    "circle-to-square": (("circle-to-square.yaml",), ("circle",)),
    "left": (("moving-left.yaml",), ("left",)),
    "red+circle": (("red.yaml", "circle.yaml"), ("red", "circle")),
    "red+circle-to-square": (("red.yaml", "circle-to-square.yaml"), ("red", "circle")),
    # red and circle at once from pairs files that keep the two apart: no red-pair prompt shows a
    # circle, no circle-pair prompt is red, neither file's neutral prompts show either concept
    "red+circle-apart": (("red-apart.yaml", "circle-apart.yaml"), ("red", "circle")),
}
TARGETS = {"forget_after": 0.02, "forget_before": 0.90, "rest_kept_ratio": 0.90, "retain_drop": 0.02,
           "paraphrase_leak": 0.05}


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}"


def check_targets(base: dict, after: dict, colour_task: bool) -> list[str]:
    """The issue's targets this run misses (empty: all met)."""
    missed = []
    if base["forget_rate"] is not None and base["forget_rate"] < TARGETS["forget_before"]:
        missed.append("base forget < 90%")
    if after["forget_rate"] is not None and after["forget_rate"] > TARGETS["forget_after"]:
        missed.append("forget > 2%")
    if base["rest_kept"] and after["rest_kept"] is not None and after["rest_kept"] < TARGETS["rest_kept_ratio"] * base["rest_kept"]:
        missed.append("rest < 90% of base")
    for attribute, before in base["retain_accuracy"].items():
        now = after["retain_accuracy"].get(attribute)
        if before is not None and now is not None and before - now > TARGETS["retain_drop"]:
            missed.append(f"{attribute} retain -{100 * (before - now):.0f}pt")
    leak = after["paraphrase_leak_by_concept"].get("red")
    if colour_task and leak is not None and leak > TARGETS["paraphrase_leak"]:
        missed.append("red paraphrase leak > 5%")
    return missed


def row(name: str, metrics: dict, missed: list[str] | None, size: dict | None = None) -> list[str]:
    retain = metrics["retain_accuracy"]
    verdict = "" if missed is None else ("all targets met" if not missed else "; ".join(missed))
    cost = ["-", "-", "-"] if size is None else [f"{100 * size['weight_change']:.1f}", str(size["rank"]), _collateral(size)]
    return [name, _pct(metrics["forget_rate"]), _pct(metrics["rest_kept"]), _pct(retain.get("colour")),
            _pct(retain.get("shape")), _pct(retain.get("motion")), _leak(metrics), *cost, verdict]


def _collateral(size: dict) -> str:
    """The edited layers' collateral %, and a trained text encoder's own (its states' change) after a slash."""
    if size["collateral"] is None:
        return "-"
    encoder = size.get("encoder_collateral")
    return f"{100 * size['collateral']:.1f}" + ("" if encoder is None else f" / encoder {100 * encoder:.1f}")


def edit_size(out: Path, base: str) -> dict:
    """The two columns of the edit's size: mean ||W'-W||/||W|| over the edited weights (from the
    manifest), the numerical rank of W'-W (vidunlearn.verify's rule, on the first edited weight),
    and the collateral that apply measured (mean relative output change on 500 unrelated prompts; with a
    trained text encoder also its states' relative change on them)."""
    from safetensors import safe_open

    from vidunlearn.model import tensor_infos
    from vidunlearn.verify_math import rounding_noise, weight_change

    manifest = json.loads((out / "vidunlearn.json").read_text())
    collateral = manifest.get("collateral") or {}
    weights = [r for r in manifest["edited"] if r["tensor"].endswith(".weight")]
    first = weights[0]
    tensors = []
    for folder in (Path(base), out):
        info = tensor_infos(folder / first["component"])[first["tensor"]]
        with safe_open(str(info.file), framework="pt") as handle:
            tensors.append(handle.get_tensor(first["tensor"]).float())
    return {"weight_change": sum(r["relative_change"] for r in weights) / len(weights),
            "rank": weight_change(tensors[0], tensors[1] - tensors[0], "F32", rounding_noise(tensors[1], "F32"),
                                  None, None).rank,
            "collateral": collateral.get("mean"), "encoder_collateral": (collateral.get("text_encoder") or {}).get("mean")}


def _leak(metrics: dict) -> str:
    by_concept = metrics["paraphrase_leak_by_concept"]
    if len(by_concept) == 1:
        return _pct(metrics["paraphrase_leak"])
    return ", ".join(f"{value} {_pct(share)}" for value, share in by_concept.items())


HEADER = ["variant", "forget %", "rest kept %", "retain colour %", "retain shape %", "retain motion %",
          "paraphrase leak %", "mean ‖W′−W‖/‖W‖ %", "rank of W′−W", "collateral %", "targets missed"]


SUMMARY_HEADER = ["variant", "tasks with all targets met, per seed", "mean forget %", "mean rest kept / base %",
                  "worst retain drop (pt)", "red paraphrase leak %", "mean ‖W′−W‖/‖W‖ %", "mean collateral %"]


def summary(results: dict) -> list[list[str]]:
    """One row per variant over all tasks and seeds: the numbers taken together."""
    runs = results["runs"]
    names = list(dict.fromkeys(v for run in runs for v in run["variants"]))
    seeds = list(dict.fromkeys(run["seed"] for run in runs))
    mean = lambda xs: sum(xs) / len(xs) if xs else None
    rows = []
    for name in names:
        met = {seed: [0, 0] for seed in seeds}
        forget, kept, drop, leak, change, collateral = [], [], 0.0, [], [], []
        for run in (r for r in runs if name in r["variants"]):
            entry, base = run["variants"][name], run["base"]
            after = entry["metrics"]
            met[run["seed"]][0] += not entry["missed"]
            met[run["seed"]][1] += 1
            forget.append(after["forget_rate"])
            if base["rest_kept"]:
                kept.append(after["rest_kept"] / base["rest_kept"])
            for attribute, before in base["retain_accuracy"].items():
                if before is not None and after["retain_accuracy"].get(attribute) is not None:
                    drop = max(drop, before - after["retain_accuracy"][attribute])
            if after["paraphrase_leak_by_concept"].get("red") is not None:
                leak.append(after["paraphrase_leak_by_concept"]["red"])
            change.append(entry["size"]["weight_change"])
            if entry["size"]["collateral"] is not None:
                collateral.append(entry["size"]["collateral"])
        per_seed = ", ".join(f"{m}/{n} (seed {seed})" for seed, (m, n) in met.items() if n)
        rows.append([name, per_seed, _pct(mean(forget)), _pct(mean(kept)), f"{100 * drop:.0f}", _pct(mean(leak)),
                     f"{100 * mean(change):.1f}", "-" if not collateral else f"{100 * mean(collateral):.1f}"])
    return rows


def markdown(title: str, rows: list[list[str]], header: list[str] = HEADER) -> str:
    lines = [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def reuse_bases(files: list[Path], settings, counts, model: str) -> dict[tuple[str, int], dict]:
    """(task, seed) -> base metrics from earlier efficacy.json files of the same model, steps,
    guidance, clip size and prompt counts (the seed is the file's)."""
    found: dict[tuple[str, int], dict] = {}
    for path in files:
        earlier = json.loads(path.read_text())
        same = {k: earlier["settings"].get(k) for k in ("steps", "guidance", "frames", "height", "width")}
        if (same != {k: getattr(settings, k) for k in same} or earlier["counts"] != counts.__dict__
                or Path(earlier["model"]).name != Path(model).name):
            raise SystemExit(f"{path}: measured with other settings, counts or model; cannot reuse its base")
        for task, entry in earlier.get("tasks", {}).items():
            found[(task, earlier["settings"]["seed"])] = entry["base"]
    return found


def size_table(args, tasks: list[str], variants: list[str], console) -> int:
    """``--size-only``: one `api.apply` per task and variant, and the edit's size columns (mean
    ||W'-W||/||W||, rank of W'-W, collateral on the 500 unrelated prompts); nothing is rendered."""
    from rich.table import Table

    from vidunlearn import api

    work = Path(tempfile.mkdtemp(prefix="vidunlearn-size-"))
    header = ["task", "variant", "mean ‖W′−W‖/‖W‖ %", "rank of W′−W", "collateral %"]
    rows, results = [], {}
    try:
        for task in tasks:
            pairs = [PAIRS / f for f in TASKS[task][0]]
            for variant in variants:
                out = work / task / variant
                api.apply(args.model, out=out, pairs=pairs, work_dir=work / "cache", force=True,
                          load=api.LoadOptions(device=args.device), **apply_kwargs(variant))
                size = edit_size(out, args.model)
                shutil.rmtree(out, ignore_errors=True)
                results.setdefault(task, {})[variant] = size
                rows.append([task, variant, f"{100 * size['weight_change']:.1f}", str(size["rank"]), _collateral(size)])
    finally:
        shutil.rmtree(work, ignore_errors=True)
    table = Table(title="size of each edit (no video)")
    for column in header:
        table.add_column(column)
    for r in rows:
        table.add_row(*r)
    console.print(table)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "efficacy-size.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (args.out / "efficacy-size.md").write_text(markdown("size of each edit (no video)", rows, header))
    console.print(f"wrote {args.out / 'efficacy-size.json'} and {args.out / 'efficacy-size.md'}", highlight=False)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "shapes-wan"))
    parser.add_argument("--quick", action="store_true", help="few prompts (4 forget, 6 retain, 1 x 3 paraphrase) and 8 steps; full: 12, 18, 2 x 3, 20 steps")
    parser.add_argument("--tasks", default=",".join(TASKS), help=f"comma-separated subset of {list(TASKS)}")
    parser.add_argument("--variants", default=",".join(VARIANTS),
                        help=f"comma-separated names from {list(ALL)}, or 'tuning' / 'all'")
    parser.add_argument("--steps", type=int, default=None, help="denoising steps (default 20, --quick 8)")
    parser.add_argument("--guidance", type=float, default=2.0, help="2.0 suits models/shapes-wan (docs/benchmark-model.md)")
    parser.add_argument("--seeds", default="0", help="comma-separated sampling seeds; each edit is applied once and judged at every seed")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="where each edit is trained and every clip rendered (e.g. cuda)")
    parser.add_argument("--hold-out-context", type=int, default=0, metavar="K",
                        help="hold the prompts that keep_context K builds out of every variant's eval set, as a run of a "
                             "variant with keep_context does itself (to compare variants run apart on one eval set)")
    parser.add_argument("--hold-out-unsafe-context", type=int, default=0, metavar="K",
                        help="the same for the unsafe prompts (and their targets) that unsafe_context K builds")
    parser.add_argument("--hold-out-order", choices=HOLD_OUT_ORDERS, default="list",
                        help="with --hold-out-unsafe-context: the unsafe_context_order whose prompts are held out (both: "
                             "either order's, to compare edits of both on one eval set); a variant's own order is always held out")
    parser.add_argument("--folders", default="", metavar="NAME=PATH,...",
                        help="also measure these edited model folders (made with `vidunlearn apply` for the one task's "
                             "concept), each as a variant named NAME, on the same eval sets (not applied again)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    parser.add_argument("--base-from", type=Path, action="append", default=[],
                        help="an earlier efficacy.json (repeatable): reuse its base-model metrics for a task and seed "
                             "measured with the same settings and counts instead of rendering the base again")
    parser.add_argument("--size-only", action="store_true",
                        help="no video: apply each variant and print only the size of its edit (weight change, rank, collateral)")
    parser.add_argument("--proxy", action="store_true",
                        help="no video: K/V-feature probe on the untrained architecture (see the module docstring)")
    args = parser.parse_args()

    from rich.console import Console
    from rich.table import Table

    from vidunlearn import api, world
    from vidunlearn.evaluate import Counts, pairs_texts, run_model, world_eval_set
    from vidunlearn.judges import load_judge
    from vidunlearn.sampling import SampleSettings

    import diffusers
    import transformers

    diffusers.utils.logging.disable_progress_bar()
    diffusers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()
    console = Console(width=200)
    tasks = [t for t in args.tasks.split(",") if t]
    groups = {"tuning": ["default", *TUNING], "all": list(ALL)}
    variants = [n for v in args.variants.split(",") if v for n in groups.get(v, [v])]
    for name in tasks + variants:
        if name not in TASKS and name not in ALL:
            parser.error(f"unknown task or variant {name!r}")
    folders = dict(checked_folders(parser, args.folders))
    if folders and len(tasks) != 1:
        parser.error("--folders NAME=PATH,... measures folders made for one task: give one --tasks")
    counts = Counts(forget=4, retain=6, paraphrase=1) if args.quick else Counts(forget=12, retain=18, paraphrase=2)
    steps = args.steps or (8 if args.quick else 20)
    seeds = [int(x) for x in args.seeds.split(",") if x.strip()]
    settings = SampleSettings(steps=steps, frames=world.FRAMES, height=world.SIZE, width=world.SIZE,
                              guidance=args.guidance, seed=seeds[0], device=args.device)
    work = Path(tempfile.mkdtemp(prefix="vidunlearn-efficacy-"))
    if args.proxy:
        from efficacy_proxy import ProbeJudge, build_untrained_model, probe_run

        args.model = str(build_untrained_model(work / "untrained-shapes-wan"))
        counts = Counts(forget=100, retain=1000, paraphrase=100)   # every prompt: no sampling cost
        judge = ProbeJudge(args.model)
        measure = lambda model, eval_set, label: probe_run(judge, model, eval_set)
    else:
        judge = load_judge("oracle")
        measure = lambda model, eval_set, label: run_model(model, eval_set, judge, settings,
                                                           batch_size=args.batch_size, label=label)
    if args.size_only:
        return size_table(args, tasks, variants, console)
    earlier_bases = reuse_bases(args.base_from, settings, counts, args.model) if not args.proxy else {}
    started = time.time()
    results: dict = {"model": args.model, "settings": settings.__dict__, "counts": counts.__dict__,
                     "quick": args.quick, "proxy": args.proxy, "seeds": seeds, "runs": []}
    mode = "PROXY: K/V-feature probe, untrained architecture, no video" if args.proxy else \
        f"{'quick' if args.quick else 'full'}; {steps} steps, guidance {args.guidance}, seeds {args.seeds}"
    label = "the untrained benchmark architecture (seed 0) with all-MiniLM-L6-v2" if args.proxy else f"`{args.model}`"
    md = [f"Efficacy benchmark on {label} ({mode}).\n"]
    try:
        for task in tasks:
            files, values = TASKS[task]
            pairs = [PAIRS / f for f in files]
            runs = []
            # the prompts a variant builds (keep_context, unsafe_context): out of every variant's eval set
            held = trained_on(variants, pairs, args.hold_out_context, args.hold_out_unsafe_context, args.hold_out_order)
            if held:
                console.print(f"[dim]{task}: {len(held)} keep_context / unsafe_context prompts held out of the eval set (every variant's; "
                              f"the base rendered again){', not reused from --base-from' if args.base_from else ''}[/dim]")
            for seed in seeds:  # the base model at every seed
                eval_set = world_eval_set(list(values), counts, seed=seed, exclude=pairs_texts(pairs) + held)
                earlier = earlier_bases.get((task, seed)) if not held else None
                base_metrics = earlier if earlier is not None else measure(args.model, eval_set, f"base {task} seed {seed}").metrics
                runs.append({"task": task, "seed": seed, "values": list(values), "base": base_metrics, "variants": {},
                             "held_out": list(held), "device": args.device,
                             "base_reused": earlier is not None,
                             "pairs": [str(p.relative_to(ROOT)) for p in pairs], "eval_set": eval_set,
                             "rows": [row(f"base (seed {seed}{', earlier run' if earlier is not None else ''})", base_metrics, None)]})
            for variant in [*variants, *folders]:  # each edit once, judged at every seed
                out = Path(folders[variant]) if variant in folders else work / task / variant
                t0 = time.time()
                if variant not in folders:
                    api.apply(args.model, out=out, pairs=pairs, work_dir=work / "cache", force=True,
                              load=api.LoadOptions(device=args.device), **apply_kwargs(variant))
                size = edit_size(out, args.model)
                for run in runs:
                    result = measure(str(out), run["eval_set"], f"{variant} {task} seed {run['seed']}")
                    missed = check_targets(run["base"], result.metrics, colour_task="red" in values)
                    run["rows"].append(row(f"{variant} (seed {run['seed']})", result.metrics, missed, size))
                    run["variants"][variant] = {"apply": folders.get(variant) or ALL[variant], "metrics": result.metrics,
                                                "missed": missed, "size": size}
                if variant not in folders:
                    shutil.rmtree(out, ignore_errors=True)
                console.print(f"[dim]{task} / {variant}: {time.time() - t0:.0f} s[/dim]", highlight=False)
            for run in runs:
                counts_used = run["base"]["counts"]
                title = (f"{task}, seed {run['seed']}: {counts_used['forget']} forget / {counts_used['retain']} retain / "
                         f"{counts_used['paraphrase']} paraphrase prompts")
                table = Table(title=title)
                for column in HEADER:
                    table.add_column(column)
                rows = run.pop("rows")
                for r in rows:
                    table.add_row(*r)
                console.print(table)
                md.append(markdown(title, rows))
                run.pop("eval_set")
                results["runs"].append(run)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    results["seconds"] = round(time.time() - started, 1)
    table = Table(title="all tasks together")
    for column in SUMMARY_HEADER:
        table.add_column(column)
    summary_rows = summary(results)
    for r in summary_rows:
        table.add_row(*r)
    console.print(table)
    md.append(markdown("all tasks together", summary_rows, SUMMARY_HEADER))
    console.print(f"wall time {results['seconds']:.0f} s", highlight=False)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "efficacy-proxy" if args.proxy else ("efficacy-quick" if args.quick else "efficacy")
    stem += "" if seeds == [0] else "-seeds" + "-".join(map(str, seeds))
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
    (args.out / f"{stem}.md").write_text("\n".join(md) + f"\nWall time {results['seconds']:.0f} s.\n")
    console.print(f"wrote {args.out / (stem + '.json')} and {args.out / (stem + '.md')}", highlight=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
