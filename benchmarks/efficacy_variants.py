"""The efficacy benchmark's edit variants (``benchmarks/efficacy.py --variants``): each name is a set of
``api.apply`` keyword arguments. ``VARIANTS`` are the default and its comparisons, ``TUNING`` the
open choices (``--variants tuning``); ``ALL`` holds both, and the screens add their own to it.
benchmarks/attack.py attacks the same variants.
"""

from __future__ import annotations

from pathlib import Path

from vidunlearn.adversarial_settings import CONTEXT_ORDERS   # no torch here

# variant -> keyword arguments of api.apply; "default" is apply's default, the remap (the benchmark's
# winner: see docs/method.md), "paper" the paper's projection (--mode project --method cpca)
P = {"mode": "project", "method": "cpca"}  # the paper's projection; its variants below
VARIANTS: dict[str, dict] = {
    "default": {"mode": "remap"},
    "paper": dict(P),
    "uce": {"mode": "uce"},
    "mean": {**P, "method": "mean"},
    "cpca-us": {**P, "method": "cpca-us"},
    "replace": {**P, "mode": "replace"},
    "bias": {**P, "mode": "bias"},
    "rank1": {**P, "rank": 1},
    "rank8": {**P, "rank": 8},
}
# the open choices (--variants tuning): the remap default's preserve weight and strength;
# the paper's projection's subspace, alpha, strength, level and site; replace-mode and UCE settings
# The remap-* variants were measured at lambda 1 for every task, the default until 2 Dec 2026
# (third session); they keep it ("strength": 1.0). The rule-* variants take the default's lambda
# (1, and 1.25 for several concepts) with one other choice changed.
R1 = {"mode": "remap", "strength": 1.0}
RULE_SITES = ["cross_attn_kv", "text_embedder_in"]
TUNING: dict[str, dict] = {
    "remap-alpha0.25": {**R1, "alpha": 0.25},
    "remap-alpha4": {**R1, "alpha": 4.0},
    "remap-strength1.5": {"mode": "remap", "strength": 1.5},
    "remap-harden1": {**R1, "harden": 1},
    "remap-harden3": {**R1, "harden": 3},
    "remap-strength1.25": {"mode": "remap", "strength": 1.25},
    "remap-alpha0.5": {**R1, "alpha": 0.5},
    "remap-text-in": {**R1, "sites": ["text_embedder_in"]},
    "remap-both-sites": {**R1, "sites": RULE_SITES},
    "rule-both-sites": {"mode": "remap", "sites": RULE_SITES},
    "rule-alpha0.5": {"mode": "remap", "alpha": 0.5},
    "rule-harden1": {"mode": "remap", "harden": 1},
    "rule-alpha0.75": {"mode": "remap", "alpha": 0.75},
    "remap-strength1.35": {"mode": "remap", "strength": 1.35},
    "remap-strength1.25-alpha0.75": {"mode": "remap", "strength": 1.25, "alpha": 0.75},
    "rank2-subspace": {**P, "rank": 2, "subspace": True},
    "rank4-subspace": {**P, "rank": 4, "subspace": True},
    "alpha0": {**P, "alpha": 0.0},
    "alpha4": {**P, "alpha": 4.0},
    "strength1.5": {**P, "strength": 1.5},
    "strength2": {**P, "strength": 2.0},
    "level-pair": {**P, "level": "pair", "rank": 4},
    "site-text-in": {**P, "sites": ["text_embedder_in"]},
    "replace-alpha4": {**P, "mode": "replace", "alpha": 4.0},
    "uce-strength1.5": {"mode": "uce", "strength": 1.5},
    "uce-alpha4": {"mode": "uce", "alpha": 4.0},
}


