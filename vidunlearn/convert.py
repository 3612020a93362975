"""``vidunlearn convert``: a pipeline folder whose weights are pickle files (``.bin``, as
cerspense/zeroscope_v2_576w ships them) rewritten once as safetensors, so that every other
command can read it (they read safetensors only, and refuse pickle-only folders).

A pickle can carry code that runs when it is loaded. The tensors are read with
``torch.load(weights_only=True)``: PyTorch's restricted unpickler, which builds tensors, dicts
and numbers and refuses any other global (``os.system``, ...) before calling it. A file that
asks for one is refused in one line; nothing of it runs. ``mmap=True`` maps the zip-format
files that ``torch.save`` writes (memory: one tensor at a time); a legacy (non-zip) pickle is
read whole, still restricted.

The converted copy goes to ``--out`` (atomic: a hidden temporary sibling renamed into place,
deleted on any failure or interrupt). Every other file of the pipeline's components (configs,
tokenizer files, safetensors weights a component already has) is hard-linked or copied; folders
that are not components (cerspense's ``zs2_576w`` original-format pickles) and pickles that are
not weights are left out and listed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ModelError
from .fsutil import atomic_output, check_apart, check_writable
from .hashing import link_or_copy
from .model import LIBRARIES, PICKLE_SUFFIXES, _plain_name, contained, read_json
from .modelfiles import check_folder_files
from .progress import SILENT, Reporter

# diffusers' and transformers' pickle weight names: (diffusion_)pytorch_model[.variant][-0000i-of-0000n].bin
WEIGHTS = re.compile(r"^(?P<stem>diffusion_pytorch_model|pytorch_model)(?P<variant>\.[^.-]+)?(?P<shard>-\d{5}-of-\d{5})?\.bin$")
INDEX = re.compile(r"^(?P<stem>diffusion_pytorch_model|pytorch_model)\.bin\.index(?P<variant>\.[^.]+)?\.json$")
ST_CODES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64", "int64": "I64", "int32": "I32",
            "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}
REFUSED = "vidunlearn reads tensors only and never runs code from a model file"


@dataclass
class ConvertResult:
    out: Path
    converted: list[str] = field(default_factory=list)  # "component/file.bin -> file.safetensors"
    kept: int = 0                                        # files linked or copied as they were
    left_out: list[str] = field(default_factory=list)   # pickles that are not weights, non-component folders


def _safetensors_stem(stem: str) -> str:
    return "model" if stem == "pytorch_model" else stem  # transformers' model.safetensors; diffusers' keeps its stem


def converted_name(name: str) -> str | None:
    """The safetensors name of a pickle weights file or its index json, or None for any other file."""
    match = WEIGHTS.match(name)
    if match:
        return f"{_safetensors_stem(match['stem'])}{match['variant'] or ''}{match['shard'] or ''}.safetensors"
    match = INDEX.match(name)
    if match:
        return f"{_safetensors_stem(match['stem'])}.safetensors.index{match['variant'] or ''}.json"
    return None


def load_tensors(path: Path) -> dict:
    """The tensors of a pickle weights file, through PyTorch's restricted unpickler only."""
    import torch

    try:
        try:
            state = torch.load(path, weights_only=True, map_location="cpu", mmap=True)
        except RuntimeError as exc:
            if "mmap" not in str(exc):
                raise
            state = torch.load(path, weights_only=True, map_location="cpu")  # a legacy (non-zip) pickle
    except Exception as exc:  # UnpicklingError (a forbidden global), a truncated or foreign file, ...
        text = str(exc)
        if "Weights only load failed" in text:
            asked = next((line.strip() for line in text.splitlines() if "GLOBAL" in line), "a global that is not a tensor type")
            raise ModelError(f"refused: the pickle asks for more than tensors ({asked[:160]})", where=str(path),
                             fix=f"{REFUSED}; get safetensors weights from a source you trust") from None
        raise ModelError(f"cannot read the pickle weights ({type(exc).__name__}: {text.splitlines()[0][:160] if text else ''})",
                         where=str(path), fix="re-download the model") from None
    if not isinstance(state, dict) or not all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()):
        raise ModelError("is not a plain state dict (tensor names -> tensors)", where=str(path),
                         fix="convert a diffusers or transformers weights file")
    for key, tensor in state.items():
        if tensor.layout != torch.strided or str(tensor.dtype).removeprefix("torch.") not in ST_CODES:
            raise ModelError(f"tensor {key[:80]!r} is {tensor.dtype} ({tensor.layout}), which safetensors cannot hold here",
                             where=str(path), fix="convert a float checkpoint")
    return state


def convert_file(source: Path, destination: Path) -> str:
    """``source`` (pickle weights) written as the safetensors file ``destination``, one tensor at a
    time. Returns its SHA-256."""
    from .checkpoint import tensor_bytes
    from .formats import write_safetensors

    state = load_tensors(source)
    entries = [(key, ST_CODES[str(t.dtype).removeprefix("torch.")], list(t.shape), t.numel() * t.element_size(),
                lambda t=t: tensor_bytes(t)) for key, t in sorted(state.items())]
    digest = write_safetensors(destination, entries, {"format": "pt"})
    destination.chmod(0o644)
    return digest


