"""What an adapter declares about a model family. Pure data; no torch, no diffusers.

An *edit site* is one activation space of a denoiser together with the linear layers that read
it. The refusal direction is estimated in exactly that space, then projected out of the input
side of every target layer: W' = W (I - lambda p p^T).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Site:
    """An activation space and the linear layers that read it.

    capture:  module path (inside the denoiser) whose output, or input when ``capture_input``,
              is the activation space.
    targets:  module-name templates of the ``nn.Linear`` layers whose input is that space;
              ``{block}`` expands over ``range(config[block_count_key])``.
    """

    name: str
    capture: str
    targets: tuple[str, ...]
    description: str
    capture_input: bool = False

    def target_modules(self, config: dict, block_count_key: str) -> list[str]:
        count = int(config.get(block_count_key, 0))
        names: list[str] = []
        for template in self.targets:
            if "{block}" in template:
                names.extend(template.format(block=i) for i in range(count))
            else:
                names.append(template)
        return names


@dataclass(frozen=True)
class Adapter:
    """Declarative facts about one pipeline family.

    pipeline_classes: ``_class_name`` values in ``model_index.json`` that this adapter handles.
    denoisers:        components that carry edit sites, in order; absent/null ones are skipped
                      (Wan2.2 A14B has two experts, ``transformer`` and ``transformer_2``).
    feed:             module (inside each denoiser) that is called directly on the text
                      encoder's states to reach every site; nothing else of the denoiser runs.
    """

    family: str
    pipeline_classes: tuple[str, ...]
    denoisers: tuple[str, ...]
    denoiser_class: str
    feed: str
    sites: dict[str, Site]
    default_sites: tuple[str, ...]
    block_count_key: str
    aliases: dict[str, str] = field(default_factory=dict)
    text_encoder: str = "text_encoder"
    tokenizer: str = "tokenizer"
    max_sequence_length: int = 512

    def site(self, name: str) -> Site:
        return self.sites[name]

    def targets_matching(self, site: Site, config: dict, pattern: str | None) -> list[str]:
        """Target modules of ``site``, optionally narrowed by a regex on module names."""
        names = site.target_modules(config, self.block_count_key)
        if pattern is None:
            return names
        rx = re.compile(pattern)
        return [n for n in names if rx.search(n)]
