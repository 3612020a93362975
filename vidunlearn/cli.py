"""The ``vidunlearn`` command: parse -> call :mod:`vidunlearn.api` -> render. No tensor math here.

Errors from the library become one line on stderr and exit code 1, here and only here. Set
VIDUNLEARN_DEBUG=1 for a traceback. torch and diffusers are imported inside the commands, so
``vidunlearn --help`` is instant.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape

from .cli_options import (AlphaOpt, BaseModelIdOpt, ConfigOpt, CopyOpt, DeviceOpt, DropOtherWeightsOpt, DtypeOpt, FileForceOpt,
                           ForceOpt, LevelOpt, MethodOpt, ModelOpt, NoCacheOpt, OffloadOpt, RankOpt, RevisionOpt,
                           SiteOpt, VariantOpt)
from .cli_console import RichReporter, handled, say, stdout, table, terminate
from .errors import VidunlearnError
from . import cli_eval

app = typer.Typer(
    name="vidunlearn",
    help="Remove an unsafe concept from an open text-to-video model with a closed-form weight edit.\n\n"
         "The steps run in sequence: extract -> factorize -> apply -> sample. `apply --pairs` runs the first two itself.",
    epilog="Example: vidunlearn apply --model wan2.1 --pairs pairs/violence.yaml --out out/wan-noviolence",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
def _concept_dir(work_dir: Path, pairs: Path) -> Path:
    from .pairs import load_pairs

    return work_dir / load_pairs(pairs).concept


@app.command(epilog="Example: vidunlearn extract --model wan2.1 --pairs pairs/violence.yaml")
@handled
def extract(
    model: ModelOpt,
    pairs: Annotated[Path, typer.Option(help="Pairs YAML file (see pairs/).")],
    out: Annotated[Optional[Path], typer.Option(help="Output file (default: WORK_DIR/<concept>/activations.safetensors).")] = None,
    work_dir: Annotated[Path, typer.Option(help="Cache folder.")] = Path("vidunlearn-work"),
    site: SiteOpt = None,
    revision: RevisionOpt = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
    offload: OffloadOpt = False,
    config: ConfigOpt = None,
    force: FileForceOpt = False,
) -> None:
    """Record per-site activations of the pair prompts (text encoder + the denoiser's text path only; never the VAE). Reports peak memory."""
    from . import api

    result = api.extract(model, pairs, out=out or _concept_dir(work_dir, pairs) / "activations.safetensors", sites=site,
                         revision=revision, device=device, dtype=dtype, offload=offload, config=config,
                         force=force or out is None, reporter=RichReporter())  # the default path is a cache
    counts = result.activations.meta["counts"]
    say(f"{'reused' if result.reused else 'wrote'} {result.path}  sites={','.join(result.activations.sites)}  "
         f"prompts unsafe={counts['unsafe']} safe={counts['safe']} neutral={counts['neutral']}")


@app.command(epilog="Example: vidunlearn factorize --activations vidunlearn-work/violence/activations.safetensors --rank 4")
@handled
def factorize(
    activations: Annotated[Path, typer.Option(help="activations.safetensors from extract.")],
    out: Annotated[Optional[Path], typer.Option(help="Output file (default: refusal.safetensors beside the activations).")] = None,
    method: MethodOpt = "remap",
    rank: RankOpt = 4,
    alpha: AlphaOpt = 1.0,
    level: LevelOpt = "token",
    force: FileForceOpt = False,
) -> None:
    """Compute refusal vectors and their contrastive low-rank refinement, per site."""
    from . import api

    path = out or activations.with_name("refusal.safetensors")
    vectors = api.factorize(activations, out=path, method=method, rank=rank, alpha=alpha, level=level,
                            force=force or out is None, reporter=RichReporter())  # the default path is a cache
    rows = [(site, f"{stats['refusal_norm']:.4g}", f"{stats['retained']:.1%}", str(stats["data_rank"]),
             ", ".join(f"{v:.3g}" for v in stats["eigenvalues"][:4])) for site, stats in sorted(vectors.meta["stats"].items())]
    stdout.print(table(f"{vectors.concept}: {method}, rank {rank}, alpha {alpha}, {level} level -> {path}",
                        ("site", "|r|", "retained share of r", "data rank", "top eigenvalues"), rows))


@app.command(epilog="Examples:\n\n"
             "  vidunlearn apply --model wan2.1 --pairs pairs/violence.yaml --out out/wan-noviolence\n\n"
             "  vidunlearn apply --model models/tiny-wan --pairs pairs/violence.yaml --pairs pairs/nudity.yaml --out out/x\n\n"
             "  vidunlearn apply --model wan2.1 --refusal vidunlearn-work/violence/refusal.safetensors --out out/y --dry-run\n\n"
             "  vidunlearn apply --model wan2.1 --pairs pairs/violence.yaml --format lora --out out/noviolence-lora\n\n"
             "  vidunlearn apply --model wan2.1_t2v_1.3B_fp16.safetensors --pairs pairs/violence.yaml --out out/comfy\n\n"
             "  vidunlearn apply --model models/shapes-wan --pairs pairs/bench/circle.yaml --out out/nocircle\n\n"
             "  vidunlearn apply --model models/shapes-wan --pairs pairs/bench/moving-left.yaml --adversarial 200 --out out/noleft-held"
             "   # trained against the attack\n\n"
             "  vidunlearn apply --model wan2.1 --pairs pairs/violence.yaml --mode project --method cpca --out out/paper"
             "   # the paper's exact edit\n\n"
             "  HF_TOKEN=... vidunlearn apply --model wan2.1 --pairs pairs/violence.yaml --out out/z --push-to-hub me/wan-noviolence\n\n"
             "  vidunlearn apply --model models/momask-world --method lcr --pairs pairs/motion-violence.yaml --out out/momask-noviolence"
             "   # a MoMask text-to-motion model: Latent Code Replacement")
@handled
def apply(
    model: ModelOpt,
    out: Annotated[Path, typer.Option(help="Output pipeline folder.")],
    pairs: Annotated[Optional[list[Path]], typer.Option(help="Pairs file (repeatable: several concepts in one edit).")] = None,
    refusal: Annotated[Optional[list[Path]], typer.Option(help="refusal.safetensors from factorize (repeatable).")] = None,
    strength: Annotated[Optional[float], typer.Option(help="lambda: 1 removes the concept component, 0 is the identity (-100 to 100). Default: 1, and 1.25 for the remap of several concepts at once (docs/method.md).")] = None,
    mode: Annotated[str, typer.Option(help="remap (default: every unsafe token onto its twin in one consistent target prompt, several concepts composed; erased colour, shape, motion and two concepts in the benchmark, docs/method.md), project (the paper's W(I - lambda p p^T): erased a colour only), replace; comparisons: bias, uce.")] = "remap",
    site: SiteOpt = None,
    modules: Annotated[Optional[str], typer.Option("--sites", help="Regex narrowing the edited layers, e.g. 'attn2.to_k'.")] = None,
    method: Annotated[Optional[str], typer.Option(help="remap (default with --mode remap), cpca (default with --mode project: the paper's), pca, mean or cpca-us; lcr (MoMask motion models: Latent Code Replacement, their default).")] = None,
    rank: RankOpt = 4,
    alpha: AlphaOpt = 1.0,
    level: LevelOpt = "token",
    subspace: Annotated[bool, typer.Option("--subspace", help="Project out each concept's whole rank-k basis, not only its refined direction p.")] = False,
    harden: Annotated[int, typer.Option(help="Rounds of RECE's closed-form search for inputs that still give the concept, each erased in turn (remap from --pairs; 0-10; docs/holding.md). MoMask: with --mode uce, RECE on the text path.")] = 0,
    adversarial: Annotated[int, typer.Option(help="Train the edit this many steps against the soft-prompt attack (the text encoder's layers, the remap kept closed-form: a diffusers folder output; site: factors trains the remap's factors instead; not training-free; Wan text-to-video, remap from --pairs; docs/adversarial-encoder.md). 0: off.")] = 0,
    adversarial_settings: Annotated[Optional[Path], typer.Option(help="YAML of the other adversarial settings (site, lr, keep_weight, anchor, anchor_concept, anchor_tokens, unsafe_context, unsafe_context_order, inner, references, frames, height, width, sample_steps, guidance...; docs/adversarial-encoder.md).")] = None,
    work_dir: Annotated[Path, typer.Option(help="Cache folder for extract/factorize.")] = Path("vidunlearn-work"),
    no_cache: NoCacheOpt = False,
    revision: RevisionOpt = None,
    device: DeviceOpt = "cpu",
    dtype: DtypeOpt = "float32",
    offload: OffloadOpt = False,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the tensors that would change, checked against the model built on the meta device from its config (config.json; Open-Sora: its file's shapes); load no weights, write nothing.")] = False,
    force: ForceOpt = False,
    output_format: Annotated[Optional[str], typer.Option("--format", help="diffusers (pipeline folder, default), single-file (original Wan/ComfyUI keys) or lora (the exact rank-k delta). A single-file --model gives single-file.")] = None,
    save_dtype: Annotated[Optional[str], typer.Option(help="single-file/lora only: store as float32, bfloat16 or float16 (default: source dtype; lora: float32).")] = None,
    config: ConfigOpt = None,
    min_survival: Annotated[float, typer.Option(help="fp8 models: refuse when less than this share of the edit survives re-quantisation.")] = 0.5,
    eval_json: Annotated[Optional[list[Path]], typer.Option(help="eval.json of `vidunlearn eval`, attack.json of `vidunlearn attack`, or a JSON list of rows [{metric, base, edited}]: rendered as a table in the model card (repeatable).")] = None,
    collateral: Annotated[bool, typer.Option(help="Measure the edited layers' output change on 500 unrelated prompts, and a trained text encoder's change of their states (manifest, card).")] = True,
    push_to_hub: Annotated[Optional[str], typer.Option(help="Upload the result to this Hub repo (token from the HF_TOKEN environment variable).")] = None,
    private: Annotated[bool, typer.Option("--private", help="Create the Hub repo private.")] = False,
    hub_revision: Annotated[Optional[str], typer.Option(help="Hub branch to upload to (created from main if missing).")] = None,
    variant: VariantOpt = None,
    drop_other_weights: DropOtherWeightsOpt = False,
    copy: CopyOpt = False,
    base_model_id: BaseModelIdOpt = None,
    codes: Annotated[int, typer.Option(help="MoMask, --method lcr: replace the top K codes by each of LCR's two scores (docs/motion-benchmark.md).")] = 64,
    motion_samples: Annotated[int, typer.Option(help="MoMask, --method lcr: the model's samples a prompt that make the forget and retain sets.")] = 32,
    forget_motions: Annotated[Optional[Path], typer.Option(help="MoMask, --method lcr: a folder of .npy motion features to forget (HumanML3D's new_joint_vecs), instead of the model's samples.")] = None,
    retain_motions: Annotated[Optional[Path], typer.Option(help="MoMask, --method lcr: a folder of .npy motion features to keep (with --forget-motions).")] = None,
) -> None:
    """Write a standalone edited checkpoint: W' = W M at the edit sites (M remaps the concept's tokens; --mode project: M = I - lambda p p^T)."""
    from . import api
    from .adversarial_settings import load_settings
    from .card import CardOptions
    from .motion.apply import MotionOptions
    from .weightfiles import OutputFiles

    motion = MotionOptions(codes=codes, samples=motion_samples, forget_motions=forget_motions, retain_motions=retain_motions)
    recipe = api.EditRecipe(mode=mode, method=method, strength=strength, rank=rank, alpha=alpha, level=level,
                            subspace=subspace, sites=site, modules=modules, harden=harden,
                            adversarial=load_settings(adversarial_settings, adversarial), motion=motion)
    load = api.LoadOptions(revision=revision, config=config, variant=variant, device=device, dtype=dtype, offload=offload,
                           no_cache=no_cache)
    output = api.OutputOptions(format=output_format, save_dtype=save_dtype, min_survival=min_survival,
                               files=OutputFiles(copy=copy, drop_other_weights=drop_other_weights),
                               card=CardOptions(base_model_id=base_model_id), collateral=collateral,
                               eval_json=list(eval_json or []), push_to_hub=push_to_hub, private=private,
                               hub_revision=hub_revision)
    result = api.apply(model, out=out, pairs=pairs, refusal=refusal, work_dir=work_dir, recipe=recipe, load=load,
                       output=output, dry_run=dry_run, force=force, reporter=RichReporter())
    if result.dry_run:
        rows = [(e.component, e.weight.key, str(list(e.weight.shape)), e.weight.dtype, e.weight.file.name) for e in result.plan]
        stdout.print(table(f"dry run: {len(result.plan)} layers would change (nothing written)",
                            ("component", "tensor", "shape", "dtype", "shard"), rows,
                            caption=f"{result.checked} tensors of the shard headers match the model built on the meta "
                                    f"device from its config; planned in {result.seconds:.2f} s"))
        return
    assert result.manifest is not None
    rows = [(r["component"], r["tensor"], r["dtype"], f"{r['change_norm']:.4g}", f"{r['relative_change']:.2%}")
            for r in result.manifest["edited"]]  # a MoMask edit's rows too (component: vq, mask or res)
    stdout.print(table(f"edited {len(result.manifest['edited'])} tensors", ("component", "tensor", "dtype", "|dW|", "|dW|/|W|"),
                        rows, caption=f"-> {out} ({result.manifest['format']})"))
    report = result.manifest.get("collateral")
    if report:
        stdout.print(f"collateral: the edited layers' outputs change by {report['mean']:.2%} on average, at most "
                     f"{report['max']:.2%} ({escape(report['layer'])}), on {report['prompts']} unrelated prompts"
                     + (f"; the image path's {report['unmeasured']} edited layers are not measured (no unrelated images)"
                        if report.get("unmeasured") else ""),
                     highlight=False, soft_wrap=True)
        if report.get("text_encoder"):
            drift = report["text_encoder"]
            stdout.print(f"collateral: the trained text encoder changes those prompts' states by {drift['mean']:.2%}, at most "
                         f"{drift['max']:.2%} (\"{escape(drift['prompt'])}\")", highlight=False, soft_wrap=True)
    quant = result.manifest.get("quantization")
    if quant:
        say(f"fp8: {quant['min']:.1%} (worst tensor) / {quant['mean']:.1%} (mean) of the edit survives re-quantisation")
    if result.note:
        say(result.note)
    if result.pushed:
        say(f"pushed to {result.pushed}")


cli_eval.add_sample(app)


@app.command(epilog="Examples:\n\n  vidunlearn verify out/wan-noviolence\n\n"
             "  vidunlearn verify out/wan-noviolence --base wan2.1")
@handled
def verify(
    out: Annotated[Path, typer.Argument(help="Output folder of `apply` (with vidunlearn.json).")],
    base: Annotated[Optional[str], typer.Option(help="Base model (folder, single file, alias or Hub id) to compare every tensor with.")] = None,
) -> None:
    """Check an output against its manifest (SHA-256 of every file, format, no stray weight file) and, with --base, that it is exactly the base plus the recipe's edit."""
    from .verify import verify as run_verify

    result = run_verify(out, base)
    if result.changed:
        rows = [(c.file, c.tensor, str(c.shape), f"{c.change_norm:.4g}", str(c.rank)) for c in result.changed]
        stdout.print(table(f"changed tensors in {out}", ("file", "tensor", "shape", "|W'-W|", "rank of W'-W"), rows))
    say(f"ok: {result.files_checked} files match the manifest's SHA-256")
    if not result.base:
        return
    shape = {"bias": "biases only", "uce": "at most its number of erase rows",
             "remap": "at most its number of erase rows", "lcr": "only the codebook rows lcr.json lists",
             "uce (text path)": "only cond_emb.weight of the transformers"}.get(
        result.mode, f"rank {result.rank} each, W' = W - {result.strength:g} (W Q) Q^T, one Q per site")
    say(f"ok: the changes are exactly the recipe's ({result.mode} at {', '.join(result.sites)}; {shape})")
    if result.lora_modules_checked:
        say(f"ok: all {result.lora_modules_checked} LoRA modules match weights of {result.base}")
    else:
        say(f"ok: {len(result.changed)} tensors changed, all listed in the manifest; {result.identical_tensors} "
             f"tensors and {result.identical_files} other files identical to {result.base}")
        if result.encoder_tensors:
            say(f"ok: {result.encoder_tensors} trained text-encoder tensors changed as the manifest records "
                "(adversarial site text_encoder; the token table unchanged)")


cli_eval.add_eval(app)


@app.command(epilog="Example: vidunlearn convert --model zeroscope --out models/zeroscope_v2_576w\n\n"
             "  then: vidunlearn apply --model models/zeroscope_v2_576w --pairs pairs/violence.yaml --out out/zs-noviolence")
@handled
def convert(
    model: ModelOpt,
    out: Annotated[Path, typer.Option(help="Output pipeline folder (safetensors); pass it as --model to the other commands.")],
    revision: RevisionOpt = None,
    force: ForceOpt = False,
) -> None:
    """Rewrite a pipeline whose weights are pickle files (.bin) as safetensors, once. Tensors are read with torch.load(weights_only=True): a file that asks for anything else (code) is refused, nothing of it runs."""
    from .convert import convert as run_convert

    result = run_convert(model, out, revision=revision, force=force, reporter=RichReporter())
    for line in result.converted:
        say(f"converted {line}")
    for line in result.left_out:
        say(f"left out {line}")
    say(f"wrote {out}: {len(result.converted)} pickle file(s) converted, {result.kept} file(s) kept as they were")


@app.command(epilog="Examples:\n\n  vidunlearn tiny --out models/tiny-wan --texts-from pairs/violence.yaml\n\n"
                     "  vidunlearn tiny --family ltx --out /tmp/tiny-ltx --texts-from pairs/violence.yaml")
@handled
def tiny(
    out: Annotated[Path, typer.Option(help="Output pipeline folder.")],
    texts_from: Annotated[Optional[list[Path]], typer.Option(help="Pairs files whose words go into the tiny vocabulary.")] = None,
    family: Annotated[str, typer.Option(help="Model family: wan, ltx, cogvideox, ... (the layout of its Hub repos).")] = "wan",
    experts: Annotated[int, typer.Option(help="Wan only: 1 (Wan2.1 layout) or 2 (Wan2.2: transformer + transformer_2).")] = 1,
    seed: int = 0,
    force: ForceOpt = False,
) -> None:
    """Build a tiny random-weight pipeline of a family offline (plumbing smoke tests; it has learned nothing)."""
    from .fsutil import atomic_output, check_apart, check_writable
    from .pairs import load_pairs
    from .tiny import build_tiny_wan
    from .tiny_families import FAMILIES, build

    if family not in ("wan", *FAMILIES):
        raise VidunlearnError(f"unknown --family {family!r}", fix=f"use one of wan, {', '.join(FAMILIES)}")
    if experts not in (1, 2) or (experts == 2 and family != "wan"):
        raise VidunlearnError(f"--experts {experts} must be 1, or 2 for --family wan")
    check_writable(out, force=force)
    check_apart(out, [("the --texts-from file", f) for f in texts_from or []])
    texts = [t for f in texts_from or [] for c in [load_pairs(f)]
             for t in c.unsafe + c.safe + c.neutral + c.probes + c.retain]
    with atomic_output(out, directory=True, replace=force) as temp:
        if experts == 2:
            build_tiny_wan(temp, texts=texts or None, experts=experts, seed=seed)
        else:
            build(family, temp, texts=texts or None, seed=seed)
    say(f"wrote tiny {family} pipeline to {out}")


from . import cli_attack  # noqa: E402  (`vidunlearn attack`)
cli_attack.register(app)


def main() -> None:
    import signal

    signal.signal(signal.SIGTERM, terminate)
    app()


if __name__ == "__main__":
    main()
