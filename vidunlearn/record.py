"""Run prompts through the text encoder and only the denoiser's text path, and record each edit
site's activations: what ``extract`` caches and what the collateral measure reads."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from .capture import record_activations
from .errors import ModelError
from .model import ModelSource
from .progress import SILENT, Reporter


@dataclass(frozen=True)
class Recorded:
    tokens: dict[str, list[torch.Tensor]]  # site key -> [(T_i, H)] per prompt, in prompt order
    memory: str                            # peak memory, e.g. "peak RSS 812 MiB"
    seconds: float


def record_sites(source: ModelSource, prompts: list[str], keys: list[str], *, device: str = "cpu",
                 dtype: str = "float32", offload: bool = False, reporter: Reporter = SILENT) -> Recorded:
    """Activations of ``prompts`` (real tokens only) at every site key ``component/site``.

    The tokenizer and text encoder run once for all prompts; then each denoiser's text path
    (``adapter.feed``) with the rest of the denoiser on the meta device; the VAE is never loaded.
    ``offload`` keeps the encoder in CPU memory and moves each layer to ``device`` while it runs."""
    from .memory import PeakMemory
    from .textpath import load_text_encoder, load_text_path, torch_dtype

    torch_type = torch_dtype(dtype)
    started = time.perf_counter()
    tokens: dict[str, list[torch.Tensor]] = {}
    with torch.inference_mode(), PeakMemory(device) as peak:
        tokenizer, encoder = load_text_encoder(source, "cpu" if offload else device, torch_type)
        if offload:
            from accelerate import cpu_offload

            cpu_offload(encoder, execution_device=torch.device(device))
        with reporter.task("encoding prompts", total=len(prompts)) as advance:
            states = source.adapter.encode(tokenizer, encoder, prompts, source.adapter.max_sequence_length, device,
                                    progress=advance)
        del encoder
        for component in source.denoisers:
            wanted = {k: k.split("/", 1)[1] for k in keys if k.startswith(component + "/")}
            if not wanted:
                continue
            denoiser = load_text_path(source, component, device, torch_type)
            feed = denoiser.get_submodule(source.adapter.feed)
            modules = {k: (denoiser.get_submodule(source.adapter.site(name).capture), source.adapter.site(name).capture_input)
                       for k, name in wanted.items()}
            with record_activations(modules) as records, \
                    reporter.task(f"text path of {component}", total=len(states)) as advance:
                for state in states:
                    try:
                        feed(state[None].to(torch_type))
                    except RuntimeError as exc:  # a text encoder of another model (e.g. another width)
                        raise ModelError(f"{component}'s text path cannot read the text encoder's states "
                                         f"({state.shape[-1]} wide): {str(exc).splitlines()[0][:120]}",
                                         where=str(source.path), fix="the text encoder and the denoiser come from "
                                         "different models: use the folders of one pipeline") from None
                    advance(1)
            for site_key, calls in records.items():
                tokens[site_key] = [c[0] for c in calls]  # (T_i, H) per prompt
            del denoiser
    return Recorded(tokens, peak.describe(), time.perf_counter() - started)
