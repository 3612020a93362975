"""``vidunlearn apply`` on a MoMask model (the momask family, :mod:`vidunlearn.adapters.momask`).

Two edits, both closed-form, both from a pairs file:

- ``--method lcr`` (the default for this family): Latent Code Replacement (:mod:`.lcr`). The
  forget and retain code sequences are either the model's own samples (its token ids, all RVQ
  layers) for the pairs' unsafe prompts and for their safe and neutral prompts, ``samples`` a
  prompt at a selection ``seed``, lengths 40-80 frames; or, with ``forget_motions`` and
  ``retain_motions``, folders of ``.npy`` motion features (HumanML3D's ``new_joint_vecs``: frames x
  dim_pose, not normalised) encoded with the model's RVQ-VAE, as the authors do with their dataset.
  No judge filters anything: a user's model has none.
- ``--mode uce``: UCE on the text path (:mod:`.uce`): ``cond_emb`` of both transformers, each unsafe
  prompt onto its safe twin, the safe and neutral prompts kept (``alpha``: the preserve weight).

The output folder holds the model in MoMask's own layout (``checkpoints/<dataset>/<run>/``, the three
runs only; MoMask's ``gen_t2m.py`` loads it), the same weights as safetensors
(``safetensors/<checkpoint key>.safetensors``), ``lcr.json`` or ``uce.json``, a model card and the
manifest ``vidunlearn.json`` (format ``momask``), checked by ``vidunlearn verify`` (:mod:`.verify`).
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from .. import __version__
from ..adapters.momask import FAMILY, MOMASK_TEXT_ENCODER, MoMaskRuns, check_sampleable, text_encoder_of
from ..card import CardOptions
from ..errors import VidunlearnError
from ..fsutil import atomic_output, check_apart, check_writable, write_json
from ..hashing import sha256_file, sha256_json
from ..pairs import ConceptPairs, load_pairs
from ..progress import SILENT, Reporter
from . import lcr, uce
from .momask import MotionModel, load_checkpoint, load_runs, patch_checkpoints, sample_tokens, state_key

MANIFEST_SCHEMA = 1
FORMAT = "momask"
METHODS = ("lcr", "uce")
BATCH = 64
MAX_MOTION_FRAMES = 100_000  # 83 minutes at 20 fps; MoMask's motions are at most 196 frames


@dataclass(frozen=True)
class MotionOptions:
    """How LCR picks and replaces codes (defaults: docs/motion-benchmark.md, "apply")."""

    codes: int = 64  # k: the top k codes by each of the authors' two scores, their union
    layers: tuple[int, ...] = (0,)  # RVQ layers edited (the authors: the base layer)
    target: str = "index0"  # the row every selected code becomes (authors: code 0); or "retain-top"
    noise: float = 1.0  # Gaussian noise on each replaced row, x the codebook's std (authors: 1)
    samples: int = 32  # samples a prompt when the sets come from the model's own samples (chosen: docs)
    seed: int = 1000  # selection seed (never an evaluation seed)
    forget_motions: Path | None = None
    retain_motions: Path | None = None


@dataclass(frozen=True)
class MotionJob:
    """Everything ``apply`` hands over for a MoMask model. ``video_only``: the options of
    :func:`vidunlearn.api.apply` that only a video model takes, by their CLI names (refused when set)."""

    model: Path
    out: Path
    pairs: tuple[Path, ...]
    mode: str = "remap"
    method: str | None = None
    strength: float = 1.0
    alpha: float = 1.0
    force: bool = False
    eval_files: tuple[Path, ...] = ()
    options: MotionOptions = field(default_factory=MotionOptions)
    card: CardOptions = field(default_factory=CardOptions)
    video_only: dict[str, object] = field(default_factory=dict)
    push: tuple[str | None, bool, str | None] = (None, False, None)  # repo id, private, branch
    harden: int = 0  # --mode uce: rounds of RECE

    @property
    def edit(self) -> str:
        return "uce" if self.mode == "uce" else self.method or "lcr"


@dataclass
class MotionEdit:
    """The computed edit: {(stage, state key): new tensor} and its record for the manifest."""

    patches: dict[tuple[str, str], dict[str, torch.Tensor]]
    record_name: str
    record: dict
    recipe: dict
    rows: dict[tuple[str, str], list[int]] = field(default_factory=dict)  # LCR: the replaced rows


def check_job(job: MotionJob) -> list[ConceptPairs]:
    """Every argument, before any work; the pairs files loaded."""
    opts = job.options
    given = [name for name, value in job.video_only.items() if value]
    if given:
        raise VidunlearnError(f"{given[0]} is for video models, not a MoMask motion model", where=str(job.model),
                              fix="leave it out (a MoMask edit: --method lcr with --codes/--motion-samples, or --mode uce)")
    if job.mode not in ("remap", "uce") or job.edit not in METHODS or (job.mode == "uce" and job.method):
        raise VidunlearnError(f"a MoMask model takes --method lcr (default) or --mode uce, not --mode {job.mode}"
                              + (f" --method {job.method}" if job.method else ""),
                              where=str(job.model), fix="leave --method and --mode out for LCR")
    if not job.pairs:
        raise VidunlearnError("nothing to remove", where=str(job.model), fix="pass --pairs FILE (e.g. pairs/motion-violence.yaml)")
    if not 1 <= opts.codes <= 4096 or not 1 <= opts.samples <= 1000:
        raise VidunlearnError(f"--codes {opts.codes} / --motion-samples {opts.samples} out of range (1-4096 / 1-1000)",
                              fix="e.g. --codes 64 --motion-samples 8")
    if (opts.forget_motions is None) != (opts.retain_motions is None):
        raise VidunlearnError("--forget-motions and --retain-motions go together", fix="pass both folders, or neither")
    if not 0 <= job.harden <= 10 or int(job.harden) != job.harden:
        raise VidunlearnError(f"--harden {job.harden!r} is not a whole number of rounds from 0 to 10", fix="use e.g. --harden 2")
    if job.harden and job.edit != "uce":
        raise VidunlearnError("--harden on a MoMask model is RECE on the text path: it needs --mode uce",
                              where=str(job.model), fix="add --mode uce, or leave --harden out for LCR")
    if job.edit == "uce" and opts.forget_motions is not None:
        raise VidunlearnError("--forget-motions is for --method lcr; UCE reads the pairs' prompts",
                              fix="leave --forget-motions/--retain-motions out, or use --method lcr")
    for folder in (opts.forget_motions, opts.retain_motions):
        if folder is not None and not Path(folder).is_dir():
            raise VidunlearnError("no such folder of motions", where=str(folder), fix="pass a folder of .npy files")
    loaded = [load_pairs(p) for p in job.pairs]
    check_writable(job.out, force=job.force)
    if job.push[0]:
        from ..hub import check_repo_id

        check_repo_id(job.push[0])
    check_apart(job.out, [("the --model folder", job.model), *(("the --pairs file", p) for p in job.pairs),
                          ("the --forget-motions folder", opts.forget_motions),
                          ("the --retain-motions folder", opts.retain_motions)])
    return loaded


def sampled_codes(model: MotionModel, texts: list[str], samples: int, seed: int, reporter: Reporter,
                  what: str) -> list[np.ndarray]:
    """The model's own token ids (T, Q) for ``samples`` samples of each text (:func:`momask.sample_tokens`)."""
    out: list[np.ndarray] = []
    with reporter.task(f"sampling {what}", total=len(texts) * samples) as advance:
        for _, ids, tokens in sample_tokens(model, texts, samples, seed, BATCH):
            out.extend(row[: int(n)].numpy().astype(np.int64) for row, n in zip(ids, tokens))
            advance(len(tokens))
    return out


