"""Generate videos from an edited model (and its base, for comparison) with fixed seeds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path

from .errors import VidunlearnError
from .model import ModelSource
from .progress import Reporter


@dataclass(frozen=True)
class SampleSettings:
    steps: int = 30
    frames: int = 33
    height: int = 480
    width: int = 832
    guidance: float = 5.0
    seed: int = 0
    fps: int = 16
    negative_prompt: str = ""
    device: str = "cpu"
    dtype: str = "float32"
    image: str | None = None  # image-to-video models: the first frame of every clip (eval --image)

    def identity(self) -> dict:
        """The settings that make a clip what it is (a run folder's ``run.json``): which GPU of a
        kind (``cuda:1``) is left out, so that a run continues on another one."""
        return asdict(replace(self, device=self.device.split(":")[0]))

    def check(self, frame_step: int = 4, size_step: int = 16) -> None:
        """Refuse settings the pipeline cannot honour (a model's own steps: ``adapter.frame_step``, ``size_step``)."""
        if self.frames < 1 or (self.frames - 1) % frame_step:
            examples = ", ".join(str(frame_step * k + 1) for k in (4, 8, 20))
            raise VidunlearnError(f"--frames {self.frames} is not of the form {frame_step}k+1", fix=f"use e.g. {examples}")
        if self.height % size_step or self.width % size_step or self.height < size_step or self.width < size_step:
            raise VidunlearnError(f"--height/--width {self.height}x{self.width} must be multiples of {size_step}",
                                  fix="use e.g. 480x832" if 480 % size_step == 0 else "use e.g. 512x768")
        if self.steps < 1:
            raise VidunlearnError(f"--steps {self.steps} must be at least 1")
        from .checks import check_device, check_number

        check_number("--guidance", self.guidance, 0, 100)
        check_device(self.device)


def load_condition_image(path: Path | None, source: ModelSource):
    """The ``--image`` as an RGB PIL image for a pipeline that takes ``image=`` (validated as a
    pairs file's images are), None for one that does not; a one-line error where they disagree."""
    if not source.adapter.takes_image:
        if path is not None:
            raise VidunlearnError(f"--image is for image-to-video models; {source.adapter.family} reads none",
                                  where=str(path), fix="leave --image out")
        return None
    if path is None:
        raise VidunlearnError(f"{source.adapter.family} generates from an image", where=str(source.path),
                              fix="pass --image FILE (PNG or JPEG), the first frame of every clip")
    from .pairs import read_image

    return read_image(Path(path))


def _generate(source: ModelSource, prompts: list[str], settings: SampleSettings, reporter: Reporter, label: str,
              seeds: list[int] | None = None, batch_size: int = 1, image: Path | list[Path | None] | None = None):
    """Clips (F, H, W, 3) float in [0, 1], one per prompt (see :func:`iter_clips`)."""
    return list(iter_clips(source, prompts, settings, reporter, label, seeds, batch_size, image))


def iter_clips(source: ModelSource, prompts: list[str], settings: SampleSettings, reporter: Reporter, label: str,
               seeds: list[int] | None = None, batch_size: int = 1, image: Path | list[Path | None] | None = None):
    """Yield clips (F, H, W, 3) float in [0, 1], one per prompt in order, each batch as soon as it
    is made. Prompt i uses ``seeds[i]`` (default: ``settings.seed`` for all); a batch draws each
    prompt's noise from its own generator, so the clips do not depend on ``batch_size``.
    ``image``: the first frame of every clip (one path), or of each prompt's clip (a list, one per
    prompt), for a pipeline that takes ``image=`` (``adapter.takes_image``). No prompts: nothing
    is loaded."""
    import torch

    if not prompts:
        return

    image = image if image is not None else (Path(settings.image) if settings.image else None)
    paths = list(image) if isinstance(image, list) else [image] * len(prompts)
    loaded = {path: load_condition_image(path, source) for path in dict.fromkeys(paths)}
    conditions = [loaded[path] for path in paths]

    seeds = seeds if seeds is not None else [settings.seed] * len(prompts)
    pipe, compact = load_pipeline(source, settings)
    with reporter.task(f"sampling {label}", total=len(prompts)) as advance:
        start = 0
        while start < len(prompts):
            # a batch shares one first frame: the pipelines take one image for all its prompts
            end = min(start + max(batch_size, 1), len(prompts))
            end = next((i for i in range(start + 1, end) if paths[i] != paths[start]), end)
            batch = prompts[start:end]
            generators = [torch.Generator(device="cpu").manual_seed(seed) for seed in seeds[start:start + len(batch)]]
            if source.adapter.zero_pads_prompts:  # embedded here: real tokens only, see _embed
                negative = _embed(pipe, source, [settings.negative_prompt] * len(batch), settings.device, compact)
                prompt = {"prompt_embeds": _embed(pipe, source, batch, settings.device, compact),
                          "negative_prompt_embeds": negative if settings.guidance > 1 else None}
            else:  # the pipeline's own encode_prompt
                prompt = {"prompt": batch, "negative_prompt": [settings.negative_prompt] * len(batch)}
            if conditions[start] is not None:
                prompt["image"] = conditions[start]
            result = pipe(**prompt, height=settings.height, width=settings.width,
                          num_frames=settings.frames, num_inference_steps=settings.steps,
                          guidance_scale=settings.guidance, generator=generators, output_type="np")
            advance(len(batch))
            start = end
            yield from result.frames[:len(batch)]  # each (F, H, W, 3) float in [0, 1]


def load_pipeline(source: ModelSource, settings: SampleSettings):
    """(pipeline, compact): the model's own pipeline class with every component loaded strictly,
    on ``settings.device``, progress bar off, and :class:`CompactPadding` installed where it fits."""
    import diffusers

    from .loading import load_models, quiet_known_warnings
    from .textpath import torch_dtype

    dtype = torch_dtype(settings.dtype)  # every model component loaded strictly, then handed to the pipeline
    # its own class (one the adapter accepts): DiffusionPipeline would load the optional transformer again
    pipeline = getattr(diffusers, str(source.index["_class_name"]))
    with quiet_known_warnings(source):
        pipe = pipeline.from_pretrained(str(source.path), dtype=dtype, use_safetensors=True,
                                        **load_models(source, dtype)).to(settings.device)
    pipe.set_progress_bar_config(disable=True)
    vae = getattr(pipe, "vae", None)
    if settings.device.startswith("cuda"):  # decode a batch clip by clip, in tiles: the VAE's peak stays small
        for switch in ("enable_slicing", "enable_tiling"):
            if callable(getattr(vae, switch, None)):
                getattr(vae, switch)()
    compact = source.adapter.zero_pads_prompts and install_compact_padding(pipe, source.adapter.max_sequence_length)
    return pipe, compact


def _embed(pipe, source: ModelSource, prompts: list[str], device: str, compact: bool = False):
    """The pipeline's prompt embeddings (B, L, D), computed on the real tokens only and zero-padded
    as WanPipeline pads them (L = max_sequence_length): the text encoder never runs over the pad
    tokens. With ``compact``, L is the batch's longest prompt + 1 (see :class:`CompactPadding`)."""
    import torch

    from .textpath import encode_prompts

    length = source.adapter.max_sequence_length
    with torch.no_grad():
        states = encode_prompts(pipe.tokenizer, pipe.text_encoder, prompts, length, device, batch_size=64)
    width = min(length, max(s.shape[0] for s in states) + 1) if compact else length
    dtype = pipe.transformer.dtype
    return torch.stack([torch.cat([s, s.new_zeros(width - s.shape[0], s.shape[1])]) for s in states]).to(dtype)


class CompactPadding:
    """Cross-attention processor for prompts padded to fewer tokens than the pipeline's
    ``max_length`` zero pads. Every pad becomes the same key and value (the text embedder maps the
    zero vector to one constant ``null`` token), so a softmax over ``max_length - T`` identical
    pads equals one over the ``n`` pads present with ``log((max_length - T) / n)`` added to each
    pad's logit: exact, and the K/V projections run on T + n tokens instead of ``max_length``."""

    def __init__(self, inner, null, length: int) -> None:
        self.inner, self.null, self.length = inner, null, length

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None):
        import torch

        if encoder_hidden_states is None or attention_mask is not None:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb)
        null = self.null.to(encoder_hidden_states.dtype)
        distance = (encoder_hidden_states - null).norm(dim=-1)                      # (B, L)
        is_pad = distance <= 1e-4 * null.norm() + 1e-6
        pads = is_pad.sum(dim=-1, keepdim=True)                                      # (B, 1)
        stands_for = self.length - (encoder_hidden_states.shape[1] - pads)          # pads in the full prompt
        weight = torch.log(stands_for.clamp_min(1) / pads.clamp_min(1)).to(hidden_states.dtype)
        bias = torch.where(is_pad, weight, torch.zeros_like(weight))[:, None, None, :]
        return self.inner(attn, hidden_states, encoder_hidden_states, bias, rotary_emb)


