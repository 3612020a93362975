"""UCE (the closed-form cross-attention comparison) against UCE's formula written out naively."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidunlearn.edit import EditSpec, edit_linear, uce_factors
from vidunlearn.errors import FactorizeError
from vidunlearn.factorize import uce_embeddings

H, OUT = 12, 7


def _rows(n: int, seed: int) -> torch.Tensor:
    return torch.randn(n, H, generator=torch.Generator().manual_seed(seed))


def naive_uce(w, erase, target, preserve, lam, mu):
    """W' = (sum_c v*_c e_c^T + lam sum_p W e_p e_p^T + mu W)(sum_c e_c e_c^T + lam sum_p e_p e_p^T + mu I)^-1,
    v*_c = W s_c, summed term by term in numpy."""
    w = w.numpy().astype(np.float64)
    left = mu * w.copy()
    right = mu * np.eye(H)
    for e, s in zip(erase.numpy().astype(np.float64), target.numpy().astype(np.float64)):
        left += np.outer(w @ s, e)
        right += np.outer(e, e)
    for p in preserve.numpy().astype(np.float64):
        left += lam * np.outer(w @ p, p)
        right += lam * np.outer(p, p)
    return left @ np.linalg.inv(right)


@pytest.mark.parametrize("lam,ridge", [(1.0, 1e-2), (0.3, 0.1), (4.0, 1e-3)])
def test_uce_matches_naive_formula(lam, ridge):
    w = torch.randn(OUT, H, generator=torch.Generator().manual_seed(1))
    erase, target, preserve = _rows(3, 2), _rows(3, 3), _rows(20, 4)
    left, right = uce_factors(erase, target, preserve, lam, ridge=ridge)
    gram = erase.double().T @ erase.double() + lam * preserve.double().T @ preserve.double()
    mu = ridge * float(gram.trace()) / H
    expected = naive_uce(w, erase, target, preserve, lam, mu)
    new_w, new_b = edit_linear(w, torch.ones(OUT), EditSpec("uce", 1.0, left, right=right))
    np.testing.assert_allclose(new_w.numpy(), expected, rtol=1e-4, atol=1e-4)
    assert torch.equal(new_b, torch.ones(OUT))  # UCE edits the weight only
    assert left.shape == right.shape == (H, 3)  # a rank-3 change for 3 erase rows


def test_uce_maps_erased_inputs_to_targets_and_keeps_preserved_ones():
    w = torch.randn(OUT, H, generator=torch.Generator().manual_seed(5))
    erase, target, preserve = _rows(2, 6), _rows(2, 7), _rows(4, 8)   # 6 rows < H: solvable exactly
    left, right = uce_factors(erase, target, preserve, 1.0, ridge=1e-9)
    new_w, _ = edit_linear(w, None, EditSpec("uce", 1.0, left, right=right))
    torch.testing.assert_close(erase @ new_w.T, target @ w.T, atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(preserve @ new_w.T, preserve @ w.T, atol=1e-3, rtol=1e-3)
    # strength 0 is the identity, bitwise
    same, _ = edit_linear(w, None, EditSpec("uce", 0.0, left, right=right))
    assert torch.equal(same, w)


def test_uce_keeps_dtype_and_rejects_bad_shapes():
    w = torch.randn(OUT, H).to(torch.bfloat16)
    left, right = uce_factors(_rows(2, 1), _rows(2, 2), _rows(5, 3), 1.0)
    assert edit_linear(w, None, EditSpec("uce", 1.0, left, right=right))[0].dtype == torch.bfloat16
    with pytest.raises(FactorizeError):
        uce_factors(_rows(2, 1), _rows(3, 2), _rows(5, 3), 1.0)


def test_uce_embeddings_align_tokens_of_equal_length_pairs_only():
    unsafe = [_rows(4, 1), _rows(5, 2)]
    safe = [_rows(4, 3), _rows(3, 4)]       # pair 0 aligns token by token, pair 1 does not
    neutral = [_rows(6, 5)]
    erase, target, preserve = uce_embeddings(unsafe, safe, neutral, "token")
    assert erase.shape == target.shape == (4 + 1, H)
    torch.testing.assert_close(erase[:4], unsafe[0].double())
    torch.testing.assert_close(target[4], safe[1].double().mean(0))
    assert preserve.shape == (6 + 4 + 3, H)
    erase, target, _ = uce_embeddings(unsafe, safe, neutral, "pair")
    assert erase.shape == (2, H)
    torch.testing.assert_close(erase[1], unsafe[1].double().mean(0))


def test_subspace_edit_projects_out_the_whole_basis():
    from vidunlearn.specs import edit_specs
    from vidunlearn.artifacts import RefusalVectors, SiteVectors

    basis, _ = torch.linalg.qr(_rows(3, 9).T)                      # (H, 3) orthonormal
    direction = basis @ torch.tensor([0.6, 0.8, 0.0])
    vectors = RefusalVectors({"t/s": SiteVectors(direction, direction, basis, torch.ones(3), torch.zeros(H))},
                             {"concept": "x"})
    rank1 = edit_specs([vectors], "project", 1.0)["t/s"].basis
    full = edit_specs([vectors], "project", 1.0, subspace=True)["t/s"].basis
    assert rank1.shape == (H, 1) and full.shape == (H, 3)
    torch.testing.assert_close(full @ full.T, basis @ basis.T, atol=1e-5, rtol=0)
    w = torch.randn(OUT, H)
    new_w, _ = edit_linear(w, None, EditSpec("project", 1.0, full))
    assert float((new_w @ basis).abs().max()) < 1e-5             # nothing of the subspace is read any more