def folder_codes(model: MotionModel, folder: Path, reporter: Reporter) -> list[np.ndarray]:
    """Encode every ``.npy`` of ``folder`` (motion features, frames x dim_pose) with the RVQ-VAE."""
    files = sorted(Path(folder).glob("*.npy"))
    if not files:
        raise VidunlearnError("no .npy motion files", where=str(folder), fix="pass a folder like HumanML3D's new_joint_vecs")
    features = []
    for file in files:
        try:
            mapped = np.load(file, allow_pickle=False, mmap_mode="r")  # the shape before any data is read
            if mapped.ndim != 2 or len(mapped) > MAX_MOTION_FRAMES:
                raise ValueError(f"shape {mapped.shape}, not (frames <= {MAX_MOTION_FRAMES}, dim_pose)")
            features.append(np.asarray(mapped, dtype=np.float32))
        except (OSError, ValueError) as exc:
            raise VidunlearnError(f"cannot read the motion ({str(exc)[:100]})", where=str(file),
                                  fix="save each motion with numpy.save, as a float array (frames, dim_pose)") from None
    with reporter.task(f"encoding {folder}", total=None):
        return lcr.encode_features(model, features, [str(f) for f in files])


def lcr_edit(model: MotionModel, runs: MoMaskRuns, concepts: list[ConceptPairs], opts: MotionOptions,
             reporter: Reporter) -> MotionEdit:
    if opts.forget_motions is not None and opts.retain_motions is not None:
        forget, retain = folder_codes(model, opts.forget_motions, reporter), folder_codes(model, opts.retain_motions, reporter)
        source = {"forget_motions": str(opts.forget_motions), "retain_motions": str(opts.retain_motions)}
    else:
        check_sampleable(model.opts["mask"], str(runs.root), "LCR from the model's own samples")
        unsafe = [t for c in concepts for t in c.unsafe]
        kept = [t for c in concepts for t in (*c.safe, *c.neutral)]
        forget = sampled_codes(model, unsafe, opts.samples, opts.seed, reporter, "the unsafe prompts")
        retain = sampled_codes(model, kept, opts.samples, opts.seed, reporter, "the safe and neutral prompts")
        source = {"samples": opts.samples, "unsafe_prompts": len(unsafe), "kept_prompts": len(kept)}
    books, result = lcr.lcr_codes(model, forget, retain, k=opts.codes, layers=opts.layers, alpha=opts.noise,
                                  target_rule=opts.target, seed=opts.seed)
    key = "quantizer.layers.{}.codebook"
    recipe = {"method": "lcr", "codes": opts.codes, "layers": list(opts.layers), "target": opts.target,
              "noise": opts.noise, "seed": opts.seed, "sets": source}
    return MotionEdit({("vq", runs.vq): {key.format(layer): book for layer, book in books.items()}}, "lcr.json",
                      json.loads(result.to_json()), recipe,
                      {("vq", key.format(layer)): list(result.codes[layer]) for layer in books})


