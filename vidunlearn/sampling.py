"""Generate videos from an edited model (and its base, for comparison) with fixed seeds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from .bounds import check_pipeline
from .errors import VidunlearnError
from .hashing import sha256_file
from .fsutil import atomic_output, check_apart, check_writable, write_json
from .model import ModelSource, resolve_model
from .pairs import MAX_PROMPT_CHARS
from .progress import SILENT, Reporter


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


@dataclass
class SampleResult:
    out: Path
    videos: list[dict] = field(default_factory=list)


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
    """Clips (F, H, W, 3) float in [0, 1], one per prompt. Prompt i uses ``seeds[i]`` (default:
    ``settings.seed`` for all); a batch draws each prompt's noise from its own generator, so the
    clips do not depend on ``batch_size``. ``image``: the first frame of every clip (one path), or
    of each prompt's clip (a list, one per prompt), for a pipeline that takes ``image=``
    (``adapter.takes_image``)."""
    import torch

    image = image if image is not None else (Path(settings.image) if settings.image else None)
    paths = list(image) if isinstance(image, list) else [image] * len(prompts)
    loaded = {path: load_condition_image(path, source) for path in dict.fromkeys(paths)}
    conditions = [loaded[path] for path in paths]

    seeds = seeds if seeds is not None else [settings.seed] * len(prompts)
    pipe, compact = load_pipeline(source, settings)
    clips = []
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
            clips.extend(result.frames[:len(batch)])  # each (F, H, W, 3) float in [0, 1]
            advance(len(batch))
            start = end
    del pipe
    return clips


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
            null = embedder(torch.zeros(1, 1, embedder.linear_1.in_features, dtype=model.dtype)).reshape(-1)
        for block in model.blocks:
            block.attn2.set_processor(CompactPadding(block.attn2.processor, null, length))
    return True


def sample(model: str, prompts: list[str], *, out: Path, compare: str | None = None, revision: str | None = None,
           settings: SampleSettings = SampleSettings(), force: bool = False, reads: tuple[Path, ...] = (),
           image: Path | list[Path | None] | None = None, reporter: Reporter = SILENT) -> SampleResult:
    """Write ``edited/NN.mp4`` (and with ``compare``: ``base/NN.mp4``, ``compare_NN.mp4`` side by
    side), a contact sheet ``sheet.png`` (one row per prompt, base and edited side by side) and
    ``samples.json`` into ``out``. ``out`` must stay apart from the models and the input files
    ``reads`` (a pairs file the prompts came from). ``image``: the first frame of every clip, for
    an image-to-video model: one image for all prompts, or a list with one per prompt (a pairs
    file's own images); base and edited see the same."""
    from .sheet import SheetRow, compare_sheet
    from .video import side_by_side, write_mp4

    if not prompts:
        raise VidunlearnError("no prompts", fix="pass --prompt TEXT (repeatable) or --prompts-from pairs/x.yaml")
    long = [p for p in [*prompts, settings.negative_prompt] if len(p) > MAX_PROMPT_CHARS]
    if long:
        raise VidunlearnError(f"a prompt is {len(long[0])} characters long (limit {MAX_PROMPT_CHARS})", where="--prompt",
                              fix="shorten it; text encoders truncate long prompts anyway")
    check_writable(out, force=force)
    edited = resolve_model(model, revision)
    base = resolve_model(compare) if compare else None
    settings.check(edited.adapter.frame_step, edited.adapter.size_step)
    check_apart(out, [*(("the model folder", s.path) for s in (edited, base) if s), *(("the input file", p) for p in reads)])
    images = list(image) if isinstance(image, list) else [image] * len(prompts)
    if len(images) != len(prompts):
        raise VidunlearnError(f"{len(images)} images for {len(prompts)} prompts", fix="pass one image per prompt")
    for source in (edited, base) if base else (edited,):
        check_pipeline(source)  # what from_pretrained will build, bounded by the weights first
        for path in dict.fromkeys(images):
            load_condition_image(path, source)  # before any work
    check_apart(out, [("the --image file", Path(path)) for path in dict.fromkeys(images) if path is not None])
    result = SampleResult(out)
    with atomic_output(out, directory=True, replace=force) as temp:
        edited_clips = _generate(edited, prompts, settings, reporter, "edited model", image=images)
        base_clips = _generate(base, prompts, settings, reporter, "base model", image=images) if base else None
        for i, prompt in enumerate(prompts):
            entry: dict = {"prompt": prompt, "seed": settings.seed, "edited": f"edited/{i:02d}.mp4"}
            if images[i] is not None:
                entry["image"] = {"path": str(images[i]), "sha256": sha256_file(Path(images[i]))}
            write_mp4(edited_clips[i], temp / entry["edited"], fps=settings.fps)
            if base_clips is not None:
                entry.update(base=f"base/{i:02d}.mp4", compare=f"compare_{i:02d}.mp4")
                write_mp4(base_clips[i], temp / entry["base"], fps=settings.fps)
                write_mp4(side_by_side([base_clips[i], edited_clips[i]]), temp / entry["compare"], fps=settings.fps)
            result.videos.append(entry)
        columns = ("base", "edited") if base_clips is not None else ("edited",)
        compare_sheet([SheetRow(p, (base_clips[i], edited_clips[i]) if base_clips is not None else (edited_clips[i],),
                                (f"seed {settings.seed}",)) for i, p in enumerate(prompts)], columns, temp / "sheet.png")
        write_json(temp / "samples.json", {
            "model": edited.describe(), "base": base.describe() if base else None,
            "settings": asdict(settings), "videos": result.videos,
        })
    return result


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
