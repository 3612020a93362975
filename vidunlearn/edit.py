"""The closed-form weight update. Pure functions; math in float32, stored dtype returned.

A linear layer y = W x + b with W (out, in) reads activations x (in,). Removing the concept
subspace spanned by the orthonormal columns of Q (in, c) from every input:

    project:  W' = W (I - lambda Q Q^T) = W - lambda (W Q) Q^T          b' = b
    replace:  x' = x - Q Q^T (x - s)  (the removed component is set to the safe mean's, s)
              W' = W - lambda (W Q) Q^T                                  b' = b + lambda (W Q)(Q^T s)
    bias:     x' = x - lambda r       (comparison only: prompt-independent, cancels under CFG)
              W' = W                                                     b' = b - lambda W r
    uce:      W' = W + lambda (W A) B^T   with A = (S_c - E_c)^T, B = G^-1 E_c^T   (comparison:
              Unified Concept Editing, closed-form least squares; see :func:`uce_factors`)
    remap:    the same form, W' = W + lambda (W A) B^T, with the targets of ONE replacement and
              several concepts composed (the default; see :mod:`vidunlearn.remap`)

lambda = 1 removes the component exactly; lambda = 0 is the identity; lambda = 2 flips it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import FactorizeError

MODES = ("remap", "project", "replace", "bias", "uce")
UCE_RIDGE = 1e-2  # ridge weight, relative to the mean eigenvalue of the data term G0 (see uce_factors)


@dataclass(frozen=True)
class EditSpec:
    """What to write into every target layer of one site.

    basis:     (in, c) orthonormal concept directions (``project``/``replace``); for ``uce`` and
               ``remap`` the left factor A (in, c), not orthonormal.
    safe_mean: (in,) for ``replace``; refusal (in,) for ``bias``.
    right:     (in, c) the right factor B of ``uce`` and ``remap``.
    """

    mode: str
    strength: float
    basis: torch.Tensor
    safe_mean: torch.Tensor | None = None
    refusal: torch.Tensor | None = None
    right: torch.Tensor | None = None

    @property
    def rank(self) -> int:
        return 0 if self.mode == "bias" else int(self.basis.shape[1])

    @property
    def touches_weight(self) -> bool:
        return self.mode in ("remap", "project", "replace", "uce") and self.strength != 0

    @property
    def touches_bias(self) -> bool:
        return self.mode in ("replace", "bias") and self.strength != 0


def orthonormal_basis(directions: torch.Tensor) -> torch.Tensor:
    """(in, c) directions -> (in, c) orthonormal columns spanning the same space (QR).

    The span, and so the edit, does not depend on the order of the columns.
    """
    q, r = torch.linalg.qr(directions.double())
    diag = r.diagonal().abs()
    if (diag < 1e-6 * diag.max()).any():
        raise FactorizeError("two concept directions are (almost) parallel",
                             fix="remove one of the --pairs files; they describe the same concept")
    return q.float()


def project_weight(weight: torch.Tensor, basis: torch.Tensor, strength: float) -> torch.Tensor:
    """W' = W - lambda (W Q) Q^T.  weight (out, in), basis (in, c) -> (out, in) in weight.dtype.

    One fused pass over W (``addmm``); raises when W (and so W Q) holds NaN or Inf, or when the
    result does not fit the stored dtype.
    """
    w = weight.float()  # a float32 copy, unless W is float32 already
    q = basis.float()
    wq = w @ q
    if not torch.isfinite(wq).all():  # NaN/Inf anywhere in a row of W reaches that row of W Q
        raise FactorizeError("the weight to edit contains NaN or Inf", fix="check the base checkpoint")
    # In place on the float32 copy: bitwise the same as out of place, one W-sized buffer fewer
    # (71 ms instead of 148 ms for a 5120x5120 bf16 weight here); out of place when w is W itself.
    new = w.addmm_(wq, q.T, alpha=-strength) if w is not weight else torch.addmm(w, wq, q.T, alpha=-strength)
    new = new.to(weight.dtype)
    if torch.finfo(weight.dtype).max < torch.finfo(torch.float32).max and not all_finite(new):
        raise FactorizeError(f"the edited weight overflows {weight.dtype}", fix="lower --strength")
    return new


def all_finite(tensor: torch.Tensor) -> bool:
    """No NaN or Inf in ``tensor``: its min and max are finite (NaN propagates through both).
    One pass and no mask: 7-9 ms on a 5120x5120 bf16 weight here, ``isfinite(t).all()`` 205-239 ms."""
    if tensor.numel() == 0:
        return True
    low, high = torch.aminmax(tensor)
    return bool(torch.isfinite(low) and torch.isfinite(high))


def replace_bias(weight: torch.Tensor, bias: torch.Tensor, basis: torch.Tensor, safe_mean: torch.Tensor,
                 strength: float) -> torch.Tensor:
    """b' = b + lambda (W Q)(Q^T s).  -> (out,) in bias.dtype."""
    w, q = weight.float(), basis.float()
    return (bias.float() + strength * (w @ q) @ (q.T @ safe_mean.float())).to(bias.dtype)