def uce_edit(model: MotionModel, runs: MoMaskRuns, concepts: list[ConceptPairs], job: MotionJob) -> MotionEdit:
    check_sampleable(model.opts["mask"], str(runs.root), "UCE on the text path")
    pairs = [(p.unsafe, p.safe) for c in concepts for p in c.pairs]
    keep = [t for c in concepts for t in (*c.safe, *c.neutral)]
    weights, result = uce.uce_weights(model, pairs, keep, preserve_weight=job.alpha, strength=job.strength,
                                      harden=job.harden)
    recipe = {"method": "uce", "preserve_weight": job.alpha, "strength": job.strength, "ridge": result.ridge,
              "pairs": len(pairs), "kept_prompts": len(keep), **({"harden": job.harden} if job.harden else {})}
    return MotionEdit({(stage, runs.names[stage]): {uce.WEIGHT: w} for stage, w in weights.items()}, "uce.json",
                      json.loads(result.to_json()), recipe)


def edited_rows(runs: MoMaskRuns, base: MotionModel, edit: MotionEdit) -> list[dict]:
    """One manifest row a changed tensor: where it is, its change, the rows LCR replaced."""
    nets = {"vq": base.vq, "mask": base.mask, "res": base.res}
    out = []
    for (stage, _), tensors in sorted(edit.patches.items()):
        state = nets[stage].state_dict()
        for key, new in sorted(tensors.items()):
            old = state[key].float()
            delta = new.float() - old
            out.append({"component": stage, "tensor": key, "dtype": str(state[key].dtype).removeprefix("torch."),
                        "file": runs.model_file(stage).relative_to(runs.root).as_posix(),
                        "change_norm": float(delta.norm()), "relative_change": float(delta.norm() / old.norm()),
                        "rank": int(torch.linalg.matrix_rank(delta)),
                        **({"rows": edit.rows[(stage, key)]} if (stage, key) in edit.rows else {})})
    return out


def export_safetensors(folder: Path, runs: MoMaskRuns, metadata: dict[str, str]) -> dict[str, str]:
    """Each network's state dict (as written in MoMask's layout) as ``safetensors/<key>.safetensors``,
    bit-identical from run to run (:func:`vidunlearn.artifacts.safetensors_bytes`)."""
    from ..artifacts import safetensors_bytes

    names = {}
    (folder / "safetensors").mkdir()
    for stage, name in runs.names.items():
        checkpoint, _ = load_checkpoint(folder, stage, name, runs.dataset)
        key = state_key(stage, checkpoint)
        rel = f"safetensors/{key}.safetensors"
        tensors = {k: v.detach().clone() for k, v in checkpoint[key].items()}  # no shared storage
        (folder / rel).write_bytes(safetensors_bytes(tensors, {
            **metadata, "momask.run": name, "momask.stage": stage, "momask.ep": str(checkpoint.get("ep")),
            "momask.total_it": str(checkpoint.get("total_it"))}))
        names[stage] = rel
    return names


