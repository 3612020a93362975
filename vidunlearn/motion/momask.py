"""The motion model on disk, in MoMask's own layout, and text -> motion generation.

Layout (``EricGuo5513/momask-codes``: ``options/*.py`` write ``opt.txt``, the trainers
``torch.save`` a dict into ``model/``; ``gen_t2m.py`` reads them back)::

    <root>/checkpoints/t2m/<vq name>/opt.txt
    <root>/checkpoints/t2m/<vq name>/meta/{mean,std}.npy          feature normalisation
    <root>/checkpoints/t2m/<vq name>/model/net_best_fid.tar       {"vq_model": state_dict, "ep", "total_it"}
    <root>/checkpoints/t2m/<mask name>/opt.txt                    vq_name: <vq name>
    <root>/checkpoints/t2m/<mask name>/model/latest.tar           {"t2m_transformer": ..., "ep", "total_it"}
    <root>/checkpoints/t2m/<res name>/opt.txt
    <root>/checkpoints/t2m/<res name>/model/net_best_fid.tar      {"res_transformer": ..., "ep", "total_it"}

The shipped files hold tensors and numbers only (no optimizer state, unlike MoMask's, to keep
them small) and are read with ``torch.load(..., weights_only=True)``: nothing is unpickled.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..adapters.momask import (CHECKPOINT_FILES, DIM_POSE, MoMaskRuns, UNIT_LENGTH, check_opt, check_sampleable,
                               find_runs, load_weights_only, read_opt)
from ..errors import ModelError
from .features import FEATURE_DIM, from_features
from .masked import MaskTransformer, ResidualTransformer
from .rvq import RVQVAE
from .text import CLIP_DIM

DATASET = "t2m"
# The shipped model (models/momask-world): MoMask's option names, small values.
VQ_OPT: dict[str, object] = {
    "name": "rvq_world_nq4_nc256_cd128", "dataset_name": DATASET, "dim_pose": FEATURE_DIM,
    "nb_code": 256, "code_dim": 128, "output_emb_width": 128, "down_t": 2, "stride_t": 2, "width": 128,
    "depth": 2, "dilation_growth_rate": 3, "vq_act": "relu", "vq_norm": None, "num_quantizers": 4,
    "shared_codebook": False, "quantize_dropout_prob": 0.2, "mu": 0.99, "commit": 0.02, "loss_vel": 0.5,
    "recons_loss": "l1_smooth", "lr": 5e-4, "batch_size": 32, "window_size": 40, "seed": 3407,
}
TRANS_OPT: dict[str, object] = {
    "name": "mtrans_world_nl4_ld128_ff256", "dataset_name": DATASET, "vq_name": VQ_OPT["name"],
    "latent_dim": 128, "ff_size": 256, "n_layers": 4, "n_heads": 4, "dropout": 0.1, "cond_drop_prob": 0.1,
    "clip_dim": CLIP_DIM, "lr": 5e-4, "batch_size": 64, "unit_length": UNIT_LENGTH, "seed": 3407,
}
RES_OPT: dict[str, object] = {
    "name": "rtrans_world_nl3_ld128_ff256_sw", "dataset_name": DATASET, "vq_name": VQ_OPT["name"],
    "latent_dim": 128, "ff_size": 256, "n_layers": 3, "n_heads": 4, "dropout": 0.1, "cond_drop_prob": 0.1,
    "clip_dim": CLIP_DIM, "share_weight": True, "lr": 5e-4, "batch_size": 64, "unit_length": UNIT_LENGTH,
    "seed": 3407,
}
# MoMask's sampling defaults (options/eval_option.py, gen_t2m.py), but guidance 2 for the masked
# transformer, not 4: this small model over-shoots at 4 (docs/motion-benchmark.md, "Generation").
SAMPLING = {"time_steps": 18, "cond_scale": 2.0, "temperature": 1.0, "topkr": 0.9, "res_cond_scale": 5.0}


def write_opt(path: Path, opt: dict[str, object]) -> None:
    """``opt.txt`` exactly as MoMask's option parsers write it (sorted ``key: value`` lines)."""
    from ..fsutil import atomic_output

    lines = ["------------ Options -------------"] + [f"{k}: {v}" for k, v in sorted(opt.items())]
    with atomic_output(path) as temp:
        temp.write_text("\n".join(lines + ["-------------- End ----------------"]) + "\n")


def dim_pose_of(opt: dict) -> int:
    """Motion features a frame: opt.txt's ``dim_pose``, else MoMask's for the dataset."""
    return int(opt.get("dim_pose", DIM_POSE.get(str(opt.get("dataset_name")), DIM_POSE["t2m"])))