def install_compact_padding(pipe, length: int) -> bool:
    """Put :class:`CompactPadding` on every text-only cross-attention of the pipeline's denoisers.
    Returns False (and changes nothing) when a denoiser does not have that layout."""
    import torch

    denoisers = [m for m in (getattr(pipe, "transformer", None), getattr(pipe, "transformer_2", None)) if m is not None]
    for model in denoisers:
        blocks = getattr(model, "blocks", None)
        embedder = getattr(getattr(model, "condition_embedder", None), "text_embedder", None)
        if blocks is None or embedder is None or any(b.attn2.add_k_proj is not None for b in blocks):
            return False
    for model in denoisers:
        embedder = model.condition_embedder.text_embedder
        with torch.no_grad():
            null = embedder(torch.zeros(1, 1, embedder.linear_1.in_features, dtype=model.dtype, device=model.device)).reshape(-1)
        for block in model.blocks:
            block.attn2.set_processor(CompactPadding(block.attn2.processor, null, length))
    return True


def prompts_from_pairs(path: Path, which: str) -> tuple[list[str], list[Path] | None]:
    """Prompts of a pairs file: ``probes``, ``retain``, ``unsafe`` or ``safe``; with, for
    ``unsafe`` and ``safe`` of a file that carries images, their conditioning images in order
    (else None)."""
    from .pairs import load_pairs

    concept = load_pairs(path)
    table = {"probes": concept.probes, "retain": concept.retain, "unsafe": concept.unsafe, "safe": concept.safe}
    if which not in table:
        raise VidunlearnError(f"unknown prompt list {which!r}", fix=f"use one of {sorted(table)}")
    images = {"unsafe": concept.unsafe_images, "safe": concept.safe_images}.get(which) if concept.has_images else None
    return list(table[which]), [Path(p) for p in images] if images else None