def lcr_summary(record: dict, path: Path, shown: int = 6) -> str:
    """One line a layer: how many codes became which row, and the most forget-heavy ones with the
    number of forget / retain samples that use them."""
    lines = []
    for layer in record["layers"]:
        key = str(layer)
        rows = sorted(zip(record["codes"][key], record["forget_counts"][key], record["retain_counts"][key]),
                      key=lambda t: (-t[1], t[2], t[0]))
        top = ", ".join(f"{c} ({f}/{r})" for c, f, r in rows[:shown])
        lines.append(f"LCR layer {layer}: {len(rows)} codes now decode to row {record['target'][key]} + noise; "
                     f"most used by the forget set (forget/retain samples using it): {top}")
    return "\n".join(lines + [f"every code and count: {path}"])


def apply_motion(job: MotionJob, reporter: Reporter = SILENT):
    """Compute the edit and write the output folder atomically; returns an :class:`~vidunlearn.api.ApplyResult`."""
    from ..api import ApplyResult
    from ..provenance import load_evals
    from .card import motion_card

    concepts = check_job(job)
    eval_rows, eval_settings = load_evals(list(job.eval_files))
    with reporter.task("loading the MoMask model", total=None):
        model, runs = load_runs(job.model)
    edit = (lcr_edit(model, runs, concepts, job.options, reporter) if job.edit == "lcr"
            else uce_edit(model, runs, concepts, job))
    recipe = {"family": FAMILY, **edit.recipe, "concepts": [{"concept": c.concept, "pairs_sha256": c.sha256} for c in concepts]}
    edited = edited_rows(runs, model, edit)
    if not any(r["change_norm"] > 0 for r in edited):
        raise VidunlearnError("the edit changes no weight (the forget set uses no code the retain set does not use "
                              "as much, or the replacement equals the rows)", where=str(job.model),
                              fix="give more, or more distinct, forget and retain motions")
    with atomic_output(job.out, directory=True, replace=job.force) as temp:
        with reporter.task("writing the MoMask checkpoints and safetensors", total=None):
            for stage in ("vq", "mask", "res"):
                rel = runs.run_dir(stage).relative_to(runs.root)
                shutil.copytree(runs.run_dir(stage), temp / rel)
            patch_checkpoints(temp, edit.patches, runs.root, runs.dataset)
            exported = export_safetensors(temp, runs, {"vidunlearn.recipe": sha256_json(recipe),
                                                       "vidunlearn.version": __version__})
        write_json(temp / edit.record_name, edit.record)
        manifest = {
            "schema": MANIFEST_SCHEMA, "tool_version": __version__, "format": FORMAT, "family": FAMILY,
            "base": {"path": str(job.model), "runs": runs.names, "dataset": runs.dataset,
                     "sha256": {runs.model_file(s).relative_to(runs.root).as_posix(): sha256_file(runs.model_file(s))
                                for s in runs.names}},
            "recipe": recipe, "edited": edited, "safetensors": exported, "record": edit.record_name,
            "inputs": {"pairs": {c.concept: c.sha256 for c in concepts}},
            "eval": eval_rows, **({"eval_settings": eval_settings} if eval_settings else {}),
            "collateral": None, "files": {},
        }
        encoder = text_encoder_of(model.opts["mask"])
        card = motion_card(manifest, job.out, runs, replace(job.card, repo_id=job.push[0]),
                           None if encoder == MOMASK_TEXT_ENCODER else encoder)
        (temp / "README.md").write_text(card, encoding="utf-8")
        manifest["files"] = {p.relative_to(temp).as_posix(): sha256_file(p) for p in sorted(temp.rglob("*"))
                             if p.is_file() and p.name != "vidunlearn.json"}
        write_json(temp / "vidunlearn.json", manifest)
    summary = lcr_summary(edit.record, job.out / edit.record_name) if job.edit == "lcr" else \
        f"UCE{f' hardened by {job.harden} round(s) of RECE' if job.harden else ''}: details in {job.out / edit.record_name}"
    pushed = None
    if job.push[0]:
        from ..hub import push_folder

        reporter.note(f"uploading {job.out} to {job.push[0]}")
        pushed = push_folder(job.out, job.push[0], private=job.push[1], revision=job.push[2])
    return ApplyResult(job.out, [], manifest, dry_run=False, pushed=pushed, note=summary)
