"""Hardening the default remap against inputs that bring the concept back (RECE, Gong et al. 2024,
in the remap's closed form). ``apply --harden N``.

After an edit W' = W M, some input c of the edited layers still gives the outputs the unsafe token
e gave before: W M c = W e. RECE finds the smallest such input in closed form, over every layer
reading the site at once (S = sum_l W_l^T W_l, the layers' Gram matrix):

    c* = argmin_c  sum_l ||W_l M c - W_l e||^2 + rho ||c||^2  =  (M^T S M + rho I)^-1 M^T S e

and erases it too: c* joins the concept's erase rows with e's own target, and the remap is solved
again. Each round adds one such row per unsafe token. rho is :data:`RIDGE` times the mean
eigenvalue of M^T S M, so the rows stay within the scale of real activations.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import torch

from .remap import aligned_rows, compose, remap_factors

if TYPE_CHECKING:
    from .artifacts import ActivationSet
    from .edit import EditSpec
    from .model import ModelSource
    from .plan import PlannedEdit

RIDGE = 0.1


def site_gram(weights: Iterable[torch.Tensor]) -> torch.Tensor:
    """S = sum_l W_l^T W_l (in, in), float64, over the layers that read one site; one weight in
    memory at a time when ``weights`` is a generator (a 14B site: 80 weights of 52 MB)."""
    gram = None
    for weight in weights:
        w = weight.double()
        gram = w.T @ w if gram is None else gram.addmm_(w.T, w)
    assert gram is not None, "a site without layers"
    return gram


def hardened_factors(groups: list[dict[str, list[torch.Tensor]]], gram: torch.Tensor, preserve_weight: float,
                     rounds: int, ridge: float = RIDGE) -> tuple[torch.Tensor, torch.Tensor]:
    """(A, B) of M = M_1 M_2 ... (one map per concept, as :func:`vidunlearn.remap.compose`), each
    map's erase rows grown by ``rounds`` rounds of RECE's inputs c* (see the module docstring)."""
    extra: list[list[torch.Tensor]] = [[] for _ in groups]  # per concept: the c* rows found so far
    targets = [aligned_rows(g["unsafe"], g["target"]) for g in groups]

    def fit(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        g = groups[i]
        rows = extra[i]
        return remap_factors([*g["unsafe"], *rows], [*g["target"], *(targets[i][1].float() for _ in rows)],
                             g["neutral"] + g["safe"], preserve_weight, g["anchor"])

    factors = [fit(i) for i in range(len(groups))]
    for _ in range(rounds):
        left, right = compose(factors)
        for i, found in enumerate(rece_inputs(left, right, gram, [erase for erase, _ in targets], ridge)):
            extra[i].append(found)
        factors = [fit(i) for i in range(len(groups))]
    return compose(factors)


def rece_inputs(left: torch.Tensor, right: torch.Tensor, gram: torch.Tensor, erases: list[torch.Tensor],
                ridge: float = RIDGE) -> list[torch.Tensor]:
    """RECE's c* = (M^T S M + rho I)^-1 M^T S e for every row e of each (n, in) matrix of ``erases``,
    with M = I + A B^T the edit's input map (A = ``left``, B = ``right``, (in, r)) and S = ``gram``;
    float32 (n, in) each. The text path of the motion model (:mod:`vidunlearn.motion.uce`) uses it too."""
    eye = torch.eye(gram.shape[0], dtype=torch.float64)
    m = eye + left.double() @ right.double().T
    k = m.T @ gram.double() @ m
    rho = ridge * float(torch.diagonal(k).mean())
    solve = torch.linalg.cholesky(k + rho * eye)
    return [torch.cholesky_solve(m.T @ (gram.double() @ erase.double().T), solve).T.float() for erase in erases]


def hardened_specs(source: ModelSource, plan: list[PlannedEdit], activations: list[ActivationSet], strength: float,
                   preserve_weight: float, rounds: int) -> dict[str, EditSpec]:
    """The default remap's specs (site key -> EditSpec) hardened by ``rounds`` rounds, from the
    concepts' activations and the weights of the layers each site's plan edits."""
    from .checkpoint import _load
    from .edit import EditSpec

    specs = {}
    for site in sorted({e.site for e in plan}):
        gram = site_gram(_load(e.weight) for e in plan if e.site == site)
        left, right = hardened_factors([a.tokens[site] for a in activations], gram, preserve_weight, rounds)
        specs[site] = EditSpec(mode="remap", strength=strength, basis=left, right=right)
    return specs
