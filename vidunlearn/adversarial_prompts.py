"""What ``apply --adversarial`` trains on (:mod:`vidunlearn.adversarial`): the unsafe prompts it attacks
and erases (the pairs' own and, with ``unsafe_context``, those built in the keep prompts' contexts), the
keep prompts it holds (neutral, retain, the remap's targets and, with ``keep_context``, those built in the
unsafe prompts' contexts), ``keep_attack``'s guarded keep items and ``anchor_tokens``' pool."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch

from .errors import VidunlearnError

if TYPE_CHECKING:
    from .adversarial_settings import AdversarialSettings
    from .pairs import ConceptPairs
    from .progress import Reporter


def training_prompts(tokenizer, concepts: list[ConceptPairs], settings: AdversarialSettings, device: str,
                     reporter: Reporter) -> tuple[list[dict], list[str]]:
    """The attacked items (text, token ids, the attacked span, the remap target, the changed word places),
    the pairs' first in their order (their reference seeds follow it), and the keep prompts (none an
    attacked one); one line if no pair replaces a word."""
    from .attack_run import places_span
    from .remap import changed_places, context_prompts, target_prompts, unsafe_context_pairs

    attacked, keep_texts, built, made = [], [], 0, 0
    for concept in concepts:
        targets = target_prompts(concept)[0]
        extra = unsafe_context_pairs(concept, settings.unsafe_context, settings.unsafe_context_order)   # (unsafe, target): their own twin
        for unsafe_text, safe, target in [*((p.unsafe, p.safe, t) for p, t in zip(concept.pairs, targets)),
                                          *((u, t, t) for u, t in extra)]:
            places = changed_places(unsafe_text, safe)[0]
            if places:  # a pair that only adds words has no word to attack
                ids, span = places_span(tokenizer, unsafe_text, places, settings.span)
                attacked.append({"text": unsafe_text, "ids": torch.tensor(ids, device=device), "span": span,
                                 "target": target, "places": places})
        context = context_prompts(concept, settings.keep_context)
        built, made = built + len(context), made + len(extra)
        keep_texts += [*concept.neutral, *concept.retain, *targets, *context]
    unsafe = {a["text"] for a in attacked}
    keep_texts = [t for t in dict.fromkeys(keep_texts) if t not in unsafe]
    if not attacked:
        raise VidunlearnError("--adversarial attacks the words a pair changes, and no pair replaces a word",
                              where=concepts[0].path, fix="give the pairs words that their twins replace")
    if settings.unsafe_context:
        reporter.note(f"unsafe_context {settings.unsafe_context} ({settings.unsafe_context_order} order): {made} unsafe prompts "
                      f"built in the keep prompts' contexts "
                      f"({len(attacked)} attacked in all)")
    if settings.keep_context:
        reporter.note(f"keep_context {settings.keep_context}: {built} keep prompts built in the unsafe prompts' context "
                      f"({len(keep_texts)} keep prompts in all)")
    return attacked, keep_texts


def guarded_items(tokenizer, table: torch.Tensor, attacked: list[dict], keep: list[dict], keep_texts: list[str],
                  settings: AdversarialSettings) -> list[dict]:
    """``keep_attack``'s prompts: each keep prompt attacked at the word places the pairs change (a
    retain prompt's other shape, colour or motion) towards the concept's references (every unsafe
    prompt's), its goal the base's prediction for it as typed: what a search from a kept word finds
    is trained to render the kept word, not the concept (the circle's triangles rendered round)."""
    pool = torch.cat([item["latents"] for item in attacked])
    guarded = []
    for i, ids, span in keep_spans(tokenizer, attacked, keep_texts, settings.span, "keep_attack"):
        ids = torch.tensor(ids, device=pool.device)
        start = table[ids[span]].detach().clone()
        guarded.append({"text": keep_texts[i], "ids": ids, "span": span, "goal": keep[i]["states"], "typed": keep[i]["states"],
                        "guards": True, "start": start, "latents": pool})
    return guarded


def keep_spans(tokenizer, attacked: list[dict], keep_texts: list[str], width: int, setting: str) -> list[tuple]:
    """(index, token ids, the attack's span) of each keep prompt with a word at the places the pairs change
    (:func:`vidunlearn.attack_run.places_span`, ``width`` tokens wide): where ``keep_attack`` and
    ``anchor_tokens`` (``setting``, named in the one line if no keep prompt reaches the places) work."""
    from .attack_run import places_span

    slots = sorted({p for item in attacked for p in item["places"]})
    reached = []
    for i, text in enumerate(keep_texts):
        places = tuple(p for p in slots if p < len(text.split()))
        if places:
            reached.append((i, *places_span(tokenizer, text, places, width)))
    if not reached:   # the remap's targets alone have the places (the unsafe prompts' form): not reached
        raise VidunlearnError(f"adversarial setting {setting} found no keep prompt with a word at the places the pairs "
                              "change", fix=f"set {setting}: 0")
    return reached


TOKEN_POOL = 512   # anchor_tokens' pool: one-token changes of the keep prompts, each with the base encoder's states


def token_pool(tokenizer, encoder, attacked: list[dict], keep_texts: list[str], words: set[str], settings: AdversarialSettings,
               length: int, device: str) -> list[dict]:
    """``anchor_tokens``' prompts: :data:`TOKEN_POOL` keep prompts, each with one token of the discrete
    attack's span (the word places the pairs change, ``span`` tokens wide, at least 2) replaced by a random typeable
    token, never one of the pairs' changed ``words`` ("a red triangle bullet moving up ..."), with the
    base encoder's states (run before any training) and the places of the kept word's tokens (``held``: the
    anchor holds those alone where the base puts them, a junk word beside them or not, and leaves the junk
    word's and the context's states to the erase: the default's typed-attack wins on the circle come from its
    trained triangle token's state, benchmarks/token_states.py) as ``anchor_weights`` (1 there, 0 elsewhere).
    Measured: it mends those wins and lets the soft prompt win more (docs/adversarial-tokens.md). Seeded by
    ``settings.seed``; one line if no keep prompt reaches the places."""
    from .attack import allowed_tokens, encode, random_tokens

    # at least 2 wide: a token to hold beside the random one
    reached = [(ids, span) for _, ids, span in keep_spans(tokenizer, attacked, keep_texts, max(settings.span, 2), "anchor_tokens")]
    generator = torch.Generator().manual_seed(settings.seed)
    allowed = allowed_tokens(tokenizer, {w.lower() for w in words})
    which = torch.randint(len(reached), (TOKEN_POOL,), generator=generator).tolist()
    tokens = random_tokens(allowed, TOKEN_POOL, generator).tolist()
    pool = []
    for k, token in zip(which, tokens):
        ids, span = reached[k]
        ids, free = list(ids), span[int(torch.randint(len(span), (1,), generator=generator))]
        ids[free] = token
        held = [p for p in span if p != free and p < length]
        weights = torch.zeros(min(len(ids), length), device=device)   # the anchor's per token: the kept word's alone
        weights[held] = 1.0
        pool.append({"ids": torch.tensor(ids[:length], device=device), "held": held, "anchor_weights": weights})
    with torch.no_grad():
        for item in pool:
            item["states"] = encode(encoder, item["ids"][None])[0]
    return pool
