"""A single-file Wan transformer as input (``--model path/to/wan.safetensors``). Wan is the one
family read from a single file; other families are read from their diffusers folders.

The file holds one transformer with the original Wan / ComfyUI key names, with or without the
``model.diffusion_model.`` prefix, in any float dtype or fp8 (with or without per-tensor
``scale_weight``). It has no tokenizer, text encoder or config, so those come from a diffusers
Wan pipeline given by ``--config`` (a local folder or a Hub id; only its tokenizer, text
encoder and ``transformer/config.json`` are used). Without ``--config`` the Wan size is
inferred from the tensor shapes and the matching diffusers repo is used.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from .errors import ModelError
from .model import ModelSource, TensorInfo, read_header, resolve_model
from .quant import SCALE_SUFFIX
from .adapters.wan import SINGLE_FILE_SIZES as KNOWN_SIZES
from .adapters.wankeys import PREFIX, to_diffusers

IGNORED_KEYS = ("scaled_fp8",)  # ComfyUI's marker tensor; carried over unchanged
IGNORED_SUFFIXES = (SCALE_SUFFIX, "scale_input")


@dataclass(frozen=True)
class SingleFileSource(ModelSource):
    """One transformer file; tokenizer, text encoder and config from ``config_source``."""

    file: Path = Path()
    config_source: ModelSource | None = None
    prefix: str = ""
    infos: dict[str, TensorInfo] = field(default_factory=dict)  # diffusers name -> where in the file
    scales: dict[str, TensorInfo] = field(default_factory=dict)  # diffusers weight name -> its scale

    def component_dir(self, component: str) -> Path:
        assert self.config_source is not None
        return self.config_source.component_dir(component)

    @property
    def denoisers(self) -> list[str]:
        return ["transformer"]

    def raw_config(self, component: str) -> dict:
        """The config pipeline's transformer config (:meth:`config` checks it against this
        file's tensors); any other component's config is the config pipeline's own."""
        assert self.config_source is not None
        return self.config_source.raw_config("transformer" if component in self.denoisers else component)

    def tensor_infos(self, component: str) -> dict[str, TensorInfo]:
        assert self.config_source is not None
        return self.infos if component in self.denoisers else self.config_source.tensor_infos(component)

    def scale_info(self, component: str, key: str) -> TensorInfo | None:
        return self.scales.get(key)

    @cached_property
    def fingerprint(self) -> str:
        """What extract reads: the config pipeline's tokenizer, text encoder and config (its
        fingerprint), and the text-path tensors of this file, by content (never size or mtime)."""
        assert self.config_source is not None
        identity = f"{self.config_source.fingerprint}\0{self.text_path_digest()}"
        return hashlib.sha256(identity.encode()).hexdigest()

    def describe(self) -> dict:
        assert self.config_source is not None
        return {**super().describe(), "single_file": self.file.name, "config": self.config_source.describe()}


def shape_summary(infos: dict[str, TensorInfo]) -> tuple[int, int, int]:
    """(num_layers, hidden size, input channels) read from the tensor shapes."""
    blocks = {int(k.split(".")[1]) for k in infos if k.startswith("blocks.")}
    patch = infos.get("patch_embedding.weight")
    if patch is None or not blocks:
        raise ModelError("no patch_embedding.weight or blocks.N tensors: not a Wan transformer",
                         fix="pass a Wan2.1/2.2 transformer checkpoint")
    return max(blocks) + 1, int(patch.shape[0]), int(patch.shape[1])


def describe_size(size: tuple[int, int, int]) -> str:
    return f"{size[0]} blocks, hidden size {size[1]}, {size[2]} input channels"


def read_single_file(path: Path) -> tuple[dict[str, TensorInfo], dict[str, TensorInfo], str]:
    """The tensors of a single-file transformer by diffusers name, its fp8 scales by the diffusers
    name of their weight, and its key prefix; from the header alone."""
    header, _ = read_header(path)
    infos: dict[str, TensorInfo] = {}
    scales: dict[str, TensorInfo] = {}
    prefixes = {key.startswith(PREFIX) for key in header if key != "__metadata__" and key not in IGNORED_KEYS}
    if len(prefixes) > 1:
        raise ModelError(f"some keys have the {PREFIX!r} prefix and some do not", where=str(path),
                         fix="the file mixes two models; re-export it")
    for key, entry in header.items():
        if key == "__metadata__" or key in IGNORED_KEYS:
            continue
        begin, end = entry["data_offsets"]
        info = TensorInfo(path, key, entry["dtype"], tuple(entry["shape"]), begin, end)
        if key.endswith(IGNORED_SUFFIXES):
            if key.endswith(SCALE_SUFFIX):
                scales[to_diffusers(key[: -len(SCALE_SUFFIX)] + "weight")] = info
            continue
        infos[to_diffusers(key)] = info
    return infos, scales, PREFIX if True in prefixes else ""


def load_single_file(path: Path, config: str | None = None, revision: str | None = None) -> SingleFileSource:
    """Read the header of ``path`` (no tensor data) and pair it with a diffusers config."""
    infos, scales, prefix = read_single_file(path)
    size = shape_summary(infos)
    if config is None:
        if size not in KNOWN_SIZES:
            raise ModelError(f"cannot infer the Wan model from the shapes ({describe_size(size)})", where=str(path),
                             fix="pass --config with a diffusers Wan pipeline folder or Hub id of the same size")
        config = KNOWN_SIZES[size]
    config_source = resolve_model(config, revision)
    expected = config_source.raw_config("transformer")  # checked against this file below
    where = str(config_source.component_dir("transformer") / "config.json")
    wanted = (_integer(expected, "num_layers", where),
              _integer(expected, "num_attention_heads", where) * _integer(expected, "attention_head_dim", where),
              _integer(expected, "in_channels", where))
    if wanted != size:
        raise ModelError(f"the file has {describe_size(size)}, --config {config} has {describe_size(wanted)}",
                         where=str(path), fix="pass a --config of the same Wan size")
    source = SingleFileSource(name=str(path), path=path, repo_id=config_source.repo_id, revision=config_source.revision,
                              adapter=config_source.adapter, index=config_source.index, file=path,
                              config_source=config_source, prefix=prefix,
                              infos=infos, scales=scales)
    source.config("transformer")  # the whole config against this file's tensors, before anything is built
    return source


def _integer(config: dict, name: str, where: str) -> int:
    value = config.get(name, 0)
    if type(value) is not int:
        raise ModelError(f"{name} is {str(value)[:40]!r}, not an integer", where=where,
                         fix="pass a --config whose transformer/config.json is intact")
    return value
