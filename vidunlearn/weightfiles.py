"""Which weight files of a model folder apply edits, and which would reach the output unedited.

A diffusers component folder can hold the same weights more than once: precision variants
(``diffusion_pytorch_model.fp16.safetensors``; sharded, ``diffusion_pytorch_model.fp16-00001-of-00002.safetensors``
with ``diffusion_pytorch_model.safetensors.index.fp16.json``) and other formats (``.bin``,
``.ckpt``, ``.gguf``, ``.onnx``, ...). ``apply`` edits one variant of each denoiser (``--variant``;
the default file names when omitted). Every other weight file of a denoiser's folder, and every
weight file that belongs to no component of the pipeline (an original ``.pth`` beside the
components, say), would be hard-linked into the output unedited, so a diffusers output refuses
them unless ``--drop-other-weights`` leaves them out. The files of the other components (VAE,
text encoder, tokenizer, scheduler) are the base model's by design and are written as they are.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from .errors import ModelError
from .model import ModelSource, model_files, weight_map
from .progress import Reporter
from .variants import variant_of, weight_index

WEIGHT_SUFFIXES = frozenset({".safetensors", ".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle", ".gguf", ".ggml",
                             ".onnx", ".onnx_data", ".pb", ".h5", ".keras", ".msgpack", ".npz", ".npy", ".tflite",
                             ".mlmodel", ".pte", ".engine", ".plan", ".joblib", ".ot"})
TEXT_SUFFIXES = frozenset({".json", ".md", ".txt", ".yaml", ".yml"})
DOCUMENT_SUFFIXES = TEXT_SUFFIXES | {".py", ".ipynb", ".html", ".pdf", ".csv", ".toml", ".cfg", ".png", ".jpg", ".jpeg",
                                     ".gif", ".webp", ".bmp", ".tif", ".tiff", ".svg", ".mp4", ".webm", ".mov", ".avi",
                                     ".mkv", ".wav", ".mp3", ".flac"}
LARGE = 1 << 20  # outside the components, an unknown file this large may be weights
INDEX_JSON = re.compile(r"\.index(\.[^.]+)?\.json$")  # *.safetensors.index.json, *.bin.index.fp16.json, ...


@dataclass(frozen=True)
class OutputFiles:
    """How ``apply`` writes a diffusers folder. ``copy``: copy every file it does not rewrite
    (a reflink where the file system shares extents) instead of hard-linking it to the base's;
    ``drop_other_weights``: leave out the weight files that would reach the output unedited
    (:func:`unedited_weights`) instead of refusing."""

    copy: bool = False
    drop_other_weights: bool = False


def edited_files(source: ModelSource, component: str) -> set[Path]:
    """Real paths of the weights apply edits in ``component``: the chosen variant's shards and index json."""
    folder = source.component_dir(component)
    index = weight_index(folder, source.variant)
    return {f.resolve() for f in [*weight_map(folder, source.variant).values(), *([index] if index else [])]}


def _looks_like_weights(file: Path) -> bool:
    suffix = file.suffix.lower()
    return suffix in WEIGHT_SUFFIXES or (suffix not in DOCUMENT_SUFFIXES and file.stat().st_size >= LARGE)


def unedited_weights(source: ModelSource, components: list[str]) -> list[Path]:
    """The files of the model folder that hold weights apply would not edit: in an edited
    component's folder every file but the edited variant's weights and its JSON/text files
    (other variants, other formats, their index jsons, stale shards); outside the pipeline's
    components every file with a weight suffix, and every other file of 1 MiB or more that is
    not a document, a picture or a video."""
    edited = set().union(*(edited_files(source, c) for c in components))
    passed = {c for c, entry in source.index.items()  # present components that are not edited
              if isinstance(entry, list) and entry[:1] != [None] and c not in components}
    every = {file: file.relative_to(source.path).parts for file in model_files(source.path)}
    top = {file: parts[0] if len(parts) > 1 else None for file, parts in every.items()}
    kept = edited | {file.resolve() for file in every if top[file] in passed}  # also reached by another name
    found = []
    for file in every:
        if file.resolve() in kept:
            continue
        if top[file] in components:
            if INDEX_JSON.search(file.name) or file.suffix.lower() not in TEXT_SUFFIXES:
                found.append(file)
        elif _looks_like_weights(file):
            found.append(file)
    return found


