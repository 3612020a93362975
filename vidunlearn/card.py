"""The model card (README.md) of an edited checkpoint, built offline with huggingface_hub.

``base_model:`` is written only as a Hub repo id (the Hub rejects a local path there): from
``--base-model-id``, the model's own Hub id (or the id an alias resolves to), or the base card's
``base_model``; otherwise it is left out and :attr:`Card.note` says why. The card links only to
files of the output itself; its title is the Hub repo id when pushing, else "<base> without <concepts>".
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from .model import ModelSource

LIMITS = """## Limits

- The edit **reduces** how often the model renders the concept; it does not guarantee that it
  never does. Paraphrases, other languages and image conditioning may still reach it.
- It is a low-rank change to public weights: anyone holding the base model can compute the
  difference and revert it. It is not a security boundary.
- Evaluate on your own prompts before relying on it."""


# what each edit mode writes, in one line of the card (docs/method.md)
FORMULAS = {
    "remap": "W' = W M, M = I + lambda A B^T sending every token of the unsafe prompts of the pairs onto the "
             "same token of one consistent safe target prompt, and keeping the neutral and safe prompts",
    "project": "W' = W (I - lambda Q Q^T), Q the concept directions estimated from unsafe/safe prompt pairs",
    "replace": "W' = W (I - lambda Q Q^T) and b' = b + lambda W Q Q^T m, Q the concept directions estimated "
               "from unsafe/safe prompt pairs, m their safe mean",
    "uce": "UCE's closed form, W' = W + lambda (W A) B^T, sending the unsafe prompts onto their safe twins",
    "bias": "b' = b - lambda W r, r the refusal vector estimated from unsafe/safe prompt pairs",
}
USAGE = {
    "diffusers": "It loads and runs exactly like the base model, with no inference overhead.",
    "single-file": "It loads and runs exactly like the base model, with no inference overhead.",
    "lora": "This is the exact edit as a LoRA of rank k (W' = W + B A): load it on the base model; "
            "merging it (`fuse_lora()`, or peft's `merge()` where the card loads it with peft) removes the inference overhead.",
}


@dataclass(frozen=True)
class CardOptions:
    """What only the user can tell the card: ``--base-model-id`` and the ``--push-to-hub`` repo id."""

    base_model_id: str | None = None
    repo_id: str | None = None


@dataclass(frozen=True)
class Card:
    text: str           # README.md
    base_model: str | None
    note: str | None    # one line for stdout when base_model is left out


def is_hub_id(value: object) -> bool:
    """``owner/name`` as the Hub spells repo ids, and not a folder here (``models/x`` is both)."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    if not isinstance(value, str) or value.count("/") != 1 or Path(value).expanduser().exists():
        return False
    try:
        validate_repo_id(value)
    except HFValidationError:
        return False
    return True


def base_model_id(source: ModelSource, base_card: dict, options: CardOptions) -> tuple[str | None, str | None]:
    """(Hub id of the base, None) or (None, why there is none): ``--base-model-id``, the model's
    Hub id or resolved alias, then the base card's own ``base_model``."""
    if options.base_model_id:
        return options.base_model_id, None
    if source.repo_id and is_hub_id(source.repo_id):
        return source.repo_id, None
    if is_hub_id(base_card.get("base_model")):
        return base_card["base_model"], None
    return None, (f"card: no base_model (the base {source.name} is local and its card names no Hub id); "
                  "pass --base-model-id OWNER/NAME to record it")


def _base_card(source: ModelSource) -> dict:
    from huggingface_hub import ModelCard

    base_readme = source.path / "README.md"
    if not base_readme.is_file():
        return {}
    try:
        return ModelCard.load(base_readme).data.to_dict()
    except Exception:  # a malformed base card is not our output's problem
        return {}


def title(source: ModelSource, base_model: str | None, concepts: list[str], options: CardOptions) -> str:
    """The Hub repo id when pushing, else "<base> without <concepts>" (never the output folder's name)."""
    if options.repo_id:
        return options.repo_id
    return f"{base_model or Path(source.name).name} without {', '.join(concepts)}"


