"""The settings of ``apply --adversarial STEPS`` (:mod:`vidunlearn.adversarial`): the dataclass, each
training site's measured defaults, and ``--adversarial-settings FILE``'s loader (one line for every bad
value, naming the file). No torch here: the CLI and the options read it at start-up."""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import VidunlearnError

if TYPE_CHECKING:
    from .sampling import SampleSettings

MAX_STEPS = 100_000
SITES = ("factors", "text_encoder")
CONTEXT_ORDERS = ("list", "spread")   # unsafe_context's orders (vidunlearn.remap.unsafe_context_pairs)
# each site's measured settings, for those a settings file leaves out (docs/adversarial-encoder.md: the text
# encoder's are the setting measured to meet every issue-16 target on red, the circle and the motion, with
# unsafe_context 2 since the sixteenth session, docs/adversarial-contexts.md; the factors' are those of
# docs/adversarial.md's tables)
SITE_DEFAULTS = {"text_encoder": {"lr": 1e-4, "keep_weight": 4.0, "anchor": 3.0, "anchor_concept": 0.3, "unsafe_context": 2,
                                  "unsafe_context_order": "list", "anchor_tokens": 0},
                 "factors": {"lr": 3e-4, "keep_weight": 1.0, "anchor": 0.0, "anchor_concept": 1.0, "unsafe_context": 0,
                              "unsafe_context_order": "list", "anchor_tokens": 0}}