def _convert_index(source: Path, destination: Path, root: Path) -> None:
    from .fsutil import write_json

    data = read_json(source, root)
    weight_map = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(weight_map, dict):
        raise ModelError("index json has no weight_map", where=str(source), fix="re-download the model")
    renamed = {}
    for key, name in weight_map.items():
        new = converted_name(_plain_name(name, source))
        if new is None or not new.endswith(".safetensors"):
            raise ModelError(f"index json names {str(name)[:80]!r}, not a pickle weights file", where=str(source),
                             fix="re-download the model")
        renamed[str(key)] = new
    write_json(destination, {**data, "weight_map": renamed})


def convert_component(root: Path, component: str, destination: Path, result: ConvertResult, reporter: Reporter) -> None:
    folder = root / component
    destination.mkdir()
    files = sorted(p for p in folder.iterdir() if p.is_file())
    has_safetensors = any(p.name.endswith(".safetensors") for p in files)
    for file in files:
        contained(file, root)
        new = converted_name(file.name)
        if new is not None and has_safetensors:
            result.left_out.append(f"{component}/{file.name} (the safetensors weights beside it are used)")
        elif new is not None and new.endswith(".json"):
            _convert_index(file, destination / new, root)
        elif new is not None:
            with reporter.task(f"converting {component}/{file.name}"):
                convert_file(contained(file, root), destination / new)
            result.converted.append(f"{component}/{file.name} -> {new}")
        elif file.suffix in PICKLE_SUFFIXES:
            result.left_out.append(f"{component}/{file.name} (a pickle that is not a weights file)")
        else:
            link_or_copy(file, destination / file.name)
            result.kept += 1


def locate(model: str, revision: str | None) -> tuple[Path, str | None]:
    """(pipeline folder, Hub id or None): a local folder as it is; an alias or Hub id downloaded
    (model_index.json and the component folders it names only)."""
    from .adapters import resolve_alias
    from .model import _download

    local = Path(model).expanduser()
    if local.is_dir():
        return local, None
    repo_id = resolve_alias(model) or model
    if local.exists() or repo_id.count("/") != 1 or repo_id.startswith((".", "/")):
        raise ModelError("not a folder, an alias or a Hub id", where=model, fix="pass a diffusers pipeline folder")
    from .adapters import download_patterns

    if download_patterns(repo_id) is not None:  # a family in its own layout (Open-Sora): the files it names
        return _download(repo_id, revision, allow_patterns=download_patterns(repo_id)), repo_id
    first = _download(repo_id, revision, allow_patterns=["model_index.json"])
    index = read_json(first / "model_index.json", first)
    components = [c for c, e in index.items() if not c.startswith("_") and isinstance(e, list)] if isinstance(index, dict) else []
    return _download(repo_id, revision, allow_patterns=["model_index.json", "*.md", *(f"{c}/*" for c in components)]), repo_id


def convert(model: str, out: Path, *, revision: str | None = None, force: bool = False,
            reporter: Reporter = SILENT) -> ConvertResult:
    """Write ``model`` (a pipeline folder, alias or Hub id) to ``out`` with every pickle weights
    file of its components converted to safetensors."""
    check_writable(out, force=force)
    path, _ = locate(model, revision)
    check_apart(out, [("the model folder", path)])
    from .layoutsource import layout_adapter

    index_path = path / "model_index.json"
    own = None if index_path.is_file() else layout_adapter(path)
    if own is None and not index_path.is_file():
        raise ModelError("no model_index.json: not a diffusers pipeline folder", where=str(path),
                         fix="pass a diffusers pipeline folder, or a family's own folder layout (Open-Sora 2.0)")
    check_folder_files(path)
    index = read_json(index_path, path) if own is None else {
        folder: [library, cls] for folder, library, cls in own.layout.folders.values()}  # type: ignore[union-attr]
    if not isinstance(index, dict):
        raise ModelError("model_index.json is not a JSON object", where=str(index_path), fix="re-download the model")
    components = []
    for component, entry in sorted(index.items()):
        if component.startswith("_") or not isinstance(entry, list) or entry == [None, None]:
            continue
        if len(entry) != 2 or entry[0] not in LIBRARIES:
            raise ModelError(f"component {component!r} names {str(entry)[:80]}: only {' and '.join(LIBRARIES)} classes "
                             "are supported", where=str(index_path), fix="use an official diffusers pipeline folder")
        if (path / (component if own is not None else _plain_name(component, index_path, "component"))).is_dir():
            components.append(component)  # a layout's components are subfolders it declares (google/t5-v1_1-xxl)
    result = ConvertResult(out)
    with atomic_output(out, directory=True, replace=force) as temp:
        for entry in sorted(path.iterdir()):
            if entry.name == ".cache" or entry.name in {c.split("/")[0] for c in components}:
                continue
            if entry.is_dir():
                result.left_out.append(f"{entry.name}/ (not a component of model_index.json)")
            elif entry.suffix in PICKLE_SUFFIXES:
                result.left_out.append(f"{entry.name} (a pickle that is not a weights file)")
            elif entry.is_file():
                link_or_copy(contained(entry, path), temp / entry.name)
                result.kept += 1
        for component in components:
            (temp / component).parent.mkdir(parents=True, exist_ok=True)
            convert_component(path, component, temp / component, result, reporter)
    return result
