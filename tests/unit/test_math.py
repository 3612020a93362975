"""The math against naive reference implementations written here, plus invariances."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from vidunlearn.edit import EditSpec, edit_linear, orthonormal_basis, project_weight
from vidunlearn.errors import FactorizeError
from vidunlearn.factorize import factorize_site

H = 16


def _data(seed: int = 0, pairs: int = 6, neutral: int = 10):
    g = torch.Generator().manual_seed(seed)
    concept = torch.randn(H, generator=g)
    def prompt(extra):
        return torch.randn(int(torch.randint(3, 7, (1,), generator=g)), H, generator=g) + extra
    unsafe = [prompt(concept) for _ in range(pairs)]
    safe = [prompt(0) for _ in range(pairs)]
    neutral_ = [prompt(0) for _ in range(neutral)]
    return unsafe, safe, neutral_, concept


def naive_direction(unsafe, safe, neutral, rank, alpha, level):
    """The paper's pipeline written out plainly in numpy, full H x H."""
    U = [u.numpy().astype(np.float64) for u in unsafe]
    S = [s.numpy().astype(np.float64) for s in safe]
    r = np.mean([u.mean(0) - s.mean(0) for u, s in zip(U, S)], axis=0)
    if level == "pair":
        D = np.stack([u.mean(0) - s.mean(0) for u, s in zip(U, S)])
    else:
        D = np.concatenate([u - s.mean(0) for u, s in zip(U, S)])
    E = np.concatenate([e.numpy().astype(np.float64) for e in neutral])
    Ec = E - E.mean(0)
    C = D.T @ D / len(D) - alpha * (Ec.T @ Ec / len(E))
    values, vectors = np.linalg.eigh(C)
    top = vectors[:, np.argsort(values)[::-1][:rank]]
    projected = top @ top.T @ r
    return r, projected / np.linalg.norm(projected)


@pytest.mark.parametrize("level", ["token", "pair"])
@pytest.mark.parametrize("rank,alpha", [(1, 1.0), (3, 0.5), (4, 2.0)])
def test_cpca_matches_naive_reference(level, rank, alpha):
    unsafe, safe, neutral, _ = _data()
    r, p = naive_direction(unsafe, safe, neutral, rank, alpha, level)
    result = factorize_site(unsafe, safe, neutral, method="cpca", rank=rank, alpha=alpha, level=level)
    np.testing.assert_allclose(result.refusal.numpy(), r, atol=1e-5)
    np.testing.assert_allclose(result.direction.numpy(), p, atol=1e-4)
    assert 0 < result.retained <= 1 + 1e-6


def test_mean_difference_matches_reference_and_recovers_planted_concept():
    unsafe, safe, neutral, concept = _data(pairs=40)
    result = factorize_site(unsafe, safe, neutral, method="mean")
    r = np.mean([u.numpy().mean(0) - s.numpy().mean(0) for u, s in zip(unsafe, safe)], axis=0)
    np.testing.assert_allclose(result.direction.numpy(), r / np.linalg.norm(r), atol=1e-5)
    cosine = float(result.direction @ concept / concept.norm())
    assert cosine > 0.9


def test_pca_is_cpca_with_alpha_zero():
    unsafe, safe, neutral, _ = _data()
    a = factorize_site(unsafe, safe, neutral, method="pca", rank=2, alpha=5.0)
    b = factorize_site(unsafe, safe, neutral, method="cpca", rank=2, alpha=0.0)
    torch.testing.assert_close(a.direction, b.direction)