@dataclass(frozen=True)
class AdversarialSettings:
    """The training budget (recorded in the manifest's recipe) and how the reference samples are
    rendered (default: the benchmark world's clips; a real model wants e.g. 33 x 480 x 832)."""

    steps: int = 0             # training steps; 0: off
    lr: float | None = None    # Adam on what trains; None: the site's (SITE_DEFAULTS)
    inner: int = 5             # attack steps per visit of a prompt
    inner_lr: float = 0.01     # the attack's Adam (vidunlearn attack --space input)
    batch: int = 2             # unsafe prompts attacked a step
    keep_batch: int = 4        # keep prompts a step
    keep_weight: float | None = None   # None: the site's
    erase_guidance: float = 0.0  # erase goal base(target) + g (base(target) - base(unsafe)), ESD's negative guidance
    on_policy: float = 0.0       # share of erase steps on the edited model's own path under the attack (ESD's x_t)
    keep_on_policy: float = 0.0  # share of keep steps on the edited model's own path under the keep prompt (DAgger's x_t)
    frame_focus: float = 0.0     # erase loss per latent frame weighted by that frame's own loss to this power (0: uniform)
    restart: int = 0             # a prompt's attack starts again from its typed words every this many visits (0: never)
    random_start: float = 0.0    # share of an unsafe prompt's attack visits that start again from random typeable tokens at its span
    extra_rank: int = 0          # columns added to the trained factors A (zero) and B (orthonormal): the edit's rank n + this
    site: str = "text_encoder"   # what trains: "text_encoder" (its layers; the remap fixed) or "factors" (the remap's A, B)
    text_encoder_layers: int = 0  # with site text_encoder: only its first this many blocks train (0: every layer)
    anchor: float | None = None  # with site text_encoder: the keep prompts' states held to the base's (relative MSE), weight
    anchor_concept: float | None = None  # within the anchor, the weight of the tokens of the words the pairs change (0: free)
    anchor_batch: int = 0        # keep prompts anchored a step, drawn on their own (0: the keep loss's keep_batch prompts)
    anchor_unrelated: float = 0.0  # with site text_encoder: everyday prompts' states (collateral.anchor_prompts) held to the base's
    anchor_unrelated_batch: int = 8  # of those, drawn a step
    anchor_tokens: int | None = None  # with site text_encoder: keep prompts with one token of the attack's span random, their
                                      # states held to the base's (adversarial_prompts.token_pool), this many a step; None: the site's
    typed_attack: int = 0        # unsafe prompts a step also searched over typed tokens at their span (GCG, warm-started: one
                                 # coordinate swap of typed_candidates a visit) and what it finds erased (0: none)
    typed_candidates: int = 32   # swaps evaluated per typed search step (vidunlearn attack --space discrete's candidates)
    keep_attack: int = 0         # keep prompts attacked a step towards the concept and trained to render as typed (0: none)
    keep_restart: int = 0        # a keep prompt's attack starts again from its typed words every this many visits (0: never)
    keep_context: int = 0        # keep prompts built from each unsafe prompt, its changed words replaced by other words the
                                 # neutral/retain prompts hold there (remap.context_prompts; 0: none)
    unsafe_context: int | None = None  # unsafe prompts built from the keep prompts, the pairs' changed words put in, up to this
                                       # many a pair, each erased onto its target (remap.unsafe_context_pairs; 0: none); None: the site's
    unsafe_context_order: str | None = None  # which keep prompts unsafe_context takes: "list" (their order) or "spread" (farthest
                                             # in words from the unsafe prompts so far); None: the site's
    erase_context: float = 1.0   # with site text_encoder: the erase's gradient through the tokens outside the attacked span, scale
    soup: int = 1                # with site text_encoder: trainings at seeds seed .. seed + soup - 1, their encoders averaged
    draws: int = 4             # (sample, noise, timestep) draws per prompt and step
    references: int = 4        # the base's samples of each unsafe prompt
    keep_references: int = 1   # the base's samples of each keep prompt
    span: int = 2              # tokens searched at a one-word change
    seed: int = 0
    sample_steps: int = 10
    frames: int = 5
    height: int = 32
    width: int = 32
    guidance: float = 2.0

    def resolved(self) -> AdversarialSettings:
        """These settings with each unset (None) one the site's measured default (SITE_DEFAULTS)."""
        return replace(self, **{k: v for k, v in SITE_DEFAULTS.get(self.site, {}).items() if getattr(self, k) is None})

    def check(self) -> None:
        if self.site not in SITES:
            raise VidunlearnError(f"adversarial setting site = {str(self.site)[:40]!r} is not one of {', '.join(SITES)}",
                                  fix="use site: text_encoder (the text encoder's layers) or site: factors (the remap's own)")
        self.resolved()._check_values()

    def _check_values(self) -> None:
        if not 0 <= self.steps <= MAX_STEPS or int(self.steps) != self.steps:
            raise VidunlearnError(f"--adversarial {self.steps!r} is not a whole number of steps from 0 to {MAX_STEPS}",
                                  fix="use e.g. --adversarial 200")
        for name in ("inner", "batch", "keep_batch", "typed_candidates", "anchor_unrelated_batch", "draws", "references", "keep_references", "span", "sample_steps"):
            if int(getattr(self, name)) != getattr(self, name) or getattr(self, name) < 1:
                raise VidunlearnError(f"adversarial setting {name} = {getattr(self, name)!r} must be a whole number of at least 1")
        for name in ("lr", "inner_lr"):
            if not 0 < getattr(self, name) < 10:
                raise VidunlearnError(f"adversarial setting {name} = {getattr(self, name)!r} must be in (0, 10)")
        for name in ("keep_weight", "erase_guidance", "frame_focus", "anchor", "anchor_concept", "anchor_unrelated"):
            if not 0 <= getattr(self, name) <= 1000:
                raise VidunlearnError(f"adversarial setting {name} = {getattr(self, name)!r} must be in [0, 1000]")
        for name in ("restart", "keep_restart"):
            self._whole(name, 0, MAX_STEPS, " of visits", " (never)")
        self._whole("extra_rank", 0, 4096)
        self._whole("keep_attack", 0, 100_000, zero=" (no keep prompt attacked)")
        self._whole("typed_attack", 0, 100_000, " of prompts a step", " (none)")
        self._whole("anchor_batch", 0, 100_000, zero=" (the keep loss's prompts)")
        self._whole("keep_context", 0, 1000, " of prompts for each unsafe prompt", " (none)")
        self._whole("unsafe_context", 0, 1000, " of prompts for each pair", " (none)")
        self._whole("text_encoder_layers", 0, 4096, zero=" (every layer)")
        self._whole("anchor_tokens", 0, 100_000, " of prompts a step", " (none)")
        if self.anchor_tokens and (self.site != "text_encoder" or not self.anchor):
            raise VidunlearnError(f"adversarial setting anchor_tokens = {self.anchor_tokens} holds a trained text encoder with "
                                  f"the anchor's weight, and site is {self.site}, anchor {self.anchor}",
                                  fix="set anchor_tokens: 0, or site: text_encoder with anchor > 0")
        self._whole("soup", 1, 64, " of trainings")
        if self.soup > 1 and self.site != "text_encoder":
            raise VidunlearnError(f"adversarial setting soup = {self.soup} averages trained text encoders, and site is "
                                  f"{self.site}", fix="set soup: 1, or site: text_encoder")
        if self.anchor_unrelated and self.site != "text_encoder":
            raise VidunlearnError(f"adversarial setting anchor_unrelated = {self.anchor_unrelated} holds a trained text encoder, "
                                  f"and site is {self.site}", fix="set anchor_unrelated: 0, or site: text_encoder")
        if self.unsafe_context_order not in CONTEXT_ORDERS:
            raise VidunlearnError(f"adversarial setting unsafe_context_order = {str(self.unsafe_context_order)[:40]!r} is not one "
                                  f"of {', '.join(CONTEXT_ORDERS)}", fix="use unsafe_context_order: spread (or list, the keep prompts' order)")
        if not 0 <= self.erase_context <= 1:
            raise VidunlearnError(f"adversarial setting erase_context = {self.erase_context!r} must be in [0, 1]")
        if self.erase_context != 1 and self.site != "text_encoder":
            raise VidunlearnError(f"adversarial setting erase_context = {self.erase_context} scales the trained text encoder's "
                                  f"gradient, and site is {self.site}", fix="set erase_context: 1, or site: text_encoder")
        for name in ("on_policy", "keep_on_policy", "random_start"):
            if not 0 <= getattr(self, name) <= 1:
                raise VidunlearnError(f"adversarial setting {name} = {getattr(self, name)!r} must be in [0, 1]")

    def _whole(self, name: str, low: int, high: int, unit: str = "", zero: str = "") -> None:
        value = getattr(self, name)
        if not low <= value <= high or int(value) != value:
            raise VidunlearnError(f"adversarial setting {name} = {value!r} must be a whole number{unit} from {low}{zero} to {high}")

    def sample(self, device: str, dtype: str) -> SampleSettings:
        from .sampling import SampleSettings

        return SampleSettings(steps=self.sample_steps, frames=self.frames, height=self.height, width=self.width,
                              guidance=self.guidance, device=device, dtype=dtype)


