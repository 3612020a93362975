"""Bounds on what a model folder's configs may make anyone build.

A config sizes what is built from it, on the meta device (a dry run, the text path) or for real
(the text encoder, ``sample``'s pipeline), and the tool itself loops over its ``num_layers``:
``num_layers: 1e9`` hangs, ``vocab_size: 1e12`` exhausts memory, ``num_layers: "2"`` gives a
traceback. Two checks prove that a config describes no more than its weight files hold:

- :func:`check_sizes`, on every read of a config (``ModelSource.config``), imports nothing: no
  number anywhere in the config exceeds the count of values the weights store (at least
  :data:`MAX_FREE_INT`; a component without weights, a scheduler, gets exactly that), and a
  denoiser's block count (``num_layers``) is an integer equal to the blocks in the weights.
- :func:`check_buildable`, before anything is built from a config: the fields typed ``int`` in
  the class's signature are JSON integers (not ``"2"``, not ``1e9``), and so on for ``float``,
  ``bool``, ``str`` and lists; then a build on the meta device that counts every module,
  parameter and buffer as it is registered and stops as soon as they exceed what the weights
  hold; then every stored tensor's shape against the built one's, and a floating-point one must
  be stored as a float dtype.
"""

from __future__ import annotations

import math
import types
import typing
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ModelError

if TYPE_CHECKING:
    import torch

    from .model import ModelSource, TensorInfo

MAX_FREE_INT = 1 << 20  # a number of a config with no weights to bound it (a scheduler's 1000 timesteps)
SLACK = 2  # a build may register twice what is stored: tied weights count twice, buffers are not stored
FIX = "re-download the model: the file is damaged, hostile, or its config and weights come from different models"


class TooLarge(Exception):
    """Raised from a registration hook: the build outgrew what the weights hold."""


def _expected(annotation: object) -> tuple[type, ...] | None:
    """The JSON types a field annotated ``annotation`` may hold; None when the annotation says
    nothing checkable (a forward reference, ``Any``, a class)."""
    if annotation in (int, float, bool, str):
        return {int: (int,), float: (int, float), bool: (bool,), str: (str,)}[annotation]  # type: ignore[index]
    if annotation is None or annotation is type(None):
        return (type(None),)
    origin = typing.get_origin(annotation)
    if origin in (list, tuple):
        return (list,)
    if origin in (typing.Union, types.UnionType):
        parts = [_expected(arg) for arg in typing.get_args(annotation)]
        return None if any(p is None for p in parts) else tuple(t for p in parts for t in p)  # type: ignore[union-attr]
    return None


def _fits(value: object, allowed: tuple[type, ...]) -> bool:
    if isinstance(value, bool):
        return bool in allowed
    return isinstance(value, allowed)


def _integers_in(annotation: object) -> bool:
    """Whether a list field's annotation says its items are integers (``tuple[int, ...]``)."""
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) in (list, tuple):
            return _integers_in(arg)
        if arg is int:
            return True
    return False


def check_types(config: dict, signature: Callable, where: str, owner: str) -> None:
    """Each field of ``config`` that ``signature``'s parameters annotate must have that type."""
    import inspect

    for name, parameter in inspect.signature(signature).parameters.items():
        if name not in config or parameter.annotation is inspect.Parameter.empty:
            continue
        value, allowed = config[name], _expected(parameter.annotation)
        if allowed is None or value == parameter.default:  # ``shift_terminal: float = None``
            continue
        if not _fits(value, allowed):
            wanted = " or ".join(sorted({"null" if t is type(None) else t.__name__ for t in allowed}))
            raise ModelError(f"{name} is {_show(value)} ({type(value).__name__}); {owner} expects {wanted}",
                             where=where, fix=FIX)
        if isinstance(value, list) and _integers_in(parameter.annotation) and not all(
                type(item) is int for item in value):
            raise ModelError(f"{name} is {_show(value)}; {owner} expects a list of integers", where=where, fix=FIX)


def _show(value: object) -> str:
    return repr(value)[:60]