def _seeded(name: str, settings: dict, seeds: int, batch: int = 5) -> dict:
    """``adversarial200-batch5-NAME`` (``adversarial200-NAME`` at batch 2, the default) with ``settings`` at training
    seeds 0 .. seeds - 1 (``-seedS`` from 1 on)."""
    prefix = "adversarial200-" + (f"batch{batch}-" if batch != 2 else "")
    return {f"{prefix}{name}{f'-seed{s}' if s else ''}": {"steps": 200, **({"batch": batch} if batch != 2 else {}),
                                                          **settings, "seed": s} for s in range(seeds)}


MEASURED_UNDER = {"site": "factors", "lr": 3e-4, "keep_weight": 1.0, "anchor": 0.0, "anchor_concept": 1.0, "unsafe_context": 0,
                  "unsafe_context_order": "list", "anchor_tokens": 0}
# trained against the soft-prompt attack (apply --adversarial STEPS; issue 16, docs/adversarial.md); "away": the erase
# goal pushed away from the unsafe prompt's prediction (erase_guidance, ESD's negative guidance), "keep": keep_weight
for _name, _settings in {"adversarial100": {"steps": 100}, "adversarial200": {"steps": 200},
                         "adversarial400": {"steps": 400},
                         "adversarial200-away1": {"steps": 200, "erase_guidance": 1.0},
                         "adversarial200-away2": {"steps": 200, "erase_guidance": 2.0},
                         "adversarial200-keep2": {"steps": 200, "keep_weight": 2.0},
                         "adversarial200-away1-keep2": {"steps": 200, "erase_guidance": 1.0, "keep_weight": 2.0},
                         "adversarial200-away1-keep4": {"steps": 200, "erase_guidance": 1.0, "keep_weight": 4.0},
                         "adversarial200-onpolicy": {"steps": 200, "on_policy": 0.5},
                         "adversarial200-batch5": {"steps": 200, "batch": 5},
                         "adversarial200-batch5-focus1": {"steps": 200, "batch": 5, "frame_focus": 1.0},
                         "adversarial200-batch5-focus3": {"steps": 200, "batch": 5, "frame_focus": 3.0},
                         "adversarial200-batch5-focus3-keep2": {"steps": 200, "batch": 5, "frame_focus": 3.0, "keep_weight": 2.0},
                         # the same trainings at another training seed: how much of a difference one run's luck makes
                         "adversarial200-batch5-seed1": {"steps": 200, "batch": 5, "seed": 1},
                         "adversarial200-batch5-seed2": {"steps": 200, "batch": 5, "seed": 2},
                         "adversarial200-batch5-focus3-seed2": {"steps": 200, "batch": 5, "frame_focus": 3.0, "seed": 2},
                         "adversarial200-batch5-focus3-seed1": {"steps": 200, "batch": 5, "frame_focus": 3.0, "seed": 1},
                         # restart k: each prompt's attack starts again from its typed words every k visits
                         **_seeded("restart4", {"restart": 4}, 3), **_seeded("restart8", {"restart": 8}, 3),
                         # extra_rank k: the trained factors get k more columns (rank n + k)
                         **_seeded("extra11", {"extra_rank": 11}, 4), **_seeded("extra27", {"extra_rank": 27}, 4),
                         **_seeded("extra11-focus3", {"extra_rank": 11, "frame_focus": 3.0}, 3),
                         # site text_encoder: the text encoder's layers trained, the remap the closed form's (AdvUnlearn's site)
                         **_seeded("te", {"site": "text_encoder", "lr": 1e-4}, 4, batch=2),
                         **_seeded("te", {"site": "text_encoder", "lr": 1e-4}, 2),
                         **_seeded("te-keep4", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0}, 2, batch=2),
                         **_seeded("te-keep8", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 8.0}, 2, batch=2),
                         **_seeded("te-layers2", {"site": "text_encoder", "lr": 1e-4, "text_encoder_layers": 2}, 2, batch=2),
                         **_seeded("te-anchor10", {"site": "text_encoder", "lr": 1e-4, "anchor": 10.0}, 2, batch=2),
                         **_seeded("te-keep4-anchor10", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0, "anchor": 10.0}, 2,
                                   batch=2),
                         **_seeded("te-anchor10", {"site": "text_encoder", "lr": 1e-4, "anchor": 10.0}, 2),
                         # between keep4 (holds, one shape clip short) and keep4-anchor10 (keeps every clip, gives the attack back)
                         **_seeded("te-keep4-anchor3", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0, "anchor": 3.0}, 5,
                                   batch=2),
                         **_seeded("te-keep2-anchor10", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 2.0, "anchor": 10.0}, 2,
                                   batch=2),
                         **_seeded("te-keep4-anchor1", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0, "anchor": 1.0}, 2,
                                   batch=2),
                         # keep4 with 8 keep prompts a step (the keep loss on more of them; the same weight in expectation)
                         **_seeded("te-keep4-kb8", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0, "keep_batch": 8}, 2,
                                   batch=2),
                         # the anchor on every token but those of the words the pairs change (anchor_concept 0)
                         **_seeded("te-keep4-anchor3-ac0", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0, "anchor": 3.0,
                                                            "anchor_concept": 0.0}, 2, batch=2),
                         **_seeded("te-keep4-anchor3-ac0.3", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0, "anchor": 3.0,
                                                              "anchor_concept": 0.3}, 5, batch=2),
                         # the default with every unsafe prompt attacked each step (batch 5 of the 5 pairs): less of the
                         # training seed's luck in which prompts the attack visits
                         **_seeded("te-keep4-anchor3-ac0.3", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0, "anchor": 3.0,
                                                              "anchor_concept": 0.3}, 3),
                         # the anchor on every keep prompt each step (anchor_batch; the circle's triangles kept from rounding)
                         **_seeded("te-keep4-anchor3-ac0.3-ab64", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0,
                                                                   "anchor": 3.0, "anchor_concept": 0.3, "anchor_batch": 64}, 3,
                                   batch=2),
                         **_seeded("te-keep4-anchor6-ac0.3-ab64", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0,
                                                                   "anchor": 6.0, "anchor_concept": 0.3, "anchor_batch": 64}, 3,
                                   batch=2),
                         # the adversarial keep side (keep_attack): a keep prompt attacked towards the concept a step,
                         # trained to render as typed (the circle's triangles rendered round)
                         **_seeded("te-keep4-anchor3-ac0.3-katk1", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0,
                                                                    "anchor": 3.0, "anchor_concept": 0.3, "keep_attack": 1}, 5,
                                   batch=2),
                         **_seeded("te-keep4-anchor3-ac0.3-katk2", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0,
                                                                    "anchor": 3.0, "anchor_concept": 0.3, "keep_attack": 2}, 5,
                                   batch=2),
                         **_seeded("te-keep4-anchor3-ac0.3-katk2-kr1", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0,
                                                                        "anchor": 3.0, "anchor_concept": 0.3, "keep_attack": 2,
                                                                        "keep_restart": 1}, 5, batch=2),
                         # the default's encoders of two trainings (seeds S, S + 1) averaged: a weight soup against the spread
                         **_seeded("te-keep4-anchor3-ac0.3-soup2", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0,
                                                                    "anchor": 3.0, "anchor_concept": 0.3, "soup": 2}, 5, batch=2),
                         # four base samples of each keep prompt for the keep loss (one: the default)
                         **_seeded("te-keep4-anchor3-ac0.3-kref4", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0,
                                                                    "anchor": 3.0, "anchor_concept": 0.3, "keep_references": 4}, 5,
                                   batch=2),
                         # the erase's gradient through the context words scaled (erase_context; the context's drift
                         # renders the circle's triangles round)
                         **_seeded("te-keep4-anchor3-ac0.3-ec0", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0,
                                                                  "anchor": 3.0, "anchor_concept": 0.3, "erase_context": 0.0}, 5,
                                   batch=2),
                         **_seeded("te-keep4-anchor3-ac0.3-ec0.3", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0,
                                                                    "anchor": 3.0, "anchor_concept": 0.3, "erase_context": 0.3},
                                   5, batch=2),
                         # twelve keep prompts a step (the default: 4): each triangle held about three times as often
                         **_seeded("te-keep4-anchor3-ac0.3-kb12", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0,
                                                                   "anchor": 3.0, "anchor_concept": 0.3, "keep_batch": 12}, 5,
                                   batch=2),
                         # keep prompts built in each unsafe prompt's context (keep_context: the circle's triangles
                         # held beside the context words they share with the unsafe prompts); 8: every word there is
                         **_seeded("te-keep4-anchor3-ac0.3-kc8", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0,
                                                                  "anchor": 3.0, "anchor_concept": 0.3, "keep_context": 8}, 5,
                                   batch=2),
                         # everyday prompts' encoder states held too (anchor_unrelated w): the trained encoder moved
                         # unrelated prompts' states by about 45 % (fifteenth session), the keep prompts' by about 12 %
                         **_seeded("te-keep4-anchor3-ac0.3-au1", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0,
                                                                  "anchor": 3.0, "anchor_concept": 0.3, "anchor_unrelated": 1.0},
                                   5, batch=2),
                         **_seeded("te-keep4-anchor3-ac0.3-au3", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0,
                                                                  "anchor": 3.0, "anchor_concept": 0.3, "anchor_unrelated": 3.0},
                                   5, batch=2),
                         # the keep loss on the edited model's own sampling path a share of the steps (keep_on_policy),
                         # and unsafe prompts built in the keep prompts' contexts (unsafe_context; sixteenth session)
                         **_seeded("te-keep4-anchor3-ac0.3-kop0.5", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0,
                                                                     "anchor": 3.0, "anchor_concept": 0.3, "keep_on_policy": 0.5},
                                   5, batch=2),
                         **_seeded("te-keep4-anchor3-ac0.3-uc2", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0,
                                                                  "anchor": 3.0, "anchor_concept": 0.3, "unsafe_context": 2},
                                   5, batch=2),
                         # the same, its unsafe prompts built where they are farthest apart (unsafe_context_order; eighteenth session)
                         **_seeded("te-keep4-anchor3-ac0.3-uc2-spread", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0,
                                                                         "anchor": 3.0, "anchor_concept": 0.3, "unsafe_context": 2,
                                                                         "unsafe_context_order": "spread"}, 5, batch=2),
                         # the same as the uc2 one, with 8 keep prompts a step one random token off held to the base
                         # encoder's states (anchor_tokens; nineteenth session, docs/adversarial-tokens.md)
                         **_seeded("te-keep4-anchor3-ac0.3-uc2-at8", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0,
                                                                      "anchor": 3.0, "anchor_concept": 0.3, "unsafe_context": 2,
                                                                      "anchor_tokens": 8}, 5, batch=2),
                         # the same as the uc2 one, with 2 unsafe prompts a step searched over typed tokens too and
                         # their finds erased (typed_attack; twentieth session, docs/adversarial-typed.md)
                         **_seeded("te-keep4-anchor3-ac0.3-uc2-ta2", {"site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0,
                                                                      "anchor": 3.0, "anchor_concept": 0.3, "unsafe_context": 2,
                                                                      "typed_attack": 2}, 5, batch=2),
                         # the default at half the steps: less drift of the encoder (the circle's retain) against less erase
                         **{f"adversarial100-te-keep4-anchor3-ac0.3{f'-seed{s}' if s else ''}": {
                             "steps": 100, "site": "text_encoder", "lr": 1e-4, "keep_weight": 4.0, "anchor": 3.0,
                             "anchor_concept": 0.3, "seed": s} for s in range(5)},
                         # twice the steps: more of the attack/erase while keep and anchor hold the rest
                         "adversarial400-te-keep4-anchor3": {"steps": 400, "site": "text_encoder", "lr": 1e-4,
                                                             "keep_weight": 4.0, "anchor": 3.0}}.items():
    # each variant as it was measured: the settings it leaves out are the defaults of its time (the factors
    # site, lr 3e-4, keep weight 1, no anchor), not today's (the text encoder's measured ones)
    TUNING[_name] = {"mode": "remap", "adversarial": {**MEASURED_UNDER, **_settings}}
