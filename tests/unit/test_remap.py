"""The remap default (vidunlearn/remap.py): target choice, the closed form against a naive
re-implementation of its normal equations, composition of several concepts, and the LoRA delta."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
import torch

from vidunlearn.errors import PairsError
from vidunlearn.pairs import load_pairs
from vidunlearn.remap import (ANCHOR_WEIGHT, compose, context_prompts, remap_factors, target_prompts, unsafe_context_pairs,
                              word_change, word_distance)

BENCH = Path(__file__).resolve().parents[2] / "pairs" / "bench"


def test_word_change_finds_the_one_replaced_span():
    assert word_change("a red circle moving up", "a red square moving up") == (2, 3, "square")
    assert word_change("a man stabs a man", "a man greets a man") == (2, 3, "greets")
    assert word_change("a b c d", "x b c y") is None  # two places
    assert word_change("same words", "same words") is None


def test_the_most_used_replacement_becomes_the_one_target():
    concept = load_pairs(BENCH / "circle.yaml")  # square x3, triangle x2
    targets, how = target_prompts(concept)
    assert all("square" in t and "circle" not in t and "triangle" not in t for t in targets)
    assert [t.replace("square", "circle") for t in targets] == list(concept.unsafe)
    assert "'square'" in how and "3 of 5" in how


def test_a_tie_takes_the_first_pairs_replacement():
    concept = load_pairs(BENCH / "red.yaml")  # green, blue, yellow, purple, cyan: one each
    targets, _ = target_prompts(concept)
    assert all(t.split()[1] == "green" for t in targets)


def test_an_explicit_target_wins():
    concept = replace(load_pairs(BENCH / "circle.yaml"), target="triangle")
    targets, how = target_prompts(concept)
    assert all(t.split()[2] == "triangle" for t in targets) and "target: triangle" in how


def test_pairs_that_rewrite_several_spans_keep_their_own_safe_twins():
    concept = load_pairs(Path(__file__).resolve().parents[2] / "pairs" / "violence.yaml")
    targets, how = target_prompts(concept)
    assert targets == concept.safe and "own safe prompt" in how
    with pytest.raises(PairsError, match="one span of words"):
        target_prompts(replace(concept, target="hugs"))



def test_context_prompts_put_the_kept_words_into_each_unsafe_prompt():
    """keep_context: the circle's unsafe prompts with a triangle (the one shape the keep prompts hold
    that is neither the concept nor the target), each once; never the concept's own word."""
    concept = load_pairs(BENCH / "circle-to-square.yaml")
    built = context_prompts(concept, 8)
    assert list(built) == [u.replace("circle", "triangle") for u in concept.unsafe]
    assert context_prompts(concept, 0) == ()


def test_context_prompts_take_the_most_frequent_words_first_and_skip_what_is_kept():
    """red's pairs: at most k other colours per unsafe prompt, most frequent among the keep prompts first,
    never red, never a prompt already kept (the targets: the first pair's green), no duplicates."""
    concept = load_pairs(BENCH / "red.yaml")
    one = context_prompts(concept, 1)
    assert len(one) == len(concept.unsafe)
    colours = [w for t in concept.neutral + concept.retain for w in [t.split()[1]]]
    kept = set(concept.neutral) | set(concept.retain) | set(target_prompts(concept)[0])
    for unsafe, built in zip(concept.unsafe, one):
        assert built.split()[2:] == unsafe.split()[2:] and built.split()[1] != "red" and built not in kept
    # the keep prompts' colours: green 8, yellow 8, blue 6, purple 6, cyan 4; for "a red square moving right on a
    # dark background" green gives the target prompt and yellow a retain prompt, both kept already: blue is next
    assert [colours.count(c) for c in ("green", "yellow", "blue", "purple", "cyan")] == [8, 8, 6, 6, 4]
    assert one[1] == "a blue square moving right on a dark background"
    every = context_prompts(concept, 100)
    assert len(every) == len(set(every)) and set(one) <= set(every)
    assert not any(t.split()[1] == "red" for t in every) and not set(every) & kept


def test_context_prompts_of_a_rewrite_align_by_position():
    """Pairs that rewrite several spans: the words come from keep prompts of the same length only."""
    concept = load_pairs(Path(__file__).resolve().parents[2] / "pairs" / "violence.yaml")
    for text in context_prompts(concept, 3):
        assert any(len(text.split()) == len(u.split()) for u in concept.unsafe)


def test_unsafe_context_pairs_put_the_concepts_words_into_the_keep_prompts():
    """unsafe_context: the circle put into the keep prompts' contexts, the target's square beside it; each keep
    prompt used once, the pairs taking turns; never a prompt the pairs or the keep prompts have already."""
    concept = load_pairs(BENCH / "circle-to-square.yaml")
    built = unsafe_context_pairs(concept, 2)
    assert len(built) == 2 * len(concept.pairs)
    seen = set(concept.unsafe) | set(concept.neutral) | set(concept.retain) | set(target_prompts(concept)[0])
    sources = [t for t in dict.fromkeys(concept.neutral + concept.retain)]
    for unsafe, target in built:
        assert unsafe.split()[2] == "circle" and target == unsafe.replace("circle", "square") and unsafe not in seen
        assert any(unsafe.split()[:2] + unsafe.split()[3:] == s.split()[:2] + s.split()[3:] for s in sources)
    assert len({u for u, _ in built}) == len(built)
    assert built[0] == ("a red circle moving down on a dark background", "a red square moving down on a dark background")
    assert unsafe_context_pairs(concept, 0) == ()
    every = unsafe_context_pairs(concept, 1000)   # as many as the keep prompts give, none twice
    assert len(every) == len({u for u, _ in every}) <= len(sources)
    red = load_pairs(BENCH / "red.yaml")   # a colour: the pair's green goes in beside the circle's red
    assert all(u.split()[1] == "red" and t.split()[1] == "green" for u, t in unsafe_context_pairs(red, 1))