def load_settings(path: Path | None, steps: int) -> AdversarialSettings:
    """``--adversarial STEPS`` with the other settings from ``--adversarial-settings FILE`` (YAML, any
    field of :class:`AdversarialSettings` but ``steps``)."""
    import yaml

    values: dict = {}
    if path is not None:
        where = str(path)
        try:
            values = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
            raise VidunlearnError(f"cannot read the adversarial settings: {str(exc).splitlines()[0]}", where=where,
                                  fix="pass a YAML mapping such as 'frames: 33'") from None
        if not isinstance(values, dict):
            raise VidunlearnError("the adversarial settings must be a YAML mapping", where=where, fix="write e.g. 'frames: 33'")
        known = {f.name for f in fields(AdversarialSettings)} - {"steps"}
        unknown = sorted(set(map(str, values)) - known)
        if unknown:
            raise VidunlearnError(f"unknown adversarial setting {unknown[0]!r}", where=where, fix=f"use some of {sorted(known)}")
        for name, value in values.items():
            default = getattr(AdversarialSettings, name)
            if default is None:   # the site's: a word, or a number (whose range check below says more than its type)
                default = SITE_DEFAULTS["text_encoder"][name] if isinstance(SITE_DEFAULTS["text_encoder"][name], str) else 0.0
            if isinstance(default, str):
                if not isinstance(value, str):
                    raise VidunlearnError(f"adversarial setting {name} = {value!r} must be a word, e.g. {default}", where=where)
            elif isinstance(value, bool) or not isinstance(value, (int, float)) or (isinstance(default, int) and not isinstance(value, int)):
                raise VidunlearnError(f"adversarial setting {name} = {value!r} must be a {type(default).__name__}", where=where)
    settings = AdversarialSettings(**{**values, "steps": steps})
    settings.check()
    return settings
