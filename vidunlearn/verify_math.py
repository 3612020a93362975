"""The shape of an edit read off W' - W alone: pure math for ``vidunlearn verify --base``.

A projection edit (``project``/``replace``, see :mod:`vidunlearn.edit`) of a linear layer W (out, in)
with c orthonormal directions Q (in, c) and strength s changes it by

    dW = W' - W = -s (W Q) Q^T        rank c; its rows span span(Q), the same for every layer of a site.

Stored precision adds a rounding error E to W': |E_ij| <= u |W'_ij| (u: the unit roundoff of the
stored dtype), so every singular value that E adds or moves is at most ||E||_2 <= ||E||_F <=
u ||W'||_F (Weyl). :func:`rounding_noise` is that bound, plus float32 accumulation and the fp8
subnormal step. Given dW alone (Q is not stored anywhere), Q is estimated as the top-c right singular
vectors of dW; Wedin's theorem bounds the estimate's angle by ||E|| / sigma_c(dW). Every tolerance
below is one of these bounds, so rounding never fails a check and a change of another shape does
as soon as it is larger than the rounding.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

# singular values below this share of the largest are never counted (stored-precision rounding)
RANK_TOLERANCE = {"F32": 1e-4, "F16": 3e-3, "BF16": 2e-2, "F8_E4M3": 1e-1, "F8_E5M2": 2e-1}
UNIT_ROUNDOFF = {"F64": 2.0**-53, "F32": 2.0**-24, "F16": 2.0**-11, "BF16": 2.0**-8, "F8_E4M3": 2.0**-4,
                 "F8_E5M2": 2.0**-3}
FP8_SUBNORMAL_STEP = {"F8_E4M3": 2.0**-9, "F8_E5M2": 2.0**-16}  # smallest positive code, times the scale
FLOAT32_ROUNDOFF = 2.0**-24  # the edit is computed in float32 (addmm over ``in`` terms)
LOW_RANK_SLACK = 8  # singular triplets computed beyond the expected rank (randomised SVD)


def rounding_noise(new: torch.Tensor, dtype: str, scale: float | None = None) -> float:
    """An upper bound on ||W'_stored - W'_exact||_F for a tensor ``new`` (float32 values) stored as
    ``dtype``: the rounding to ``dtype``, the float32 matmul that computed it (about sqrt(in)
    roundings per entry) and, for fp8, half a subnormal step per entry (times the scale)."""
    norm = float(torch.linalg.vector_norm(new.double()))
    inputs = new.shape[-1] if new.ndim else 1
    noise = UNIT_ROUNDOFF.get(dtype, FLOAT32_ROUNDOFF) * norm + 4 * FLOAT32_ROUNDOFF * math.sqrt(inputs) * norm
    if dtype in FP8_SUBNORMAL_STEP:
        noise += 0.5 * FP8_SUBNORMAL_STEP[dtype] * (scale if scale is not None else 1.0) * math.sqrt(new.numel())
    return noise


@dataclass(frozen=True)
class WeightChange:
    """What dW says about itself. ``rows`` (in, k) and ``columns`` (out, k): its top-k singular
    vectors (k: the expected rank when there is one, else the rank); ``residual``: ||dW + s W Q Q^T||_F
    with Q = ``rows`` (projection recipes only); ``tolerance``: what rounding allows for it."""

    norm: float
    rank: int  # singular values above the rounding bound and RANK_TOLERANCE: never counts rounding
    noise: float
    rows: torch.Tensor
    columns: torch.Tensor
    sigma_last: float  # the k-th singular value (0 when k = 0)
    residual: float | None = None
    tolerance: float | None = None
    relative_rank: int = 0  # above RANK_TOLERANCE alone: never misses a direction the bound would hide
    singular: torch.Tensor | None = None  # the top-k singular values (k as for ``rows``)

    @property
    def spread(self) -> float:
        """Wedin's bound: how far (sin of the largest angle) rounding can tilt ``rows`` (and
        ``columns``) from the true ones, sqrt(2) ||E||_F / sigma_k; 1 when not above the rounding."""
        return min(1.0, math.sqrt(2) * self.noise / self.sigma_last) if self.sigma_last > 0 else 1.0


def _svd(delta: torch.Tensor, expected: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(U, S, V) of ``delta`` (float64), all of it, or the top ``expected + LOW_RANK_SLACK`` triplets
    by randomised subspace iteration when that is much less than the full size."""
    if expected is not None and 2 * (expected + LOW_RANK_SLACK) < min(delta.shape):
        return _randomized_svd(delta, expected + LOW_RANK_SLACK)
    u, s, vh = torch.linalg.svd(delta, full_matrices=False)
    return u, s, vh.T