def test_unsafe_context_pairs_in_spread_order_sit_far_apart():
    """unsafe_context_order spread: as many prompts, built as the list order builds them, each the keep prompt's whose
    built prompt is farthest in words from the unsafe prompts so far; on the circle the list order puts four of its ten
    into the red and green dark contexts the keep list starts with (the pairs two more; their triangles it lost), the spread order one."""
    concept = load_pairs(BENCH / "circle-to-square.yaml")
    listed, spread = unsafe_context_pairs(concept, 2), unsafe_context_pairs(concept, 2, "spread")
    assert len(spread) == len(listed) == 10 and len({u for u, _ in spread}) == 10 and listed[0] == \
        ("a red circle moving down on a dark background", "a red square moving down on a dark background")
    seen = set(concept.unsafe) | set(concept.neutral) | set(concept.retain)
    assert all(u.split()[2] == "circle" and t == u.replace("circle", "square") and u not in seen for u, t in spread)

    def dark_red_green(built):
        return sum(u.split()[1] in ("red", "green") and u.split()[-2] == "dark" for u, _ in built)

    assert (dark_red_green(listed), dark_red_green(spread)) == (4, 1)

    def nearest(built):   # each built prompt's word distance to the nearest unsafe prompt before it
        erased = list(concept.unsafe)
        for u, _ in built:
            yield min(word_distance(u, e) for e in erased)
            erased.append(u)

    assert sum(nearest(spread)) > sum(nearest(listed)) and min(nearest(spread)) >= min(nearest(listed))
    assert word_distance("a red circle", "a red square moving") == 2
    every = unsafe_context_pairs(concept, 1000, "spread")   # the same prompts as the list order, all of them
    assert sorted(every) == sorted(unsafe_context_pairs(concept, 1000))
    with pytest.raises(ValueError, match="order 'far'"):
        unsafe_context_pairs(concept, 2, "far")


def test_unsafe_context_pairs_of_a_rewrite_are_none():
    """Pairs that rewrite several spans have their own safe twins as targets, not a word for word change: none built."""
    concept = load_pairs(Path(__file__).resolve().parents[2] / "pairs" / "violence.yaml")
    assert unsafe_context_pairs(concept, 3) == ()


def test_remap_matches_the_naive_normal_equations():
    """M = argmin ||E M^T - T||^2 + a ||P M^T - P||^2 + mu ||M - I||^2, solved naively (H x H)."""
    g = torch.Generator().manual_seed(0)
    h = 12
    unsafe = [torch.randn(3, h, generator=g), torch.randn(4, h, generator=g), torch.randn(2, h, generator=g)]
    target = [u + 0.5 * torch.randn(u.shape, generator=g) for u in unsafe[:2]] + [torch.randn(3, h, generator=g)]
    preserve = [torch.randn(5, h, generator=g)]
    anchors = [torch.randn(6, h, generator=g)]
    left, right = remap_factors(unsafe, target, preserve, 2.0, anchors)
    # naive: rows aligned token by token where the shapes agree, prompt means otherwise
    e = torch.cat([unsafe[0], unsafe[1], unsafe[2].mean(0, keepdim=True)]).double()
    t = torch.cat([target[0], target[1], target[2].mean(0, keepdim=True)]).double()
    p = torch.cat([preserve[0].double(), anchors[0].double() * ANCHOR_WEIGHT ** 0.5])
    gram = e.T @ e + 2.0 * p.T @ p
    mu = 1e-2 * float(gram.diagonal().sum()) / h
    eye = torch.eye(h, dtype=torch.float64)
    naive = (t.T @ e + 2.0 * p.T @ p + mu * eye) @ torch.linalg.inv(gram + mu * eye)  # M (H, H), M x for x a column
    ours = eye + left.double() @ right.double().T
    torch.testing.assert_close(ours, naive, atol=1e-4, rtol=1e-4)


def test_compose_is_the_product_of_the_maps():
    g = torch.Generator().manual_seed(1)
    factors = [(torch.randn(8, 2, generator=g), torch.randn(8, 2, generator=g)) for _ in range(3)]
    eye = torch.eye(8, dtype=torch.float64)
    product = eye
    for a, b in factors:
        product = product @ (eye + a.double() @ b.double().T)
    left, right = compose(factors)
    torch.testing.assert_close(eye + left.double() @ right.double().T, product, atol=1e-5, rtol=1e-5)
    assert left.shape == right.shape == (8, 6)
