"""Library entry points: extract -> factorize -> apply (and sample, in :mod:`vidunlearn.sampling`).

Each step reads only files and arguments and writes one artifact, atomically. The CLI is a thin
layer over these functions.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch

from . import __version__
from .apply_options import EditRecipe, LoadOptions, OutputOptions
from .artifacts import ActivationSet, RefusalVectors, SiteVectors
from .cache import load_cached
from .checks import MAX_ALPHA, check_device, check_hardening, check_distinct_concepts, check_edit_arguments, check_number, input_paths
from .checkpoint import verify_layout, write_checkpoint
from .collateral import anchor_prompts
from .edit import MODES, default_strength
from .errors import ModelError, VidunlearnError
from .factorize import factorize_site
from .faults import pause_point
from .fsutil import atomic_output, check_apart, check_free_space, check_writable, write_json
from .hashing import sha256_file, sha256_json
from .hub import check_repo_id
from .model import ModelSource, model_files
from .pairs import ConceptPairs, load_pairs
from .plan import PlannedEdit, check_against_config, plan_edits
from .progress import SILENT, Reporter
from .provenance import check_survival, load_evals, provenance_metadata
from .quant import is_fp8
from .record import record_sites
from .remap import remap_factors, target_prompts
from .sites import pairs_site_keys, site_keys, site_stream
from .specs import check_same_model, edit_specs, uce_specs
from .sources import model_source
from .weightfiles import note_links, other_weights

MANIFEST_SCHEMA = 1


# ---------------------------------------------------------------------------------- extract
@dataclass(frozen=True)
class ExtractResult:
    path: Path
    activations: ActivationSet
    reused: bool
    memory: str = ""  # peak memory of the extraction, e.g. "peak RSS 812 MiB, peak GPU 640 MiB"
    seconds: float = 0.0


def extract(model: str | ModelSource, pairs: str | Path | ConceptPairs, *, out: Path, sites: list[str] | None = None,
            revision: str | None = None, device: str = "cpu", dtype: str = "float32", offload: bool = False,
            config: str | None = None, force: bool = True, reuse: bool = True,
            reporter: Reporter = SILENT) -> ExtractResult:
    """Record per-site token activations of the unsafe, safe and neutral prompts.

    Runs the tokenizer and text encoder, then only the denoiser's text path; the rest of the
    denoiser stays on the meta device and the VAE is never loaded. ``offload`` keeps the text
    encoder's weights in CPU memory and moves each layer to ``device`` only while it runs
    (accelerate's ``cpu_offload``): for a GPU smaller than the encoder (UMT5-XXL is 11 GB in bf16). Reuses ``out``
    when its cache key (model fingerprint, revision, pairs hash, sites, dtype, tool version)
    matches (``reuse=False``: never read); otherwise recomputes and replaces it (``force=False``:
    refuses to replace an existing file).
    """
    check_device(device)
    source = model_source(model, revision, config)
    concept = pairs if isinstance(pairs, ConceptPairs) else load_pairs(pairs)
    check_writable(out, force=True, file=True)
    check_apart(out, input_paths(source, pairs=[Path(concept.path)] if concept.path else []))
    keys = pairs_site_keys(source, sites, concept, reporter)
    key = sha256_json({"kind": "activations", "model": source.fingerprint, "repo_id": source.repo_id, "revision": source.revision,
                       "pairs": concept.sha256, "sites": keys, "dtype": dtype, "tool": __version__})
    cached = load_cached(ActivationSet.load, out, key, "activations", reporter, reuse=reuse, force=force)
    if cached is not None:
        return ExtractResult(out, cached, reused=True)

    targets, target_how = target_prompts(concept)
    groups = {"unsafe": list(concept.unsafe), "safe": list(concept.safe), "neutral": list(concept.neutral),
              "target": list(targets), "anchor": list(anchor_prompts())}
    # an image site's groups: the pairs' images; each unsafe image is remapped onto its safe twin; no anchors
    image_groups = {"unsafe": list(concept.unsafe_images), "safe": list(concept.safe_images),
                    "neutral": list(concept.neutral_images), "target": list(concept.safe_images), "anchor": []}
    recorded = record_sites(source, [p for g in groups.values() for p in g], keys, device=device, dtype=dtype,
                            offload=offload, reporter=reporter, images=[p for g in image_groups.values() for p in g])
    tokens: dict[str, dict[str, list[torch.Tensor]]] = {}
    for site_key, flat in recorded.tokens.items():
        members_of = image_groups if site_stream(source, site_key) == "image" else groups
        starts = [0]
        for members in members_of.values():
            starts.append(starts[-1] + len(members))
        tokens[site_key] = {g: flat[starts[i]:starts[i + 1]] for i, g in enumerate(members_of)}
    activations = ActivationSet(tokens=tokens, meta={
        "cache_key": key, "model": source.describe(), "sites": keys, "dtype": dtype,
        "concept": concept.concept, "pairs_sha256": concept.sha256, "pairs_path": concept.path,
        "counts": {g: len(v) for g, v in groups.items()}, "target": {"prompts": targets, "how": target_how},
        **({"image_counts": {g: len(v) for g, v in image_groups.items()}} if concept.has_images else {}),
    })
    activations.save(out, replace=force)
    reporter.note(f"extract: {recorded.memory}, {recorded.seconds:.1f} s")
    return ExtractResult(out, activations, reused=False, memory=recorded.memory, seconds=recorded.seconds)


# -------------------------------------------------------------------------------- factorize
def factorize(activations: Path | ActivationSet, *, out: Path | None = None, method: str = "remap", rank: int = 4,
              alpha: float = 1.0, level: str = "token", force: bool = True, reuse: bool = True,
              reporter: Reporter = SILENT) -> RefusalVectors:
    """Refusal vectors and their contrastive low-rank refinement, per site (see factorize.py);
    with ``method="remap"`` also the remap factors (see remap.py).
    ``out`` is reused when its cache key matches (``reuse=False``: never read), else replaced
    (``force=False``: an existing file is refused)."""
    check_number("--alpha", alpha, 0, MAX_ALPHA)
    if out is not None:
        check_writable(out, force=True, file=True)
        if not isinstance(activations, ActivationSet):
            check_apart(out, [("the --activations file", Path(activations))])
    acts = activations if isinstance(activations, ActivationSet) else ActivationSet.load(activations)
    params = {"method": method, "rank": rank, "alpha": alpha, "level": level}
    key = sha256_json({"kind": "refusal", "activations": acts.meta.get("cache_key"), **params, "tool": __version__})
    cached = load_cached(RefusalVectors.load, out, key, "refusal vectors", reporter, reuse=reuse, force=force) if out is not None else None
    if cached is not None:
        return cached
    sites: dict[str, SiteVectors] = {}
    stats: dict[str, dict] = {}
    with reporter.task("factorizing", total=len(acts.sites)) as advance:
        for site in acts.sites:
            groups = acts.tokens[site]
            result = factorize_site(groups["unsafe"], groups["safe"], groups["neutral"], site=site, **params)
            sites[site] = SiteVectors(result.direction, result.refusal, result.basis, result.eigenvalues, result.safe_mean)
            if method == "remap":  # the cPCA basis above is kept for inspection and --mode project
                sites[site].left, sites[site].right = remap_factors(
                    groups["unsafe"], groups["target"], groups["neutral"] + groups["safe"], alpha, groups["anchor"])
            stats[site] = {"refusal_norm": float(result.refusal.norm()), "retained": result.retained,
                           "data_rank": result.data_rank, "eigenvalues": [float(v) for v in result.eigenvalues],
                           "hidden_size": int(result.direction.shape[0])}
            advance(1)
    vectors = RefusalVectors(sites=sites, meta={
        **params, "cache_key": key, "sites": sorted(sites), "stats": stats, "concept": acts.meta.get("concept"),
        "model": acts.meta.get("model"), "pairs_sha256": acts.meta.get("pairs_sha256"),
        "activations_key": acts.meta.get("cache_key"), "target": (acts.meta.get("target") or {}).get("how"),
    })
    if out is not None:
        vectors.save(out, replace=force)
    return vectors


# ------------------------------------------------------------------------------------ apply
@dataclass(frozen=True)
class ApplyResult:
    out: Path
    plan: list[PlannedEdit]
    manifest: dict | None
    dry_run: bool
    pushed: str | None = None
    checked: int = 0  # dry run: tensors checked against the meta-device model built from config.json
    seconds: float = 0.0  # dry run: planning time, imports excluded
    note: str | None = None  # one line for stdout, e.g. why the card has no base_model


def apply(model: str | ModelSource, *, out: Path, pairs: list[Path] | None = None, refusal: list[Path] | None = None,
          work_dir: Path = Path("vidunlearn-work"), recipe: EditRecipe = EditRecipe(), load: LoadOptions = LoadOptions(),
          output: OutputOptions = OutputOptions(), dry_run: bool = False, force: bool = False,
          reporter: Reporter = SILENT) -> ApplyResult:
    """Write the edit to the folder ``out``: a diffusers pipeline folder (default), one
    single-file checkpoint per denoiser with original Wan key names, or the exact LoRA delta
    (``output.format``; see :mod:`vidunlearn.formats`). A single-file ``model`` gives a single
    file by default.

    Directions come from ``refusal`` files, or are computed from ``pairs`` files (extract and
    factorize cached under ``work_dir/<concept>/``; ``load.no_cache``: recomputed without reading
    the cache, whose SHA-256s the manifest records). Several concepts are removed in one edit.
    fp8 weights are edited in float32 and re-quantised; the edit is refused when less than
    ``output.min_survival`` of it survives re-quantisation in any tensor.
    ``recipe`` (:class:`~vidunlearn.apply_options.EditRecipe`): ``mode="remap"`` (the default)
    remaps each unsafe token onto its twin in one consistent target prompt (:mod:`vidunlearn.remap`);
    ``mode="project"`` with ``method="cpca"`` is the paper's edit. ``mode="uce"`` (a comparison)
    solves UCE from the pairs' activations instead: ``alpha`` is its preserve weight, ``level`` its
    token alignment; ``method`` and ``rank`` are unused. ``harden``: rounds of RECE's closed-form
    search for inputs that still give the concept, each erased in turn (:mod:`vidunlearn.harden`;
    remap from pairs only). ``adversarial``: train the remap's factors against the soft-prompt
    attack, ``adversarial.steps`` steps (:mod:`vidunlearn.adversarial`; not training-free; remap
    from pairs, Wan text-to-video). A MoMask folder goes to :mod:`vidunlearn.motion.apply`
    (``motion``: its MotionOptions).
    ``load`` (:class:`~vidunlearn.apply_options.LoadOptions`): ``variant`` edits that weights variant
    of the denoisers (``fp16``: ``diffusion_pytorch_model.fp16*``).
    ``output`` (:class:`~vidunlearn.apply_options.OutputOptions`): ``collateral`` measures the
    relative change of the edited layers' outputs on 500 unrelated prompts
    (:mod:`vidunlearn.collateral`) into the manifest and the model card. A diffusers output refuses
    weight files it would carry unedited (other variants, ``.bin``...) unless
    ``files.drop_other_weights``; ``files.copy`` copies instead of hard-linking. ``card``: what the
    model card cannot find itself (``--base-model-id``); :attr:`ApplyResult.note` says when the card
    leaves ``base_model`` out.
    """
    from .adapters.momask import looks_like_momask
    from .formats import resolve_format

    mode, method, alpha, level, sites, modules = recipe.mode, recipe.method, recipe.alpha, recipe.level, recipe.sites, recipe.modules
    harden, adversarial, device, dtype, offload = recipe.harden, recipe.adversarial, load.device, load.dtype, load.offload
    card, files, save_dtype, push_to_hub = output.card, output.files, output.save_dtype, output.push_to_hub
    eval_files = [Path(e) for e in output.eval_json]
    if isinstance(model, (str, Path)) and looks_like_momask(Path(model)):  # text-to-motion: vidunlearn.motion
        from .motion.apply import MotionJob, MotionOptions, apply_motion

        video_only = {"--refusal": refusal, "--site": sites, "--sites": modules, "--subspace": recipe.subspace, "--dry-run": dry_run,
                      "--format": output.format, "--save-dtype": save_dtype, "--variant": load.variant, "--config": load.config,
                      "--revision": load.revision, "--offload": offload, "--adversarial": adversarial.steps, "--device": device if device != "cpu" else None}
        return apply_motion(MotionJob(Path(model), out, tuple(pairs or ()), mode, method, 1.0 if recipe.strength is None else recipe.strength, alpha, force,
                                      tuple(eval_files), recipe.motion or MotionOptions(), card, video_only,
                                      (push_to_hub, output.private, output.hub_revision), harden), reporter)
    strength = default_strength(mode, len(pairs or []) + len(refusal or [])) if recipe.strength is None else recipe.strength
    check_edit_arguments(strength=strength, alpha=alpha, modules=modules, device=device, push_to_hub=push_to_hub)
    source = model_source(model, load.revision, load.config, load.variant)
    output_format = resolve_format(output.format, save_dtype, single_file=hasattr(source, "file"), where=str(model),
                                   adapter=source.adapter)
    if card.base_model_id:
        check_repo_id(card.base_model_id)
    eval_rows, eval_settings = load_evals(eval_files)  # before any work
    if not pairs and not refusal:
        raise VidunlearnError("nothing to remove", fix="pass --pairs FILE (or --refusal FILE from factorize)")
    if mode not in MODES:
        raise VidunlearnError(f"unknown --mode {mode!r}", fix=f"use one of {MODES}")
    method = method or ("remap" if mode == "remap" else "cpca")
    check_hardening(mode, bool(pairs) and not refusal, harden, adversarial)
    adversarial = adversarial.resolved()   # the site's settings for those left unset, as the recipe records them
    if mode == "uce" and refusal:
        raise VidunlearnError("--mode uce needs the prompts' activations, which a refusal file does not hold",
                              fix="pass --pairs instead of --refusal")
    loaded_pairs = [load_pairs(p) for p in pairs or []]  # validate every file before any work
    check_distinct_concepts(loaded_pairs)
    if adversarial.steps:
        from .adversarial import check_reach
        from .encoder_edit import check_format

        check_reach(source, loaded_pairs, adversarial)
        check_format(adversarial, output_format)
    if not dry_run:
        check_writable(out, force=force)
        caches = [("the cache folder", work_dir / c.concept) for c in loaded_pairs]
        check_apart(out, input_paths(source, pairs=pairs or [], refusal=refusal or [], others=[
            *(("the --eval-json file", e) for e in eval_files), *([("the --work-dir", work_dir)] if pairs else []), *caches]),
            may_hold_out=("the --work-dir",))
    targets = {c.concept: target_prompts(c)[1] for c in loaded_pairs}  # a bad 'target:' fails here, before any work
    leave_out = other_weights(source, files.drop_other_weights, reporter) if output_format == "diffusers" else frozenset()
    if dry_run:
        source.adapter.denoiser_type()  # diffusers imports the class lazily: not planning time

        started = time.perf_counter()
        keys = ({k for c in loaded_pairs for k in pairs_site_keys(source, sites, c, reporter)} if loaded_pairs
                else set(site_keys(source, sites)))  # with pairs: only the sites they can reach (images or not)
        plan = plan_edits(source, {k: None for k in sorted(keys)}, modules)
        checked = check_against_config(source, plan)
        return ApplyResult(out, plan, None, dry_run=True, checked=checked, seconds=time.perf_counter() - started)

    if mode == "remap":
        for concept, how in targets.items():
            reporter.note(f"{concept}: every unsafe prompt is remapped onto {how}")
    concepts: list[RefusalVectors] = []
    activation_sets: list[ActivationSet] = []
    cache: dict[str, dict[str, str]] = {}  # concept -> SHA-256 of each cache file used (a reviewer can recompute them)
    for concept in loaded_pairs:
        folder = work_dir / concept.concept
        acts = extract(source, concept, out=folder / "activations.safetensors", sites=sites, device=device,
                       dtype=dtype, offload=offload, reuse=not load.no_cache, reporter=reporter)
        activation_sets.append(acts.activations)
        cache[concept.concept] = {"activations": sha256_file(acts.path)}
        if mode != "uce":
            concepts.append(factorize(acts.activations, out=folder / "refusal.safetensors", method=method, rank=recipe.rank,
                                      alpha=alpha, level=level, reuse=not load.no_cache, reporter=reporter))
            cache[concept.concept]["refusal"] = sha256_file(folder / "refusal.safetensors")
    for path in refusal or []:
        vectors = RefusalVectors.load(path)
        check_same_model(vectors, source, str(path))
        concepts.append(vectors)
    if mode == "uce":
        specs = uce_specs(activation_sets, strength, alpha, level)
        recipe_concepts = [{"concept": a.meta.get("concept"), "method": "uce", "rank": None, "alpha": alpha,
                            "level": level, "pairs_sha256": a.meta.get("pairs_sha256")} for a in activation_sets]
    else:
        specs = edit_specs(concepts, mode, strength, recipe.subspace)
        recipe_concepts = [{"concept": c.concept, "method": c.meta.get("method"), "rank": c.meta.get("rank"),
                            "alpha": c.meta.get("alpha"), "level": c.meta.get("level"),
                            **({"target": targets.get(c.concept) or c.meta.get("target")} if mode == "remap" else {}),
                            "pairs_sha256": c.meta.get("pairs_sha256")} for c in concepts]
    if sites:
        wanted = set(site_keys(source, sites))
        specs = {k: v for k, v in specs.items() if k in wanted}
    plan = plan_edits(source, specs, modules)
    if harden:
        from .harden import hardened_specs

        specs = hardened_specs(source, plan, activation_sets, strength, alpha, harden)
        plan = plan_edits(source, specs, modules)
    encoder_tensors: dict = {}   # the trained text encoder's, with adversarial site text_encoder
    if adversarial.steps:
        from .adversarial import adversarial_specs

        specs, encoder_tensors = adversarial_specs(source, plan, specs, loaded_pairs, adversarial, device, dtype, reporter)
        plan = plan_edits(source, specs, modules)
    if output_format == "diffusers" and any(is_fp8(e.weight.dtype) for e in plan):
        raise VidunlearnError("fp8 weights in a diffusers folder are not supported", where=str(source.path),
                              fix="use --format lora, or pass the fp8 single-file checkpoint as --model")

    collateral_report = None
    if output.collateral:
        from .collateral import collateral_prompts, measure

        # the text sites' layers, on 500 unrelated prompts; the image path's layers are not measured (no unrelated images)
        measured = [e for e in plan if site_stream(source, e.site) == "text"]
        recorded = record_sites(source, list(collateral_prompts()), sorted({e.site for e in measured}), device=device,
                                dtype=dtype, offload=offload, reporter=reporter)
        collateral_report = measure(source, measured, recorded.tokens).as_dict()
        if encoder_tensors:   # the trained encoder moves every prompt's states before the edited layers read them
            from .collateral import encoder_change

            collateral_report["text_encoder"] = encoder_change(source, encoder_tensors, device, dtype)
        if len(measured) < len(plan):  # said wherever the collateral is shown
            collateral_report["unmeasured"] = len(plan) - len(measured)
    recorded = {  # the manifest's recipe
        "concepts": recipe_concepts,
        "mode": mode, "strength": strength, "subspace": recipe.subspace, "sites": sorted(specs), "modules": modules,
        "edit_rank": max(spec.rank for spec in specs.values()) if mode in ("uce", "remap") else None,
        **({"harden": harden} if harden else {}),
        **({"adversarial": asdict(adversarial)} if adversarial.steps else {}),
    }
    file_meta = provenance_metadata(source, recorded, output_format)
    quantization = None
    every_file = model_files(source.path) if output_format == "diffusers" else []
    written_files = [f for f in every_file if f.resolve() not in leave_out]
    if output_format == "diffusers":  # the other formats write one transformer at most, or megabytes
        rewrite = {info.file for e in plan for info in (e.weight, e.bias) if info is not None and info.key in e.keys}
        if encoder_tensors:   # the trained encoder's files are written anew, never linked
            from .encoder_edit import encoder_files

            rewrite |= encoder_files(source, encoder_tensors)
        check_free_space(out, written_files, rewrite, copy=files.copy)
    with atomic_output(out, directory=True, replace=force) as temp:
        if output_format == "diffusers":
            total = sum(p.stat().st_size for p in written_files)
            with reporter.task("writing checkpoint", total=total) as advance:
                written = write_checkpoint(source, temp, plan, file_meta, advance, leave_out=leave_out, copy=files.copy)
            records, actions, hashes = written.records, written.actions, written.sha256
            if encoder_tensors:
                from .encoder_edit import write_encoder

                encoder_records, rewritten = write_encoder(source, temp, encoder_tensors, file_meta)
                hashes, actions = {**hashes, **rewritten}, {**actions, **{rel: "rewrite" for rel in rewritten}}
        else:
            from .formats import write_format

            steps: float | None = len(source.denoisers)  # lora: one step per denoiser; single-file: bytes
            if output_format == "single-file":
                steps = None if save_dtype else sum(i.end - i.begin for c in source.denoisers
                                                    for i in source.tensor_infos(c).values())
            with reporter.task(f"writing {output_format}", total=steps) as advance:
                report = write_format(source, temp, plan, output_format, file_meta, save_dtype, advance)
            records, actions = report.records, {name: "write" for name in report.files}
            hashes = {name: report.sha256.get(name) or sha256_file(temp / name) for name in report.files}
            quantization = check_survival(report.survival, output.min_survival, str(source.path))
        from .card import build_card

        manifest = {
            "schema": MANIFEST_SCHEMA, "tool_version": __version__, "base": source.describe(), "recipe": recorded,
            "inputs": {"pairs": {c.concept: c.sha256 for c in loaded_pairs},
                       "refusal": {str(p): sha256_file(p) for p in refusal or []},
                       "cache": cache, "cache_read": not load.no_cache},
            "edited": [r.__dict__ for r in records], "files": {}, "actions": actions,
            "format": output_format, "save_dtype": save_dtype, "quantization": quantization,
            "eval": eval_rows, "collateral": collateral_report, **({"eval_settings": eval_settings} if eval_settings else {}),
            "left_out": [f.relative_to(source.path).as_posix() for f in every_file if f.resolve() in leave_out],
            **({"text_encoder_edit": encoder_records} if encoder_tensors else {}),
        }
        written_card = build_card(source, manifest, out, replace(card, repo_id=push_to_hub))
        (temp / "README.md").write_text(written_card.text, encoding="utf-8")
        manifest["files"] = {**hashes, "README.md": sha256_file(temp / "README.md")}
        write_json(temp / "vidunlearn.json", manifest)
        planned = {(e.component, k) for e in plan for k in e.keys}
        if {(r.component, r.tensor) for r in records} != planned:
            raise ModelError(f"edited {len(records)} tensors, planned {len(planned)}", where=str(out))
        if output_format == "diffusers":
            verify_layout(source, temp, leave_out)
    pause_point("after-rename")
    note_links(out, actions, reporter)
    pushed = None
    if push_to_hub:
        from .hub import push_folder

        reporter.note(f"uploading {out} to {push_to_hub}")
        pushed = push_folder(out, push_to_hub, private=output.private, revision=output.hub_revision)
    return ApplyResult(out, plan, manifest, dry_run=False, pushed=pushed, note=written_card.note)
