"""``vidunlearn sample``: videos from an edited model (and its base) with fixed seeds; resumable,
and data-parallel under accelerate, as ``eval`` is (:mod:`vidunlearn.runstore`,
:mod:`vidunlearn.distributed`)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from .bounds import check_pipeline
from .errors import VidunlearnError
from .fsutil import atomic_output, check_apart, check_writable, write_json
from .hashing import sha256_file
from .model import resolve_model
from .pairs import MAX_PROMPT_CHARS
from .progress import SILENT, Reporter
from .runstore import RunStore, digest, partial_path
from .sampling import SampleSettings, iter_clips, load_condition_image


@dataclass
class SampleResult:
    out: Path
    videos: list[dict] = field(default_factory=list)


@dataclass(frozen=True)
class SampleJob:
    """What to render: ``prompts``, each with its seed (``seeds``; default ``settings.seed``)
    and its first frame (``images``: one path for all, or one per prompt, for image-to-video)."""

    prompts: list[str]
    seeds: list[int] | None = None
    images: Path | list[Path | None] | None = None
    batch_size: int = 1   # prompts generated together: faster where memory allows

    def checked(self) -> "SampleJob":
        if not self.prompts:
            raise VidunlearnError("no prompts", fix="pass --prompt TEXT (repeatable), --prompts-from pairs/x.yaml "
                                                    "or --prompts-file FILE")
        images = list(self.images) if isinstance(self.images, list) else [self.images] * len(self.prompts)
        if len(images) != len(self.prompts):
            raise VidunlearnError(f"{len(images)} images for {len(self.prompts)} prompts", fix="pass one image per prompt")
        if self.batch_size < 1:
            raise VidunlearnError(f"--batch-size {self.batch_size} must be at least 1")
        if self.seeds is not None and len(self.seeds) != len(self.prompts):
            raise VidunlearnError(f"{len(self.seeds)} seeds for {len(self.prompts)} prompts", fix="pass one seed per prompt")
        return replace(self, images=images)


def _describe(job: SampleJob, settings: SampleSettings, sources: dict, seeds: list[int]) -> dict:
    images = [{"path": str(p), "sha256": sha256_file(Path(p))} if p is not None else None for p in job.images]
    return {"kind": "vidunlearn-sample", "models": {label: s.describe() for label, s in sources.items()},
            "settings": settings.identity(),
            "prompts": digest([job.prompts, seeds, images])}


def sample(model: str, job: SampleJob, *, out: Path, compare: str | None = None, revision: str | None = None,
           settings: SampleSettings = SampleSettings(), force: bool = False, reads: tuple[Path, ...] = (),
           reporter: Reporter = SILENT) -> SampleResult | None:
    """Write ``edited/NN.mp4`` (and with ``compare``: ``base/NN.mp4``, ``compare_NN.mp4`` side by
    side), a contact sheet ``sheet.png`` (one row per prompt, base and edited side by side) and
    ``samples.json`` into ``out``. ``out`` must stay apart from the models and the input files
    ``reads`` (a pairs or prompt file the prompts came from); base and edited see the same seeds
    and images. Every clip is kept in ``<out>.partial`` as it is made: a rerun of the same
    command continues there. Under accelerate, process 0 returns the result, the others None."""
    from .distributed import processes

    job = job.checked()
    long = [p for p in [*job.prompts, settings.negative_prompt] if len(p) > MAX_PROMPT_CHARS]
    if long:
        raise VidunlearnError(f"a prompt is {len(long[0])} characters long (limit {MAX_PROMPT_CHARS})", where="--prompt",
                              fix="shorten it; text encoders truncate long prompts anyway")
    check_writable(out, force=force)
    sources = {"edited": resolve_model(model, revision), **({"base": resolve_model(compare)} if compare else {})}
    settings.check(sources["edited"].adapter.frame_step, sources["edited"].adapter.size_step)
    for where in (out, partial_path(out)):
        check_apart(where, [*((f"the {label} model folder", s.path) for label, s in sources.items()),
                            *(("the input file", p) for p in reads)])
    for source in sources.values():
        check_pipeline(source)  # what from_pretrained will build, bounded by the weights first
        for path in dict.fromkeys(job.images):
            load_condition_image(path, source)  # before any work
    check_apart(out, [("the --image file", Path(path)) for path in dict.fromkeys(job.images) if path is not None])
    seeds = job.seeds or [settings.seed] * len(job.prompts)
    procs = processes(settings.device)
    store = RunStore(out, _describe(job, settings, sources, seeds), fps=settings.fps)
    todo = store.begin(procs, list(sources), len(job.prompts), job.batch_size, restart=force, reporter=reporter)
    own = replace(settings, device=procs.device)
    with store.keeping():
        for label, source in sources.items():
            indices = todo[label]
            made = iter_clips(source, [job.prompts[i] for i in indices], own, reporter if procs.main else SILENT,
                              f"{label} model", seeds=[seeds[i] for i in indices], batch_size=job.batch_size,
                              image=[job.images[i] for i in indices])
            for i, clip in zip(indices, made):
                store.save(label, i, {"prompt": job.prompts[i], "seed": seeds[i]}, clip)
    procs.wait()
    if not procs.main:
        return None
    return _write(store, job, seeds, out, force, sources, settings)


def _write(store: RunStore, job: SampleJob, seeds: list[int], out: Path, force: bool, sources: dict,
           settings: SampleSettings) -> SampleResult:
    import shutil

    from .hashing import link_or_copy
    from .sheet import SheetRow, compare_sheet
    from .video import side_by_side, write_mp4

    count, labels = len(job.prompts), list(sources)
    store.check_complete(labels, count)
    clips = {label: store.clips(label, count) for label in labels}
    result = SampleResult(out)
    with atomic_output(out, directory=True, replace=force) as temp:
        rows = []
        for i, prompt in enumerate(job.prompts):
            entry: dict = {"prompt": prompt, "seed": seeds[i], "edited": f"edited/{i:02d}.mp4",
                           **{f"{label}_pixels_sha256": store.record(label, i)["pixels_sha256"] for label in labels}}
            if job.images[i] is not None:
                entry["image"] = {"path": str(job.images[i]), "sha256": sha256_file(Path(job.images[i]))}
            link_or_copy(store.clip_path("edited", i), temp / entry["edited"])
            shown = (clips["edited"][i],)
            if "base" in clips:
                entry.update(base=f"base/{i:02d}.mp4", compare=f"compare_{i:02d}.mp4")
                link_or_copy(store.clip_path("base", i), temp / entry["base"])
                shown = (clips["base"][i], shown[0])
                write_mp4(side_by_side(list(shown)), temp / entry["compare"], fps=store.fps)
            rows.append(SheetRow(prompt, shown, (f"seed {seeds[i]}",)))
            result.videos.append(entry)
        compare_sheet(rows, ("base", "edited") if "base" in clips else ("edited",), temp / "sheet.png")
        write_json(temp / "samples.json", {
            "model": sources["edited"].describe(), "base": sources["base"].describe() if "base" in sources else None,
            "settings": asdict(settings), "videos": result.videos,
        })
    shutil.rmtree(store.root, ignore_errors=True)
    return result

