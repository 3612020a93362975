"""The collateral measure: its prompt sets, and the relative output change against a naive loop."""

from __future__ import annotations

import torch

from vidunlearn.collateral import anchor_prompts, collateral_prompts, layer_change
from vidunlearn.edit import EditSpec, edit_linear


def test_the_prompt_sets_are_real_english_disjoint_and_not_the_benchmark_template():
    measured, anchors = collateral_prompts(), anchor_prompts()
    assert len(measured) == 500 and len(anchors) == 100
    lowered = {p.casefold() for p in measured + anchors}
    assert len(lowered) == 600  # all distinct, and so the two sets are disjoint
    for prompt in lowered:
        assert 3 <= len(prompt.split()) <= 40
        assert not any(word in prompt for word in ("circle", "square", "triangle")), prompt
        assert " background" not in prompt or "moving" not in prompt


def test_layer_change_against_a_token_by_token_loop():
    g = torch.Generator().manual_seed(0)
    weight, bias, tokens = torch.randn(6, 10, generator=g), torch.randn(6, generator=g), torch.randn(30, 10, generator=g)
    q, _ = torch.linalg.qr(torch.randn(10, 2, generator=g))
    new_weight, new_bias = edit_linear(weight, bias, EditSpec("replace", 1.0, q, safe_mean=torch.randn(10, generator=g)))
    before = [weight @ x + bias for x in tokens]
    after = [new_weight @ x + new_bias for x in tokens]
    naive = (sum(float((a - b).square().sum()) for a, b in zip(after, before)) /
             sum(float(b.square().sum()) for b in before)) ** 0.5
    assert abs(layer_change(weight, bias, new_weight, new_bias, tokens) - naive) < 1e-5
    assert layer_change(weight, bias, weight, bias, tokens) == 0.0


def test_layer_change_in_blocks_equals_the_whole_product(monkeypatch):
    import vidunlearn.collateral as collateral

    gen = torch.Generator().manual_seed(3)
    weight, bias = torch.randn(6, 5, generator=gen), torch.randn(6, generator=gen)
    new_weight = weight + 0.1 * torch.randn(6, 5, generator=gen)
    prompts = [torch.randn(n, 5, generator=gen) for n in (3, 1, 7, 2)]
    whole = collateral.layer_change(weight, bias, new_weight, bias, torch.cat(prompts))
    monkeypatch.setattr(collateral, "CHUNK_ROWS", 4)  # blocks of 4, 8 and 2 rows, one prompt longer than a block
    assert abs(collateral.layer_change(weight, bias, new_weight, bias, prompts) - whole) < 1e-6


def test_states_change_is_the_frobenius_ratio_overall_and_per_prompt():
    from vidunlearn.collateral import states_change

    gen = torch.Generator().manual_seed(5)
    before = [torch.randn(n, 4, generator=gen) for n in (3, 1, 6)]
    after = [b + 0.1 * torch.randn(b.shape, generator=gen) for b in before]
    overall, each = states_change(before, after)
    whole_before, whole_after = torch.cat(before), torch.cat(after)
    assert abs(overall - float((whole_after - whole_before).norm() / whole_before.norm())) < 1e-6
    assert all(abs(e - float((a - b).norm() / b.norm())) < 1e-6 for e, a, b in zip(each, after, before))
    assert states_change(before, before) == (0.0, [0.0, 0.0, 0.0])
