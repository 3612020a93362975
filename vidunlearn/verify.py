"""``vidunlearn verify OUT [--base BASE]``: is this output what its manifest says, and with a base,
is it exactly the base plus the recipe's edit?

Without a base (the files against their manifest; see :mod:`vidunlearn.verify_manifest`):
1. Every file listed in ``vidunlearn.json`` exists with the listed SHA-256, and no file is unlisted.
2. The format is detected from the files, never taken from the manifest, and must be the one it
   claims. A single file or LoRA holds nothing but its safetensors files, README.md and the
   manifest; in a diffusers folder, weight-like files sit only in pipeline components, and an
   edited component holds nothing but safetensors, JSON and text files (a pickle is refused by its
   name, never read) and no safetensors file that holds an edited tensor without having been
   written by apply.
3. Every safetensors file that carries vidunlearn metadata names the manifest's recipe and format;
   every weight file of a single file or LoRA carries it (apply wrote each one).
With a base, every tensor of every output weight file is compared with the base: see
:mod:`vidunlearn.verify_base`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from .adapters import ADAPTERS
from .hashing import sha256_file
from .model import read_header
from .verify_manifest import Manifest, VerifyError, read_manifest
from .weightfiles import WEIGHT_SUFFIXES as WEIGHT_FILE_SUFFIXES

__all__ = ["ChangedTensor", "Verification", "VerifyError", "verify"]

# suffixes of files that can hold weights (safetensors, pickles and other serialisations): the
# same list apply refuses by (weightfiles), as a tuple for str.endswith
WEIGHT_SUFFIXES = tuple(sorted(WEIGHT_FILE_SUFFIXES))
# what an edited component folder may hold: its shards (compared tensor by tensor with --base),
# configs and index files, and notes; anything else could be a copy of the unedited weights
EDITED_FOLDER_SUFFIXES = (".safetensors", ".json", ".md", ".txt")
LORA_SUFFIXES = (".lora_A.weight", ".lora_B.weight", ".diff_b")
OWN_FILES = ("README.md", "vidunlearn.json")


@dataclass
class ChangedTensor:
    file: str
    tensor: str
    shape: list[int]
    change_norm: float
    rank: int


@dataclass
class Verification:
    files_checked: int = 0
    changed: list[ChangedTensor] = field(default_factory=list)
    identical_tensors: int = 0
    encoder_tensors: int = 0  # a trained text encoder's tensors, each changed as the manifest records
    identical_files: int = 0
    lora_modules_checked: int = 0
    base: str | None = None
    output_format: str = "diffusers"
    sites: list[str] = field(default_factory=list)  # the recipe's sites, checked against the base
    rank: int | None = None  # the recipe's rank of W' - W (None: not bounded, e.g. uce)
    mode: str = ""
    strength: float = 0.0


def check_hashes(out: Path, manifest: Manifest) -> int:
    for rel, digest in sorted(manifest.files.items()):
        file = out / rel
        if not file.is_file():
            raise VerifyError("file listed in the manifest is missing", where=str(file),
                              fix="re-download or re-run apply")
        if sha256_file(file) != digest:
            raise VerifyError("SHA-256 does not match the manifest: the file changed after apply", where=str(file),
                              fix="re-download it or re-run apply; do not use this output")
    extra = sorted(p.relative_to(out).as_posix() for p in out.rglob("*")
                   if p.is_file() and p.relative_to(out).as_posix() not in manifest.files
                   and p.relative_to(out).as_posix() != "vidunlearn.json")
    if extra:
        raise VerifyError("file not listed in the manifest", where=str(out / extra[0]),
                          fix="remove it, or re-run apply")
    return len(manifest.files)


def _tensor_keys(file: Path) -> list[str]:
    return [k for k in read_header(file)[0] if k != "__metadata__"]


def detect_format(out: Path, manifest: Manifest) -> str:
    """The format the files are in: ``diffusers`` (a pipeline folder with model_index.json),
    ``lora`` (top-level safetensors of LoRA factors only) or ``single-file`` (top-level
    safetensors of whole transformers). Fails when it is not the one the manifest claims."""
    if "model_index.json" in manifest.files:
        detected = "diffusers"
    else:
        for rel in sorted(manifest.files):
            if "/" in rel or (rel not in OWN_FILES and not rel.endswith(".safetensors")):
                raise VerifyError("a single-file or LoRA output holds only its safetensors files, README.md and "
                                  "vidunlearn.json", where=str(out / rel),
                                  fix="this file may hold an unedited copy of the weights: do not use this output")
        weights = [out / rel for rel in sorted(manifest.files) if rel.endswith(".safetensors")]
        if not weights:
            raise VerifyError("no weight file (no model_index.json and no .safetensors)", where=str(out),
                              fix="pass a folder written by `vidunlearn apply`")
        kinds = {all(k.endswith(LORA_SUFFIXES) for k in _tensor_keys(f)) for f in weights}
        if len(kinds) != 1:
            raise VerifyError("some safetensors files hold LoRA factors and some whole weights", where=str(out),
                              fix="this output was modified after apply; do not use it")
        detected = "lora" if kinds == {True} else "single-file"
    if detected != manifest.format:
        raise VerifyError(f"the manifest says format {manifest.format!r}, but the files are a {detected} output",
                          where=str(manifest.path), fix="this output was modified after apply; do not use it")
    return detected


def _components(out: Path) -> set[str]:
    """The components named in the output's model_index.json (folders that may hold weights)."""
    path = out / "model_index.json"
    try:
        index = json.loads(path.read_text(encoding="utf-8")) if path.stat().st_size < 1 << 20 else None
    except (OSError, ValueError, RecursionError):
        index = None
    if not isinstance(index, dict):
        raise VerifyError("model_index.json is not a readable JSON object (under 1 MiB)", where=str(path),
                          fix="this output was modified after apply; do not use it")
    return {k for k, v in index.items() if not k.startswith("_") and isinstance(v, list)}


