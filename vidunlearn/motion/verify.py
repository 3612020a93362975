"""``vidunlearn verify`` of a MoMask output (manifest format ``momask``, :mod:`.apply`).

Without a base: every file listed with its SHA-256 and none unlisted; only the three runs'
folders, ``safetensors/``, the edit's record, README.md and the manifest; the three runs found
in the folder are the manifest's; each ``safetensors/`` file holds exactly the state dict of its
MoMask checkpoint and names the manifest's recipe. With ``--base`` (a MoMask folder): every tensor
of every checkpoint is compared with the base's: only the manifest's edited tensors differ (for
LCR, only the codebook rows it lists), every other entry (``ep``, ``total_it``) and every other
file (``opt.txt``, ``meta/``) is identical. Manifests are read as hostile input: one line, never a
traceback.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from ..adapters.momask import find_runs, looks_like_momask
from ..hashing import sha256_file, sha256_json
from ..verify import ChangedTensor, Verification, check_hashes
from ..verify_manifest import FORGED, VerifyError, check_files, read_raw_manifest
from .momask import load_checkpoint, state_key

FORMAT = "momask"
STAGES = ("vq", "mask", "res")
RECORDS = ("lcr.json", "uce.json")


@dataclass(frozen=True)
class MotionManifest:
    path: Path
    files: dict[str, str]
    runs: dict[str, str]
    edited: dict[tuple[str, str], list[int] | None]  # (stage, tensor) -> LCR's rows (None: any row)
    method: str
    recipe_sha256: str


def is_motion_output(out: Path) -> bool:
    path = out / "vidunlearn.json"
    if not path.is_file():
        return False
    raw, _ = read_raw_manifest(out)
    return isinstance(raw, dict) and raw.get("format") == FORMAT


def _bad(path: Path, what: str) -> VerifyError:
    return VerifyError(f"manifest {what}", where=str(path), fix=FORGED)


def parse(out: Path) -> MotionManifest:
    raw, path = read_raw_manifest(out)
    assert isinstance(raw, dict)
    files = check_files(raw.get("files"), path)
    runs = (raw.get("base") or {}).get("runs") if isinstance(raw.get("base"), dict) else None
    if not isinstance(runs, dict) or set(runs) != set(STAGES) or not all(isinstance(v, str) for v in runs.values()):
        raise _bad(path, "has no 'base' runs (vq, mask, res)")
    recipe = raw.get("recipe")
    method = recipe.get("method") if isinstance(recipe, dict) else None
    if method not in ("lcr", "uce"):
        raise _bad(path, f"recipe method {str(method)[:40]!r} is not lcr or uce")
    edited: dict[tuple[str, str], list[int] | None] = {}
    for number, row in enumerate(raw.get("edited") if isinstance(raw.get("edited"), list) else [None]):
        rows = row.get("rows") if isinstance(row, dict) else None
        if not (isinstance(row, dict) and row.get("component") in STAGES and isinstance(row.get("tensor"), str)
                and (rows is None or (isinstance(rows, list) and all(type(r) is int for r in rows)))):
            raise _bad(path, f"'edited' entry {number} is not a stage, a tensor and its rows")
        edited[(row["component"], row["tensor"])] = rows
    return MotionManifest(path, files, runs, edited, method, sha256_json(recipe))


def check_layout(out: Path, manifest: MotionManifest, dataset: str) -> None:
    allowed = {f"checkpoints/{dataset}/{name}/" for name in manifest.runs.values()}
    for rel in manifest.files:
        if not (rel in ("README.md", *RECORDS) or any(rel.startswith(a) for a in allowed)
                or (rel.startswith("safetensors/") and rel.count("/") == 1 and rel.endswith(".safetensors"))):
            raise VerifyError("a MoMask output holds only its three runs, safetensors/, its record, README.md and "
                              "vidunlearn.json", where=str(out / rel), fix="this file may hold other weights: do not use this output")


def check_safetensors(out: Path, manifest: MotionManifest, runs) -> dict[str, tuple[dict, Path]]:
    """Each exported file equals its checkpoint's state dict and names the recipe; returns each
    stage's checkpoint and its path (read once, for :func:`compare` too)."""
    from safetensors import safe_open

    checkpoints = {}
    for stage in STAGES:
        checkpoint, path = checkpoints[stage] = load_checkpoint(out, stage, runs.names[stage], runs.dataset)
        state = checkpoint[state_key(stage, checkpoint)]
        rel = f"safetensors/{state_key(stage, checkpoint)}.safetensors"
        if rel not in manifest.files:
            raise VerifyError(f"no {rel} for the {stage} checkpoint", where=str(out), fix="re-run apply")
        with safe_open(out / rel, framework="pt") as f:
            if (f.metadata() or {}).get("vidunlearn.recipe") != manifest.recipe_sha256:
                raise VerifyError("the file's recipe is not the manifest's", where=str(out / rel), fix=FORGED)
            if set(f.keys()) != set(state) or not all(torch.equal(f.get_tensor(k), state[k]) for k in state):
                raise VerifyError(f"the safetensors weights differ from {runs.model_file(stage).relative_to(runs.root)}",
                                  where=str(out / rel), fix="this output was modified after apply; do not use it")
    return checkpoints