ALL = {**VARIANTS, **TUNING}


def as_apply_kwargs(settings: dict) -> dict:
    """api.apply's keyword arguments for a variant's settings: its recipe fields as an EditRecipe (the
    adversarial settings as their dataclass); any other key (a screen's own) is passed on as it is."""
    from dataclasses import fields

    from vidunlearn.adversarial_settings import AdversarialSettings
    from vidunlearn.apply_options import EditRecipe

    names = {f.name for f in fields(EditRecipe)}
    recipe = {k: v for k, v in settings.items() if k in names}
    if "adversarial" in recipe:
        recipe["adversarial"] = AdversarialSettings(**recipe["adversarial"])
    return {"recipe": EditRecipe(**recipe), **{k: v for k, v in settings.items() if k not in names}}


def folder_args(text: str) -> list[tuple[str, ...]]:
    """``--folders NAME=PATH,...`` as (NAME, PATH) pairs (an entry without '=' stays one item: refused by
    :func:`checked_folders`)."""
    return [tuple(f.split("=", 1)) for f in text.split(",") if f]


def checked_folders(parser, text: str) -> list[tuple[str, ...]]:
    """``--folders`` of attack.py and efficacy.py: (NAME, PATH) pairs, each PATH a folder; one line (exit 2) otherwise."""
    folders = folder_args(text)
    for folder in folders:
        if len(folder) != 2 or not Path(folder[1]).is_dir():
            parser.error(f"--folders wants NAME=PATH with PATH a model folder, got {'='.join(folder)!r}")
    return folders


