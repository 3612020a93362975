"""Refusal vectors and the contrastive low-rank subspace. Pure functions: tensors in, tensors out.

Notation (per site, H = hidden size):
    U_i (T_i, H)  tokens of unsafe prompt i      S_i (T'_i, H)  tokens of its safe twin
    E   (N_E, H)  tokens of the neutral prompts  n = number of pairs

    r = mean_i (mean_t U_i - mean_t S_i)                                   (H,)   refusal vector
    D = rows (U_i[t] - mean_t S_i)  [token level]  or  (mean U_i - mean S_i)  [pair level]
    C = D^T D / m  -  alpha * Cov(E)                                       (H, H)
    B = top-k eigenvectors of C                                            (H, k)
    p = B B^T r / ||B B^T r||                                              (H,)   direction

D's second moment is taken about zero, not about its mean: the mean of the differences is the
refusal vector itself, and centring would subtract the very signal (and, with 5 pairs, drop the
rank to 4). Cov(E) is centred: the neutral prompts' common offset carries no concept.
All math runs in float64 on the (small) span of the data; inputs may be any float dtype.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import FactorizeError

METHODS = ("remap", "cpca", "pca", "mean", "cpca-us")  # remap: the cpca direction here; its factors in remap.py
LEVELS = ("token", "pair")
_EPS = 1e-10


@dataclass(frozen=True)
class Factorization:
    """Result for one site. ``retained`` is ||B B^T r|| / ||r||: the share of the refusal
    vector that survives the projection onto the subspace (1.0 for ``mean``)."""

    direction: torch.Tensor     # (H,) unit
    refusal: torch.Tensor       # (H,)
    basis: torch.Tensor         # (H, k) orthonormal
    eigenvalues: torch.Tensor   # (k,)
    retained: float
    safe_mean: torch.Tensor     # (H,) mean of the safe prompts' token means
    data_rank: int


def prompt_means(tokens: list[torch.Tensor]) -> torch.Tensor:
    """(T_i, H) per prompt -> (n, H) token means."""
    return torch.stack([t.double().mean(dim=0) for t in tokens])


def refusal_vector(unsafe: list[torch.Tensor], safe: list[torch.Tensor]) -> torch.Tensor:
    """r = mean_i (mean_t U_i - mean_t S_i), shape (H,). Invariant to the order of pairs."""
    return (prompt_means(unsafe) - prompt_means(safe)).mean(dim=0)


def difference_samples(unsafe: list[torch.Tensor], safe: list[torch.Tensor], level: str) -> torch.Tensor:
    """The rows of D, shape (m, H): one per pair, or one per (pair, unsafe token)."""
    if level == "pair":
        return prompt_means(unsafe) - prompt_means(safe)
    if level == "token":
        safe_means = prompt_means(safe)
        return torch.cat([u.double() - s for u, s in zip(unsafe, safe_means)])
    raise FactorizeError(f"unknown sample level {level!r}", fix=f"use one of {LEVELS}")


def covariance(x: torch.Tensor, center: bool) -> torch.Tensor:
    """(m, H) -> (H, H): second moment about the mean (``center``) or about zero."""
    x = x.double()
    if center:
        x = x - x.mean(dim=0, keepdim=True)
    return x.T @ x / max(x.shape[0], 1)


def matrix_rank(x: torch.Tensor) -> int:
    return int(torch.linalg.matrix_rank(x.double()).item()) if x.numel() else 0


def contrastive_basis(
    target: torch.Tensor,
    background: torch.Tensor | None,
    alpha: float,
    rank: int,
    *,
    center_target: bool,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-``rank`` eigenvectors of Cov(target) - alpha * Cov(background) (centred background).

    Every eigenvector with a non-zero eigenvalue lies in the span of the rows of ``target`` and
    ``background``, so the eigenproblem is solved in that span (size <= m + N_E) instead of H x H.
    Returns (basis (H, k), eigenvalues (k,)), eigenvalues in descending order.
    """
    rows = target.double() if background is None or alpha == 0 else torch.cat([target.double(), background.double()])
    q, _ = torch.linalg.qr(rows.T)                      # (H, r) orthonormal span (r <= H)
    q = q[:, : min(q.shape[1], matrix_rank(rows))]
    t = target.double() @ q                               # (m, r)
    c = covariance(t, center=center_target)
    if background is not None and alpha != 0:
        c = c - alpha * covariance(background.double() @ q, center=True)
    values, vectors = torch.linalg.eigh(c)                # ascending
    order = torch.argsort(values, descending=True)[:rank]
    return q @ vectors[:, order], values[order]


def refine(refusal: torch.Tensor, basis: torch.Tensor) -> tuple[torch.Tensor, float]:
    """p = B B^T r / ||B B^T r||; also returns ||B B^T r|| / ||r||."""
    projected = basis @ (basis.T @ refusal.double())
    norm = projected.norm()
    retained = float(norm / refusal.double().norm().clamp_min(_EPS))
    if retained < 1e-3:
        raise FactorizeError(
            f"the subspace keeps only {retained:.2e} of the refusal vector",
            fix="raise --rank, lower --alpha, or use --method mean",
        )
    return projected / norm, retained


