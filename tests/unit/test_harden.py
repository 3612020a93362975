"""--harden (vidunlearn/harden.py): RECE's closed-form inputs c*, erased in turn, in the remap."""

from __future__ import annotations

import json
from pathlib import Path

import torch

from conftest import one_error, run
from vidunlearn.harden import RIDGE, hardened_factors, site_gram
from vidunlearn.remap import aligned_rows, compose, remap_factors

PAIRS = Path(__file__).resolve().parents[2] / "pairs"


def _groups(g: torch.Generator, h: int) -> dict[str, list[torch.Tensor]]:
    unsafe = [torch.randn(3, h, generator=g) for _ in range(4)]
    return {"unsafe": unsafe, "target": [u + torch.randn(u.shape, generator=g) for u in unsafe],
            "neutral": [torch.randn(5, h, generator=g) for _ in range(3)], "safe": [torch.randn(3, h, generator=g)],
            "anchor": [torch.randn(2, h, generator=g)]}


def _reachable(factors, gram: torch.Tensor, erase: torch.Tensor) -> float:
    """RECE's objective at its optimum: min_c ||W M c - W e||^2 + rho ||c||^2, summed over the erase
    rows (small: some input of the edited layers still gives the unsafe token's outputs)."""
    left, right = factors
    m = torch.eye(gram.shape[0], dtype=torch.float64) + left.double() @ right.double().T
    k = m.T @ gram @ m
    rho = RIDGE * float(torch.diagonal(k).mean())
    c = torch.linalg.solve(k + rho * torch.eye(k.shape[0], dtype=torch.float64), m.T @ gram @ erase.T)
    residual = m @ c - erase.T
    return float((residual * (gram @ residual)).sum() + rho * (c * c).sum())


def test_no_rounds_is_the_default_remap_and_rounds_push_the_concept_out_of_reach():
    g = torch.Generator().manual_seed(0)
    h = 16
    groups = [_groups(g, h), _groups(g, h)]
    weights = [torch.randn(24, h, generator=g) for _ in range(3)]
    gram = site_gram(weights)
    assert torch.allclose(gram, sum(w.double().T @ w.double() for w in weights))
    plain = compose([remap_factors(x["unsafe"], x["target"], x["neutral"] + x["safe"], 1.0, x["anchor"]) for x in groups])
    none = hardened_factors(groups, gram, 1.0, rounds=0)
    assert torch.allclose(none[0] @ none[1].T, plain[0] @ plain[1].T, atol=1e-6)
    erase = torch.cat([aligned_rows(x["unsafe"], x["target"])[0] for x in groups])
    before = _reachable(plain, gram, erase)
    after = _reachable(hardened_factors(groups, gram, 1.0, rounds=2), gram, erase)
    assert after > 1.2 * before, (before, after)


def test_harden_through_the_cli(tiny_wan, tmp_path):
    out = tmp_path / "out"
    result = run("apply", "--model", tiny_wan, "--pairs", PAIRS / "violence.yaml", "--harden", "2", "--out", out,
                 "--work-dir", tmp_path / "w", "--no-collateral")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "vidunlearn.json").read_text())
    assert manifest["recipe"]["harden"] == 2 and manifest["recipe"]["mode"] == "remap"
    plain = tmp_path / "plain"
    assert run("apply", "--model", tiny_wan, "--pairs", PAIRS / "violence.yaml", "--out", plain, "--work-dir",
               tmp_path / "w", "--no-collateral").exit_code == 0
    rank = lambda m: json.loads((m / "vidunlearn.json").read_text())["recipe"]["edit_rank"]  # noqa: E731
    assert rank(out) > rank(plain)  # each round adds one row per unsafe token
    verified = run("verify", out, "--base", tiny_wan)
    assert verified.exit_code == 0, verified.output


def test_harden_refuses_what_it_cannot_do(tiny_wan, tiny_refusal, tmp_path):
    for args, needle in [(("--refusal", tiny_refusal, "--harden", "1"), "--harden needs"),
                         (("--pairs", PAIRS / "violence.yaml", "--mode", "project", "--harden", "1"), "--harden needs"),
                         (("--pairs", PAIRS / "violence.yaml", "--harden", "11"), "from 0 to 10")]:
        one_error(run("apply", "--model", tiny_wan, *args, "--out", tmp_path / "o", "--work-dir", tmp_path / "w"), needle)
        assert not (tmp_path / "o").exists()
