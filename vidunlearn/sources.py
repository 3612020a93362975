"""What a ``--model`` argument names, as a :class:`~vidunlearn.model.ModelSource`: a diffusers folder,
a Hub id or an alias (:func:`vidunlearn.model.resolve_model`), a family's own layout folder
(:mod:`vidunlearn.layoutsource`), or a single ``.safetensors`` transformer file
(:mod:`vidunlearn.singlefile`); with ``variant``, that weights variant of a diffusers folder."""

from __future__ import annotations

from pathlib import Path

from .errors import VidunlearnError
from .model import ModelSource, resolve_model


def model_source(model: str | ModelSource, revision: str | None, config: str | None = None,
                 variant: str | None = None) -> ModelSource:
    """A diffusers folder / Hub id / alias, or a single ``.safetensors`` transformer file (its
    tokenizer, text encoder and config from ``config``, see :mod:`vidunlearn.singlefile`).
    ``variant`` chooses the denoisers' weights variant of a diffusers folder (e.g. ``fp16``)."""
    if variant is not None:
        from .weightfiles import with_variant

        return with_variant(model_source(model, revision, config), variant)
    if isinstance(model, ModelSource):
        return model
    if Path(model).suffix == ".safetensors" and Path(model).is_file():
        from .layoutsource import layout_folder
        from .singlefile import load_single_file

        folder = layout_folder(Path(model))  # a family's own layout (Open-Sora): the folder around the file
        if folder is not None:
            if config is not None:
                raise VidunlearnError("--config is not used: the file's folder holds its own text encoder",
                                      where=str(model), fix="leave --config out")
            return resolve_model(str(folder), revision)

        return load_single_file(Path(model), config, revision)
    if config is not None:
        raise VidunlearnError("--config is only for a single-file --model", where=str(model),
                              fix="leave --config out for a diffusers folder or Hub id")
    return resolve_model(model, revision)
