"""Run prompts through the text encoder and only the denoiser's text path (and, for the image
sites of an image-conditioned family, images through the image encoder and the denoiser's image
path), and record each edit site's activations: what ``extract`` caches and what the collateral
measure reads."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .capture import record_activations
from .errors import ModelError
from .model import ModelSource
from .progress import SILENT, Reporter
from .sites import site_stream


@dataclass(frozen=True)
class Recorded:
    tokens: dict[str, list[torch.Tensor]]  # site key -> [(T_i, H)] per prompt (per image: image sites), in order
    memory: str                            # peak memory, e.g. "peak RSS 812 MiB"
    seconds: float


def record_sites(source: ModelSource, prompts: list[str], keys: list[str], *, device: str = "cpu",
                 dtype: str = "float32", offload: bool = False, reporter: Reporter = SILENT,
                 images: list | None = None) -> Recorded:
    """Activations of ``prompts`` (real tokens only) at every text site key ``component/site``,
    and of ``images`` (paths or PIL images) at every image site key (``Site.stream == "image"``).

    The tokenizer and text encoder run once for all prompts (the image processor and encoder once
    for all images); then each denoiser's text path (``adapter.feed``) and image path
    (``adapter.image_feed``) with the rest of the denoiser on the meta device; the VAE is never
    loaded. ``offload`` keeps the encoders in CPU memory and moves each layer to ``device`` while it runs."""
    from .memory import PeakMemory
    from .textpath import load_image_encoder, load_text_encoder, load_text_path, torch_dtype

    torch_type = torch_dtype(dtype)
    started = time.perf_counter()
    tokens: dict[str, list[torch.Tensor]] = {}
    image_keys = [k for k in keys if site_stream(source, k) == "image"]
    if image_keys and not images:
        raise ModelError(f"the image sites {sorted({k.split('/', 1)[1] for k in image_keys})} need images",
                         fix="give the pairs file images (docs/pairs.md), or choose --site text")
    streams: dict[str, list[torch.Tensor]] = {}
    with torch.inference_mode(), PeakMemory(device) as peak:
        if len(image_keys) < len(keys):
            tokenizer, encoder = _load_encoder(load_text_encoder, source, device, torch_type, offload)
            with reporter.task("encoding prompts", total=len(prompts)) as advance:
                streams["text"] = source.adapter.encode(tokenizer, encoder, prompts, source.adapter.max_sequence_length,
                                                        device, progress=advance)
            del encoder
        if image_keys:
            processor, encoder = _load_encoder(load_image_encoder, source, device, torch_type, offload)
            with reporter.task("encoding images", total=len(images)) as advance:
                streams["image"] = source.adapter.encode_image(processor, encoder, list(images), device, progress=advance)
            del encoder
        for component in source.denoisers:
            wanted = {k: k.split("/", 1)[1] for k in keys if k.startswith(component + "/")}
            if not wanted:
                continue
            used = sorted({source.adapter.site(name).stream for name in wanted.values()}, reverse=True)  # text first
            denoiser = load_text_path(source, component, device, torch_type,
                                      feeds=tuple(source.adapter.feed_for(s) for s in used))
            for stream in used:
                feed = denoiser.get_submodule(source.adapter.feed_for(stream))
                modules = {k: (denoiser.get_submodule(source.adapter.site(name).capture), source.adapter.site(name).capture_input)
                           for k, name in wanted.items() if source.adapter.site(name).stream == stream}
                states = streams[stream]
                with record_activations(modules) as records, \
                        reporter.task(f"{stream} path of {component}", total=len(states)) as advance:
                    for state in states:
                        try:
                            feed(state[None].to(torch_type))
                        except RuntimeError as exc:  # an encoder of another model (e.g. another width)
                            raise ModelError(f"{component}'s {stream} path cannot read the {stream} encoder's states "
                                             f"({state.shape[-1]} wide): {str(exc).splitlines()[0][:120]}",
                                             where=str(source.path), fix=f"the {stream} encoder and the denoiser come from "
                                             "different models: use the folders of one pipeline") from None
                        advance(1)
                for site_key, calls in records.items():
                    tokens[site_key] = [c[0] for c in calls]  # (T_i, H) per prompt or image
            del denoiser
    return Recorded(tokens, peak.describe(), time.perf_counter() - started)


def _load_encoder(load, source: ModelSource, device: str, torch_type: torch.dtype, offload: bool):
    """(tokenizer or processor, encoder) from ``load`` (textpath's loaders); ``offload`` keeps the
    encoder in CPU memory and moves each layer to ``device`` while it runs."""
    first, encoder = load(source, "cpu" if offload else device, torch_type)
    if offload:
        from accelerate import cpu_offload

        cpu_offload(encoder, execution_device=torch.device(device))
    return first, encoder
