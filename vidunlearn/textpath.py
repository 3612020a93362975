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


def load_text_encoder(source: ModelSource, device: str, dtype: torch.dtype):
    """(tokenizer, text encoder) from the pipeline's own folders; safetensors only, no remote code."""
    import transformers

    adapter = source.adapter
    library, class_name = source.index.get(adapter.text_encoder, [None, None])
    encoder_cls = getattr(transformers, str(class_name), None)
    if library != "transformers" or encoder_cls is None:
        raise ModelError(f"text encoder class {class_name!r} is not a transformers class",
                         where=str(source.path / "model_index.json"))
    weight_map(source.component_dir(adapter.text_encoder))  # refuses pickle-only folders
    check_buildable(source, adapter.text_encoder)  # a broken or oversized config.json: one line, before any build
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


def load_text_path(source: ModelSource, component: str, device: str, dtype: torch.dtype) -> torch.nn.Module:
    """The denoiser with only ``adapter.feed``'s weights loaded (strictly); every other
    parameter and buffer stays on the meta device and costs no memory."""
    adapter = source.adapter
    model = check_buildable(source, component)  # on the meta device; stopped as soon as it outgrows the weights
    try:
        feed = model.get_submodule(adapter.feed)
    except AttributeError:
        raise ModelError(f"module {adapter.feed!r} not found", where=component, fix="is this the right model family?") from None
    from .layerchange import load_float

    prefix = adapter.feed + "."
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
    return model
