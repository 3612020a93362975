"""The model card (README.md) of an edited checkpoint, built offline with huggingface_hub."""

from __future__ import annotations

from pathlib import Path

from .model import ModelSource

LIMITS = """## Limits

- The edit **reduces** how often the model renders the concept; it does not guarantee that it
  never does. Paraphrases, other languages and image conditioning may still reach it.
- It is a low-rank change to public weights: anyone holding the base model can compute the
  difference and revert it. It is not a security boundary.
- Evaluate on your own prompts before relying on it."""


def build_card(source: ModelSource, manifest: dict, out: Path) -> str:
    """README.md text: the base card's metadata kept (license etc.), ours added."""
    from huggingface_hub import ModelCard, ModelCardData

    data: dict = {}
    base_readme = source.path / "README.md"
    if base_readme.is_file():
        try:
            data = ModelCard.load(base_readme).data.to_dict()
        except Exception:  # a malformed base card is not our output's problem
            data = {}
    recipe = manifest["recipe"]
    concepts = [c["concept"] for c in recipe["concepts"]]
    base_id = source.repo_id or source.name
    tags = sorted(set(data.get("tags") or []) | {"vidunlearn", "concept-erasure", "text-to-video"} |
                  {f"unlearned-{c}" for c in concepts})
    data.update(base_model=base_id, base_model_relation="finetune", library_name="diffusers",
                pipeline_tag="text-to-video", tags=tags)
    rows = "\n".join(f"| {k} | {v} |" for k, v in [
        ("concepts removed", ", ".join(concepts)),
        ("method", ", ".join(sorted({c["method"] for c in recipe["concepts"]}))),
        ("rank (subspace k)", ", ".join(str(c["rank"]) for c in recipe["concepts"])),
        ("alpha", ", ".join(str(c["alpha"]) for c in recipe["concepts"])),
        ("edit mode", recipe["mode"]),
        ("strength (lambda)", recipe["strength"]),
        ("sites", ", ".join(recipe["sites"])),
        ("edited tensors", len(manifest["edited"])),
        ("base revision", source.revision or "local folder"),
        ("vidunlearn", manifest["tool_version"]),
    ])
    body = f"""# {out.name}

`{base_id}` with the concept(s) **{", ".join(concepts)}** removed by
[vidunlearn](https://github.com/vidunlearn/vidunlearn): a training-free, closed-form low-rank edit
of the weights that read the text conditioning (W' = W (I - lambda Q Q^T), Q the concept
directions estimated from unsafe/safe prompt pairs). It loads and runs exactly like the base
model, with no inference overhead.

| parameter | value |
|---|---|
{rows}

`vidunlearn.json` lists the full recipe, every changed tensor with its change norm, and the
SHA-256 of every file (check them with `sha256sum`).

{LIMITS}
"""
    return ModelCard.from_template(ModelCardData(**data), template_str="---\n{{ card_data }}\n---\n\n" + body).content