def build_vq(opt: dict) -> RVQVAE:
    return RVQVAE(dim_pose_of(opt), int(opt["nb_code"]), int(opt["code_dim"]), int(opt["output_emb_width"]),
                  int(opt["down_t"]), int(opt["stride_t"]), int(opt["width"]), int(opt["depth"]),
                  int(opt["dilation_growth_rate"]), str(opt["vq_act"]), num_quantizers=int(opt["num_quantizers"]),
                  quantize_dropout_prob=float(opt["quantize_dropout_prob"]), mu=float(opt["mu"]))


def build_mask(opt: dict, vq_opt: dict) -> MaskTransformer:
    return MaskTransformer(int(vq_opt["code_dim"]), int(vq_opt["nb_code"]), int(opt["latent_dim"]), int(opt["ff_size"]),
                           int(opt["n_layers"]), int(opt["n_heads"]), float(opt["dropout"]), int(opt.get("clip_dim", CLIP_DIM)),
                           float(opt["cond_drop_prob"]))


def build_res(opt: dict, vq_opt: dict) -> ResidualTransformer:
    return ResidualTransformer(int(vq_opt["code_dim"]), int(vq_opt["nb_code"]), int(vq_opt["num_quantizers"]),
                               int(opt["latent_dim"]), int(opt["ff_size"]), int(opt["n_layers"]), int(opt["n_heads"]),
                               float(opt["dropout"]), int(opt.get("clip_dim", CLIP_DIM)), float(opt["cond_drop_prob"]))


def stage_dir(root: Path, name: str, dataset: str = DATASET) -> Path:
    return Path(root) / "checkpoints" / dataset / name


def save_stage(root: Path, stage: str, opt: dict, state_dict: dict, ep: int, total_it: int) -> Path:
    """Write one stage's ``opt.txt`` and model file (tensors and numbers only), each renamed into
    place whole: a killed training run never leaves a truncated checkpoint in the model folder."""
    from ..fsutil import atomic_output

    file_name, key, _ = CHECKPOINT_FILES[stage]
    folder = stage_dir(root, str(opt["name"]))
    write_opt(folder / "opt.txt", opt)
    state = {k: v.detach().clone().contiguous() for k, v in state_dict.items()}
    path = folder / "model" / file_name
    with atomic_output(path) as temp:
        torch.save({key: state, "ep": int(ep), "total_it": int(total_it)}, temp)
    return path


def state_key(stage: str, checkpoint: dict) -> str:
    """The key of the state dict in a stage's checkpoint: MoMask's, or the older one its loaders accept."""
    _, key, older = CHECKPOINT_FILES[stage]
    return key if key in checkpoint else older


def load_checkpoint(root: Path, stage: str, name: str, dataset: str = DATASET) -> tuple[dict, Path]:
    """One stage's whole checkpoint dict (weights_only) and its path; checks the state-dict key."""
    path = stage_dir(root, name, dataset) / "model" / CHECKPOINT_FILES[stage][0]
    if not path.is_file():
        raise ModelError(f"no {stage} checkpoint", where=str(path), fix="pass a whole MoMask checkpoints folder")
    checkpoint = load_weights_only(path)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get(state_key(stage, checkpoint)), dict):
        raise ModelError(f"checkpoint has no {CHECKPOINT_FILES[stage][1]!r} state dict", where=str(path))
    return checkpoint, path


def write_patched(src: Path, dst: Path, patches: dict[tuple[str, str], dict[str, torch.Tensor]],
                  record: tuple[str, str] | None = None, dataset: str = DATASET) -> Path:
    """Copy the MoMask folder ``src`` to ``dst`` with some tensors replaced: ``patches`` maps
    (stage, run name) to {state-dict key: new tensor}; each must exist with the same shape, and
    keeps its dtype. Every other file is copied byte for byte, every other tensor and entry
    (``ep``, ``total_it``) kept. ``record``: (file name, text) written beside (``lcr.json``).
    Written in a temporary sibling and renamed: nothing half-written at ``dst``."""
    from ..fsutil import atomic_output

    src, dst = Path(src), Path(dst)
    if dst.exists():
        raise ModelError("output folder exists", where=str(dst), fix="choose a new folder")
    with atomic_output(dst, directory=True, replace=False) as temp:
        shutil.copytree(src, temp, dirs_exist_ok=True)
        patch_checkpoints(temp, patches, src, dataset)
        if record is not None:
            (temp / record[0]).write_text(record[1] + "\n")
    return dst


