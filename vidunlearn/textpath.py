"""Loading and running only what extraction needs: the tokenizer, the text encoder, and the
denoiser's text path (``adapter.feed``). The rest of the denoiser is never materialised (it is
built on the meta device), and the VAE is never touched."""

from __future__ import annotations

import torch

from .bounds import check_buildable, check_tokenizer
from .errors import ModelError
from .loading import check_loading_info, load_component
from .model import ModelSource, weight_map

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def torch_dtype(name: str) -> torch.dtype:
    if name not in DTYPES:
        raise ModelError(f"unknown dtype {name!r}", fix=f"use one of {sorted(DTYPES)}")
    return DTYPES[name]


def _check_encoder(source: ModelSource, component: str, what: str) -> None:
    """``component`` is a transformers class with safetensors weights and a config that builds no
    more than its weights hold: one line otherwise, before anything is built."""
    import transformers

    library, class_name = source.index.get(component, [None, None])
    if library != "transformers" or getattr(transformers, str(class_name), None) is None:
        raise ModelError(f"{what} class {class_name!r} is not a transformers class",
                         where=str(source.path / "model_index.json"))
    weight_map(source.component_dir(component))  # refuses pickle-only folders
    check_buildable(source, component)  # a broken or oversized config.json: one line, before any build


def load_text_encoder(source: ModelSource, device: str, dtype: torch.dtype):
    """(tokenizer, text encoder) from the pipeline's own folders; safetensors only, no remote code."""
    import transformers

    adapter = source.adapter
    _check_encoder(source, adapter.text_encoder, "text encoder")
    check_tokenizer(source.component_dir(adapter.tokenizer))
    tokenizer = transformers.AutoTokenizer.from_pretrained(source.component_dir(adapter.tokenizer))
    encoder = load_component(source, adapter.text_encoder, dtype).to(device).eval()  # every weight, strictly
    return tokenizer, encoder


def encode_prompts(tokenizer, encoder, prompts: list[str], max_length: int, device: str,
                   batch_size: int = 8, progress=None) -> list[torch.Tensor]:
    """Wan's prompt encoding (:func:`vidunlearn.adapters.wan.encode_wan`), kept for the benchmark
    world's code (models/shapes-wan); a model's own is ``source.adapter.encode``."""
    from .adapters.wan import encode_wan

    return encode_wan(tokenizer, encoder, prompts, max_length, device, batch_size, progress)


def load_image_encoder(source: ModelSource, device: str, dtype: torch.dtype):
    """(image processor, image encoder) of an image-conditioned pipeline (``adapter.image_encoder``),
    from its own folders; safetensors only, no remote code."""
    import transformers

    from .sites import has_image_encoder

    adapter = source.adapter
    name = adapter.image_encoder
    if not has_image_encoder(source):
        raise ModelError(f"the pipeline has no {name or 'image encoder'!r} component", where=str(source.path / "model_index.json"),
                         fix="an image-conditioned pipeline folder is needed for --site image sites")
    _check_encoder(source, name, "image encoder")
    processor_library, processor_class = source.index.get(adapter.image_processor, [None, None])
    processor_cls = getattr(transformers, str(processor_class), None)
    if processor_library != "transformers" or processor_cls is None:
        raise ModelError(f"image processor class {processor_class!r} is not a transformers class",
                         where=str(source.path / "model_index.json"))
    processor = processor_cls.from_pretrained(source.component_dir(adapter.image_processor))
    encoder = load_component(source, name, dtype).to(device).eval()
    return processor, encoder


def load_text_path(source: ModelSource, component: str, device: str, dtype: torch.dtype,
                   feeds: tuple[str, ...] | None = None) -> torch.nn.Module:
    """The denoiser with only the ``feeds``' weights loaded (strictly; default ``adapter.feed``,
    the text path; an image site's is ``adapter.image_feed``); every other parameter and buffer
    stays on the meta device and costs no memory."""
    model = check_buildable(source, component)  # on the meta device; stopped as soon as it outgrows the weights
    for name in feeds or (source.adapter.feed,):
        _load_feed(source, component, model, name, device, dtype)
    return model


def _load_feed(source: ModelSource, component: str, model: torch.nn.Module, name: str, device: str,
               dtype: torch.dtype) -> None:
    try:
        feed = model.get_submodule(name)
    except AttributeError:
        raise ModelError(f"module {name!r} not found", where=component, fix="is this the right model family?") from None
    from .layerchange import load_float

    prefix = name + "."
    infos = source.tensor_infos(component)  # a single-file source maps its own key names here
    state = {key[len(prefix):]: load_float(source, component, key) for key in sorted(infos) if key.startswith(prefix)}
    expected = set(feed.state_dict())
    check_loading_info({"missing_keys": [prefix + k for k in expected - set(state)],
                        "unexpected_keys": [prefix + k for k in set(state) - expected]},
                       f"{component} text path", source.component_dir(component))
    feed.to_empty(device=device)
    try:
        feed.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ModelError(f"text-path weights do not match the config ({str(exc).splitlines()[0][:160]})",
                         where=str(source.component_dir(component))) from None
    feed.to(dtype).eval()