def check_folder_layout(out: Path, manifest: Manifest) -> None:
    """No weight file of a diffusers folder output can hide an unedited copy of an edited tensor
    by its place or name (contents are compared with ``--base``)."""
    components = _components(out)
    edited = {site.split("/", 1)[0] for site in manifest.recipe.sites}
    listed = {(c, t) for c, t in manifest.edited}
    for rel in sorted(manifest.files):
        parts = rel.split("/")
        component = parts[0] if len(parts) > 1 else None
        if component in edited and not rel.endswith(EDITED_FOLDER_SUFFIXES):
            raise VerifyError(f"a file that is neither safetensors nor JSON or text in the edited component "
                              f"{component!r}", where=str(out / rel),
                              fix="it may hold an unedited copy of the edited weights (vidunlearn never opens "
                                  "pickles): delete the output and re-run apply")
        if component not in components and rel.endswith(WEIGHT_SUFFIXES):
            raise VerifyError("a weight file outside the pipeline's component folders", where=str(out / rel),
                              fix="it may hold an unedited copy of the edited weights: delete it, or re-run apply")
        if component in edited and rel.endswith(".safetensors"):
            header = read_header(out / rel)[0]
            stale = sorted(k for k in header if (component, k) in listed)
            if stale and "vidunlearn.recipe" not in header.get("__metadata__", {}):
                raise VerifyError(f"holds {stale[0]!r}, which the manifest lists as edited, but apply did not write "
                                  "this file: an unedited copy", where=str(out / rel),
                                  fix="delete the output and re-run apply")


def check_provenance(out: Path, manifest: Manifest, output_format: str) -> None:
    """Every safetensors file that carries vidunlearn metadata was written for this recipe and format;
    apply writes every weight file of a single-file or LoRA output, so each of those carries it."""
    for rel in sorted(manifest.files):
        if not rel.endswith(".safetensors"):
            continue
        meta = read_header(out / rel)[0].get("__metadata__", {})
        if output_format != "diffusers" and "vidunlearn.recipe" not in meta:
            raise VerifyError(f"a weight file that apply did not write (no vidunlearn metadata) in a {output_format} "
                              "output", where=str(out / rel), fix="it may hold an unedited copy of the weights: "
                              "delete it, or re-run apply")
        if "vidunlearn.recipe" in meta and meta["vidunlearn.recipe"] != manifest.recipe_sha256:
            raise VerifyError("the file was written for another recipe than the manifest's", where=str(out / rel),
                              fix="the manifest's recipe was changed after apply; do not use this output")
        if meta.get("vidunlearn.format", output_format) != output_format:
            raise VerifyError(f"the file says format {meta['vidunlearn.format'][:40]!r}, the output is {output_format}",
                              where=str(out / rel), fix="this output was modified after apply; do not use it")


def lora_changes(out: Path, manifest: Manifest, result: Verification) -> None:
    """Each LoRA module's delta B A, with its norm and rank, for the table."""
    from safetensors.torch import load_file

    from .verify_math import rounding_noise, weight_change

    for rel in sorted(manifest.files):
        if not rel.endswith(".safetensors"):
            continue
        tensors = load_file(str(out / rel))
        component = read_header(out / rel)[0].get("__metadata__", {}).get("vidunlearn.component", "")
        prefixes = tuple(a.keymap.lora_prefix for a in ADAPTERS if a.keymap and a.lora_original_names) + (f"{component}.",)
        for key in sorted(k for k in tensors if k.endswith(".lora_A.weight")):
            module = key[: -len(".lora_A.weight")]
            up = tensors.get(module + ".lora_B.weight")
            down = tensors[key]
            if up is None or up.ndim != 2 or down.ndim != 2 or up.shape[1] != down.shape[0]:
                raise VerifyError(f"LoRA module {module!r} has no lora_B of a matching shape", where=str(out / rel),
                                  fix="this output was modified after apply; do not use it")
            delta = up.float() @ down.float()
            change = weight_change(None, delta, "F32", rounding_noise(delta, "F32"), None, None)
            shown = next((module[len(p):] for p in prefixes if module.startswith(p)), module)
            result.changed.append(ChangedTensor(rel, shown + ".weight", list(delta.shape),
                                                change.norm, change.rank))


def verify(out: Path, base: str | None = None) -> Verification:
    """Check ``out`` against its manifest and, with ``base``, against the base model's files."""
    from .motion.verify import is_motion_output, verify_motion

    if is_motion_output(out):  # a MoMask text-to-motion output (vidunlearn.motion.apply)
        return verify_motion(out, base)
    manifest = read_manifest(out)
    result = Verification(files_checked=check_hashes(out, manifest))
    result.output_format = detect_format(out, manifest)
    check_provenance(out, manifest, result.output_format)
    if result.output_format == "diffusers":
        check_folder_layout(out, manifest)
    if base is None:
        if result.output_format == "lora":
            lora_changes(out, manifest, result)
        return result
    from .verify_base import compare_with_base, resolve_base

    base_path = resolve_base(base)
    result.base = str(base_path)
    compare_with_base(out, manifest, result.output_format, base_path, result)
    return result