def _randomized_svd(matrix: torch.Tensor, width: int, iterations: int = 6) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top ``width`` singular triplets of ``matrix`` (m, n) by subspace iteration from a seeded
    Gaussian start (Halko et al. 2011, algorithm 4.4): about 2 (iterations + 1) products with an
    (n, width) block. Its singular values are those of a projection of the matrix, so never above
    the true ones."""
    generator = torch.Generator().manual_seed(0)
    matrix = matrix.contiguous()
    start = torch.randn(matrix.shape[1], width, generator=generator, dtype=matrix.dtype)
    basis = torch.linalg.qr(matrix @ start).Q  # (m, width)
    for _ in range(iterations):  # (basis^T A)^T rather than A^T basis: a transposed product falls off BLAS
        right = torch.linalg.qr((basis.T @ matrix).T).Q  # (n, width)
        basis = torch.linalg.qr(matrix @ right).Q
    u, s, vh = torch.linalg.svd(basis.T @ matrix, full_matrices=False)  # (width, n): small
    return basis @ u, s, vh.T


def spectral_norm(matrix: torch.Tensor, exact: bool = False) -> float:
    """||matrix||_2: exact (a full SVD) when small or asked for, else a randomised estimate, which
    is never above the true value (the top singular value of a projection of the matrix)."""
    if exact or min(matrix.shape) <= 64:
        return float(torch.linalg.matrix_norm(matrix.double(), ord=2))
    _, s, _ = _svd(matrix.double(), 1)
    return float(s[0])


def weight_change(old: torch.Tensor | None, delta: torch.Tensor, dtype: str, noise: float, expected: int | None,
                  strength: float | None) -> WeightChange:
    """Analyse dW = ``delta`` (out, in) of the weight ``old`` (out, in), stored as ``dtype`` with
    rounding bound ``noise``. ``expected``: the rank the recipe gives (None: no bound);
    ``strength``: s of a projection recipe (None: not a projection), for the residual."""
    d = delta.double()
    u, s, v = _svd(d, expected)
    top = float(s[0]) if s.numel() else 0.0
    relative = RANK_TOLERANCE.get(dtype, 1e-4) * top
    rank = int((s > max(relative, noise)).sum()) if top > 0 else 0
    relative_rank = int((s > relative).sum()) if top > 0 else 0
    k = min(expected if expected is not None else rank, s.numel())
    rows, columns = v[:, :k], u[:, :k]
    sigma_last = float(s[k - 1]) if k > 0 else 0.0
    change = WeightChange(float(torch.linalg.vector_norm(d)), rank, noise, rows, columns, sigma_last,
                          relative_rank=relative_rank, singular=s[:k])
    if strength is None or old is None or k == 0:
        return change
    w = old.double()
    residual = float(torch.linalg.vector_norm(d + strength * (w @ rows) @ rows.T))

    def tolerance(norm_w: float) -> float:  # rounding of dW, plus how far the tilt of Q (Wedin) moves s W Q Q^T
        return 1e-4 * change.norm + 2 * noise + 2 * abs(strength) * norm_w * change.spread * math.sqrt(k)

    allowed = tolerance(spectral_norm(w))  # an estimate from below: passing with it is passing
    if residual > allowed:
        allowed = tolerance(spectral_norm(w, exact=True))
    return WeightChange(change.norm, rank, noise, rows, columns, sigma_last, residual, allowed, relative_rank, s[:k])


def subspace_sine(basis: torch.Tensor, reference: torch.Tensor) -> float:
    """How far span(``basis``) (in, k) lies outside span(``reference``) (in, k'), both with
    orthonormal columns: the sin of the largest principal angle when k = k', 0 when the first is
    inside the second; 1 when ``basis`` is the wider (it cannot fit)."""
    if basis.shape[0] != reference.shape[0] or basis.shape[1] > reference.shape[1]:
        return 1.0
    if basis.shape[1] == 0:
        return 0.0
    outside = basis - reference @ (reference.T @ basis)
    return min(1.0, float(torch.linalg.matrix_norm(outside, ord=2)))


def outside_rows(change: WeightChange, reference: WeightChange) -> tuple[float, float]:
    """(||dW (I - V V^T)||_2, what rounding allows for it) with V = ``reference.rows``: how much of
    the change ``change`` acts on input directions outside the reference's row space. Measured on
    dW itself, so a direction of ``change`` that rounding leaves ill-determined (a tiny singular
    value) weighs as little as it is; the allowance is dW's own rounding plus the reference's tilt
    (Wedin), ||E|| + ||dW||_2 sin(angle), each counted twice."""
    if change.singular is None or change.singular.numel() == 0:
        return 0.0, 0.0
    top = float(change.singular[0])
    scaled = change.rows * change.singular  # (in, k): dW^T's top part, dW = U S V^T
    outside = scaled - reference.rows @ (reference.rows.T @ scaled)
    return float(torch.linalg.matrix_norm(outside, ord=2)), 2 * (change.noise + top * reference.spread) + 1e-3 * top


def outside_columns(vector: torch.Tensor, columns: torch.Tensor) -> float:
    """||(I - U U^T) v|| for a vector ``vector`` (out,) and orthonormal ``columns`` U (out, k)."""
    v = vector.double()
    return float(torch.linalg.vector_norm(v - columns @ (columns.T @ v)))
