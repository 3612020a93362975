"""Adversarial training against the soft-prompt attack: ``apply --adversarial STEPS`` (AdvUnlearn, Zhang
et al. 2024, read for the closed-form edit). Not training-free: it runs the denoiser forward and
backward, and is off by default. Two sites: the text encoder (the default, ``site: text_encoder``,
below) and the remap's factors (``site: factors``); each site's defaults and the
settings' loader in :mod:`vidunlearn.adversarial_settings`.

The remap writes W' = W + s (W A) B^T into every layer of its site, A and B (in, c) shared by all of
them. No closed form held against the soft-prompt attack (docs/holding.md); this trains A and B
themselves against it, so the output keeps exactly the remap's form (same layers, rank at most c,
rows in one shared span: ``verify --base`` checks it as any remap) and every output format. Each step:

1. **attack**: for ``batch`` unsafe prompts of the pairs, move the text encoder's input embeddings
   at the words the pair changes (as ``vidunlearn attack --space input`` does) to lower the edited
   denoiser's flow-matching loss on the base model's own samples of that prompt, ``inner`` Adam
   steps, warm-started from the prompt's last adversarial embeddings (with ``restart`` k, every k-th
   visit starts again from the typed words: the attacks trained against are then at most k visits old,
   as a fresh attack of the same budget would be, instead of drifting on for the whole run; with
   ``random_start`` p, a share p of the visits start from random typeable tokens at the span); with
   ``unsafe_context`` k, up to k unsafe prompts more for each pair, built in the keep prompts' contexts
   (:func:`vidunlearn.remap.unsafe_context_pairs`: "a green triangle moving left ..." gives "a green circle
   moving left ...", its target "a green square moving left ..."), attacked and erased as the pairs' own;
   with ``typed_attack`` k, k unsafe prompts a step are also searched over typeable tokens at their span (one
   coordinate swap of ``typed_candidates``, ``vidunlearn attack --space discrete``'s GCG, from where the prompt's
   last typed search left it), and what that finds is erased as the soft attack's is (the RECE of typed words);
2. **erase**: on those samples noised, the edited denoiser conditioned on what the attack found and on
   the prompt as typed is pulled towards the base conditioned on the prompt's remap target (with
   ``erase_guidance`` g: ESD's negative guidance, base(target) + g (base(target) - base(unsafe)));
   with ``on_policy`` p, a share p of these steps noise nothing: they take x_t on the edited model's own
   sampling path under the attacked conditioning (ESD's on-policy x_t); with ``frame_focus`` p, each latent
   frame's squared error counts in proportion to that frame's own error to the power p (detached, mean
   weight 1): the frames where the concept comes back (temporal re-emergence) weigh more;
3. **keep**: on the base's samples of the pairs' neutral, retain and target prompts, the edited
   denoiser is pulled towards the base on the same prompt (``keep_weight``); with ``keep_on_policy`` p, a
   share p of these take x_t on the edited model's own path under the keep prompt (DAgger's: where its
   own sampling of a triangle drifts round, the base's velocity there is the goal); with ``keep_attack`` k, k of
   those prompts are also attacked each step, at the word places the pairs change (a retain prompt's
   triangle where the pairs say circle), towards the concept's references, and what the attack found is
   pulled, as the erase's is, towards the base's prediction for the keep prompt as typed
   (:func:`vidunlearn.adversarial_prompts.guarded_items`): the keep side as adversarial as the erase side;
   ``keep_restart`` is ``restart`` for those attacks (1: a fresh attack from the kept word at every visit); with
   ``keep_context`` k, up to k more keep prompts from each unsafe prompt, its changed words replaced by
   other words the keep prompts hold there (:func:`vidunlearn.remap.context_prompts`: the circle's
   "a red circle moving right" gives "a red triangle moving right").

Adam on A and B (``lr``); with ``extra_rank`` k, A and B get k more columns (A's zero, B's orthonormal to
the rest), so the trained edit may reach directions the closed form's erase rows do not span (rank n + k).
With ``site: text_encoder`` (AdvUnlearn's own site) the remap stays the closed form's and the text
encoder's layers train instead (every parameter but the token embedding table, which is the attack's
space; ``text_encoder_layers`` k: only the first k blocks): the same three losses, the edited side
reading the trained encoder's states (``anchor`` w adds w times the relative squared error of the keep
prompts' states against the base encoder's; ``anchor_concept`` c weighs the tokens of the words the
pairs change, on either side, by c in it; ``anchor_batch`` k: the anchor on k keep prompts of its own
each step, drawn apart from the keep loss's, instead of on those; the encoder alone runs for it, so k
may be all of them; ``anchor_unrelated`` w: the same error, weight w, on ``anchor_unrelated_batch`` of 100
everyday prompts a step (:func:`vidunlearn.collateral.anchor_prompts`), which nothing else holds: without it
the default moves the states of unrelated prompts by about 45 %, measured by ``apply``'s collateral;
``anchor_tokens`` k: the same error, the anchor's weight, on the kept word's tokens of k of 512 keep prompts a
step, each one random token off in the discrete attack's span (:func:`vidunlearn.adversarial_prompts.token_pool`),
where the typed attack found "a yellow triangle flu ..." rendered round (docs/adversarial-tokens.md);
``erase_context`` c scales the erase's gradient through the states of the tokens
outside the attacked span by c: at 0 the erase reaches the encoder through the concept's own tokens
alone, not through the context words the unsafe prompts share with the keep prompts, whose drift
renders the circle's triangles round: docs/adversarial-encoder.md). The output then carries its own text encoder
(:mod:`vidunlearn.encoder_edit`; diffusers folders only).
Deterministic under ``seed`` on one device. Wan text-to-video only (the attack's own reach). Measured on
the benchmark model by benchmarks/attack.py and benchmarks/efficacy.py (docs/adversarial-encoder.md,
docs/adversarial.md).
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING

import torch

from .errors import VidunlearnError

if TYPE_CHECKING:
    from .adversarial_settings import AdversarialSettings
    from .edit import EditSpec
    from .model import ModelSource
    from .pairs import ConceptPairs
    from .plan import PlannedEdit
    from .progress import Reporter

class _Factor(torch.nn.Module):
    """W -> W + s W A B^T for every layer of one site (A, B shared); ``on`` False gives the base."""

    def __init__(self, spec: EditSpec, device: str, extra: int = 0) -> None:
        super().__init__()
        assert spec.right is not None
        # the same product A B^T as U S, V (orthonormal B): Adam's steps then mean the same at any scale of the solve;
        # ``extra`` more columns: A's zero (the product unchanged), B's the next right singular vectors
        width, closed = spec.basis.shape
        rank = min(closed + extra, width)
        u, s, vh = torch.linalg.svd(spec.basis.double() @ spec.right.double().T)
        s = s[:rank].clone()
        s[closed:] = 0
        self.a = torch.nn.Parameter((u[:, :rank] * s).float().to(device))
        self.b = torch.nn.Parameter(vh[:rank].T.float().contiguous().to(device))
        self.strength, self.on = spec.strength, True

    def map(self):
        factor = self

        class Map(torch.nn.Module):
            def forward(self, weight):
                if not factor.on:
                    return weight
                return (weight.float() + factor.strength * (weight.float() @ factor.a) @ factor.b.T).to(weight.dtype)

        return Map()


def frame_weighted(error: torch.Tensor, focus: float) -> torch.Tensor:
    """The mean of ``error`` (B, C, F, H, W), each latent frame weighted by its own mean to the power
    ``focus`` (detached, the weights' mean 1): 0 is the plain mean."""
    if not focus:
        return error.mean()
    per_frame = error.mean(dim=(0, 1, 3, 4))
    weight = per_frame.detach().clamp_min(1e-12).pow(focus)
    return (weight / weight.mean() * per_frame).mean()


def check_reach(source: ModelSource, concepts: list[ConceptPairs], settings: AdversarialSettings) -> None:
    """The training runs the attack's search, which reaches Wan text-to-video models only, and renders
    clips the pipeline can draw: one line otherwise, before any work."""
    from .bounds import check_pipeline

    check_pipeline(source)
    if source.adapter.family != "wan" or any(c.has_images for c in concepts):
        raise VidunlearnError(f"--adversarial trains against the text attack of Wan text-to-video models, and this is a "
                              f"{source.adapter.family} model{' with image pairs' if source.adapter.family == 'wan' else ''}",
                              where=str(source.path), fix="leave --adversarial out (or use --harden, the closed-form hardening)")
    settings.sample("cpu", "float32").check(source.adapter.frame_step, source.adapter.size_step)


def adversarial_specs(source: ModelSource, plan: list[PlannedEdit], specs: dict[str, EditSpec],
                      concepts: list[ConceptPairs], settings: AdversarialSettings, device: str, dtype: str,
                      reporter: Reporter) -> tuple[dict[str, EditSpec], dict[str, torch.Tensor]]:
    """The remap's specs with A and B trained against the attack, and no encoder tensors; with ``site:
    text_encoder`` the closed form's specs and the trained text encoder's tensors (module docstring);
    with ``soup`` n, the mean of the encoders of n trainings at seeds seed .. seed + n - 1 (a weight
    soup: every training starts from the same base encoder). ``settings`` resolved
    (:meth:`AdversarialSettings.resolved`; api.apply does it before any work). The pipeline is loaded
    and the references rendered once; each of the ``soup`` trainings starts from the base encoder and a
    fresh attack."""
    from torch.nn.utils import parametrize

    from .adversarial_prompts import guarded_items, token_pool, training_prompts
    from .attack import AttackSettings, allowed_tokens, discrete, draw, encode, random_tokens
    from .attack_run import render
    from .encoder_edit import anchor_weights, changed_word_ids, changed_words, encoder_parameters, prompt_ids, unrelated_items
    from .sampling import load_pipeline
    from .sites import site_stream
    from .textpath import encode_prompts

    check_reach(source, concepts, settings)
    if any(site_stream(source, s) != "text" for s in specs):
        raise VidunlearnError("--adversarial trains the text path's edit, and a site of this edit reads images",
                              where=str(source.path), fix="leave --adversarial out, or --site a text site")
    sample = settings.sample(device, dtype)
    pipe, compact = load_pipeline(source, sample)
    tokenizer, encoder, length = pipe.tokenizer, pipe.text_encoder, source.adapter.max_sequence_length
    factors = {site: _Factor(spec, device, settings.extra_rank) for site, spec in specs.items()}
    for part in (pipe.transformer, encoder, pipe.vae):
        part.requires_grad_(False)
    for edit in plan:
        module = getattr(pipe, edit.component).get_submodule(edit.module)
        parametrize.register_parametrization(module, "weight", factors[edit.site].map())

    def switch(on: bool) -> None:
        for factor in factors.values():
            factor.on = on

    def states(texts: list[str]) -> list[torch.Tensor]:
        with torch.no_grad():
            return encode_prompts(tokenizer, encoder, texts, length, device)

    attacked, keep_texts = training_prompts(tokenizer, concepts, settings, device, reporter)
    switch(False)  # the base renders the references
    with reporter.task("rendering the base's samples for adversarial training", total=2) as advance:
        typed = states([a["text"] for a in attacked])
        latents = render(pipe, compact, length, [s for s in typed for _ in range(settings.references)],
                         [10_000 * (i + 1) + k for i in range(len(attacked)) for k in range(settings.references)],
                         sample, output_type="latent")
        advance(1)
        keep = [{"states": s} for s in states(keep_texts)]
        n = settings.keep_references   # clip r of keep prompt i drawn with seed 20000 + i + 100000 r
        keep_latents = render(pipe, compact, length, [k["states"] for k in keep for _ in range(n)],
                              [20_000 + i + 100_000 * r for i in range(len(keep)) for r in range(n)], sample,
                              output_type="latent")
        advance(1)
    goals = states([a["target"] for a in attacked])
    te = settings.site == "text_encoder"
    if te:   # the trained side reads the encoder's live states: the token ids of every prompt it conditions on
        for k, text in zip(keep, keep_texts):
            k["ids"] = prompt_ids(tokenizer, text, length, device)
        if settings.anchor and settings.anchor_concept != 1:
            concept_ids = changed_word_ids(tokenizer, [p for concept in concepts for p in concept.pairs])
            for k in keep:
                k["anchor_weights"] = anchor_weights(k["ids"], concept_ids, settings.anchor_concept)
    unrelated = unrelated_items(tokenizer, keep_texts, states, length, device) if te and settings.anchor_unrelated else []
    words = {w.lower() for w in changed_words([p for c in concepts for p in c.pairs])}   # never a random token
    tokens = token_pool(tokenizer, encoder, attacked, keep_texts, words, settings, length, device) if te and settings.anchor_tokens else []
    table = encoder.get_input_embeddings().weight
    for i, item in enumerate(attacked):
        start = table[item["ids"][item["span"]]].detach().clone()
        if settings.erase_context != 1:   # the erase's gradient per token: 1 on the attacked span, c elsewhere
            item["context"] = torch.full((len(item["ids"]), 1), float(settings.erase_context), device=device)
            item["context"][item["span"]] = 1.0
        item.update(typed=typed[i], goal=goals[i], start=start,   # adv and visits: set by each training
                    latents=torch.stack([x.float() for x in latents[i * settings.references:(i + 1) * settings.references]]))
    for i, k in enumerate(keep):
        k["latents"] = torch.stack([x.float() for x in keep_latents[i * n:(i + 1) * n]])
    typeable = allowed_tokens(tokenizer, words) if settings.random_start or settings.typed_attack else None
    swap = AttackSettings(space="discrete", steps=1, candidates=settings.typed_candidates, draws=settings.draws)
    guarded = guarded_items(tokenizer, table, attacked, keep, keep_texts, settings) if settings.keep_attack else []

    generator = torch.Generator()   # seeded at each training (``soup``)
    transformer = pipe.transformer

    def noised(x0, noise, sigma) -> torch.Tensor:
        s = sigma.view(-1, 1, 1, 1, 1)
        return (1 - s) * x0 + s * noise

    def velocity(condition: torch.Tensor, xt, sigma) -> torch.Tensor:
        context = torch.cat([condition, condition.new_zeros(1, condition.shape[-1])])[None].expand(xt.shape[0], -1, -1)
        return transformer(xt.to(transformer.dtype), timestep=sigma * 1000,
                           encoder_hidden_states=context.to(transformer.dtype), return_dict=False)[0].float()

    def own_path(condition: torch.Tensor, shape) -> tuple[torch.Tensor, torch.Tensor]:
        """(x_t, sigma) on the edited model's own path from noise under ``condition`` (Euler steps of the
        flow, ``sample_steps`` in all), stopped at a random step: where its sampling actually goes."""
        x = torch.randn(shape, generator=generator).to(device)
        stop = int(torch.randint(settings.sample_steps, (1,), generator=generator))
        sigmas = torch.linspace(1, 0, settings.sample_steps + 1, device=device)
        with torch.no_grad():
            for k in range(stop):
                x = x + (sigmas[k + 1] - sigmas[k]) * velocity(condition, x, sigmas[k].expand(shape[0]))
        return x, sigmas[stop].expand(shape[0])

    trained = encoder_parameters(encoder, settings.text_encoder_layers) if te else {}
    parameters = list(trained.values()) or [p for f in factors.values() for p in (f.a, f.b)]

    def live(ids: torch.Tensor) -> torch.Tensor:   # the trained encoder's states, with their graph
        return encode(encoder, ids[None])[0]

    @contextmanager
    def frozen():
        """What trains takes no gradient inside (an attack's search moves its own inputs alone)."""
        for p in parameters:
            p.requires_grad_(False)
        try:
            yield
        finally:
            for p in parameters:
                p.requires_grad_(True)

    def found(item) -> torch.Tensor:
        """The attack, warm-started: the prompt's adversarial conditioning against the current edit
        (with the trained encoder's graph at ``site: text_encoder``)."""
        where = torch.tensor(item["span"], device=device)

        def condition(x: torch.Tensor) -> torch.Tensor:
            return encode(encoder, item["ids"][None], table[item["ids"]].index_put((where,), x)[None])[0]

        every = settings.keep_restart if "guards" in item else settings.restart
        if every and item["visits"] and item["visits"] % every == 0:
            item["adv"] = item["start"].clone()
        if settings.random_start and "guards" not in item and float(torch.rand(1, generator=generator)) < settings.random_start:
            item["adv"] = table[random_tokens(typeable, len(item["span"]), generator).to(device)].detach().clone()
        item["visits"] += 1
        x = item["adv"].clone().requires_grad_()
        optimiser = torch.optim.Adam([x], lr=settings.inner_lr)
        with frozen():   # the attack moves x alone
            for _ in range(settings.inner):
                x0, noise, sigma = draw(item["latents"], settings.draws, generator)
                loss = (velocity(condition(x), noised(x0, noise, sigma), sigma) - (noise - x0)).pow(2).mean()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
        item["adv"] = x.detach()
        with torch.set_grad_enabled(te):   # the erase loss reaches the trained encoder through it
            return condition(item["adv"])

    def typed(item) -> torch.Tensor:
        """The typed attack, warm-started: one coordinate swap (GCG) at the prompt's span from its last typed
        find against the current edit; the find's states (with the trained encoder's graph at ``site:
        text_encoder``)."""
        with frozen():   # the search moves tokens alone
            item["typed_ids"] = discrete(transformer, encoder, item["typed_ids"], item["span"], item["latents"], typeable,
                                         swap, generator, lambda n: None)
        with torch.set_grad_enabled(te):
            return encode(encoder, item["typed_ids"][None])[0]

    def anchor_error(item, mine: torch.Tensor) -> torch.Tensor:
        """The relative squared error of the trained encoder's states on a keep prompt against the base
        encoder's (per token, the changed words' tokens weighing ``anchor_concept``, when it is not 1)."""
        base_states = item["states"]
        if "anchor_weights" in item:
            w = item["anchor_weights"]
            return (w * (mine - base_states).pow(2).mean(-1)).sum() / (w * base_states.pow(2).mean(-1)).sum()
        return (mine - base_states).pow(2).mean() / base_states.pow(2).mean()

    base = {name: p.detach().clone() for name, p in trained.items()} if settings.soup > 1 else {}

    def train(seed: int) -> None:
        """One training from the base encoder (the factors train once: ``soup`` is the encoder's) and a
        fresh attack, under ``seed``."""
        with torch.no_grad():
            for name, value in base.items():
                trained[name].copy_(value)
        for item in attacked + guarded:
            item.update(adv=item["start"].clone(), visits=0, typed_ids=item["ids"].clone())
        generator.manual_seed(seed)
        optimiser = torch.optim.Adam(parameters, lr=settings.lr)
        with reporter.task(f"adversarial training ({settings.steps} steps)", total=settings.steps) as advance:
            for _ in range(settings.steps):
                switch(True)
                chosen = torch.randperm(len(attacked), generator=generator)[:settings.batch].tolist()
                pairs = [(attacked[i], found(attacked[i]), False) for i in chosen]
                if guarded:   # keep prompts attacked towards the concept, held to what they render as typed
                    pairs += [(guarded[i], found(guarded[i]), True)
                              for i in torch.randperm(len(guarded), generator=generator)[:settings.keep_attack].tolist()]
                if settings.typed_attack:   # unsafe prompts' typed finds, erased as their soft ones are
                    pairs += [(attacked[i], typed(attacked[i]), True)
                              for i in torch.randperm(len(attacked), generator=generator)[:settings.typed_attack].tolist()]
                losses = []
                for item, condition, alone in pairs:
                    x0, noise, sigma = draw(item["latents"], settings.draws, generator)
                    xt = noised(x0, noise, sigma)
                    if settings.on_policy and float(torch.rand(1, generator=generator)) < settings.on_policy:
                        xt, sigma = own_path(condition, x0.shape)
                    switch(False)
                    with torch.no_grad():
                        goal = velocity(item["goal"], xt, sigma)
                        if settings.erase_guidance and "guards" not in item:
                            goal = goal + settings.erase_guidance * (goal - velocity(item["typed"], xt, sigma))
                    switch(True)
                    # a guarded keep prompt or a typed find: the attacked side only (the keep loss holds a keep prompt
                    # as typed; the soft batch erases an unsafe one as typed)
                    sides = (condition,) if alone else (condition, live(item["ids"]) if te else item["typed"])
                    for c in sides:
                        if "context" in item:   # erase_context: the context's gradient scaled
                            c = c.detach() + (c - c.detach()) * item["context"]
                        losses.append(frame_weighted((velocity(c, xt, sigma) - goal).pow(2), settings.frame_focus)
                                      / (2 * len(chosen)))
                for j in torch.randperm(len(keep), generator=generator)[:settings.keep_batch].tolist():
                    x0, noise, sigma = draw(keep[j]["latents"], settings.draws, generator)
                    xt = noised(x0, noise, sigma)
                    mine = live(keep[j]["ids"]) if te else keep[j]["states"]
                    if settings.keep_on_policy and float(torch.rand(1, generator=generator)) < settings.keep_on_policy:
                        xt, sigma = own_path(mine.detach(), x0.shape)   # where the edit's own sampling of it goes
                    switch(False)
                    with torch.no_grad():
                        goal = velocity(keep[j]["states"], xt, sigma)
                    switch(True)
                    losses.append(settings.keep_weight * (velocity(mine, xt, sigma) - goal).pow(2).mean()
                                  / min(settings.keep_batch, len(keep)))
                    if te and settings.anchor and not settings.anchor_batch:   # on the keep prompts drawn above
                        losses.append(settings.anchor * anchor_error(keep[j], mine) / min(settings.keep_batch, len(keep)))
                if te and settings.anchor and settings.anchor_batch:   # on anchor_batch keep prompts of its own
                    anchored = torch.randperm(len(keep), generator=generator)[:settings.anchor_batch].tolist()
                    losses += [settings.anchor * anchor_error(keep[j], live(keep[j]["ids"])) / len(anchored)
                               for j in anchored]
                if tokens:   # keep prompts one random token off: their kept word's states held to the base encoder's
                    drawn = torch.randperm(len(tokens), generator=generator)[:settings.anchor_tokens].tolist()
                    losses += [settings.anchor * anchor_error(tokens[j], live(tokens[j]["ids"])) / len(drawn) for j in drawn]
                if unrelated:   # everyday prompts held to the base encoder's states: the encoder off the pairs' world
                    drawn = torch.randperm(len(unrelated), generator=generator)[:settings.anchor_unrelated_batch].tolist()
                    losses += [settings.anchor_unrelated * anchor_error(unrelated[j], live(unrelated[j]["ids"])) / len(drawn)
                               for j in drawn]
                loss = torch.stack(losses).sum()
                optimiser.zero_grad()
                loss.backward()
                optimiser.step()
                if not all(torch.isfinite(p).all() for p in parameters):
                    raise VidunlearnError(f"adversarial training diverged (the {settings.site} hold NaN or Inf)",
                                          fix="lower the adversarial settings' lr (--adversarial-settings)")
                advance(1)
    total: dict[str, torch.Tensor] = {}
    for k in range(settings.soup):
        if settings.soup > 1:
            reporter.note(f"adversarial training {k + 1} of {settings.soup} (seed {settings.seed + k}), averaged")
        train(settings.seed + k)
        for name, p in trained.items():   # the mean of the soup's encoders (one training: its own, exactly)
            value = p.detach().cpu()
            total[name] = value if settings.soup == 1 else total.get(name, 0) + value.double() / settings.soup
    if te:
        return specs, {name: value.float() for name, value in total.items()}
    return {site: replace(specs[site], basis=f.a.detach().cpu(), right=f.b.detach().cpu()) for site, f in factors.items()}, {}
