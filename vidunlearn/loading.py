"""Loading pipeline components strictly: a weight the checkpoint lacks, or holds but the model
has no place for, is an error. transformers and diffusers would initialise a missing weight at
random with a warning, and the edit computed from such a text encoder, or the videos sampled
from such a pipeline, would look like results. Each check reads the loaders' own report
(``output_loading_info=True``), so no weight is read twice."""

from __future__ import annotations

import contextlib
import importlib
import logging
from collections.abc import Iterator
from pathlib import Path

import torch

from .errors import ModelError
from .model import TEXT_ENCODER_MARKER, ModelSource
from .variants import weight_variants


def check_loading_info(info: dict, component: str, where: Path) -> None:
    """Refuse a load whose report (``missing_keys``, ``unexpected_keys``, ``mismatched_keys``) is not empty."""
    named = lambda keys: sorted(str(k[0] if isinstance(k, tuple) else k) for k in keys or [])
    problems = [f"{len(keys)} {label} (e.g. {', '.join(keys[:3])})" for label, keys in (
        ("missing", named(info.get("missing_keys"))), ("unexpected", named(info.get("unexpected_keys"))),
        ("of another shape", named(info.get("mismatched_keys")))) if keys]
    if problems:
        raise ModelError(f"the {component} weights do not match its config: {'; '.join(problems)}", where=str(where),
                         fix="re-download the model (loaded anyway, each missing weight would be random)")


def load_component(source: ModelSource, component: str, dtype: torch.dtype) -> torch.nn.Module:
    """One model component of the pipeline (a diffusers or transformers class named in
    model_index.json), from safetensors, with every weight of its checkpoint and no other."""
    library, class_name = source.index[component]
    cls = getattr(importlib.import_module(library), str(class_name), None)
    folder = source.component_dir(component)
    if cls is None:
        raise ModelError(f"{library} has no class {class_name!r}", where=str(source.path / "model_index.json"),
                         fix="use an official diffusers pipeline folder")
    variants = weight_variants(folder)  # weights in one variant only (an output of apply --variant): that one
    variant = source.variant if component in source.adapter.denoisers else variants[0] if len(variants) == 1 else None
    try:
        model, info = cls.from_pretrained(folder, dtype=dtype, use_safetensors=True, output_loading_info=True,
                                          variant=variant)
    except (OSError, ValueError, RuntimeError) as exc:  # e.g. no weights file, a weight of another shape
        raise ModelError(f"cannot load {component} ({(str(exc).strip().splitlines() or [''])[0][:200]})",
                         where=str(folder), fix="re-download the model") from None
    check_loading_info(info, component, folder)
    return model


def load_models(source: ModelSource, dtype: torch.dtype) -> dict[str, torch.nn.Module]:
    """Every model component of the pipeline (diffusers ``ModelMixin``, transformers
    ``PreTrainedModel``), loaded by :func:`load_component`; tokenizers and schedulers are left
    to the pipeline. Pass the result to ``DiffusionPipeline.from_pretrained(path, **models)``."""
    from diffusers import ModelMixin
    from transformers import PreTrainedModel

    models = {}
    for component, entry in sorted(source.index.items()):
        if component.startswith("_") or not isinstance(entry, list) or len(entry) != 2 or entry[0] is None:
            continue
        cls = getattr(importlib.import_module(entry[0]), str(entry[1]), None)
        if isinstance(cls, type) and issubclass(cls, (ModelMixin, PreTrainedModel)):
            models[component] = load_component(source, component, dtype)
    return models


class _BundledTextEncoder(logging.Filter):
    """Drops diffusers' "Expected types for text_encoder: ...UMT5EncoderModel..., got ...BertModel"
    and nothing else: the bundled benchmark model's text encoder is a BERT on purpose."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.startswith("Expected types for text_encoder:") and "UMT5EncoderModel" in message
                    and message.rstrip(".").endswith("BertModel'>"))


@contextlib.contextmanager
def quiet_known_warnings(source: ModelSource) -> Iterator[None]:
    """While building a pipeline from one of our bundled models (a folder whose text encoder comes
    from a package, TEXT_ENCODER_MARKER), silence the one warning it is known to cause; any other
    model, and any other warning, is left alone."""
    if not (source.path / TEXT_ENCODER_MARKER).is_file():
        yield
        return
    logger, known = logging.getLogger("diffusers.pipelines.pipeline_utils"), _BundledTextEncoder()
    logger.addFilter(known)
    try:
        yield
    finally:
        logger.removeFilter(known)
