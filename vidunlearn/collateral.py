"""Collateral: how much an edit changes the edited layers' outputs on prompts that have nothing
to do with the concept. Computed without rendering a video, so it works on any model.

For every edited layer y = W x + b and the tokens X (N, H) of the collateral prompts at the
layer's site (real tokens of every prompt, stacked):

    relative change = || X W'^T + b' - (X W^T + b) ||_F / || X W^T + b ||_F

The report gives the mean and the largest value over the edited layers. The prompts are 500
everyday English video prompts shipped with the package (``data/collateral_prompts.txt``:
people, animals, places, food, sport, weather, camera moves; no unsafe content, none of the
benchmark world's template); :func:`anchor_prompts` are 100 more of the same kind, kept apart,
that the remap edit may use as preserved prompts (never measured on).

An edit that trains the text encoder (``apply --adversarial``, ``site: text_encoder``) changes every
prompt's states before any edited layer reads them: :func:`encoder_change` measures that on the same
500 prompts, || E'(x) - E(x) ||_F / || E(x) ||_F over their real tokens, E' the trained encoder.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from .plan import PlannedEdit
from .layerchange import compute_change
from .model import ModelSource

PROMPTS_FILE = Path(__file__).resolve().parent / "data" / "collateral_prompts.txt"
ANCHOR_EVERY = 6  # every 6th line is an anchor prompt (100), the other 500 are measured


def _lines() -> list[str]:
    return [line.strip() for line in PROMPTS_FILE.read_text(encoding="utf-8").splitlines() if line.strip()]


def collateral_prompts() -> tuple[str, ...]:
    """The 500 prompts the collateral is measured on."""
    return tuple(p for i, p in enumerate(_lines()) if i % ANCHOR_EVERY)


def anchor_prompts() -> tuple[str, ...]:
    """100 other everyday prompts, disjoint from :func:`collateral_prompts`."""
    return tuple(p for i, p in enumerate(_lines()) if not i % ANCHOR_EVERY)


@dataclass(frozen=True)
class Collateral:
    mean: float                 # mean over the edited layers of the relative output change
    max: float
    layer: str                  # the layer with the largest change (component/module)
    prompts: int
    tokens: int

    def as_dict(self) -> dict:
        return asdict(self)


CHUNK_ROWS = 4096  # token rows multiplied at a time: memory stays at a few chunks, not the whole set


def _chunks(tokens: torch.Tensor | list[torch.Tensor], rows: int):
    """Row blocks of at most ``rows`` (or one prompt's tokens if longer) from a tensor or a list of them."""
    items = [tokens] if isinstance(tokens, torch.Tensor) else tokens
    held, count = [], 0
    for item in items:
        held.append(item)
        count += item.shape[0]
        if count >= rows:
            yield torch.cat(held) if len(held) > 1 else held[0]
            held, count = [], 0
    if held:
        yield torch.cat(held) if len(held) > 1 else held[0]


def layer_change(weight: torch.Tensor, bias: torch.Tensor | None, new_weight: torch.Tensor,
                 new_bias: torch.Tensor | None, tokens: torch.Tensor | list[torch.Tensor]) -> float:
    """|| Y' - Y ||_F / || Y ||_F for Y = tokens W^T + b.  tokens (N, in) or a list of (T_i, in),
    weights (out, in). Summed over blocks of CHUNK_ROWS rows: the tokens are never stacked, nor
    the outputs held (Open-Sora reads 512 positions of 4096: 4 GB for the 500 prompts)."""
    w, new_w = weight.float(), new_weight.float()
    b = bias.float() if bias is not None else 0.0
    new_b = new_bias.float() if new_bias is not None else 0.0
    changed = base = 0.0
    for x in _chunks(tokens, CHUNK_ROWS):
        before = x.float() @ w.T + b
        after = x.float() @ new_w.T + new_b
        changed += float((after - before).double().pow(2).sum())
        base += float(before.double().pow(2).sum())
    return (changed ** 0.5) / max(base ** 0.5, 1e-12)


def measure(source: ModelSource, plan: list[PlannedEdit], tokens: dict[str, list[torch.Tensor]]) -> Collateral:
    """The collateral of the planned edits, given each site's collateral-prompt tokens
    (``site key -> [(T_i, H)]``). Edits one layer at a time, as the writers do (fp8: dequantised)."""
    changes: dict[str, float] = {}
    for edit in plan:
        change = compute_change(source, edit)
        changes[f"{edit.component}/{edit.module}"] = layer_change(change.weight, change.bias, change.new_weight,
                                                                  change.new_bias, tokens[edit.site])
    if not changes:
        return Collateral(0.0, 0.0, "", 0, 0)
    worst = max(changes, key=lambda k: changes[k])
    any_site = next(iter(tokens.values()))
    return Collateral(sum(changes.values()) / len(changes), changes[worst], worst, len(any_site),
                      sum(t.shape[0] for t in any_site))


def encoder_change(source: ModelSource, tensors: dict[str, torch.Tensor], device: str, dtype: str) -> dict:
    """The trained text encoder's own collateral on the 500 prompts: the relative change of its output
    states (every real token), overall and for the prompt it changes most. ``tensors``: the trained
    parameters by name (the rest the base's)."""
    from .textpath import encode_prompts, load_text_encoder, torch_dtype

    prompts = list(collateral_prompts())
    tokenizer, encoder = load_text_encoder(source, device, torch_dtype(dtype))
    length = source.adapter.max_sequence_length
    before = encode_prompts(tokenizer, encoder, prompts, length, device)
    missing = set(tensors) - set(dict(encoder.named_parameters()))
    if missing:   # the trained tensors are the encoder's own parameters: never reached
        raise ValueError(f"not parameters of the text encoder: {sorted(missing)[:3]}")
    encoder.load_state_dict({k: v.to(device) for k, v in tensors.items()}, strict=False)
    overall, each = states_change(before, encode_prompts(tokenizer, encoder, prompts, length, device))
    worst = max(range(len(prompts)), key=lambda i: each[i])
    return {"mean": overall, "max": each[worst], "prompt": prompts[worst], "prompts": len(prompts)}


def states_change(before: list[torch.Tensor], after: list[torch.Tensor]) -> tuple[float, list[float]]:
    """|| after - before ||_F / || before ||_F over every token of every prompt (T_i, D), and per prompt."""
    changed = [float((a.double() - b.double()).pow(2).sum()) for a, b in zip(after, before)]
    base = [float(b.double().pow(2).sum()) for b in before]
    return ((sum(changed) / max(sum(base), 1e-24)) ** 0.5,
            [(c / max(b, 1e-24)) ** 0.5 for c, b in zip(changed, base)])
