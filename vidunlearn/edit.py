"""The closed-form weight update. Pure functions; math in float32, stored dtype returned.

A linear layer y = W x + b with W (out, in) reads activations x (in,). Removing the concept
subspace spanned by the orthonormal columns of Q (in, c) from every input:

    project:  W' = W (I - lambda Q Q^T) = W - lambda (W Q) Q^T          b' = b
    replace:  x' = x - Q Q^T (x - s)  (the removed component is set to the safe mean's, s)
              W' = W - lambda (W Q) Q^T                                  b' = b + lambda (W Q)(Q^T s)
    bias:     x' = x - lambda r       (comparison only: prompt-independent, cancels under CFG)
              W' = W                                                     b' = b - lambda W r

lambda = 1 removes the component exactly; lambda = 0 is the identity; lambda = 2 flips it.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import FactorizeError

MODES = ("project", "replace", "bias")


@dataclass(frozen=True)
class EditSpec:
    """What to write into every target layer of one site.

    basis:     (in, c) orthonormal concept directions (``project``/``replace``).
    safe_mean: (in,) for ``replace``; refusal (in,) for ``bias``.
    """

    mode: str
    strength: float
    basis: torch.Tensor
    safe_mean: torch.Tensor | None = None
    refusal: torch.Tensor | None = None

    @property
    def rank(self) -> int:
        return 0 if self.mode == "bias" else int(self.basis.shape[1])

    @property
    def touches_weight(self) -> bool:
        return self.mode in ("project", "replace") and self.strength != 0

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
    w = weight.float()
    q = basis.float()
    wq = w @ q
    if not torch.isfinite(wq).all():  # NaN/Inf anywhere in a row of W reaches that row of W Q
        raise FactorizeError("the weight to edit contains NaN or Inf", fix="check the base checkpoint")
    new = torch.addmm(w, wq, q.T, alpha=-strength).to(weight.dtype)
    if torch.finfo(weight.dtype).max < torch.finfo(torch.float32).max and not torch.isfinite(new).all():
        raise FactorizeError(f"the edited weight overflows {weight.dtype}", fix="lower --strength")
    return new


def replace_bias(weight: torch.Tensor, bias: torch.Tensor, basis: torch.Tensor, safe_mean: torch.Tensor,
                 strength: float) -> torch.Tensor:
    """b' = b + lambda (W Q)(Q^T s).  -> (out,) in bias.dtype."""
    w, q = weight.float(), basis.float()
    return (bias.float() + strength * (w @ q) @ (q.T @ safe_mean.float())).to(bias.dtype)


def shift_bias(weight: torch.Tensor, bias: torch.Tensor, refusal: torch.Tensor, strength: float) -> torch.Tensor:
    """b' = b - lambda W r.  -> (out,) in bias.dtype."""
    return (bias.float() - strength * weight.float() @ refusal.float()).to(bias.dtype)


def edit_linear(weight: torch.Tensor, bias: torch.Tensor | None, spec: EditSpec
                ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Apply ``spec`` to one linear layer; returns (W', b') in the stored dtypes."""
    if spec.mode not in MODES:
        raise FactorizeError(f"unknown edit mode {spec.mode!r}", fix=f"use one of {MODES}")
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