def _numbers(value: object, path: str) -> Iterator[tuple[str, float]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _numbers(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _numbers(item, f"{path}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield path, value


def check_numbers(config: dict, limit: int, where: str, why: str) -> None:
    """No number in ``config`` (at any depth) is NaN, infinite, or larger than ``limit``."""
    for path, value in _numbers(config, ""):
        if not math.isfinite(value):
            raise ModelError(f"{path} is {value}", where=where, fix=FIX)
        if abs(value) > limit:
            raise ModelError(f"{path} is {value:g}, more than {limit:,} ({why})", where=where, fix=FIX)


@contextmanager
def budget(elements: int, tensors: int, modules: int) -> Iterator[None]:
    """Count every parameter, buffer and submodule registered on any module inside the block;
    raise :class:`TooLarge` at the first one past its limit (before the next is built)."""
    from torch.nn.modules import module as torch_module

    used = {"elements": 0, "tensors": 0, "modules": 0}
    limits = {"elements": elements, "tensors": tensors, "modules": modules}

    def count(what: str, amount: int) -> None:
        used[what] += amount
        if used[what] > limits[what]:
            raise TooLarge(f"more than {limits[what]:,} {'values' if what == 'elements' else what}")

    def on_tensor(module: object, name: str, tensor: torch.Tensor | None) -> None:
        if tensor is not None:
            count("tensors", 1)
            count("elements", tensor.numel())

    handles = [torch_module.register_module_parameter_registration_hook(on_tensor),
               torch_module.register_module_buffer_registration_hook(on_tensor),
               torch_module.register_module_module_registration_hook(lambda *args: count("modules", 1))]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def component_class(source: ModelSource, component: str) -> type:
    """The diffusers/transformers class model_index.json names for ``component`` (a denoiser
    must be the adapter's class: that is what the tool itself builds from its config)."""
    import importlib

    entry = source.index.get(component)
    library, name = entry if isinstance(entry, list) and len(entry) == 2 else (None, None)
    where = str(source.path / "model_index.json")
    if component in source.adapter.denoisers and name != source.adapter.denoiser_class:
        raise ModelError(f"{component} is {str(name)[:60]!r}, expected {source.adapter.denoiser_class}", where=where,
                         fix="use an official diffusers pipeline folder")
    if component in source.adapter.denoisers and source.adapter.denoiser_factory is not None:
        return source.adapter.denoiser_type()  # a family outside diffusers (adapter.layout): its own module tree
    cls = getattr(importlib.import_module(library), str(name), None) if library in ("diffusers", "transformers") else None
    if not isinstance(cls, type):
        raise ModelError(f"{component} names {str(entry)[:80]}, not a diffusers or transformers class", where=where,
                         fix="use an official diffusers pipeline folder")
    return cls


def _build(cls: type, config: dict) -> torch.nn.Module:
    config_class = getattr(cls, "config_class", None)
    if config_class is not None:  # transformers: a config object first (it validates field types itself)
        return cls(config_class.from_dict(config))
    return cls.from_config(config)  # type: ignore[attr-defined]


def build_on_meta(cls: type, config: dict, infos: dict[str, TensorInfo], where: str) -> torch.nn.Module:
    """``cls`` built from ``config`` on the meta device (no memory), stopped as soon as it
    registers more than :data:`SLACK` times what ``infos`` stores."""
    import torch

    stored = sum(math.prod(info.shape) for info in infos.values())
    try:
        with torch.device("meta"), budget(SLACK * stored + MAX_FREE_INT, SLACK * len(infos) + 1024,
                                          8 * SLACK * len(infos) + 1024):
            return _build(cls, config)
    except TooLarge as exc:
        raise ModelError(f"describes a larger model than its weights hold: building {cls.__name__} from it "
                         f"registers {exc}, the weights store {stored:,} values in {len(infos)} tensors",
                         where=where, fix=FIX) from None
    except Exception as exc:  # noqa: BLE001 - a library's constructor raises anything for a config it cannot build
        first = (str(exc).strip().splitlines() or [""])[0][:160]
        raise ModelError(f"cannot build {cls.__name__} from it ({type(exc).__name__}: {first})", where=where,
                         fix=FIX) from None


def check_stored(model: torch.nn.Module, infos: dict[str, TensorInfo], where: str) -> None:
    """Every stored tensor the built model also has: the same shape, and a float dtype where
    the model's tensor is floating point (an ``I32`` label on a weight is refused here)."""
    from .header import FLOAT_DTYPES

    built = model.state_dict(keep_vars=True)
    for key, info in sorted(infos.items()):
        tensor = built.get(key)
        if tensor is None:
            continue
        if list(tensor.shape) != list(info.shape):
            raise ModelError(f"{key} is {list(info.shape)} in the weights but {list(tensor.shape)} by the config",
                             where=where, fix=FIX)
        if tensor.is_floating_point() and info.dtype not in FLOAT_DTYPES:
            raise ModelError(f"{key} is stored as {info.dtype}, not a float dtype", where=str(info.file),
                             fix="re-download the model; the file may be hostile")


def check_block_count(source: ModelSource, config: dict, infos: dict[str, TensorInfo], where: str) -> None:
    """A denoiser's ``adapter.block_count_key`` (the tool expands its sites over it) is a JSON
    integer equal to the number of blocks (``blocks.N``, the sites' templates say) in the weights."""
    key = source.adapter.block_count_key
    if key not in config:
        return
    value = config[key]
    if type(value) is not int:
        raise ModelError(f"{key} is {_show(value)} ({type(value).__name__}), not an integer", where=where, fix=FIX)
    prefixes = {t.split("{block}")[0] for site in source.adapter.sites.values() for t in site.targets if "{block}" in t}
    if not prefixes:
        return  # the sites name their targets without a block template (adapter Site.expand)
    blocks = {name[len(p):].split(".", 1)[0] for p in prefixes for name in infos if name.startswith(p)}
    count = sum(1 for block in blocks if block.isdigit())
    if value != count:
        raise ModelError(f"{key} is {value}, the weights hold {count} blocks", where=where, fix=FIX)


def check_sizes(source: ModelSource, component: str, config: dict) -> None:
    """The bound for every read of ``component``'s config (no library is imported): see the
    module docstring. Raises :class:`ModelError` naming the config file and the field."""
    where = str(source.component_dir(component) / "config.json")
    infos = source.tensor_infos(component)
    stored = sum(math.prod(info.shape) for info in infos.values())
    check_numbers(config, max(stored, MAX_FREE_INT), where, f"its weights store {stored:,} values")
    if component in source.adapter.denoisers:
        check_block_count(source, config, infos, where)


def check_buildable(source: ModelSource, component: str) -> torch.nn.Module:
    """Prove that ``component``'s config builds no more than its weights hold, before anything
    (the tool, diffusers or transformers) builds it for real; see the module docstring.
    Returns the model built on the meta device (no memory), for a caller that needs one."""
    config = source.config(component)  # check_sizes first
    where = str(source.component_dir(component) / "config.json")
    cls = component_class(source, component)
    infos = source.tensor_infos(component)
    check_types(config, cls.config_class.__init__ if hasattr(cls, "config_class") else cls.__init__, where, cls.__name__)
    model = build_on_meta(cls, config, infos, where)
    check_stored(model, infos, where)
    return model


def check_weightless(source: ModelSource, component: str, cls: type) -> None:
    """A component without weights (a scheduler): its config file is a JSON object of the right
    types, and no number in it exceeds :data:`MAX_FREE_INT`."""
    from .model import read_json

    from transformers.image_processing_utils import ImageProcessingMixin
    from transformers.utils import IMAGE_PROCESSOR_NAME

    # an image processor (Wan I2V's CLIPImageProcessor) keeps its settings in preprocessor_config.json
    default = IMAGE_PROCESSOR_NAME if issubclass(cls, ImageProcessingMixin) else "config.json"
    path = source.component_dir(component) / str(getattr(cls, "config_name", default))
    config = read_json(path, source.path)
    if not isinstance(config, dict):
        raise ModelError("config is not a JSON object", where=str(path), fix="check the model folder")
    check_types(config, cls.__init__, str(path), cls.__name__)
    check_numbers(config, MAX_FREE_INT, str(path), "the most a component without weights may ask for")


VOCABULARY_FILES = ("tokenizer.json", "spiece.model", "sentencepiece.bpe.model", "vocab.txt", "vocab.json")


def check_tokenizer(folder: Path) -> None:
    """The tokenizer folder holds a vocabulary file (transformers' message without one is a
    traceback about backends)."""
    if not any((folder / name).is_file() for name in VOCABULARY_FILES):
        raise ModelError(f"the tokenizer folder has none of its files ({', '.join(VOCABULARY_FILES)})", where=str(folder),
                         fix="re-download the model (the tokenizer/ folder is incomplete)")


def check_pipeline(source: ModelSource) -> None:
    """Everything ``DiffusionPipeline.from_pretrained`` will build from ``source``, checked
    first: each component with weights against them, a scheduler's numbers, the tokenizer's files."""
    from transformers import PreTrainedTokenizerBase

    if source.adapter.layout is not None:
        raise ModelError(f"the {source.adapter.family} family has no diffusers pipeline: vidunlearn cannot render it",
                         where=str(source.path), fix="render with the family's own inference code (the output's "
                         "README.md says where its file goes)")
    for component, entry in sorted(source.index.items()):
        if component.startswith("_") or not isinstance(entry, list) or entry[0] is None:
            continue
        cls = component_class(source, component)
        folder = source.component_dir(component)
        if issubclass(cls, PreTrainedTokenizerBase):
            check_tokenizer(folder)
        elif any(folder.glob("*.safetensors")):
            check_buildable(source, component)
        else:
            check_weightless(source, component, cls)