def shift_bias(weight: torch.Tensor, bias: torch.Tensor, refusal: torch.Tensor, strength: float) -> torch.Tensor:
    """b' = b - lambda W r.  -> (out,) in bias.dtype."""
    return (bias.float() - strength * weight.float() @ refusal.float()).to(bias.dtype)


def uce_factors(erase: torch.Tensor, target: torch.Tensor, preserve: torch.Tensor, preserve_weight: float,
                ridge: float = UCE_RIDGE) -> tuple[torch.Tensor, torch.Tensor]:
    """UCE (Gandikota et al. 2024) for every linear layer that reads one activation space.

    erase E_c (n, in): inputs whose outputs must become those of target S_c (n, in), i.e.
    v*_c = W s_c; preserve E_p (m, in): inputs whose outputs must not move. The least-squares
    problem, with a ridge term mu ||W' - W||_F^2 pulling towards the base weights,

        min_W'  sum_c ||W' e_c - W s_c||^2 + lambda_p sum_p ||W' e_p - W e_p||^2 + mu ||W' - W||^2

    has the closed form (UCE's formula, with the ridge written as mu W I on the left)

        W' = (W S_c^T E_c + lambda_p W E_p^T E_p + mu W)(E_c^T E_c + lambda_p E_p^T E_p + mu I)^-1
           = W (I + (S_c - E_c)^T E_c G^-1),        G = E_c^T E_c + lambda_p E_p^T E_p + mu I  (in, in)

    so W' = W + (W A) B^T with A = (S_c - E_c)^T (in, n) and B = G^-1 E_c^T (in, n) (G is
    symmetric): a rank-n change that is the same for every layer reading the space, whatever W.
    mu = ridge * trace(G - mu I) / in. Math in float64; returns float32 (A, B).
    """
    e, s, p = erase.double(), target.double(), preserve.double()
    if e.shape != s.shape or e.ndim != 2 or p.ndim != 2 or p.shape[1] != e.shape[1]:
        raise FactorizeError(f"UCE needs erase/target (n, in) and preserve (m, in), got {list(e.shape)}, "
                             f"{list(s.shape)}, {list(p.shape)}")
    gram = e.T @ e + preserve_weight * (p.T @ p)                              # (in, in)
    mu = max(ridge * float(gram.diagonal().sum()) / gram.shape[0], 1e-12)
    gram = gram + mu * torch.eye(gram.shape[0], dtype=gram.dtype)
    right = torch.linalg.solve(gram, e.T)                                     # (in, n) = G^-1 E_c^T
    return (s - e).T.float(), right.float()


def uce_weight(weight: torch.Tensor, left: torch.Tensor, right: torch.Tensor, strength: float) -> torch.Tensor:
    """W' = W + lambda (W A) B^T.  weight (out, in), left/right (in, n) -> (out, in) in weight.dtype."""
    w = weight.float()
    return (w + strength * (w @ left.float()) @ right.float().T).to(weight.dtype)


def edit_linear(weight: torch.Tensor, bias: torch.Tensor | None, spec: EditSpec
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply ``spec`` to one linear layer; returns (W', b') in the stored dtypes."""
    if spec.mode not in MODES:
        raise FactorizeError(f"unknown edit mode {spec.mode!r}", fix=f"use one of {MODES}")
    if spec.mode in ("uce", "remap") and spec.touches_weight:
        assert spec.right is not None
        new_weight = uce_weight(weight, spec.basis, spec.right, spec.strength)
    else:
        new_weight = project_weight(weight, spec.basis, spec.strength) if spec.touches_weight else weight
    new_bias = bias
    if spec.touches_bias:
        if bias is None:
            raise FactorizeError(f"mode {spec.mode!r} needs a bias, and this layer has none",
                                 fix="use --mode project")
        if spec.mode == "replace":
            assert spec.safe_mean is not None
            new_bias = replace_bias(weight, bias, spec.basis, spec.safe_mean, spec.strength)
        else:
            assert spec.refusal is not None
            new_bias = shift_bias(weight, bias, spec.refusal, spec.strength)
    # project_weight checked the weight; a bias is small, check it whole
    if new_bias is not None and new_bias is not bias and not torch.isfinite(new_bias).all():
        raise FactorizeError("the edited bias contains NaN or Inf", fix="check the base weights and --strength")
    return new_weight, new_bias


MULTI_CONCEPT_STRENGTH = 1.25  # chosen with benchmarks/efficacy.py (docs/method.md, "Several concepts: lambda 1.25")


def default_strength(mode: str, concepts: int) -> float:
    """lambda when the user gives none: 1, and :data:`MULTI_CONCEPT_STRENGTH` for the remap of several
    concepts at once (composing their maps let an erased colour's unseen synonyms back; docs/method.md)."""
    return MULTI_CONCEPT_STRENGTH if mode == "remap" and concepts > 1 else 1.0