def _weight_set(file: Path, source: ModelSource) -> str | None:
    """The variant whose weights ``file`` belongs to ("default" for the default names while
    another variant is edited), or None for a file of no variant (a ``.bin``, a stale copy)."""
    tag = variant_of(file.name)
    default = source.variant is not None and (file.suffix == ".safetensors" or file.name.endswith(".safetensors.index.json"))
    return tag or ("default" if default else None)


def describe(source: ModelSource, files: list[Path], components: list[str]) -> str:
    """E.g. ``transformer holds the fp16 variant (4 files), diffusion_pytorch_model.bin; the model folder holds x.pth``."""
    groups: dict[str, list[Path]] = {}
    for file in files:
        parts = file.relative_to(source.path).parts
        groups.setdefault(parts[0] if len(parts) > 1 and parts[0] in components else "", []).append(file)
    sentences = []
    for where, members in groups.items():
        sets: dict[str, int] = {}
        names = []
        for file in members:
            tag = _weight_set(file, source) if where else None
            if tag is not None:
                sets[tag] = sets.get(tag, 0) + 1
            else:
                names.append(file.relative_to(source.path / where).as_posix())
        items = [f"the {tag} {'weights' if tag == 'default' else 'variant'} ({count} file{'s' * (count > 1)})"
                 for tag, count in sorted(sets.items())]
        items += names[:3] + ([f"{len(names) - 3} more"] if len(names) > 3 else [])
        listed = ", ".join(items[:-1]) + " and " + items[-1] if len(items) > 1 else items[0]
        sentences.append(f"{where or 'the model folder'} holds {listed}")
    return "; ".join(sentences)


def other_weights(source: ModelSource, drop: bool, reporter: Reporter) -> frozenset[Path]:
    """Real paths of the files a diffusers output of ``source`` leaves out: none when every
    weight file of the denoisers is the one being edited; with ``drop`` every file of
    :func:`unedited_weights` (and a note says so); without, a refusal."""
    components = list(source.denoisers)
    found = unedited_weights(source, components)
    if not found:
        return frozenset()
    what = describe(source, found, components)
    if not drop:
        tags = sorted({t for f in found if (t := variant_of(f.name)) and t != source.variant})
        instead = f"pass --variant {tags[0]} to edit that variant instead, or " if tags else "pass "
        raise ModelError(f"{what} beside the weights being edited: they would reach the output unedited",
                         where=str(source.path), fix=f"{instead}--drop-other-weights to leave them out of the output")
    reporter.note(f"--drop-other-weights: left out of the output ({len(found)} files): {what}")
    return frozenset(f.resolve() for f in found)


def with_variant(source: ModelSource, variant: str) -> ModelSource:
    """``source`` with its denoisers read from the weights variant ``variant`` (which each must have)."""
    if hasattr(source, "file"):
        raise ModelError("--variant is for a diffusers folder, not a single file", where=str(source.path),
                         fix="leave --variant out")
    chosen = replace(source, variant=variant)
    for component in chosen.denoisers:
        chosen.tensor_infos(component)  # refuses a denoiser without that variant
    return chosen


def note_links(out: Path, actions: dict[str, str], reporter: Reporter) -> None:
    """Say so when an output shares files with the base model (hard links: one file, two names)."""
    linked = sum(action == "link" for action in actions.values())
    if linked:
        reporter.note(f"{linked} files of {out} are hard links to the base model's files: writing into them "
                      "(a save_pretrained into this folder, an edited file) changes the base model too; "
                      "apply --copy writes independent copies")
