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


@torch.no_grad()
def encode_prompts(tokenizer, encoder, prompts: list[str], max_length: int, device: str,
                   batch_size: int = 8, progress=None) -> list[torch.Tensor]:
    """The text encoder's states for the real tokens of each prompt (pads excluded), exactly as
    WanPipeline computes them before it zero-pads to ``max_length``. Returns [(T_i, D_text)]."""
    from diffusers.pipelines.wan.pipeline_wan import prompt_clean

    states: list[torch.Tensor] = []
    for start in range(0, len(prompts), batch_size):
        batch = [prompt_clean(p) for p in prompts[start:start + batch_size]]
        tokens = tokenizer(batch, padding="longest", max_length=max_length, truncation=True,
                           add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        mask = tokens.attention_mask.to(device)
        hidden = encoder(tokens.input_ids.to(device), mask).last_hidden_state
        for row, length in zip(hidden, mask.gt(0).sum(dim=1).tolist()):
            states.append(row[:length])
        if progress is not None:
            progress(len(batch))
    return states


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