def apply_kwargs(variant: str) -> dict:
    """api.apply's keyword arguments for a variant (:func:`as_apply_kwargs`)."""
    return as_apply_kwargs(ALL[variant])


def trained_on(variants: list[str], pairs: list, at_least: int = 0, unsafe_at_least: int = 0,
               order: str = "list") -> tuple[str, ...]:
    """The keep prompts that the variants' ``keep_context`` builds from these pairs files
    (vidunlearn.remap.context_prompts), or ``keep_context: at_least``'s if more, and the unsafe prompts and targets
    that their ``unsafe_context`` builds (vidunlearn.remap.unsafe_context_pairs), or ``unsafe_at_least``'s, in
    ``order`` (HOLD_OUT_ORDERS) and each variant's own ``unsafe_context_order``: prompts an edit trained on, to hold
    out of its eval (and of the variants' it is compared with)."""
    from vidunlearn.pairs import load_pairs
    from vidunlearn.remap import context_prompts

    def most(setting: str, least: int) -> int:
        return max([least, *(ALL[v].get("adversarial", {}).get(setting, 0) for v in variants)])

    own = [ALL[v].get("adversarial", {}).get("unsafe_context_order", "list") for v in variants]
    orders = "both" if order == "both" or len({order, *own}) > 1 else order
    concepts = [load_pairs(p) for p in pairs]
    built = [t for c in concepts for t in context_prompts(c, most("keep_context", at_least))]
    built += [t for c in concepts for pair in built_unsafe(c, most("unsafe_context", unsafe_at_least), orders) for t in pair]
    return tuple(dict.fromkeys(built))


HOLD_OUT_ORDERS = (*CONTEXT_ORDERS, "both")   # --held-out-order / --hold-out-order: whose unsafe_context builds


def built_unsafe(concept, per_pair: int, order: str = "list") -> tuple[tuple[str, str], ...]:
    """The (unsafe, target) pairs ``unsafe_context: per_pair`` builds in ``order`` ("both": the list order's, then
    those only the spread order builds)."""
    from vidunlearn.remap import unsafe_context_pairs

    orders = CONTEXT_ORDERS if order == "both" else (order,)
    return tuple(dict.fromkeys(pair for o in orders for pair in unsafe_context_pairs(concept, per_pair, o)))
