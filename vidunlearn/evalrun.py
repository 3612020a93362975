"""``vidunlearn eval`` on disk: resumable, and data-parallel under accelerate.

Each clip is judged as soon as it is made, and written with its record into ``<out>.partial``
(:mod:`vidunlearn.runstore`); a rerun of the same command continues there. Launched as several
processes (:mod:`vidunlearn.distributed`), each takes its share of the prompts; process 0 writes
``eval.json``, ``sheet.png``, ``report.html`` and ``clips/`` once every clip is done. The metrics
themselves are :mod:`vidunlearn.evaluate`'s.
"""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .evaluate import (GROUPS, SHEET_ROWS, EvalSet, ModelRun, eval_metrics, failure, judge_record, report,
                       verdict_text)
from .fsutil import atomic_output, check_apart, check_writable, write_json
from .hashing import link_or_copy
from .progress import SILENT, Reporter
from .runstore import RunStore, digest, partial_path
from .sampling import SampleSettings


HTML_ROWS = 200  # prompts whose clips report.html embeds (failures first): the page stays a few tens of MB


@dataclass(frozen=True)
class EvalResult:
    out: Path
    document: dict


def describe_run(eval_set: EvalSet, judge, settings: SampleSettings, sources: dict) -> dict:
    """What a run is, for ``run.json``: a rerun continues only the same run. The batch size, the
    number of processes and which GPU are left out: they do not change a clip."""
    return {"kind": "vidunlearn-eval", "models": {label: s.describe() for label, s in sources.items()},
            "settings": settings.identity(), "judge": judge.name, "concepts": [asdict(c) for c in eval_set.concepts],
            "prompts": digest([[p.text, p.group, list(p.labels), p.seed, p.category] for p in eval_set.prompts])}


def _fill(store: RunStore, label: str, source, eval_set: EvalSet, judge, settings: SampleSettings, todo: list[int],
          batch_size: int, reporter: Reporter) -> None:
    """Generate, judge and save the clips of prompts ``todo`` (indices into ``eval_set``)."""
    from .sampling import iter_clips

    prompts, concepts = eval_set.prompts, list(eval_set.concepts)
    made = iter_clips(source, [prompts[i].text for i in todo], settings, reporter, label,
                      seeds=[prompts[i].seed for i in todo], batch_size=batch_size)
    for i, clip in zip(todo, made):
        store.save(label, i, judge_record(judge, prompts[i], clip, concepts), clip)


def _collect(store: RunStore, label: str, source, eval_set: EvalSet, judge) -> tuple[ModelRun, list[str]]:
    """The model's run from its records, and each clip's pixel hash."""
    count = len(eval_set.prompts)
    records = [store.record(label, i) for i in range(count)]
    metrics = eval_metrics(list(eval_set.prompts), records, list(eval_set.concepts), tuple(judge.attributes))
    run = ModelRun(source.describe(), [r["verdict"] for r in records], metrics, store.clips(label, count))
    return run, [r["pixels_sha256"] for r in records]


def evaluate(model: str, eval_set: EvalSet, *, out: Path, judge="oracle", compare: str | None = None,
             settings: SampleSettings = SampleSettings(), batch_size: int = 8, force: bool = False,
             reads: tuple[Path, ...] = (), html: bool = False, reporter: Reporter = SILENT) -> EvalResult | None:
    """Evaluate ``model`` (and ``compare``, the base, with the same seeds) on ``eval_set``; write
    ``out/eval.json``, ``out/sheet.png``, ``out/clips/`` and with ``html`` ``out/report.html``.
    ``judge``: a name from the registry or a judge. ``out`` must stay apart from the models and the
    input files ``reads`` (pairs and prompt files). Continues an unfinished run of the same
    command in ``<out>.partial``; ``force`` replaces ``out`` and discards a run with other settings.
    Under accelerate, every process calls this; process 0 returns the result, the others None."""
    from .bounds import check_pipeline
    from .distributed import processes
    from .judges import load_judge
    from .model import resolve_model

    check_writable(out, force=force)
    sources = {"model": resolve_model(model), **({"base": resolve_model(compare)} if compare else {})}
    check_apart(out, [*(("the model folder", s.path) for s in sources.values()),
                      *(("the input file", p) for p in reads)])
    check_apart(partial_path(out), [(f"the {label} folder", s.path) for label, s in sources.items()])
    settings.check()
    for source in sources.values():
        check_pipeline(source)  # what from_pretrained will build, bounded by the weights, before any work
    chosen = load_judge(judge) if isinstance(judge, str) else judge
    procs = processes(settings.device)
    store = RunStore(out, describe_run(eval_set, chosen, settings, sources), fps=settings.fps)
    todo = store.begin(procs, list(sources), len(eval_set.prompts), batch_size, restart=force, reporter=reporter)
    own = replace(settings, device=procs.device)
    with store.keeping():
        for label, source in sources.items():
            _fill(store, label, source, eval_set, chosen, own, todo[label], batch_size, reporter if procs.main else SILENT)
    procs.wait()
    if not procs.main:
        return None
    store.check_complete(list(sources), len(eval_set.prompts))
    collected = {label: _collect(store, label, source, eval_set, chosen) for label, source in sources.items()}
    runs = {label: run for label, (run, _) in collected.items()}
    document = report(eval_set, chosen, settings, runs["model"], runs.get("base"))
    for i, entry in enumerate(document["prompts"]):  # the clip, and its pixels' hash (MP4 is lossy)
        entry.update(clip=f"clips/model/{i:05d}.mp4", pixels_sha256=collected["model"][1][i])
        if "base" in runs:
            entry.update(base_clip=f"clips/base/{i:05d}.mp4", base_pixels_sha256=collected["base"][1][i])
    with atomic_output(out, directory=True, replace=force) as temp:
        for label in runs:
            for i in range(len(eval_set.prompts)):
                link_or_copy(store.clip_path(label, i), temp / "clips" / label / f"{i:05d}.mp4")
        write_json(temp / "eval.json", document)
        named = [("base", runs["base"]), ("edited", runs["model"])] if "base" in runs else [("model", runs["model"])]
        _sheet(temp / "sheet.png", eval_set, named, tuple(chosen.attributes))
        if html:
            _html(temp / "report.html", eval_set, named, document, sources["model"].path, settings)
    shutil.rmtree(store.root, ignore_errors=True)
    return EvalResult(out, document)


