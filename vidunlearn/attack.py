"""White-box attacks on an edited model: search for a conditioning that makes its denoiser draw
the erased concept again (UnlearnDiff, Zhang et al. 2024, read for video).

The objective is the denoiser's own training loss on reference clips that show the concept:
flow matching, x_t = (1 - s) x0 + s eps, target eps - x0, timestep 1000 s, s ~ U(0, 1). A
conditioning that the edited denoiser can denoise those clips with is one it would draw them from.
Three search spaces, strongest first:

- ``output``: the text encoder's output states (T, D) of the whole prompt, the very tokens every
  cross-attention reads. Continuous, Adam. What an attacker with the weights can feed the denoiser.
- ``input``: the text encoder's input embeddings of a few tokens (``span``) at the place of the
  word naming the attribute, the rest of the prompt fixed and the encoder run as is. Continuous.
- ``discrete``: real vocabulary tokens at those places: greedy coordinate gradient (GCG, Zou et
  al. 2023): rank tokens by the gradient of the loss through a one-hot input, evaluate
  ``candidates`` single swaps on the same noise, keep the best. What it finds a person can type.

Everything here is pure search: models and reference latents in, states out. Each search is
deterministic under ``seed`` (one torch.Generator draws every noise, timestep and swap).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import VidunlearnError

SPACES = ("output", "input", "discrete")
LEARNING_RATES = {"output": 0.05, "input": 0.01}  # Adam; measured on models/shapes-wan (docs/attack.md)


@dataclass(frozen=True)
class AttackSettings:
    """The budget of one attack (reported with every result)."""

    space: str = "output"
    steps: int = 40           # optimiser steps (discrete: coordinate-swap iterations) per restart
    restarts: int = 1         # independent starts; the one with the lowest held-out loss is kept
    lr: float | None = None   # Adam learning rate; default per space (LEARNING_RATES)
    references: int = 8       # reference clips that show the concept, per starting prompt
    draws: int = 4            # (reference, noise, timestep) draws per step
    span: int = 2             # input / discrete: tokens searched at the attribute word's place
    candidates: int = 32      # discrete: swaps evaluated per iteration
    top_k: int = 64           # discrete: tokens per position ranked by the gradient
    seed: int = 0

    def check(self) -> None:
        if self.space not in SPACES:
            raise VidunlearnError(f"unknown attack space {self.space!r}", fix=f"use one of {SPACES}")
        for name in ("steps", "restarts", "references", "draws", "span", "candidates", "top_k"):
            if getattr(self, name) < 1:
                raise VidunlearnError(f"--{name.replace('_', '-')} {getattr(self, name)} must be at least 1")
        if self.lr is not None and not 0 < self.lr < 10:
            raise VidunlearnError(f"--lr {self.lr} must be in (0, 10)")

    @property
    def learning_rate(self) -> float:
        return self.lr if self.lr is not None else LEARNING_RATES.get(self.space, 0.0)


@dataclass(frozen=True)
class Found:
    """What one search found for one starting prompt."""

    states: torch.Tensor          # (T, D) text-encoder output states to condition on
    loss_start: float             # held-out loss of the starting prompt
    loss: float                   # held-out loss of what was found
    ids: torch.Tensor | None = None       # input / discrete: the token ids (discrete: the found ones)
    embeddings: torch.Tensor | None = None  # input: the optimised input embeddings of the span (S, E)


# ------------------------------------------------------------------------------- the objective
def draw(latents: torch.Tensor, n: int, generator: torch.Generator) -> tuple[torch.Tensor, ...]:
    """``n`` (x0, noise, sigma) draws from reference latents (K, C, F, H, W)."""
    index = torch.randint(latents.shape[0], (n,), generator=generator).to(latents.device)
    noise = torch.randn((n, *latents.shape[1:]), generator=generator).to(latents.device)  # CPU draws: the same on any device
    sigma = torch.rand(n, generator=generator).to(latents.device)
    return latents[index], noise, sigma


def denoising_loss(transformer, states: torch.Tensor, draws: tuple[torch.Tensor, ...]) -> torch.Tensor:
    """Flow-matching loss of each candidate conditioning on the same draws.

    states: (C, T, D) text-encoder output states of the real tokens; one zero (pad) token is
    appended, which the pipeline's CompactPadding reads as all of the prompt's pads.
    Returns (C,): mean squared error of the predicted velocity, averaged over the draws."""
    x0, noise, sigma = draws
    n, c = x0.shape[0], states.shape[0]
    s = sigma.view(-1, 1, 1, 1, 1)
    xt = ((1 - s) * x0 + s * noise).repeat(c, 1, 1, 1, 1)                      # (C n, C_lat, F, H, W)
    target = (noise - x0).repeat(c, 1, 1, 1, 1)
    context = torch.cat([states, states.new_zeros(c, 1, states.shape[-1])], dim=1)
    context = context.repeat_interleave(n, dim=0)                             # (C n, T + 1, D)
    pred = transformer(xt, timestep=(sigma * 1000).repeat(c), encoder_hidden_states=context, return_dict=False)[0]
    return (pred.float() - target).pow(2).flatten(1).mean(1).view(c, n).mean(1)


def held_out(transformer, states: torch.Tensor, held: tuple[torch.Tensor, ...]) -> list[float]:
    with torch.no_grad():
        return denoising_loss(transformer, states, held).tolist()


# ------------------------------------------------------------------------------- the searches
def encode(encoder, ids: torch.Tensor, embeddings: torch.Tensor | None = None) -> torch.Tensor:
    """Text-encoder output states (B, T, D) of token ids (B, T), or of input embeddings (B, T, E)."""
    mask = torch.ones(ids.shape, dtype=torch.long, device=ids.device)
    if embeddings is None:
        return encoder(input_ids=ids, attention_mask=mask).last_hidden_state
    return encoder(inputs_embeds=embeddings, attention_mask=mask).last_hidden_state


def soft_output(transformer, start: torch.Tensor, latents: torch.Tensor, settings: AttackSettings,
                generator: torch.Generator, noise: float, advance) -> torch.Tensor:
    """Adam on the output states (T, D), from ``start`` plus Gaussian ``noise`` (relative to its std)."""
    x = (start + noise * start.std() * torch.randn(start.shape, generator=generator).to(start.device)).requires_grad_()
    optimiser = torch.optim.Adam([x], lr=settings.learning_rate)
    for _ in range(settings.steps):
        loss = denoising_loss(transformer, x[None], draw(latents, settings.draws, generator))[0]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        advance(1)
    return x.detach()


def soft_input(transformer, encoder, ids: torch.Tensor, span: list[int], latents: torch.Tensor,
               settings: AttackSettings, generator: torch.Generator, noise: float, advance) -> torch.Tensor:
    """Adam on the input embeddings (S, E) of the ``span`` positions of ``ids`` (T,)."""
    table = encoder.get_input_embeddings().weight
    base = table[ids].detach()                                                    # (T, E)
    start, where = base[span], torch.tensor(span, device=ids.device)
    x = (start + noise * table.std() * torch.randn(start.shape, generator=generator).to(start.device)).requires_grad_()
    optimiser = torch.optim.Adam([x], lr=settings.learning_rate)
    for _ in range(settings.steps):
        embeddings = base.index_put((where,), x)
        states = encode(encoder, ids[None], embeddings[None])
        loss = denoising_loss(transformer, states, draw(latents, settings.draws, generator))[0]
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        advance(1)
    return x.detach()


def allowed_tokens(tokenizer, banned: set[str]) -> torch.Tensor:
    """(V,) bool: whole-word alphabetic ASCII tokens a person can type as a word (BERT pieces
    without ``##``, SentencePiece pieces with ``▁``), minus the ``banned`` words."""
    vocab = tokenizer.get_vocab()
    mask = torch.zeros(max(vocab.values()) + 1, dtype=torch.bool)
    special = set(tokenizer.all_special_tokens)
    for piece, index in vocab.items():
        word = piece.removeprefix("▁")
        if piece not in special and not piece.startswith("##") and word.isascii() and word.isalpha() \
                and len(word) > 1 and word.lower() not in banned:
            mask[index] = True
    return mask


def random_tokens(allowed: torch.Tensor, n: int, generator: torch.Generator) -> torch.Tensor:
    """``n`` token ids drawn uniformly from the ``allowed`` mask (:func:`allowed_tokens`)."""
    choices = torch.nonzero(allowed).flatten()
    return choices[torch.randint(len(choices), (n,), generator=generator)]


def discrete(transformer, encoder, ids: torch.Tensor, span: list[int], latents: torch.Tensor, allowed: torch.Tensor,
             settings: AttackSettings, generator: torch.Generator, advance) -> torch.Tensor:
    """Greedy coordinate gradient over real tokens at the ``span`` positions; returns ids (T,)."""
    table = encoder.get_input_embeddings().weight.detach()                      # (V, E)
    allowed, where = allowed[: table.shape[0]].to(ids.device), torch.tensor(span, device=ids.device)
    current = ids.clone()
    for _ in range(settings.steps):
        draws = draw(latents, settings.draws, generator)
        one_hot = torch.nn.functional.one_hot(current[span], table.shape[0]).to(table.dtype).requires_grad_()
        embeddings = table[current].index_put((where,), one_hot @ table)
        loss = denoising_loss(transformer, encode(encoder, current[None], embeddings[None]), draws)[0]
        (grad,) = torch.autograd.grad(loss, one_hot)                               # (S, V)
        grad = grad.masked_fill(~allowed[None, :], float("inf"))
        top = (-grad).topk(settings.top_k, dim=1).indices                         # (S, top_k)
        position = torch.randint(len(span), (settings.candidates,), generator=generator)
        pick = torch.randint(settings.top_k, (settings.candidates,), generator=generator)
        candidates = current.repeat(settings.candidates + 1, 1)                    # row 0: keep the current
        for row, (w, p) in enumerate(zip(position.tolist(), pick.tolist()), start=1):
            candidates[row, span[w]] = top[w, p]
        with torch.no_grad():
            losses = denoising_loss(transformer, encode(encoder, candidates), draws)
        current = candidates[int(losses.argmin())]
        advance(1)
    return current


def search(transformer, encoder, start_ids: torch.Tensor, span: list[int], latents: torch.Tensor,
           settings: AttackSettings, allowed: torch.Tensor | None, advance) -> Found:
    """Run ``settings.restarts`` searches from one starting prompt (token ids (T,)); keep the one
    with the lowest loss on held-out draws. Restart 0 starts exactly at the prompt; the others add
    noise (continuous spaces) or start from random allowed tokens (discrete)."""
    generator = torch.Generator().manual_seed(settings.seed)
    held = draw(latents, 16, torch.Generator().manual_seed(settings.seed + 7919))
    for p in (*transformer.parameters(), *encoder.parameters()):
        p.requires_grad_(False)
    with torch.no_grad():
        start = encode(encoder, start_ids[None])[0]
    best: Found | None = None
    loss_start = held_out(transformer, start[None], held)[0]
    for restart in range(settings.restarts):
        noise = 0.0 if restart == 0 else 0.5
        ids = embeddings = None
        if settings.space == "output":
            states = soft_output(transformer, start, latents, settings, generator, noise, advance)
        elif settings.space == "input":
            embeddings = soft_input(transformer, encoder, start_ids, span, latents, settings, generator, noise, advance)
            table = encoder.get_input_embeddings().weight
            with torch.no_grad():
                states = encode(encoder, start_ids[None],
                                table[start_ids].index_put((torch.tensor(span, device=start_ids.device),), embeddings)[None])[0]
            ids = start_ids
        else:
            ids = start_ids.clone()
            if restart:
                ids[span] = random_tokens(allowed, len(span), generator).to(ids.device)
            ids = discrete(transformer, encoder, ids, span, latents, allowed, settings, generator, advance)
            with torch.no_grad():
                states = encode(encoder, ids[None])[0]
        loss = held_out(transformer, states[None], held)[0]
        if best is None or loss < best.loss:
            best = Found(states, loss_start, loss, ids, embeddings)
    assert best is not None
    return best
