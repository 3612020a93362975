"""UCE on the motion model's text path: the comparison to LCR that the Human Motion Unlearning paper
(arXiv 2503.18674) runs, and issue 22 asks for side by side.

In MoMask the text vector (CLIP's 512 numbers; here MiniLM made CLIP-shaped, :mod:`.text`) enters
each transformer through one Linear, ``cond_emb`` (clip_dim -> latent_dim), in the masked and in
the residual transformer. UCE (Gandikota et al. 2024) rewrites each such W in closed form so that
an unsafe caption's vector c_u gives what its safe twin c_s gave, and keep captions c_k give what
they gave:

    W' = (sum W c_s c_u^T + lam sum W c_k c_k^T + mu W)(sum c_u c_u^T + lam sum c_k c_k^T + mu I)^-1

This is the video code's UCE (:func:`vidunlearn.edit.uce_factors` and ``uce_weight``, reused, not
copied), including its ridge mu (``UCE_RIDGE`` x the mean eigenvalue of the data term) which
keeps W on the directions no caption spans: 32 + 88 vectors span at most 120 of the 512 input
dimensions (columns 384-511 never see a non-zero input), so the formula without mu is singular.
The bias is left alone, so the unconditional branch of classifier-free guidance (a zero text
vector -> the bias) is unchanged.

Sets (:func:`uce_sets`): unsafe = the 32 violent training captions; each one's safe twin is the
same subject and template doing ``world.COUNTERPARTS``' action (kick -> walk forward, punch ->
wave with the same hand: "a man kicks with his right leg" -> "a man walks forward"), as
``world.pairs`` does for template 0; keep = the 88 safe training captions (the twins are among
them). The paraphrases are never seen.

:func:`write_patched` copies a MoMask folder and rewrites only the two transformer checkpoints, in
which only ``cond_emb.weight`` changes (``ep``, ``total_it`` and every other tensor kept); it is
loaded back with ``momask.load_model`` (``torch.load(..., weights_only=True)``).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from ..adapters.momask import find_runs
from ..edit import UCE_RIDGE, uce_factors, uce_weight
from ..errors import ModelError
from . import world
from .momask import MotionModel
from .momask import write_patched as patch_folder

STAGES = {"mask": "t2m_transformer", "res": "res_transformer"}  # stage -> checkpoint key
WEIGHT = "cond_emb.weight"


@dataclass
class UCEResult:
    """What a UCE edit did, for ``uce.json`` beside the patched checkpoints."""

    n_unsafe: int
    n_keep: int
    preserve_weight: float
    strength: float
    ridge: float
    pairs: list[tuple[str, str]]
    change: dict[str, float] = field(default_factory=dict)  # stage -> ||W' - W||_F / ||W||_F
    harden: int = 0  # rounds of RECE
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)


def safe_twin(prompt_labels: world.Labels, subject: int, template: int) -> str:
    """The safe twin caption of a violent caption (same subject and template)."""
    action = world.COUNTERPARTS[prompt_labels.action]
    one_limb = world.VARIANTS[action] == ("left", "right")
    variant = prompt_labels.variant if one_limb else world.VARIANTS[action][0]
    return world.caption(world.Labels(action, variant), subject=subject,
                         template=min(template, len(world.TEMPLATES[action]) - 1))


def uce_sets() -> tuple[list[tuple[str, str]], list[str]]:
    """(unsafe caption, safe twin) for every violent training caption (32), and the keep captions
    (the 88 safe training captions)."""
    pairs = [(world.caption(lab, subject=s, template=t), safe_twin(lab, s, t))
             for lab in world.all_labels(world.VIOLENT_ACTIONS)
             for s in range(len(world.SUBJECTS)) for t in range(len(world.TEMPLATES[lab.action]))]
    keep = [p.text for p in world.retain_prompts()]
    return pairs, keep


def uce_weights(model: MotionModel, pairs: list[tuple[str, str]], keep: list[str], *,
                preserve_weight: float = 1.0, strength: float = 1.0, ridge: float = UCE_RIDGE, harden: int = 0
                ) -> tuple[dict[str, torch.Tensor], UCEResult]:
    """The new ``cond_emb.weight`` of each transformer (stage -> (latent_dim, clip_dim)).
    ``harden``: rounds of RECE (Gong et al. 2024), the paper's second comparison: after each solve,
    the text vector c* that still gives each unsafe caption's outputs through both edited layers
    (:func:`vidunlearn.harden.rece_inputs`, over S = the sum of the base layers' W^T W) joins the
    erase set with that caption's twin as its target, and UCE is solved again."""
    if not pairs or not keep:
        raise ModelError("UCE needs unsafe/safe pairs and keep captions", where="motion uce")
    from ..harden import rece_inputs, site_gram

    unsafe = model.encode_text([u for u, _ in pairs])
    safe = model.encode_text([s for _, s in pairs])
    kept = model.encode_text(keep)
    erase, target = unsafe, safe
    left, right = uce_factors(erase, target, kept, preserve_weight, ridge=ridge)
    gram = site_gram(getattr(model, stage).cond_emb.weight.detach() for stage in STAGES)
    for _ in range(harden):
        found = rece_inputs(strength * left, right, gram, [unsafe])[0]
        erase, target = torch.cat([erase, found]), torch.cat([target, safe])
        left, right = uce_factors(erase, target, kept, preserve_weight, ridge=ridge)
    result = UCEResult(len(pairs), len(keep), preserve_weight, strength, ridge, list(pairs), harden=harden)
    weights = {}
    for stage in STAGES:
        w = getattr(model, stage).cond_emb.weight.detach()
        weights[stage] = uce_weight(w, left, right, strength)
        result.change[stage] = float((weights[stage] - w).norm() / w.norm())
    result.notes.append("only cond_emb.weight of the masked and residual transformers changes; biases kept")
    return weights, result


def apply_weights(model: MotionModel, weights: dict[str, torch.Tensor]) -> None:
    """Put edited ``cond_emb`` weights into a loaded model (in memory)."""
    with torch.no_grad():
        for stage, w in weights.items():
            getattr(model, stage).cond_emb.weight.copy_(w)


def write_patched(src: Path, dst: Path, model: MotionModel, weights: dict[str, torch.Tensor],
                  result: UCEResult | None = None) -> Path:
    """Copy the MoMask folder ``src`` to ``dst`` with the masked and residual transformers' edited
    ``cond_emb.weight`` (:func:`vidunlearn.motion.momask.write_patched`: everything else byte for
    byte, atomically)."""
    runs = find_runs(Path(src))
    patches = {(stage, runs.names[stage]): {WEIGHT: weights[stage]} for stage in STAGES}
    return patch_folder(src, dst, patches, ("uce.json", result.to_json()) if result is not None else None, runs.dataset)
