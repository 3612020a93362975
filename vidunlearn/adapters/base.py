"""What an adapter declares about a model family: data, plus the few family functions (prompt
encoding, key names) that import torch or diffusers lazily, when called.

An *edit site* is one activation space of a denoiser together with the linear layers that read
it. The refusal direction is estimated in exactly that space, then projected out of the input
side of every target layer: W' = W (I - lambda p p^T).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Site:
    """An activation space and the linear layers that read it.

    capture:  module path (inside the denoiser) whose output, or input when ``capture_input``,
              is the activation space.
    targets:  module-name templates of the ``nn.Linear`` layers whose input is that space;
              ``{block}`` expands over ``range(config[block_count_key])``.
    stream:   which input reaches it: ``"text"`` (the prompts, through ``Adapter.feed``) or
              ``"image"`` (the conditioning images, through ``Adapter.image_feed``). A site's
              direction is estimated from its own stream's pairs only.
    """

    name: str
    capture: str
    targets: tuple[str, ...]
    description: str
    capture_input: bool = False
    expand: Callable[[dict], list[str]] | None = None  # config -> target names, where one {block} count does not fit
    stream: str = "text"  # "text" or "image"

    def target_modules(self, config: dict, block_count_key: str) -> list[str]:
        if self.expand is not None:
            return self.expand(config)
        count = int(config.get(block_count_key, 0))
        names: list[str] = []
        for template in self.targets:
            if "{block}" in template:
                names.extend(template.format(block=i) for i in range(count))
            else:
                names.append(template)
        return names


@dataclass(frozen=True)
class KeyMap:
    """A family's own tensor names (its original / ComfyUI single-file layout), both ways.

    to_original / to_diffusers map a diffusers key (``blocks.0.attn2.to_k.weight``) to the
    original one and back, raising :class:`~vidunlearn.errors.ModelError` on an unknown key.
    prefix:      optional prefix of ComfyUI-saved checkpoints (``model.diffusion_model.``).
    lora_prefix: the prefix of LoRA keys in original names that the family's loaders read.
    """

    to_original: Callable[[str], str]
    to_diffusers: Callable[[str], str]
    prefix: str = ""
    lora_prefix: str = ""


@dataclass(frozen=True)
class FolderLayout:
    """A family shipped in its own folder layout, not as a diffusers pipeline (Open-Sora 2.0):
    one safetensors file at the folder's root holds the whole denoiser under the family's own key
    names (it is read and written as a single file, those names kept), and transformers folders
    beside it hold the text encoder and its tokenizer.

    denoiser_file: the file's name; a folder holding it (and no model_index.json) has this layout.
    folders:       component (``text_encoder``, ``tokenizer``) -> (subfolder, library, class name).
    config:        the denoiser's config from its tensors' shapes ({key: shape}): the file has none.
    download:      the Hub files the tool reads (``snapshot_download``'s allow_patterns).
    """

    denoiser_file: str
    folders: dict[str, tuple[str, str, str]]
    config: Callable[[dict[str, tuple[int, ...]]], dict]
    download: tuple[str, ...] = ()


@dataclass(frozen=True)
class Adapter:
    """Declarative facts about one pipeline family.

    pipeline_classes: ``_class_name`` values in ``model_index.json`` that this adapter handles.
    denoisers:        components that carry edit sites, in order; absent/null ones are skipped
                      (Wan2.2 A14B has two experts, ``transformer`` and ``transformer_2``).
    feed:             module (inside each denoiser) that is called directly on the text
                      encoder's states to reach every site; nothing else of the denoiser runs.
    image_encoder:    for image-conditioned families (Wan2.1 I2V), the pipeline component that
                      encodes the conditioning image (with ``image_processor``), run by
                      ``encode_image``; ``image_feed`` is the module of each denoiser called on
                      its states to reach the ``stream="image"`` sites. None: no image stream.
    takes_image:      the pipeline's call needs ``image=`` (sample/eval pass ``--image``).
    layout:           a family outside diffusers (:class:`FolderLayout`); None: a diffusers pipeline folder.
    denoiser_factory: where diffusers has no class for the denoiser, returns the torch class the
                      tool builds from the config on the meta device (``from_config``, ``config_class``).
    """

    family: str
    pipeline_classes: tuple[str, ...]
    denoisers: tuple[str, ...]
    denoiser_class: str
    feed: str
    sites: dict[str, Site]
    default_sites: tuple[str, ...]
    block_count_key: str
    encode: Callable  # (tokenizer, encoder, prompts, max_length, device, batch_size=8, progress=None) -> [(T_i, D)]
    aliases: dict[str, str] = field(default_factory=dict)
    text_encoder: str = "text_encoder"
    tokenizer: str = "tokenizer"
    max_sequence_length: int = 512
    keymap: KeyMap | None = None   # original key names: single-file output (None: refused) and LoRA names
    single_file_refusal: str = "has no widely used single-file layout"  # why, where keymap is None
    lora_original_names: bool = False  # LoRA keys in keymap names (Wan); else diffusers' "<component>.<module>"
    lora_bias: str = "lora_B.bias"  # a bias change's LoRA key suffix (diffusers' PEFT loaders); Wan's loaders: "diff_b"
    zero_pads_prompts: bool = False  # the pipeline zero-pads real-token states (Wan): sample embeds them itself
    frame_step: int = 4   # clips have frame_step * k + 1 frames
    size_step: int = 16   # height and width are multiples of this
    card_extra: dict[str, str] = field(default_factory=dict)  # card loading-code lines per extra denoiser's LoRA
    # the card's code loading a LoRA output where the pipeline's load_lora_weights cannot (ZeroScope):
    # a format string of {pipeline}, {base_id}, {name} (the output folder) and {file}; None: load_lora_weights
    lora_loading: str | None = None
    image_encoder: str | None = None
    image_processor: str = "image_processor"
    encode_image: Callable | None = None  # (processor, encoder, images, device, progress=None) -> [(T_i, D)]
    image_feed: str | None = None
    takes_image: bool = False
    layout: FolderLayout | None = None
    denoiser_factory: Callable[[], type] | None = None
    lora_refusal: str | None = None  # why --format lora is refused (no loader reads a LoRA of this family)
    # the card's code loading a single-file output where diffusers' from_single_file cannot: a format
    # string of {name} (the output folder) and {file}; None: from_single_file
    single_file_loading: str | None = None

    def denoiser_type(self) -> type:
        """The class the denoiser is built from: the family's own (``denoiser_factory``) or diffusers'."""
        if self.denoiser_factory is not None:
            return self.denoiser_factory()
        import diffusers

        return getattr(diffusers, self.denoiser_class)

    def site(self, name: str) -> Site:
        return self.sites[name]

    def feed_for(self, stream: str) -> str:
        """The module called on ``stream``'s states (``text``: ``feed``, ``image``: ``image_feed``)."""
        return self.image_feed if stream == "image" and self.image_feed else self.feed

    @property
    def pipeline_class(self) -> str:
        return self.pipeline_classes[0]

    def lora_key(self, component: str, module: str) -> str:
        """The LoRA file's name for ``module`` of ``component`` (without ``.lora_A.weight``)."""
        if self.lora_original_names and self.keymap is not None:
            return self.keymap.lora_prefix + self.keymap.to_original(module)
        return f"{component}.{module}"

    def lora_module(self, component: str, key: str) -> str | None:
        """The diffusers module a LoRA name stands for (the inverse of :meth:`lora_key`), or None."""
        if self.lora_original_names and self.keymap is not None:
            if not key.startswith(self.keymap.lora_prefix):
                return None
            return self.keymap.to_diffusers(key[len(self.keymap.lora_prefix):] + ".weight").removesuffix(".weight")
        return key[len(component) + 1:] if key.startswith(component + ".") else None

    def targets_matching(self, site: Site, config: dict, pattern: str | None) -> list[str]:
        """Target modules of ``site``, optionally narrowed by a regex on module names."""
        names = site.target_modules(config, self.block_count_key)
        if pattern is None:
            return names
        rx = re.compile(pattern)
        return [n for n in names if rx.search(n)]
