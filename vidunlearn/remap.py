"""The default edit: remap every unsafe token onto its twin in a consistent target prompt.

For one concept, per edit site (H = the width of the activations the edited layers read):

    E_c (n, H)  the unsafe prompts' tokens        (erase rows)
    T_c (n, H)  the same tokens of the TARGET prompts, position by position (a minimal pair swaps
                a word for a word of the same token count; otherwise the prompt means are used)
    E_p (m, H)  the neutral prompts' and the safe prompts' tokens (preserve rows), and at a tenth of
                their weight the tokens of 100 everyday anchor prompts (:data:`ANCHOR_WEIGHT`)

    min_M  ||E_c M^T - T_c||^2 + alpha ||E_p M^T - E_p||^2 + mu ||M - I||^2
    M = I + A B^T,   A = (T_c - E_c)^T,   B = G^-1 E_c^T,   G = E_c^T E_c + alpha E_p^T E_p + mu I

and every layer reading the site becomes W' = W M = W + (W A) B^T (rank <= n). This is UCE's
closed form (:func:`vidunlearn.edit.uce_factors`) with two changes that the benchmark decided
(docs/method.md, "The remap, the benchmark's winner"):

1. **One target for the whole concept.** A linear map cannot send "circle" to a square in one
   pair and to a triangle in the next: it averages them, and the model draws its fallback shape,
   often the erased one. The target prompts are the unsafe prompts with the concept's words
   replaced by ONE replacement: the pairs file's ``target:``, else the replacement the pairs use
   most often (ties: the first pair's). Where the pairs are not single-span substitutions (real
   concepts such as violence rewrite several words), each pair's own safe twin is the target.
2. **Several concepts compose** instead of being solved jointly: M = M_1 M_2 ... (the order of
   the pairs files). Solved jointly, one file's preserve rows ("a green circle" kept, in red.yaml)
   fight the other file's erase rows ("circle" -> "square"); composed, each map sees the other's
   output. The composed change is still low-rank: M - I = [A_1, M_1 A_2, ...][B_1, B_2, ...]^T.
"""

from __future__ import annotations

import difflib
from collections import Counter

import torch

from .adversarial_settings import CONTEXT_ORDERS
from .edit import uce_factors
from .errors import FactorizeError, PairsError
from .pairs import ConceptPairs

# The anchor prompts (100 everyday prompts, vidunlearn.collateral.anchor_prompts) are preserved
# with this share of the pairs' own preserve weight: it cut the collateral on unrelated prompts
# by about a fifth with no loss on the benchmark (docs/method.md); at weight 1 they resisted the
# edit itself ("moving left" 25 % left, rest kept 42 %).
ANCHOR_WEIGHT = 0.1


def word_change(unsafe: str, safe: str) -> tuple[int, int, str] | None:
    """The one span of words in which two prompts differ: (start, end) word indices in
    ``unsafe`` and the words of ``safe`` that replace them. None when they differ in more than
    one place (or not at all)."""
    changes = _changes(unsafe, safe)
    if len(changes) != 1:
        return None
    _, start, end, b_start, b_end = changes[0]
    return start, end, " ".join(safe.split()[b_start:b_end])


def _changes(unsafe: str, safe: str) -> list[tuple[str, int, int, int, int]]:
    """difflib's opcodes of the two prompts' words, the ones that are not "equal"."""
    matcher = difflib.SequenceMatcher(a=unsafe.split(), b=safe.split(), autojunk=False)
    return [op for op in matcher.get_opcodes() if op[0] != "equal"]