def factorize_site(
    unsafe: list[torch.Tensor],
    safe: list[torch.Tensor],
    neutral: list[torch.Tensor],
    *,
    method: str = "cpca",
    rank: int = 4,
    alpha: float = 1.0,
    level: str = "token",
    site: str = "",
) -> Factorization:
    """The refusal direction for one site, by one of ``METHODS``."""
    if method not in METHODS:
        raise FactorizeError(f"unknown method {method!r}", fix=f"use one of {METHODS}")
    if method == "remap":  # the remap factors come from remap.remap_factors; the direction is cPCA's
        method = "cpca"
    if len(unsafe) != len(safe) or len(unsafe) < 2:
        raise FactorizeError(f"need at least 2 pairs with both prompts, got {len(unsafe)} / {len(safe)}", where=site)
    for group in (unsafe, safe, neutral):
        for t in group:
            if not torch.isfinite(t).all():
                raise FactorizeError("activations contain NaN or Inf", where=site,
                                     fix="re-run extract in float32 (--dtype float32)")
    refusal = refusal_vector(unsafe, safe)
    scale = max(float(torch.cat([t.double() for t in unsafe + safe]).norm(dim=1).mean()), _EPS)
    if float(refusal.norm()) < 1e-6 * scale:
        raise FactorizeError("unsafe and safe activations are identical: the refusal vector is zero", where=site,
                             fix="the pairs must differ in the concept words; check the pairs file and the tokenizer")
    safe_mean = prompt_means(safe).mean(dim=0)

    if method == "mean":
        direction = refusal / refusal.norm()
        return Factorization(direction.float(), refusal.float(), direction[:, None].float(),
                             (refusal.norm() ** 2)[None].float(), 1.0, safe_mean.float(), 1)

    if method == "cpca-us":
        target = torch.cat([u.double() for u in unsafe])
        background = torch.cat([s.double() for s in safe])
        center_target = True
    else:
        target = difference_samples(unsafe, safe, level)
        background = torch.cat([e.double() for e in neutral]) if neutral else None
        center_target = False
        if method == "pca":
            alpha = 0.0
    if method != "pca" and method != "cpca-us" and background is None and alpha != 0:
        raise FactorizeError("no neutral prompts for the contrastive step", where=site,
                             fix="add a 'neutral:' list to the pairs file, or use --alpha 0")
    data_rank = matrix_rank(target - target.mean(dim=0) if center_target else target)
    if rank < 1:
        raise FactorizeError(f"--rank {rank} must be at least 1", where=site)
    if rank > data_rank:
        raise FactorizeError(
            f"--rank {rank} exceeds the rank of the data ({data_rank}, from {target.shape[0]} samples at {level} level)",
            where=site, fix=f"use --rank {data_rank} or less, or add pairs",
        )
    basis, eigenvalues = contrastive_basis(target, background, alpha, rank, center_target=center_target)
    direction, retained = refine(refusal, basis)
    return Factorization(direction.float(), refusal.float(), basis.float(), eigenvalues.float(), retained,
                         safe_mean.float(), data_rank)


def uce_embeddings(unsafe: list[torch.Tensor], safe: list[torch.Tensor], neutral: list[torch.Tensor], level: str,
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The inputs of UCE (:func:`vidunlearn.edit.uce_factors`) from cached token activations.

    erase / target rows, shape (n, H) each:
        ``token``: pair i contributes its unsafe tokens U_i[t] with targets S_i[t] when both
                   prompts have the same token count (a minimal pair that swaps one word for
                   another of the same length: tokens align); otherwise its token means.
        ``pair``:  one row per pair, mean_t U_i -> mean_t S_i.
    preserve rows, shape (m, H): every neutral token and every safe token (their outputs must
    not move). Returns float64 (erase, target, preserve).
    """
    if level not in LEVELS:
        raise FactorizeError(f"unknown sample level {level!r}", fix=f"use one of {LEVELS}")
    if len(unsafe) != len(safe) or not unsafe:
        raise FactorizeError(f"UCE needs pairs with both prompts, got {len(unsafe)} / {len(safe)}")
    erase: list[torch.Tensor] = []
    target: list[torch.Tensor] = []
    for u, s in zip(unsafe, safe):
        if level == "token" and u.shape == s.shape:
            erase.append(u.double())
            target.append(s.double())
        else:
            erase.append(u.double().mean(dim=0, keepdim=True))
            target.append(s.double().mean(dim=0, keepdim=True))
    preserve = torch.cat([t.double() for t in list(neutral) + list(safe)])
    return torch.cat(erase), torch.cat(target), preserve