def changed_rows(delta: torch.Tensor) -> list[int]:
    flat = delta.reshape(delta.shape[0], -1) if delta.dim() > 1 else delta[:, None]
    return (flat != 0).any(1).nonzero().flatten().tolist()


def compare(out: Path, base: Path, manifest: MotionManifest, runs, checkpoints: dict[str, tuple[dict, Path]],
            result: Verification) -> None:
    base_runs = find_runs(base)
    if base_runs.names != runs.names or base_runs.dataset != runs.dataset:
        raise VerifyError(f"the base's runs {base_runs.names} are not the output's {runs.names}", where=str(base),
                          fix="pass the MoMask folder the output was made from")
    seen = set()
    for stage in STAGES:
        mine, file = checkpoints[stage]
        theirs, _ = load_checkpoint(base, stage, runs.names[stage], runs.dataset)
        rel = file.relative_to(out).as_posix()
        a, b = mine[state_key(stage, mine)], theirs[state_key(stage, theirs)]
        others = {k: v for k, v in mine.items() if k != state_key(stage, mine)}
        if set(a) != set(b) or others != {k: v for k, v in theirs.items() if k != state_key(stage, theirs)}:
            raise VerifyError("the checkpoint's keys or entries differ from the base's", where=str(out / rel),
                              fix="this output was modified after apply; do not use it")
        for key in sorted(a):
            if a[key].shape != b[key].shape or a[key].dtype != b[key].dtype:
                raise VerifyError(f"{key} has another shape or dtype than the base's", where=str(out / rel), fix=FORGED)
            if torch.equal(a[key], b[key]):
                result.identical_tensors += 1
                continue
            if (stage, key) not in manifest.edited:
                raise VerifyError(f"{key} changed but the manifest does not list it", where=str(out / rel),
                                  fix="this output was modified after apply; do not use it")
            delta = a[key].float() - b[key].float()
            allowed = manifest.edited[(stage, key)]
            extra = sorted(set(changed_rows(delta)) - set(allowed)) if allowed is not None else []
            if extra:
                raise VerifyError(f"{key} changed in row {extra[0]}, which the manifest's LCR codes do not list",
                                  where=str(out / rel), fix="this output was modified after apply; do not use it")
            norm = float(delta.norm())
            result.changed.append(ChangedTensor(rel, key, list(a[key].shape), norm if math.isfinite(norm) else -1.0,
                                                int(torch.linalg.matrix_rank(delta)) if delta.dim() == 2 else 0))
            seen.add((stage, key))
    unchanged = sorted(set(manifest.edited) - seen)
    if unchanged:
        raise VerifyError(f"the manifest lists {unchanged[0][1]} as edited, but it equals the base's", where=str(out),
                          fix=FORGED)
    for rel in manifest.files:
        if rel.startswith("checkpoints/") and not rel.endswith(".tar"):
            if not (base / rel).is_file() or sha256_file(base / rel) != manifest.files[rel]:
                raise VerifyError("differs from the base's file (only checkpoints may change)", where=str(out / rel),
                                  fix="this output was modified after apply; do not use it")
            result.identical_files += 1


def verify_motion(out: Path, base: str | None) -> Verification:
    manifest = parse(out)
    result = Verification(files_checked=check_hashes(out, manifest), output_format=FORMAT,
                          mode="lcr" if manifest.method == "lcr" else "uce (text path)",
                          sites=sorted(f"{s}/{t}" for s, t in manifest.edited))
    if not looks_like_momask(out):
        raise VerifyError("no MoMask checkpoints folder in the output", where=str(out), fix=FORGED)
    runs = find_runs(out)
    if runs.names != manifest.runs:
        raise VerifyError(f"the output's runs {runs.names} are not the manifest's {manifest.runs}", where=str(out), fix=FORGED)
    check_layout(out, manifest, runs.dataset)
    checkpoints = check_safetensors(out, manifest, runs)
    if base is None:
        return result
    if not looks_like_momask(Path(base)):
        raise VerifyError("the base of a MoMask output is a MoMask folder", where=str(base),
                          fix="pass the folder the output was made from, e.g. --base models/momask-world")
    result.base = str(base)
    compare(out, Path(base), manifest, runs, checkpoints, result)
    return result