def test_cpca_us_reference():
    unsafe, safe, neutral, _ = _data()
    U = torch.cat(unsafe).double(); S = torch.cat(safe).double()
    cov = lambda x: (x - x.mean(0)).T @ (x - x.mean(0)) / len(x)
    values, vectors = torch.linalg.eigh(cov(U) - 1.0 * cov(S))
    top = vectors[:, torch.argsort(values, descending=True)[:2]]
    r = torch.stack([u.double().mean(0) - s.double().mean(0) for u, s in zip(unsafe, safe)]).mean(0)
    p = top @ top.T @ r
    result = factorize_site(unsafe, safe, neutral, method="cpca-us", rank=2, alpha=1.0)
    torch.testing.assert_close(result.direction.double(), p / p.norm(), atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", ["cpca", "mean", "pca", "cpca-us"])
def test_pair_order_does_not_matter(method):
    unsafe, safe, neutral, _ = _data()
    order = [3, 0, 5, 1, 4, 2]
    a = factorize_site(unsafe, safe, neutral, method=method, rank=2)
    b = factorize_site([unsafe[i] for i in order], [safe[i] for i in order], neutral[::-1], method=method, rank=2)
    torch.testing.assert_close(a.direction, b.direction, atol=1e-5, rtol=0)


def test_rank_above_data_rank_is_refused():
    unsafe, safe, neutral, _ = _data(pairs=3)
    with pytest.raises(FactorizeError, match="exceeds the rank of the data"):
        factorize_site(unsafe, safe, neutral, method="cpca", rank=4, level="pair")
    factorize_site(unsafe, safe, neutral, method="cpca", rank=3, level="pair")  # exactly the data rank is fine
    factorize_site(unsafe, safe, neutral, method="cpca", rank=4, level="token")  # more samples at token level  # more samples at token level


def test_identical_pairs_are_refused():
    unsafe, _, neutral, _ = _data()
    with pytest.raises(FactorizeError, match="identical"):
        factorize_site(unsafe, [u.clone() for u in unsafe], neutral)


def test_nan_activations_are_refused():
    unsafe, safe, neutral, _ = _data()
    unsafe[0][0, 0] = float("nan")
    with pytest.raises(FactorizeError, match="NaN"):
        factorize_site(unsafe, safe, neutral)


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_weights_are_refused(bad):
    g = torch.Generator().manual_seed(2)
    w = torch.randn(8, H, generator=g)
    w[3, 5] = bad
    p = torch.nn.functional.normalize(torch.randn(H, generator=g), dim=0)
    with pytest.raises(FactorizeError, match="NaN or Inf"):
        project_weight(w, p[:, None], 1.0)


def test_overflow_of_the_stored_dtype_is_refused():
    w = torch.full((4, H), 60000.0, dtype=torch.float16)  # near float16's max (65504)
    p = torch.ones(H) / H ** 0.5
    with pytest.raises(FactorizeError, match="overflows"):
        project_weight(w, p[:, None], -1.0)  # strength -1 doubles the component: out of range


def test_projection_edit_matches_naive_formula():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(8, H, generator=g)
    p = torch.nn.functional.normalize(torch.randn(H, generator=g), dim=0)
    for strength in (0.5, 1.0, 2.0):
        expected = w @ (torch.eye(H) - strength * torch.outer(p, p))
        torch.testing.assert_close(project_weight(w, p[:, None], strength), expected, atol=1e-5, rtol=0)
    # lambda = 1 removes the component exactly: W' p = 0
    assert project_weight(w, p[:, None], 1.0).matmul(p).abs().max() < 1e-5


def test_strength_zero_is_identity_bitwise():
    w = torch.randn(8, H).to(torch.bfloat16)
    b = torch.randn(8).to(torch.bfloat16)
    basis = orthonormal_basis(torch.randn(H, 2))
    for mode in ("project", "replace", "bias"):
        spec = EditSpec(mode=mode, strength=0.0, basis=basis, safe_mean=torch.randn(H), refusal=torch.randn(H))
        new_w, new_b = edit_linear(w, b, spec)
        assert torch.equal(new_w, w) and torch.equal(new_b, b)


def test_stored_dtype_is_kept_and_math_is_float32():
    w = torch.randn(8, H, dtype=torch.float64).to(torch.bfloat16)
    basis = orthonormal_basis(torch.randn(H, 1))
    out = project_weight(w, basis, 1.0)
    assert out.dtype == torch.bfloat16
    expected = (w.float() - (w.float() @ basis) @ basis.T).to(torch.bfloat16)
    assert torch.equal(out, expected)


def test_replace_mode_maps_component_to_safe_mean():
    g = torch.Generator().manual_seed(2)
    w, b = torch.randn(8, H, generator=g), torch.randn(8, generator=g)
    p = torch.nn.functional.normalize(torch.randn(H, generator=g), dim=0)
    s, x = torch.randn(H, generator=g), torch.randn(H, generator=g)
    new_w, new_b = edit_linear(w, b, EditSpec("replace", 1.0, p[:, None], safe_mean=s))
    x_replaced = x - p * (p @ (x - s))
    torch.testing.assert_close(new_w @ x + new_b, w @ x_replaced + b, atol=1e-5, rtol=0)


def test_bias_mode_shifts_input_by_refusal():
    w, b, r, x = torch.randn(8, H), torch.randn(8), torch.randn(H), torch.randn(H)
    new_w, new_b = edit_linear(w, b, EditSpec("bias", 1.5, torch.zeros(H, 0), refusal=r))
    torch.testing.assert_close(new_w @ x + new_b, w @ (x - 1.5 * r) + b, atol=1e-5, rtol=0)


def test_multi_concept_basis_is_order_free_and_removes_both():
    g = torch.Generator().manual_seed(3)
    a, c = torch.randn(H, generator=g), torch.randn(H, generator=g)
    w = torch.randn(8, H, generator=g)
    w1 = project_weight(w, orthonormal_basis(torch.stack([a, c], 1)), 1.0)
    w2 = project_weight(w, orthonormal_basis(torch.stack([c, a], 1)), 1.0)
    torch.testing.assert_close(w1, w2, atol=1e-5, rtol=0)
    assert (w1 @ a).abs().max() < 1e-4 and (w1 @ c).abs().max() < 1e-4


def test_parallel_concepts_are_refused():
    a = torch.randn(H)
    with pytest.raises(FactorizeError, match="parallel"):
        orthonormal_basis(torch.stack([a, 2 * a], 1))
