"""Latent Code Replacement (LCR; De Matteis, Migliarini et al., "Human Motion Unlearning",
arXiv 2503.18674) on a MoMask-layout model: find the base-layer RVQ codes that violent motions use
and safe ones do not, and overwrite those codebook rows with a safe code plus noise.

What follows the authors' code (``Mamiglia/hmu``, ``src/methods/lcr.py``, read for this port; none
of it copied):

- counting: for each motion, the *set* of codes it uses on a layer (``np.unique``), summed over the
  motions of a set: ``count[c]`` = in how many motions code c appears (:func:`count_codes`);
- two scores, top-k of each, and their union (:func:`select_codes`):
  ``raw = f / (r + 1e-8)`` (count ratio) and
  ``rel = (f / sum f) / (r / sum r + 1e-8)`` (ratio of the sets' relative frequencies);
  the authors sweep k = 8, 16, 32, 64 and prune layer 0 only by default;
- replacement (:func:`replace_rows`): every selected row becomes one target code (their default is
  code index 0, drawn at random again while it is itself selected) plus Gaussian noise of
  ``alpha`` (default 1) times the standard deviation of that layer's whole codebook.

Ours, where the authors' code does not apply here:

- the motions are the model's own samples for the violent and safe training captions, kept only
  when the judge confirms them (forget: kick or punch; retain: the caption's own action), and are
  re-encoded with the RVQ-VAE (the authors encode dataset motions; HumanML3D is not here);
- a code that no forget motion uses is never selected (a guard for k larger than the number of
  codes the forget set uses; the authors' top-k would then pick unused codes);
- ``target="retain-top"`` (a variant): the code that appears in the most retain motions and is
  not selected, instead of the authors' index 0.

:func:`write_patched` copies a model folder and rewrites only the RVQ-VAE checkpoint, in which only
``quantizer.layers.{l}.codebook`` of the edited layers change; everything is read with
``torch.load(..., weights_only=True)``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..errors import ModelError
from . import world
from .features import to_features
from .judge import judge_motion
from ..adapters.momask import find_runs
from .momask import MotionModel, UNIT_LENGTH, decode, sample_tokens
from .momask import write_patched as patch_folder

EPS = 1e-8  # the authors' smoothing in both scores


@dataclass
class LCRResult:
    """What an LCR edit did: per edited layer, the codes, the target row and both sets' counts."""

    layers: list[int]
    codes: dict[int, list[int]]
    target: dict[int, int]
    forget_counts: dict[int, list[int]]  # per selected code, in how many forget motions it appears
    retain_counts: dict[int, list[int]]
    n_forget: int
    n_retain: int
    k: int
    alpha: float
    target_rule: str
    seed: int
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=1, sort_keys=True)


def encode_motions(model: MotionModel, motions: list[np.ndarray]) -> list[np.ndarray]:
    """Joint positions (F, 22, 3) -> RVQ code indices (F' // 4, Q) per motion, int64, using the
    model's feature normalisation. F must be at least 2 * 4 + 1 frames."""
    return encode_features(model, [to_features(motion) for motion in motions])