def build_card(source: ModelSource, manifest: dict, out: Path, options: CardOptions = CardOptions()) -> Card:
    """README.md text: the base card's metadata kept (license etc.), ours added."""
    from huggingface_hub import ModelCard, ModelCardData

    data = _base_card(source)
    recipe = manifest["recipe"]
    concepts = [c["concept"] for c in recipe["concepts"]]
    base_model, note = base_model_id(source, data, options)
    base_id = base_model or source.repo_id or source.name
    tags = sorted(set(data.get("tags") or []) | {"vidunlearn", "concept-erasure", "text-to-video"} |
                  {f"unlearned-{c}" for c in concepts})
    output_format = manifest.get("format") or "diffusers"
    data.pop("base_model", None)
    data.pop("base_model_relation", None)
    if base_model:
        data.update(base_model=base_model, base_model_relation="adapter" if output_format == "lora" else "finetune")
    data.update(library_name="diffusers", pipeline_tag="text-to-video", tags=tags)
    rank = recipe.get("edit_rank") or ", ".join(str(c["rank"]) for c in recipe["concepts"])
    rows = "\n".join(f"| {k} | {v} |" for k, v in [
        ("concepts removed", ", ".join(concepts)),
        ("method", ", ".join(sorted({c["method"] for c in recipe["concepts"]}))),
        ("rank of the edit" if recipe.get("edit_rank") else "rank (subspace k)", rank),
        ("alpha", ", ".join(str(c["alpha"]) for c in recipe["concepts"])),
        ("edit mode", recipe["mode"]),
        ("strength (lambda)", recipe["strength"]),
        ("sites", ", ".join(recipe["sites"])),
        *([("hardening (RECE, closed form)", f"{recipe['harden']} rounds")] if recipe.get("harden") else []),
        *([("adversarial training", f"{recipe['adversarial']['steps']} steps against the input soft-prompt attack "
                                    f"({_trained_part(manifest)}; not training-free)")] if recipe.get("adversarial") else []),
        ("output format", manifest.get("format") or "diffusers"),
        ("edited tensors", len(manifest["edited"])),
        ("base revision", source.revision or "local folder"),
        ("vidunlearn", manifest["tool_version"]),
    ])
    body_eval = eval_section(manifest.get("eval"), manifest.get("eval_settings"), manifest.get("collateral"))
    quant = manifest.get("quantization")
    if quant:
        body_eval += (f"\nfp8: the edit was computed in float32 and re-quantised; the stored change keeps "
                      f"{quant['min']:.1%} (worst tensor) to {quant['mean']:.1%} (mean) of the intended change.\n")
    body = f"""# {title(source, base_model, concepts, options)}

`{base_id}` with the concept(s) **{", ".join(concepts)}** removed by vidunlearn
{manifest["tool_version"]}: a training-free, closed-form low-rank edit of the weights that read the
text conditioning ({FORMULAS.get(recipe["mode"], recipe["mode"])}). {USAGE[output_format]}

| parameter | value |
|---|---|
{rows}

{body_eval}
{loading_snippet(source.adapter, output_format, _config_id(manifest, base_id), out.name,
                 sorted(manifest.get("actions") or {}), fp8=bool(quant) and output_format == "single-file",
                 variant=source.variant)}

[`vidunlearn.json`](vidunlearn.json) lists the full recipe, every changed tensor with its change
norm, and the SHA-256 of every file (check them with `vidunlearn verify` or `sha256sum`).

{LIMITS}
"""
    text = ModelCard.from_template(ModelCardData(**data), template_str="---\n{{ card_data }}\n---\n\n" + body).content
    return Card(text, base_model, note)


def _config_id(manifest: dict, base_id: str) -> str:
    """Where diffusers finds the config: the base, or for a single-file base its --config."""
    config = (manifest.get("base") or {}).get("config") or {}
    return config.get("repo_id") or config.get("name") or base_id


