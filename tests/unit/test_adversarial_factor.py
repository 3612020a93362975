"""adversarial._Factor: the remap's factors as the training starts them (``extra_rank`` included)."""

from __future__ import annotations

import torch

from vidunlearn.adversarial import _Factor
from vidunlearn.edit import EditSpec


def spec(width: int = 12, rank: int = 3) -> EditSpec:
    generator = torch.Generator().manual_seed(0)
    return EditSpec(mode="remap", strength=1.25, basis=torch.randn(width, rank, generator=generator),
                    right=torch.randn(width, rank, generator=generator))


def test_the_factors_start_as_the_closed_form_with_or_without_extra_columns():
    closed = spec()
    product = closed.basis @ closed.right.T
    for extra, columns in ((0, 3), (4, 7), (100, 12)):       # the width caps the rank
        factor = _Factor(closed, "cpu", extra)
        assert factor.a.shape == factor.b.shape == (12, columns)
        assert torch.allclose(factor.a @ factor.b.T, product, atol=1e-5)
        assert torch.allclose(factor.b.T @ factor.b, torch.eye(columns), atol=1e-5)   # B orthonormal
        assert not factor.a[:, 3:].any()                                                # the extra columns of A: zero


def test_extra_columns_are_trained():
    factor = _Factor(spec(), "cpu", 2)
    weight = torch.randn(5, 12)
    target = torch.randn(5, 12)
    (factor.map()(weight) - target).pow(2).sum().backward()
    assert factor.a.grad[:, 3:].abs().sum() > 0          # the zero columns of A move at once