def _sheet(path: Path, eval_set: EvalSet, runs: list[tuple[str, ModelRun]], attributes: tuple[str, ...]) -> None:
    """sheet.png: one row per prompt (failures of the evaluated model, the last of ``runs``, first,
    then by group), the runs' clips side by side; at most SHEET_ROWS rows."""
    from .sheet import SheetRow, compare_sheet

    concepts, edited = list(eval_set.concepts), runs[-1][1]
    order = sorted(range(len(eval_set.prompts)), key=lambda i: GROUPS.index(eval_set.prompts[i].group))
    whys = {i: failure(eval_set.prompts[i], edited.verdicts[i], concepts, attributes) for i in order}
    order.sort(key=lambda i: not whys[i])  # stable: by group within the failures and within the rest
    rows = []
    for i in order[:SHEET_ROWS]:  # only the clips shown are read
        prompt, why = eval_set.prompts[i], whys[i]
        rows.append(SheetRow(prompt.text, tuple(r.clips[i] for _, r in runs),
                             tuple(f"{name}: {verdict_text(r.verdicts[i])}" for name, r in runs),
                             tag=f"{prompt.group}: {why}" if why else prompt.group, failed=bool(why)))
    left = len(order) - SHEET_ROWS
    compare_sheet(rows, tuple(name for name, _ in runs), path,
                  footer=f"{left} more prompts are not shown; eval.json lists every verdict" if left > 0 else "")


def _html(path: Path, eval_set: EvalSet, runs: list[tuple[str, ModelRun]], document: dict, model_path: Path,
          settings: SampleSettings) -> None:
    """report.html (:mod:`vidunlearn.htmlreport`), with each run's per-frame concept rates."""
    from .htmlreport import ClipPair, rate_plot, render

    concepts, attributes = list(eval_set.concepts), tuple(document["judge"]["attributes"])
    edited = runs[-1][1]
    whys = [failure(p, edited.verdicts[i], concepts, attributes) for i, p in enumerate(eval_set.prompts)]
    shown = sorted(range(len(whys)), key=lambda i: not whys[i])[:HTML_ROWS]  # failures first; only these are read
    pairs = [ClipPair(eval_set.prompts[i].text, f"{eval_set.prompts[i].group}: {whys[i]}" if whys[i] else
                      eval_set.prompts[i].group, tuple(f"{n}: {verdict_text(r.verdicts[i])}" for n, r in runs),
                      tuple(r.clips[i] for _, r in runs), bool(whys[i])) for i in sorted(shown)]
    left = len(whys) - len(shown)
    clips_note = f"{left} more prompts are not shown here; clips/ holds every clip and eval.json every verdict." if left else ""
    series = {f"{c.value}, {name}": r.metrics["frame_rates_by_concept"][c.value]
              for c in concepts for name, r in runs if r.metrics["frame_rates_by_concept"].get(c.value)}
    skipped = [c.value for c in concepts if not any(k.startswith(f"{c.value}, ") for k in series)]
    note = f"Not plotted: {', '.join(skipped)} (no forget prompt names it)." if skipped else ""
    fps = max(1, min(settings.fps, settings.frames // 2 + 1))  # a clip of a few frames plays for about 2 s
    path.write_text(render(document, pairs, tuple(n for n, _ in runs), fps, rate_plot(series) if series else None,
                           note, model_path, clips_note), encoding="utf-8")  # inside the folder atomic_output renames
