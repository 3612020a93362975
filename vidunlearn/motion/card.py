"""The model card (README.md) of an edited MoMask model: what changed, how to load it with MoMask's
own script and with safetensors, the evaluation rows given with ``--eval-json``, and the limits."""

from __future__ import annotations

from pathlib import Path

from ..adapters.momask import MOMASK_CODE, MoMaskRuns
from ..card import CardOptions, eval_section

LIMITS = """## Limits

- The edit **reduces** how often the model produces the concept's motions; it does not guarantee
  that it never does. Unseen wordings may still reach it (see the paraphrase leak above, if measured).
- It changes public weights: anyone holding the base model can compute the difference and revert it.
- LCR changes what some codes decode to, for every prompt: motions of other prompts that use those
  codes change too. Evaluate on your own prompts before relying on it."""


def _what(manifest: dict) -> str:
    recipe = manifest["recipe"]
    if recipe["method"] == "lcr":
        rows = sum(len(r.get("rows", [])) for r in manifest["edited"])
        sets = recipe["sets"]
        source = (f"the model's own samples ({sets['samples']} a prompt) for the {sets['unsafe_prompts']} unsafe "
                  f"prompts (forget set) and the {sets['kept_prompts']} safe and neutral prompts (retain set)"
                  if "samples" in sets else "the motions of the folders given (forget and retain sets)")
        return (f"**Latent Code Replacement** (De Matteis, Migliarini et al., *Human Motion Unlearning*, "
                f"arXiv 2503.18674): the RVQ-VAE codes of layer(s) {recipe['layers']} used more by {source} "
                f"were ranked by the authors' two scores; the top {recipe['codes']} of each ({rows} codes in all) "
                f"now decode to one safe code (rule `{recipe['target']}`) plus Gaussian noise of {recipe['noise']:g} "
                f"x the codebook's std. The transformers are unchanged: they still predict the same tokens, which "
                f"now decode to other motion. The codes and counts are in `lcr.json`.")
    return (f"**UCE on the text path** (closed form): `cond_emb.weight` of the masked and residual transformers now "
            f"sends each of the {recipe['pairs']} unsafe prompts' text vectors onto its safe twin's and keeps "
            f"{recipe['kept_prompts']} safe and neutral prompts (preserve weight {recipe['preserve_weight']:g})"
            + (f", hardened by {recipe['harden']} round(s) of RECE (the text vectors that still gave each unsafe "
               f"prompt's outputs were erased in turn). " if recipe.get("harden") else ". ")
            + "Details in `uce.json`.")


def motion_card(manifest: dict, out: Path, runs: MoMaskRuns, options: CardOptions = CardOptions(),
                own_encoder: str | None = None) -> str:
    """``own_encoder``: the text encoder a model names in its ``opt.txt`` when it is not MoMask's CLIP
    (the benchmark model): the card then says that MoMask's scripts do not run it."""
    concepts = ", ".join(c["concept"] for c in manifest["recipe"]["concepts"])
    title = options.repo_id or f"{Path(manifest['base']['path']).name} without {concepts}"
    header = ["---", "tags:", "- text-to-motion", "- momask", "- concept-erasure", "- vidunlearn"]
    if options.base_model_id:
        header.append(f"base_model: {options.base_model_id}")
    header.append("---")
    table = ["| network | tensor | dtype | relative change | rank of W'-W |", "|---|---|---|---|---|"]
    table += [f"| {r['component']} | `{r['tensor']}` | {r['dtype']} | {r['relative_change']:.2%} | {r['rank']} |"
              for r in manifest["edited"]]
    d = runs.dataset
    own = (f"\n**This model is not CLIP-conditioned**: its text encoder is {own_encoder} and its motion features are "
           "not HumanML3D's 263, so MoMask's scripts do not run it; `vidunlearn.motion.momask.load_runs` loads it "
           "and `vidunlearn eval` samples it." if own_encoder else "")
    files = ", ".join(f"`{rel}`" for rel in manifest["safetensors"].values())
    loading = f"""## Loading

With MoMask's own code ({MOMASK_CODE}), from its repository root, with this folder's `checkpoints/` as
`./checkpoints` (MoMask's `opt.txt` files name `./checkpoints`, and its loaders read them):

```bash
ln -s /path/to/{out.name}/checkpoints checkpoints
python gen_t2m.py --gpu_id 0 --dataset_name {d} --name {runs.mask} --res_name {runs.res} --vq_name {runs.vq} \\
    --use_res_model --text_path prompts.txt --ext edited
```

(`prompts.txt`: one `caption#length` a line; MoMask's length estimator is not part of this folder.){own}
The same weights as safetensors (the state dicts of the three networks): {files}.
"""
    body = [f"# {title}", "",
            f"This is the MoMask model `{manifest['base']['path']}` with **{concepts}** removed by a closed-form "
            f"edit made with vidunlearn {manifest['tool_version']}.", "", "## What changed", "", _what(manifest), "",
            *table, "", loading, eval_section(manifest.get("eval"), manifest.get("eval_settings"), None), LIMITS, ""]
    return "\n".join(header + [""] + body)