def encode_features(model: MotionModel, features: list[np.ndarray], where: list[str] | None = None) -> list[np.ndarray]:
    """Motion features (F, dim_pose), not normalised (HumanML3D's ``new_joint_vecs``) -> RVQ code
    indices (F // 4, Q) per motion, int64. ``where``: a name per motion for the errors."""
    out = []
    with torch.no_grad():
        for number, raw in enumerate(features):
            name = where[number] if where else f"motion {number}"
            if raw.ndim != 2 or raw.shape[1] != model.mean.shape[-1]:
                raise ModelError(f"motion features of shape {tuple(raw.shape)}, the model reads (frames, "
                                 f"{model.mean.shape[-1]})", where=name, fix="pass the dataset's feature vectors")
            feats = (raw - model.mean) / model.std
            usable = (len(feats) // UNIT_LENGTH) * UNIT_LENGTH
            if usable < 2 * UNIT_LENGTH or not np.isfinite(feats[:usable]).all():
                raise ModelError(f"motion too short to encode or not finite ({len(raw)} frames)", where=name,
                                 fix=f"pass motions of at least {2 * UNIT_LENGTH} frames")
            ids, _ = model.vq.encode(torch.from_numpy(feats[None, :usable]).float())
            out.append(ids[0].numpy().astype(np.int64))
    return out


def count_codes(code_seqs: list[np.ndarray], layer: int, nb_code: int) -> np.ndarray:
    """In how many motions each code of ``layer`` appears (a motion counts a code once)."""
    counts = np.zeros(nb_code, dtype=np.int64)
    for seq in code_seqs:
        used = np.unique(seq[:, layer])
        used = used[(used >= 0) & (used < nb_code)]
        counts[used] += 1
    return counts


def code_scores(forget: np.ndarray, retain: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The authors' two scores: count ratio and ratio of relative frequencies."""
    f, r = forget.astype(np.float64), retain.astype(np.float64)
    raw = f / (r + EPS)
    rel = (f / (f.sum() + EPS)) / (r / (r.sum() + EPS) + EPS)
    return raw, rel


def select_codes(forget: np.ndarray, retain: np.ndarray, k: int) -> list[int]:
    """Union of the top-k codes by each score (ties by index), never a code no forget motion uses."""
    if k < 1:
        raise ModelError(f"k must be at least 1, got {k}", where="lcr select")
    raw, rel = code_scores(forget, retain)
    chosen: set[int] = set()
    for score in (raw, rel):
        order = np.argsort(-score, kind="stable")
        chosen.update(int(c) for c in order[:k] if forget[c] > 0)
    return sorted(chosen)


def pick_target(codes: list[int], nb_code: int, rule: str, retain: np.ndarray | None,
                rng: np.random.Generator) -> int:
    """The row every selected code becomes. ``"index0"``: the authors' default (code 0, drawn at
    random again while it is selected); ``"retain-top"``: the code in the most retain motions."""
    banned = set(codes)
    if rule == "index0":
        target = 0
        while target in banned:
            target = int(rng.integers(nb_code))
        return target
    if rule == "retain-top":
        if retain is None:
            raise ModelError("retain-top needs retain counts", where="lcr target")
        for c in np.argsort(-retain, kind="stable"):
            if int(c) not in banned:
                return int(c)
    raise ModelError(f"unknown target rule {rule!r}", where="lcr target", fix="index0 or retain-top")


def replace_rows(codebook: torch.Tensor, codes: list[int], target: int, alpha: float,
                 generator: torch.Generator) -> torch.Tensor:
    """A copy of ``codebook`` whose ``codes`` rows are ``codebook[target]`` plus Gaussian noise of
    ``alpha`` times the std of the whole (unedited) codebook. Other rows are bit-identical."""
    out = codebook.detach().clone()
    if not codes:
        return out
    std = codebook.float().std()
    noise = torch.randn((len(codes), codebook.shape[1]), generator=generator, dtype=torch.float32)
    rows = codebook[target].float()[None] + noise * std * alpha
    out[codes] = rows.to(codebook.dtype)
    return out


def sample_motions(model: MotionModel, prompts: list[world.Prompt], per_prompt: int, seed: int,
                   batch: int = 64, progress: Callable[[int], None] | None = None
                   ) -> list[tuple[world.Prompt, np.ndarray, str]]:
    """``per_prompt`` generated motions a prompt (length 40-80 frames drawn from ``seed``):
    (prompt, joint positions, judged action). ``progress(n)`` after each batch of n motions."""
    items = [p for p in prompts for _ in range(per_prompt)]
    out = []
    for start, ids, tokens in sample_tokens(model, [p.text for p in prompts], per_prompt, seed, batch):
        for prompt, motion in zip(items[start:start + len(tokens)], decode(model, ids, tokens)):
            out.append((prompt, motion, judge_motion(motion).action))
        if progress is not None:
            progress(len(tokens))
    return out


def collect_sets(model: MotionModel, per_prompt: int, seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Forget and retain motions: the model's samples for the violent / safe training captions,
    kept when the judge reads kick or punch / the caption's own action."""
    forget = [m for _, m, a in sample_motions(model, world.forget_prompts(), per_prompt, seed)
              if a in world.VIOLENT_ACTIONS]
    retain = [m for p, m, a in sample_motions(model, world.retain_prompts(), per_prompt, seed)
              if a == p.labels.action]
    return forget, retain


def lcr(model: MotionModel, forget: list[np.ndarray], retain: list[np.ndarray], *, k: int = 16,
        layers: tuple[int, ...] = (0,), alpha: float = 1.0, target_rule: str = "index0",
        seed: int = 0) -> tuple[dict[int, torch.Tensor], LCRResult]:
    """Select codes and build the edited codebooks {layer: (nb_code, code_dim)}; the model is not
    changed. Codes are counted per layer on the same forget / retain motions."""
    if not forget or not retain:
        raise ModelError(f"need forget and retain motions, got {len(forget)} and {len(retain)}", where="lcr")
    return lcr_codes(model, encode_motions(model, forget), encode_motions(model, retain), k=k, layers=layers,
                     alpha=alpha, target_rule=target_rule, seed=seed)


def lcr_codes(model: MotionModel, f_codes: list[np.ndarray], r_codes: list[np.ndarray], *, k: int = 16,
              layers: tuple[int, ...] = (0,), alpha: float = 1.0, target_rule: str = "index0",
              seed: int = 0) -> tuple[dict[int, torch.Tensor], LCRResult]:
    """:func:`lcr` on code sequences already known (T, Q) a motion: encoded motions, or the
    model's own token ids for the forget and retain prompts."""
    if not f_codes or not r_codes:
        raise ModelError(f"need forget and retain motions, got {len(f_codes)} and {len(r_codes)}", where="lcr")
    bad = [layer for layer in layers if not 0 <= layer < len(model.vq.quantizer.layers)]
    if bad:
        raise ModelError(f"no quantizer layer {bad[0]} (the model has {len(model.vq.quantizer.layers)})", where="lcr",
                         fix="edit layer 0, the base layer, as the authors do")
    rng = np.random.default_rng(seed)
    generator = torch.Generator().manual_seed(seed)
    books, result = {}, LCRResult(list(layers), {}, {}, {}, {}, len(f_codes), len(r_codes), k, alpha, target_rule, seed)
    for layer in layers:
        codebook = model.vq.quantizer.layers[layer].codebook
        nb_code = codebook.shape[0]
        fc, rc = count_codes(f_codes, layer, nb_code), count_codes(r_codes, layer, nb_code)
        codes = select_codes(fc, rc, k)
        target = pick_target(codes, nb_code, target_rule, rc, rng)
        books[layer] = replace_rows(codebook, codes, target, alpha, generator)
        result.codes[layer], result.target[layer] = codes, target
        result.forget_counts[layer] = [int(fc[c]) for c in codes]
        result.retain_counts[layer] = [int(rc[c]) for c in codes]
        used = f"forget set uses {int((fc > 0).sum())} codes, retain {int((rc > 0).sum())}"
        result.notes.append(f"layer {layer}: target {target} in {int(fc[target])} forget / {int(rc[target])} "
                            f"retain motions; {used}")
    return books, result


def apply_books(model: MotionModel, books: dict[int, torch.Tensor]) -> None:
    """Put edited codebooks into a loaded model (in memory)."""
    for layer, book in books.items():
        model.vq.quantizer.layers[layer].codebook = book.clone()


def write_patched(src: Path, dst: Path, books: dict[int, torch.Tensor], result: LCRResult | None = None) -> Path:
    """Copy the MoMask folder ``src`` to ``dst`` with the RVQ-VAE's edited codebooks
    (:func:`vidunlearn.motion.momask.write_patched`: everything else byte for byte, atomically)."""
    runs = find_runs(Path(src))
    tensors = {f"quantizer.layers.{layer}.codebook": book for layer, book in books.items()}
    return patch_folder(src, dst, {("vq", runs.vq): tensors},
                        ("lcr.json", result.to_json()) if result is not None else None, runs.dataset)
