"""Option types shared by several ``vidunlearn`` commands (typer ``Annotated`` aliases): one help
text per option, whichever command shows it."""

from __future__ import annotations

from typing import Annotated, Optional

import typer


def _aliases() -> str:
    from .adapters import ADAPTERS

    return ", ".join(name for adapter in ADAPTERS for name in adapter.aliases)


ModelOpt = Annotated[str, typer.Option("--model", "-m", help=f"Alias ({_aliases()}), Hub id, or local folder (a diffusers pipeline, or Open-Sora 2.0's own layout).")]
RevisionOpt = Annotated[Optional[str], typer.Option(help="Hub revision (branch, tag or commit) of --model.")]
DeviceOpt = Annotated[str, typer.Option(help="torch device for the text encoder / sampling, e.g. cpu, cuda.")]
OffloadOpt = Annotated[bool, typer.Option("--offload", help="Keep the text encoder in CPU memory and move each layer to --device only while it runs (a GPU smaller than the encoder).")]
DtypeOpt = Annotated[str, typer.Option(help="float32, bfloat16 or float16 (math on activations is always float32).")]
SiteOpt = Annotated[Optional[list[str]], typer.Option("--site", help="Edit site name (repeatable), or text, image, both (an image-to-video model's input streams); default: the family's default sites (image sites only where the pairs carry images).")]
MethodOpt = Annotated[str, typer.Option(help="remap (default: the remap factors of --mode remap, plus the cpca direction that --mode project reads), cpca (the paper's), pca, mean (plain mean difference) or cpca-us (Cov(U) - alpha Cov(S)).")]
RankOpt = Annotated[int, typer.Option(help="k: top eigenvectors kept in the contrastive subspace.")]
AlphaOpt = Annotated[float, typer.Option(help="Weight of the neutral prompts' covariance in the contrast (cpca); the weight of the preserved prompts (remap, uce). 0 to 1e6.")]
ConfigOpt = Annotated[Optional[str], typer.Option(help="For a single-file --model: diffusers Wan pipeline (folder or Hub id) giving the tokenizer, text encoder and transformer config; default: inferred from tensor shapes.")]
LevelOpt = Annotated[str, typer.Option(help="Difference samples per unsafe token ('token') or per pair ('pair').")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing --out.")]
FileForceOpt = Annotated[bool, typer.Option("--force", help="Replace an existing --out that is not a matching cache (the default path, a cache, is replaced when stale).")]
NoCacheOpt = Annotated[bool, typer.Option("--no-cache", help="Recompute extract and factorize without reading --work-dir (a cache anyone else could have written); the fresh results still replace it.")]
VariantOpt = Annotated[Optional[str], typer.Option(help="Edit this weights variant of the denoisers, e.g. fp16 (diffusion_pytorch_model.fp16*.safetensors; diffusers' variant=); default: the files without a variant.")]
DropOtherWeightsOpt = Annotated[bool, typer.Option("--drop-other-weights", help="Leave out of the output every weight file of a denoiser that is not edited (other variants, .bin, .ckpt, ...) instead of refusing.")]
CopyOpt = Annotated[bool, typer.Option("--copy", help="Copy the files that are not edited (a reflink where the file system can) instead of hard-linking them: writing into a hard link changes the base model too.")]
BaseModelIdOpt = Annotated[Optional[str], typer.Option(help="Hub id of the base model for the card's base_model (default: --model's Hub id or alias, else the base card's base_model; a local base without one is left out).")]
HtmlOpt = Annotated[bool, typer.Option("--html", help="Also write report.html: metrics, base and edited videos side by side, the recipe and hashes, in one self-contained file.")]
