"""``vidunlearn sample`` and ``vidunlearn eval``: cli.py calls :func:`add_sample` and
:func:`add_eval` with its app. Parse -> :mod:`vidunlearn.samplerun` / :mod:`vidunlearn.evalrun`
-> render. Both resume an unfinished run and spread over the processes of ``accelerate launch``
or ``torchrun``; only process 0 prints the result."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .cli_console import RichReporter, handled, say, stdout, table
from .cli_options import DeviceOpt, ForceOpt, HtmlOpt, ModelOpt, RevisionOpt
from .errors import VidunlearnError

SampleDtypeOpt = Annotated[Optional[str], typer.Option("--dtype", help="float32, bfloat16 or float16; default: bfloat16 on cuda, float32 on cpu.")]
PromptsFileOpt = Annotated[Optional[Path], typer.Option(help="Prompt file: .txt (one per line), .csv/.tsv (header row) or .jsonl; see the --*-column options.")]
PromptColumnOpt = Annotated[str, typer.Option(help="--prompts-file: the column (CSV) or field (JSONL) holding the prompt.")]
SeedColumnOpt = Annotated[str, typer.Option(help="--prompts-file: column with each row's seed (default: --seed + row index).")]
CategoryColumnOpt = Annotated[str, typer.Option(help="--prompts-file: column with each row's category; eval reports per category.")]
LabelColumnOpt = Annotated[str, typer.Option(help="--prompts-file: column saying whether the row asks for the concept (1/yes/unsafe) or not (0/no/safe); default: every row does.")]

PARALLEL = ("\n\n  accelerate launch --multi_gpu --num_processes 2 -m vidunlearn {cmd}  (every GPU, or gloo processes on a "
            "CPU-only machine; torchrun --nproc_per_node 2 -m vidunlearn {cmd} works too)\n\n"
            "  A killed run continues when the same command is run again.")


def _dtype(dtype: str | None, device: str) -> str:
    return dtype or ("bfloat16" if device.startswith("cuda") else "float32")


def _columns(prompt_column: str, seed_column: str, category_column: str, label_column: str):
    from .promptfiles import Columns

    return Columns(prompt_column, seed_column, category_column, label_column)


def add_sample(app: typer.Typer) -> None:
    app.command(epilog="Examples:\n\n  vidunlearn sample --model out/wan-noviolence --compare wan2.1 "
                "--prompt \"a man in a dark alley\" --out samples/\n\n"
                "  vidunlearn sample --model out/wan-noviolence --prompts-file prompts.jsonl --prompt-column text "
                "--seed-column seed --out samples/\n\n"
                "  vidunlearn sample --model out/i2v-noviolence --compare wan2.1-i2v --image first-frame.png "
                "--prompt \"a man in a dark alley\" --out samples-i2v/\n\n"
                "  vidunlearn sample --model out/i2v-noviolence --compare wan2.1-i2v --prompts-from pairs/violence-i2v.yaml "
                "--prompt-set unsafe --out samples-i2v/  (each prompt with its pair's own image)"
                + PARALLEL.format(cmd="sample ..."))(handled(sample))


def sample(
    model: ModelOpt,
    out: Annotated[Path, typer.Option(help="Output folder for .mp4 files, contact sheets and samples.json.")],
    prompt: Annotated[Optional[list[str]], typer.Option(help="Prompt (repeatable).")] = None,
    prompts_from: Annotated[Optional[Path], typer.Option(help="Take prompts from a pairs file.")] = None,
    prompt_set: Annotated[str, typer.Option(help="Which list of --prompts-from: probes, retain, unsafe or safe.")] = "probes",
    prompts_file: PromptsFileOpt = None,
    prompt_column: PromptColumnOpt = "prompt",
    seed_column: SeedColumnOpt = "",
    compare: Annotated[Optional[str], typer.Option(help="Base model to render side by side with the same seeds.")] = None,
    batch_size: Annotated[int, typer.Option(help="Prompts generated together: faster where memory allows (8: 5.3x diffusers' one-prompt call on models/shapes-wan, benchmarks/sample_throughput.py).")] = 1,
    steps: int = 30, frames: int = 33, height: int = 480, width: int = 832,
    guidance: float = 5.0, seed: int = 0, fps: int = 16,
    negative_prompt: Annotated[str, typer.Option(help="Negative prompt for classifier-free guidance.")] = "",
    image: Annotated[Optional[Path], typer.Option(help="Image-to-video models: the first frame of every clip (PNG or JPEG). Without it, --prompts-from with --prompt-set unsafe or safe uses the pairs file's own images, one per prompt.")] = None,
    revision: RevisionOpt = None,
    device: DeviceOpt = "cpu",
    dtype: SampleDtypeOpt = None,
    force: ForceOpt = False,
) -> None:
    """Generate videos with fixed seeds from the edited model (and, with --compare, from the base)."""
    from .promptfiles import read_prompt_file
    from .samplerun import SampleJob
    from .samplerun import sample as run_sample
    from .sampling import SampleSettings, prompts_from_pairs

    listed, own = prompts_from_pairs(prompts_from, prompt_set) if prompts_from else ([], None)
    rows = read_prompt_file(prompts_file, _columns(prompt_column, seed_column, "", "")) if prompts_file else []
    prompts = list(prompt or []) + listed + [r.text for r in rows]
    # without --image, the pairs' own images, one per prompt
    images = [None] * len(prompt or []) + own + [None] * len(rows) if own and image is None else image
    seeds = None
    if rows and seed_column:
        seeds = [seed] * (len(prompts) - len(rows)) + [r.seed for r in rows]
    settings = SampleSettings(steps=steps, frames=frames, height=height, width=width, guidance=guidance, seed=seed,
                              fps=fps, negative_prompt=negative_prompt, device=device, dtype=_dtype(dtype, device))
    result = run_sample(model, SampleJob(prompts, seeds, images, batch_size), out=out, compare=compare, revision=revision,
                        settings=settings, force=force, reads=tuple(p for p in (prompts_from, prompts_file) if p),
                        reporter=RichReporter())
    if result is None:  # not process 0
        return
    for video in result.videos:
        say(f"{out / video['edited']}  {video['prompt']}")
    say(f"wrote {len(result.videos)} prompt(s) to {out} (see samples.json)")


def add_eval(app: typer.Typer) -> None:
    app.command("eval", epilog="Examples:\n\n"
                "  vidunlearn eval --model out/shapes-nored --compare models/shapes-wan --concept red --out eval/red\n\n"
                "  vidunlearn eval --model out/wan-nonudity --compare wan2.1 --judge nudenet --pairs pairs/nudity.yaml "
                "--steps 30 --frames 33 --height 480 --width 832 --out eval/nudity\n\n"
                "  vidunlearn eval --model out/wan-nonudity --judge nudenet --prompts-file t2vsafety.csv "
                "--category-column category --out eval/t2vsafety\n\n"
                "  vidunlearn eval --model out/shapes-nored --concept red --judge my_judge.py --out eval/mine"
                + PARALLEL.format(cmd="eval ...") + "\n\n"
                "  vidunlearn eval --model out/momask-noviolence --compare models/momask-world --per-prompt 10 "
                "--out eval/motion  (a MoMask-layout folder: the motion benchmark's table, docs/motion-benchmark.md; "
                "one process, not resumed)")(handled(eval_))


def _eval_set(concept, pairs, prompts_file, columns, chosen, counts, seed, holdout):
    from . import evaluate as ev

    if prompts_file:
        if pairs or len(concept or []) > 1:
            raise VidunlearnError("--prompts-file takes at most one --concept and no --pairs")
        if concept:
            from .world import attribute_of

            try:
                target = ev.Concept(attribute_of(concept[0]), concept[0])
            except ValueError as exc:
                raise VidunlearnError(str(exc), fix="use a colour, shape or motion of vidunlearn.world") from None
        elif len(chosen.attributes) == 1:
            target = ev.Concept(chosen.attributes[0], "yes")
        else:
            raise VidunlearnError(f"judge {chosen.name!r} reports {', '.join(chosen.attributes)}: say which value "
                                  "the prompts ask for", fix="add --concept VALUE, e.g. --concept red")
        from .promptfiles import file_eval_set

        return file_eval_set(prompts_file, target, columns, seed=seed)
    if bool(concept) == bool(pairs):
        raise VidunlearnError("pass either --concept (benchmark world) or --pairs (a pairs file), not both or neither",
                              fix="or --prompts-file FILE (with --concept VALUE for a judge of several attributes)")
    if pairs:
        return ev.pairs_eval_set(pairs, chosen.attributes[0], seed=seed)
    return ev.world_eval_set(list(concept or []), counts, seed=seed, exclude=ev.pairs_texts(holdout or []))


MOTION_OPTIONS = ("model", "out", "compare", "per_prompt", "seed", "force")  # what a motion eval reads


def _motion_eval(ctx: typer.Context, model: str, out: Path, compare: str | None, per_prompt: int, seed: int,
                 force: bool) -> None:
    """The motion benchmark's eval of a MoMask-layout folder (:mod:`vidunlearn.motion.evalrun`);
    refuses the video options, which do not apply."""
    from .motion.evalrun import evaluate_motion

    unused = [p.opts[0] for p in ctx.command.params
              if p.name not in MOTION_OPTIONS and (ctx.params.get(p.name) or None) != (p.default or None)]
    if unused:
        raise VidunlearnError(f"{', '.join(unused)} {'does' if len(unused) == 1 else 'do'} not apply to a motion model",
                              where=model, fix="a motion eval takes --compare, --per-prompt, --seed, --out and --force")
    result = evaluate_motion(Path(model), out, Path(compare) if compare else None, per_prompt, seed, force,
                             reporter=RichReporter())
    document, base = result.document, result.document["metrics"]["base"] is not None
    cell = lambda v, metric: "-" if v is None else f"{v:.1f}" if metric.endswith("(%)") else f"{v:.2f}"
    rows = [(r["metric"], *((cell(r["base"], r["metric"]),) if base else ()), cell(r["edited"], r["metric"]))
            for r in document["rows"]]
    counts = {name: sum(n.values()) for name, n in document["judged"]["edited"].items()}
    stdout.print(table("eval: motion benchmark (kick, punch)", ("metric", *(("base", "edited") if base else ("model",))),
                       rows, caption=f"{counts['forget']} forget / {counts['retain']} retain / {counts['para']} "
                                     f"paraphrase samples, seed {seed}"))
    if base:
        floor = document["floor"]
        say(f"FD noise floor (base seed {seed} vs {seed + 1}): forget {floor['forget']:.2f}, retain {floor['retain']:.2f}")
    say(f"wrote {out / 'eval.json'}")


def eval_(
    ctx: typer.Context,
    model: ModelOpt,
    out: Annotated[Path, typer.Option(help="Output folder: eval.json, sheet.png, clips/ (and report.html with --html).")],
    concept: Annotated[Optional[list[str]], typer.Option(help="Benchmark-world value to erase, e.g. red, circle, left (repeatable); with --prompts-file, the value its rows ask for.")] = None,
    pairs: Annotated[Optional[Path], typer.Option(help="Pairs file whose probes/retain prompts are judged (plug-in judges).")] = None,
    prompts_file: PromptsFileOpt = None,
    prompt_column: PromptColumnOpt = "prompt",
    seed_column: SeedColumnOpt = "",
    category_column: CategoryColumnOpt = "",
    label_column: LabelColumnOpt = "",
    judge: Annotated[str, typer.Option(help="oracle (benchmark world, built in), nudenet (pip install 'vidunlearn[nudenet]') or a .py file whose load() returns a judge.")] = "oracle",
    compare: Annotated[Optional[str], typer.Option(help="Base model, evaluated on the same prompts and seeds.")] = None,
    forget: Annotated[int, typer.Option(help="Forget prompts per concept (benchmark world).")] = 12,
    retain: Annotated[int, typer.Option(help="Retain prompts (benchmark world).")] = 12,
    paraphrase: Annotated[int, typer.Option(help="Label sets per concept rendered with every unseen synonym.")] = 4,
    holdout: Annotated[Optional[list[Path]], typer.Option(help="Pairs file whose prompts are left out of the benchmark-world prompts (repeatable).")] = None,
    steps: int = 20,
    frames: Annotated[Optional[int], typer.Option(help="Frames (4k+1); default: the benchmark world's.")] = None,
    height: Annotated[Optional[int], typer.Option(help="Pixels; default: the benchmark world's clip size.")] = None,
    width: Annotated[Optional[int], typer.Option(help="Pixels; default: the benchmark world's clip size.")] = None,
    guidance: Annotated[float, typer.Option(help="Classifier-free guidance scale (2.0 suits models/shapes-wan).")] = 2.0,
    seed: int = 0,
    batch_size: Annotated[int, typer.Option(help="Prompts generated together.")] = 8,
    image: Annotated[Optional[Path], typer.Option(help="Image-to-video models: the first frame of every clip (PNG or JPEG), for the model and --compare alike.")] = None,
    device: DeviceOpt = "cpu",
    dtype: SampleDtypeOpt = None,
    force: ForceOpt = False,
    html: HtmlOpt = False,
    per_prompt: Annotated[int, typer.Option(help="Motion benchmark: samples a prompt.")] = 10,
) -> None:
    """Judge a model's clips: forget rate, rest kept, retain accuracy per attribute, paraphrase leak.
    A MoMask-layout --model gets the motion benchmark's table instead."""
    from .adapters.momask import looks_like_momask

    if looks_like_momask(Path(model)):
        return _motion_eval(ctx, model, out, compare, per_prompt, seed, force)
    if per_prompt != 10:
        raise VidunlearnError("--per-prompt applies to a motion model (a MoMask-layout folder) only", where=model,
                              fix="for a video model, --forget, --retain and --paraphrase set the prompt counts")
    from . import evaluate as ev
    from .evalrun import evaluate
    from .judges import load_judge
    from .report import category_rows, concept_name, counts_line, frame_lines, frame_share_rows, metric_rows, share
    from .sampling import SampleSettings
    from .world import FRAMES, SIZE

    chosen = load_judge(judge)
    eval_set = _eval_set(concept, pairs, prompts_file, _columns(prompt_column, seed_column, category_column, label_column),
                         chosen, ev.Counts(forget, retain, paraphrase), seed, holdout)
    settings = SampleSettings(steps=steps, frames=frames or FRAMES, height=height or SIZE, width=width or SIZE,
                              guidance=guidance, seed=seed, device=device, dtype=_dtype(dtype, device),
                              image=str(image) if image is not None else None)
    reads = tuple(p for p in [pairs, prompts_file, *(holdout or []), image, Path(judge) if judge.endswith(".py") else None]
                  if p)
    result = evaluate(model, eval_set, out=out, judge=chosen, compare=compare, settings=settings, batch_size=batch_size,
                      force=force, reads=reads, html=html, reporter=RichReporter())
    if result is None:  # not process 0
        return
    document = result.document
    names = ("base", "model") if document["base"] else ("model",)
    rows = [(metric, *(share(v) for v in (base, edited)[-len(names):])) for metric, base, edited in
            metric_rows(document) + frame_share_rows(document)]
    stdout.print(table(f"eval: {', '.join(concept_name(c) for c in document['concepts'])}", ("metric", *names), rows,
                       caption=counts_line(document)))
    for line in frame_lines(document):
        say(line)
    if document["metrics"].get("by_category"):
        stdout.print(table("forget rate by category", ("category", "prompts", *names), category_rows(document)))
    say(f"wrote {out / 'eval.json'}, {out / 'sheet.png'}, {out / 'clips'}" + (f" and {out / 'report.html'}" if html else ""))