def patch_checkpoints(folder: Path, patches: dict[tuple[str, str], dict[str, torch.Tensor]], src: Path,
                      dataset: str = DATASET) -> None:
    """Replace tensors in the checkpoints of a copied MoMask folder, in place (see :func:`write_patched`)."""
    for (stage, name), tensors in patches.items():
        checkpoint, path = load_checkpoint(folder, stage, name, dataset)
        state = checkpoint[state_key(stage, checkpoint)]
        for key, tensor in tensors.items():
            if key not in state or state[key].shape != tensor.shape:
                raise ModelError(f"no {key} of shape {tuple(tensor.shape)}", where=str(src / path.relative_to(folder)))
            state[key] = tensor.detach().clone().to(state[key].dtype).contiguous()
        torch.save(checkpoint, path)


def load_state(root: Path, stage: str, name: str, dataset: str = DATASET) -> dict[str, torch.Tensor]:
    checkpoint = load_checkpoint(root, stage, name, dataset)[0]
    return checkpoint[state_key(stage, checkpoint)]


@dataclass
class MotionModel:
    """The three MoMask networks, their options and the feature normalisation."""

    vq: RVQVAE
    mask: MaskTransformer
    res: ResidualTransformer
    mean: np.ndarray
    std: np.ndarray
    opts: dict[str, dict] = field(default_factory=dict)
    text: object | None = None  # a TextEncoder, made on first use

    def encode_text(self, texts: list[str]) -> torch.Tensor:
        if self.text is None:
            from .text import TextEncoder

            check_sampleable(self.opts.get("mask", {}), str(self.opts.get("mask", {}).get("name", "")),
                             "generating from text")
            self.text = TextEncoder()
        return self.text(texts)


def load_runs(path: Path) -> tuple[MotionModel, MoMaskRuns]:
    """The model in a MoMask folder (or a masked transformer's run folder), found by
    :func:`vidunlearn.adapters.momask.find_runs`, and its runs."""
    runs = find_runs(Path(path))
    return load_model(runs.root, runs.mask, runs.res, runs.dataset), runs


def load_model(root: Path, mask_name: str = str(TRANS_OPT["name"]), res_name: str = str(RES_OPT["name"]),
               dataset: str = DATASET) -> MotionModel:
    """Build the networks from the ``opt.txt`` files and load their weights strictly."""
    root = Path(root)
    mask_opt = read_opt(stage_dir(root, mask_name, dataset) / "opt.txt")
    res_opt = read_opt(stage_dir(root, res_name, dataset) / "opt.txt")
    vq_name = str(mask_opt["vq_name"])
    if res_opt.get("vq_name") != vq_name:
        raise ModelError(f"the residual transformer was trained on {res_opt.get('vq_name')!r}, the masked one on "
                         f"{vq_name!r}", where=str(root))
    vq, mean, std, vq_opt = load_vq(root, vq_name, dataset)
    for opt, stage, name in ((mask_opt, "mask", mask_name), (res_opt, "res", res_name)):
        check_opt(opt, stage, str(stage_dir(root, name, dataset) / "opt.txt"))
    mask, res = build_mask(mask_opt, vq_opt), build_res(res_opt, vq_opt)
    for net, stage, name in ((mask, "mask", mask_name), (res, "res", res_name)):
        _load_strict(net, root, stage, name, dataset)
    return MotionModel(vq, mask, res, mean, std, {"vq": vq_opt, "mask": mask_opt, "res": res_opt})


def load_vq(root: Path, vq_name: str = str(VQ_OPT["name"]), dataset: str = DATASET
            ) -> tuple[RVQVAE, np.ndarray, np.ndarray, dict]:
    """The RVQ-VAE alone (eval mode), its feature mean and std, and its options."""
    vq_opt = read_opt(stage_dir(root, vq_name, dataset) / "opt.txt")
    check_opt(vq_opt, "vq", str(stage_dir(root, vq_name, dataset) / "opt.txt"))
    vq = build_vq(vq_opt)
    _load_strict(vq, root, "vq", vq_name, dataset)
    meta = stage_dir(root, vq_name, dataset) / "meta"
    mean, std = (_meta(meta / f"{n}.npy", dim_pose_of(vq_opt)) for n in ("mean", "std"))
    if not (std > 0).all():
        raise ModelError("meta/std.npy has a zero or negative entry", where=str(meta / "std.npy"),
                         fix="pass an unmodified MoMask checkpoint folder")
    return vq, mean, std, vq_opt