def changed_places(unsafe: str, safe: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The word indices in which two prompts differ: (those of ``unsafe`` replaced or deleted,
    those of ``safe`` replacing or inserted); the words compared as :func:`word_change` does."""
    changes = _changes(unsafe, safe)
    return (tuple(k for _, start, end, _, _ in changes for k in range(start, end)),
            tuple(k for _, _, _, b_start, b_end in changes for k in range(b_start, b_end)))


def target_prompts(concept: ConceptPairs) -> tuple[tuple[str, ...], str]:
    """The prompts every unsafe prompt is remapped onto, and a one-line account of the choice.

    - ``target:`` in the pairs file: each unsafe prompt with its changed words replaced by it
      (every pair must then differ from its safe twin in one span of words);
    - else, when every pair is a one-span substitution: the replacement used most often;
    - else: each pair's own safe prompt.
    """
    changes = [word_change(p.unsafe, p.safe) for p in concept.pairs]
    if concept.target is not None:
        for i, change in enumerate(changes):
            if change is None:
                raise PairsError("a 'target:' needs every pair to differ from its safe twin in one span of words",
                                 where=f"{concept.path} [pairs[{i}]]",
                                 fix="make the pair a minimal substitution, or remove 'target:'")
        replacement, how = concept.target, f"'target: {concept.target}' of the pairs file"
    elif all(c is not None for c in changes):
        counts = Counter(c[2] for c in changes if c is not None)
        replacement = max(counts, key=lambda word: counts[word])  # ties: first seen (Counter keeps order)
        how = f"'{replacement}', the replacement most of the pairs use ({counts[replacement]} of {len(changes)})"
    else:
        return concept.safe, "each pair's own safe prompt (the pairs rewrite more than one span)"
    prompts = []
    for pair, change in zip(concept.pairs, changes):
        assert change is not None
        words = pair.unsafe.split()
        prompts.append(" ".join(words[:change[0]] + replacement.split() + words[change[1]:]))
    return tuple(prompts), how


def context_prompts(concept: ConceptPairs, per_prompt: int) -> tuple[str, ...]:
    """Keep prompts in the unsafe prompts' own context (``apply --adversarial``'s ``keep_context``): each
    unsafe prompt with the words its pair changes replaced by those that the neutral and retain prompts
    of the same length hold at the same word places, up to ``per_prompt`` such prompts each (the most
    frequent words first, then the order first seen). Never a word some unsafe prompt has there (the
    concept's own), nor the prompt itself; a prompt already among the neutral, retain or target prompts
    is skipped without counting. On the benchmark's circle: "a red circle moving right ..." gives "a red
    triangle moving right ...", so the context words the unsafe prompts share are held to the base
    beside a kept shape, not beside the concept's twin alone. Words are aligned by position: it suits
    templated prompts; pairs that rewrite a sentence find few or odd ones."""
    if per_prompt <= 0:
        return ()
    keep = [t.split() for t in (*concept.neutral, *concept.retain)]
    kept = {*concept.neutral, *concept.retain, *target_prompts(concept)[0]}
    places = [changed_places(p.unsafe, p.safe)[0] for p in concept.pairs]
    own = {(k, p.unsafe.split()[k]) for p, where in zip(concept.pairs, places) for k in where}
    built: list[str] = []
    for pair, where in zip(concept.pairs, places):
        words = pair.unsafe.split()
        if not where:
            continue
        counts = Counter(tuple(w[k] for k in where) for w in keep if len(w) == len(words))
        made = 0
        for choice, _ in sorted(counts.items(), key=lambda item: -item[1]):   # stable: ties in the order first seen
            if made == per_prompt:
                break
            if any((k, word) in own for k, word in zip(where, choice)):
                continue
            swap = dict(zip(where, choice))
            text = " ".join(swap.get(k, word) for k, word in enumerate(words))
            if text in kept or text in built:
                continue
            built.append(text)
            made += 1
    return tuple(built)


def unsafe_context_pairs(concept: ConceptPairs, per_pair: int, order: str = "list") -> tuple[tuple[str, str], ...]:
    """Unsafe prompts in the keep prompts' contexts, with their remap targets (``apply --adversarial``'s
    ``unsafe_context``, :func:`context_prompts` the other way round): each neutral or retain prompt of an
    unsafe prompt's length, the words that pair changes put in at the same word places, and the same prompt
    with the target's words there; up to ``per_pair`` such (unsafe, target) each, every keep prompt used
    once (the pairs take turns, in the order first seen). On the benchmark's circle: "a red triangle moving
    left ..." gives ("a red circle moving left ...", "a red square moving left ..."): the erase reaches the
    contexts the keep prompts hold, not the pairs' five alone. A pair whose target is not one span of words
    put for as many words in the unsafe prompt gives none (a rewrite's words do not align by position).

    ``order`` "list" takes, in each turn, the first keep prompt left (the keep prompts' order); "spread" the
    one whose built prompt is farthest in words from every unsafe prompt so far, the pairs' and those built
    (the largest smallest :func:`word_distance`, then the largest sum; ties in list order): on the circle
    "list" builds four of its ten in the red and green dark contexts the keep list starts with, "spread" one
    (docs/adversarial-spread.md)."""
    if per_pair <= 0:
        return ()
    targets = target_prompts(concept)[0]
    seen = {*concept.neutral, *concept.retain, *concept.unsafe, *targets}
    rows = []   # (pair's words, the places it changes, its target's words)
    for pair, target in zip(concept.pairs, targets):
        words, aim, change = pair.unsafe.split(), target.split(), word_change(pair.unsafe, target)
        if change is not None and len(words) == len(aim):
            rows.append((words, range(change[0], change[1]), aim))
    if order not in CONTEXT_ORDERS:
        raise ValueError(f"order {order!r} is not one of {CONTEXT_ORDERS}")
    free = list(dict.fromkeys((*concept.neutral, *concept.retain)))
    erased = list(concept.unsafe)   # "spread": the unsafe prompts so far
    built: list[tuple[str, str]] = []
    for _ in range(per_pair):   # a round: each pair takes a keep prompt left that gives a new prompt
        for words, where, aim in rows:
            options = []   # (keep prompt, its words, the built unsafe prompt), in list order
            for text in free:
                context = text.split()
                if len(context) != len(words):
                    continue
                unsafe = " ".join(words[k] if k in where else w for k, w in enumerate(context))
                if unsafe not in seen and unsafe not in (o[2] for o in options):
                    options.append((text, context, unsafe))
                    if order == "list":
                        break
            if not options:
                continue
            text, context, unsafe = options[0] if order == "list" else max(
                options, key=lambda o: (min(word_distance(o[2], e) for e in erased), sum(word_distance(o[2], e) for e in erased)))
            free.remove(text)
            seen.add(unsafe)
            erased.append(unsafe)
            built.append((unsafe, " ".join(aim[k] if k in where else w for k, w in enumerate(context))))
    return tuple(built)


def word_distance(a: str, b: str) -> int:
    """The words two prompts differ in, place by place, and one for each word one has more."""
    a, b = a.split(), b.split()
    return sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))


def aligned_rows(unsafe: list[torch.Tensor], target: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Erase rows and their targets (n, H) each: token by token where the two prompts have the
    same number of tokens, else the prompts' token means. float64."""
    erase, goal = [], []
    for u, t in zip(unsafe, target):
        if u.shape == t.shape:
            erase.append(u.double())
            goal.append(t.double())
        else:
            erase.append(u.double().mean(dim=0, keepdim=True))
            goal.append(t.double().mean(dim=0, keepdim=True))
    return torch.cat(erase), torch.cat(goal)


def remap_factors(unsafe: list[torch.Tensor], target: list[torch.Tensor], preserve: list[torch.Tensor],
                  preserve_weight: float, anchors: list[torch.Tensor] = (),
                  anchor_weight: float = ANCHOR_WEIGHT) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B), each (H, n): M = I + A B^T sends each unsafe token to its target twin and keeps the
    preserve tokens (weight ``preserve_weight``) and the anchor tokens (weight ``preserve_weight
    * anchor_weight``) where they are (least squares, see the module docstring). float32."""
    if len(unsafe) != len(target) or not unsafe:
        raise FactorizeError(f"remap needs one target per unsafe prompt, got {len(unsafe)} / {len(target)}")
    erase, goal = aligned_rows(unsafe, target)
    rows = [p.double() for p in preserve] + [a.double() * anchor_weight ** 0.5 for a in anchors]
    keep = torch.cat(rows) if rows else erase.new_zeros(0, erase.shape[1])
    return uce_factors(erase, goal, keep, preserve_weight)


def compose(factors: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[torch.Tensor, torch.Tensor]:
    """The factors of M = M_1 M_2 ... M_c, each M_i = I + A_i B_i^T: (A, B) with M = I + A B^T.

    M_1 ... M_{i-1} (I + A_i B_i^T) = (M_1 ... M_{i-1}) + (M_1 ... M_{i-1} A_i) B_i^T, so the
    columns are A_1, M_1 A_2, M_1 M_2 A_3, ... against B_1, B_2, B_3, ... (float64 inside)."""
    if not factors:
        raise FactorizeError("nothing to compose")
    left: list[torch.Tensor] = []
    right: list[torch.Tensor] = []
    for a, b in factors:
        a, b = a.double(), b.double()
        if left:
            so_far_a, so_far_b = torch.cat(left, dim=1), torch.cat(right, dim=1)
            a = a + so_far_a @ (so_far_b.T @ a)   # (M_1 ... M_{i-1}) A_i without forming an H x H matrix
        left.append(a)
        right.append(b)
    return torch.cat(left, dim=1).float(), torch.cat(right, dim=1).float()