def collateral_line(report: dict | None) -> str:
    """One sentence on the edit's collateral (vidunlearn.collateral), or "" when not measured."""
    if not report:
        return ""
    return (f"\nCollateral: on {report['prompts']} unrelated everyday prompts the edited layers' outputs change by "
            f"{report['mean']:.1%} on average (at most {report['max']:.1%}, in `{report['layer']}`), measured "
            f"without rendering (relative change of W x + b over every real token)."
            + (f" The image path's {report['unmeasured']} edited layers are not in this figure (no unrelated images)."
               if report.get("unmeasured") else "")
            + (f" The trained text encoder changes these prompts' states by {report['text_encoder']['mean']:.1%} (at most "
               f"{report['text_encoder']['max']:.1%}, on \"{report['text_encoder']['prompt']}\") before any edited layer "
               f"reads them." if report.get("text_encoder") else "") + "\n")


def eval_section(rows: list[dict] | None, settings: str | None, collateral: dict | None) -> str:
    """"## Evaluation": the eval rows (metric, base, edited) with the settings they were measured
    at, then the collateral sentence; "" when neither was measured."""
    if not rows and not collateral:
        return ""
    lines = ["## Evaluation", ""]
    if rows:
        cell = lambda v: "-" if v is None else f"{v:.4g}" if isinstance(v, float) else str(v)
        lines += ["| metric | base | edited |", "|---|---|---|"]
        lines += [f"| {row['metric']} | {cell(row['base'])} | {cell(row['edited'])} |" for row in rows]
        lines += ["", f"Measured with {settings}." if settings else "Settings: as given in the --eval-json file."]
    return "\n".join(lines) + "\n" + collateral_line(collateral)


def loading_snippet(adapter, output_format: str, base_id: str, name: str, files: list[str], fp8: bool = False,
                    variant: str | None = None) -> str:
    """How to load this output with diffusers (for the card), with the family's own classes."""
    pipeline, denoiser = adapter.pipeline_class, adapter.denoiser_class
    first = adapter.denoisers[0]
    if output_format == "lora" and adapter.lora_loading:
        from .formats import LORA_FILE

        code = adapter.lora_loading.format(pipeline=pipeline, base_id=base_id, name=name, file=LORA_FILE)
    elif output_format == "lora":
        code = (f'pipe = {pipeline}.from_pretrained("{base_id}")\n'
                f'pipe.load_lora_weights("{name}")  # the folder with pytorch_lora_weights.safetensors')
        for component, line in adapter.card_extra.items():
            file = f"pytorch_lora_weights_{component}.safetensors"
            if file in files:
                code += "\n" + line.format(name=name, file=file)
    elif output_format == "single-file" and adapter.single_file_loading:  # no diffusers class reads it
        single = next((f for f in files if f.endswith(".safetensors")), f"{first}.safetensors")
        return f"## Loading\n\n```python\n{adapter.single_file_loading.format(name=name, file=single)}\n```\n"
    elif output_format == "single-file":
        single = next((f for f in files if f.endswith(".safetensors")), f"{first}.safetensors")
        code = (f'{first} = {denoiser}.from_single_file("{name}/{single}",\n'
                f'    config="{base_id}", subfolder="{first}")\n'
                f'pipe = {pipeline}.from_pretrained("{base_id}", {first}={first})')
        extra = [c for c in adapter.denoisers[1:] if f"{c}.safetensors" in files]
        if extra:
            code += f"  # load {extra[0]}.safetensors the same way (subfolder=\"{extra[0]}\")"
    else:
        code = f'pipe = {pipeline}.from_pretrained("{name}"' + (f', variant="{variant}")' if variant else ")")
    if fp8:
        return ("## Loading\n\nAn fp8 checkpoint with per-tensor `scale_weight` tensors: load it where it came from "
                "(e.g. ComfyUI's \"Load Diffusion Model\"). diffusers' `from_single_file` ignores the scales; "
                "in diffusers, use a `--format lora` output on the full-precision base instead.\n")
    return f"## Loading\n\n```python\nfrom diffusers import {pipeline}, {denoiser}\n\n{code}\n```\n"


def _trained_part(manifest: dict) -> str:
    """What ``apply --adversarial`` trained, in the card's words."""
    if manifest.get("text_encoder_edit"):
        return (f"the text encoder's layers trained, {len(manifest['text_encoder_edit'])} tensors; the remap closed-form; "
                "this folder carries its own text encoder: load it whole")
    return "the remap's factors trained"