def _load_strict(net: torch.nn.Module, root: Path, stage: str, name: str, dataset: str) -> None:
    """The stage's weights into ``net`` (eval mode), every key and shape as its opt.txt builds it."""
    try:
        net.load_state_dict(load_state(root, stage, name, dataset), strict=True)
    except RuntimeError as exc:
        raise ModelError(f"the checkpoint's tensors do not fit its opt.txt ({' '.join(str(exc).split())[:160]})",
                         where=str(stage_dir(root, name, dataset) / "model" / CHECKPOINT_FILES[stage][0]),
                         fix="pass an unmodified MoMask checkpoint folder") from None
    net.eval()


def _meta(path: Path, width: int) -> np.ndarray:
    """``meta/mean.npy`` or ``std.npy``: ``width`` finite numbers (the features a frame), no pickle."""
    try:
        value = np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise ModelError(f"cannot read the feature statistics ({str(exc)[:100]})", where=str(path),
                         fix="pass an unmodified MoMask checkpoint folder") from None
    if value.shape != (width,) or value.dtype.kind != "f" or not np.isfinite(value).all():
        raise ModelError(f"feature statistics of shape {value.shape} and dtype {value.dtype}, expected ({width},) "
                         "finite floats", where=str(path), fix="pass an unmodified MoMask checkpoint folder")
    return value


@torch.no_grad()
def generate_tokens(model: MotionModel, texts: list[str], tokens: int | list[int], seed: int, *,
                    cond_vector: torch.Tensor | None = None, **sampling) -> tuple[torch.Tensor, torch.Tensor]:
    """Texts -> all layers' code indices (B, T, Q) (-1 at pads) and lengths in tokens (B,)."""
    s = {**SAMPLING, **sampling}
    lengths = torch.tensor([tokens] * len(texts) if isinstance(tokens, int) else list(tokens), dtype=torch.long)
    cond = model.encode_text(texts) if cond_vector is None else cond_vector
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        ids = model.mask.generate(cond, lengths, timesteps=int(s["time_steps"]), cond_scale=float(s["cond_scale"]),
                                  temperature=float(s["temperature"]), topk_filter_thres=float(s["topkr"]))
        all_ids = model.res.generate(ids, cond, lengths, temperature=1.0, topk_filter_thres=float(s["topkr"]),
                                     cond_scale=float(s["res_cond_scale"]))
    return all_ids, lengths


SAMPLE_TOKENS = (10, 20)  # lengths drawn for sampled motions: 40-80 frames, the benchmark world's


def sample_tokens(model: MotionModel, texts: list[str], per_prompt: int, seed: int, batch: int = 64
                  ) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """``per_prompt`` samples of each text in turn, lengths drawn in :data:`SAMPLE_TOKENS` from
    ``seed``, generated ``batch`` at a time (batch i at seed ``seed * 1000 + i``): yields (index of
    the batch's first sample, code indices (B, T, Q), lengths in tokens (B,)) a batch. The one
    sampling scheme of LCR's sets (:mod:`.apply`) and of the benchmark's samples (:mod:`.lcr`)."""
    rng = np.random.default_rng([seed, 17])
    items = [t for t in texts for _ in range(per_prompt)]
    lengths = rng.integers(SAMPLE_TOKENS[0], SAMPLE_TOKENS[1] + 1, size=len(items)).tolist()
    for start in range(0, len(items), batch):
        ids, tokens = generate_tokens(model, items[start:start + batch], lengths[start:start + batch],
                                      seed=seed * 1000 + start // batch)
        yield start, ids, tokens


@torch.no_grad()
def decode(model: MotionModel, all_ids: torch.Tensor, lengths: torch.Tensor) -> list[np.ndarray]:
    """Code indices -> joint positions, one (4 * tokens, 22, 3) array a motion."""
    features = model.vq.forward_decoder(all_ids.clamp(min=-1)).numpy()
    features = features * model.std + model.mean
    return [from_features(f[: int(n) * UNIT_LENGTH]) for f, n in zip(features, lengths)]


def generate(model: MotionModel, texts: list[str], frames: int | list[int] = 60, seed: int = 0,
             **sampling) -> list[np.ndarray]:
    """Texts -> joint positions (frames rounded down to a multiple of 4, 22, 3), float32, metres,
    20 fps: what :func:`vidunlearn.motion.judge.judge_motion` reads. ``frames``: one length for
    all or one a text. Deterministic under ``seed`` (for the same batch)."""
    lengths = [frames] * len(texts) if isinstance(frames, int) else list(frames)
    if len(lengths) != len(texts) or min(lengths) < 2 * UNIT_LENGTH:
        raise ModelError(f"need one length >= {2 * UNIT_LENGTH} frames a text, got {frames}", where="motion generate")
    all_ids, tokens = generate_tokens(model, texts, [n // UNIT_LENGTH for n in lengths], seed, **sampling)
    return decode(model, all_ids, tokens)
