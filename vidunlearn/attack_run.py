"""``vidunlearn attack``: run the searches of :mod:`vidunlearn.attack` on the benchmark world,
render what they found with the model's own pipeline, judge it, and report the attack success
rate (the share of attacked prompts whose clip shows the concept) beside the rate of the same
starting prompts unattacked, for the edited model and (``compare``) the base.

Starting prompts are training captions of the world (:mod:`vidunlearn.world`): ``forget`` ones
name the concept (UnlearnDiff's protocol: the prompts the edit was made to refuse); ``other`` ones
name another value of the same attribute in its place (a check of the attack itself: on the base
model it must bring the concept back where the prompt asks for something else). The reference
clips show the concept with the prompt's other attributes, rendered exactly by the world's
generator and encoded once by the model's VAE.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from . import __version__
from .attack import AttackSettings, Found, allowed_tokens, search
from .attack_refs import encode_clips, read_reference_clips, reference_latents
from .errors import VidunlearnError
from .evaluate import Concept, frame_rates
from .fsutil import atomic_output, check_apart, check_writable, write_json
from .progress import SILENT, Reporter
from .sampling import SampleSettings

SCHEMA = 1
STARTS = ("forget", "other")


@dataclass(frozen=True)
class Start:
    """One starting prompt of an attack."""

    text: str
    word: str                                 # the word naming the attacked attribute (the span's place)
    target: tuple[tuple[str, str], ...]       # labels of the reference clips (the concept in place)
    seed: int                                 # sampling seed of its clips
    places: tuple[int, ...]                   # the word indices of ``text`` attacked (``word``'s, or a pair's changes)


def world_starts(value: str, n: int = 8, start: str = "forget", seed: int = 0,
                 exclude: tuple[str, ...] = ()) -> tuple[Concept, list[Start]]:
    """``n`` starting prompts for erasing ``value`` (prompt i sampled with seed ``seed + i``)."""
    from . import world

    if start not in STARTS:
        raise VidunlearnError(f"unknown --start {start!r}", fix=f"use one of {STARTS}")
    try:
        concept = Concept(world.attribute_of(value), value)
    except ValueError as exc:
        raise VidunlearnError(str(exc), fix="use a colour, shape or motion of vidunlearn.world") from None
    if concept.attribute == "background":
        raise VidunlearnError("a background is not a concept to attack", fix="use a colour, shape or motion")
    prompts = [p for p in world.forget_prompts(value) if p.text not in set(exclude)]
    chosen = [prompts[i] for i in sorted(np.random.default_rng(seed).permutation(len(prompts))[:n])]
    others = [v for v in world.vocabulary(concept.attribute) if v != value]
    starts = []
    for i, prompt in enumerate(chosen):
        labels = prompt.labels if start == "forget" else replace(prompt.labels, **{concept.attribute: others[i % len(others)]})
        target = tuple((a, prompt.labels.get(a)) for a in world.ATTRIBUTES)
        text, word = world.caption(labels), labels.get(concept.attribute)
        starts.append(Start(text, word, target, seed + i, (text.split().index(word),)))
    return concept, starts


def pairs_starts(path: Path, judge, n: int = 8, start: str = "forget", seed: int = 0) -> tuple[Concept, list[Start]]:
    """``n`` starting prompts from a pairs file: the unsafe prompts (``forget``) or their safe twins
    (``other``), each attacked at the words the pair changes. The concept is the judge's: the
    benchmark world's value named by the file's ``concept`` for the oracle, else the judge's first
    attribute = "yes" (as ``vidunlearn eval --pairs``)."""
    from . import world
    from .pairs import load_pairs
    from .remap import changed_places

    if start not in STARTS:
        raise VidunlearnError(f"unknown --start {start!r}", fix=f"use one of {STARTS}")
    pairs = load_pairs(path)
    if judge.name == "oracle":
        try:
            concept = Concept(world.attribute_of(pairs.concept), pairs.concept)
        except ValueError:
            raise VidunlearnError(f"the oracle judges the benchmark world, and the pairs' concept {pairs.concept!r} is "
                                  "not one of its values", where=str(path), fix="pass --judge (nudenet, or a .py file)") from None
    else:
        concept = Concept(judge.attributes[0], "yes")
    starts = []
    for i, pair in enumerate(pairs.pairs[:n]):
        mine, theirs = changed_places(pair.unsafe, pair.safe)
        places, text = (mine, pair.unsafe) if start == "forget" else (theirs, pair.safe)
        if not places:
            raise VidunlearnError(f"the attack searches at the words a pair changes, and this pair's "
                                  f"{'unsafe' if start == 'forget' else 'safe'} prompt has none (the pair only "
                                  f"{'adds' if start == 'forget' else 'removes'} words)", where=f"{path} [pairs[{i}]]",
                                  fix="give the pair a word that its twin replaces" + (", or use --start forget" if start == "other" else ""))
        words = " ".join(pair.unsafe.split()[k] for k in mine)
        starts.append(Start(text, " ".join(text.split()[k] for k in places), (("prompt", pair.unsafe), ("words", words)),
                            seed + i, places))
    return concept, starts


def load_attacked(model: str, sample: SampleSettings):
    """(source, pipeline, compact padding, max sequence length) of a model the searches can run on:
    a Wan text-to-video pipeline (the searches call Wan's transformer with the text states alone)."""
    from .bounds import check_pipeline
    from .errors import ModelError
    from .model import resolve_model
    from .sampling import load_pipeline

    source = resolve_model(model)
    check_pipeline(source)  # a family vidunlearn cannot render (Open-Sora) is one line, not a traceback
    if source.adapter.family != "wan":
        raise ModelError(f"the attack runs on Wan text-to-video models, and this is a {source.adapter.family} model",
                         where=model, fix="attack a Wan 2.1 / 2.2 text-to-video model (or the benchmark model)")
    pipe, compact = load_pipeline(source, sample)
    return source, pipe, compact, source.adapter.max_sequence_length


def sampled_references(model: str, starts: list[Start], n: int, sample: SampleSettings, reporter: Reporter = SILENT) -> list:
    """Reference latents for a real model: ``model``'s own samples (the base, which draws the
    concept) of each start's unsafe prompt, ``n`` seeds each (10000 (i + 1) + k), rendered as the
    attack renders (:func:`render`) and kept as (n, C, F', H', W') latents in the denoiser's
    normalised space (the pipeline's ``output_type='latent'``)."""
    import torch

    from .textpath import encode_prompts

    _, pipe, compact, length = load_attacked(model, sample)
    latents = []
    with reporter.task("sampling reference clips from the base", total=len(starts)) as advance:
        for i, start in enumerate(starts):
            with torch.no_grad():
                states = encode_prompts(pipe.tokenizer, pipe.text_encoder, [dict(start.target)["prompt"]], length,
                                        sample.device)
            clips = render(pipe, compact, length, states * n, [10_000 * (i + 1) + k for k in range(n)], sample,
                           output_type="latent")
            latents.append(torch.stack([c.float() for c in clips]))
            advance(1)
    return latents


def span_of(tokenizer, text: str, word: str, width: int) -> tuple[list[int], list[int]]:
    """:func:`places_span` at the first run of words of ``text`` that is ``word``."""
    words, wanted = text.split(), word.split()
    where = next((i for i in range(len(words)) if words[i:i + len(wanted)] == wanted), None)
    if where is None or not wanted:
        raise VidunlearnError(f"the word {word!r} is not a run of words of {text!r}")
    return places_span(tokenizer, text, tuple(range(where, where + len(wanted))), width)


def places_span(tokenizer, text: str, places: tuple[int, ...], width: int) -> tuple[list[int], list[int]]:
    """(token ids of ``text`` with special tokens, the span positions): the tokens of the words at
    ``places`` (word indices), each word tokenized alone; one run of words shorter than ``width``
    tokens is widened as :func:`span_of` widens it."""
    words = text.split()
    pieces = [tokenizer(w, add_special_tokens=False)["input_ids"] for w in words]
    run = sorted(places) == list(range(min(places), max(places) + 1))
    body: list[int] = []
    span: list[int] = []
    for k, piece in enumerate(pieces):
        if k in places:
            span += range(len(body), len(body) + len(piece))
        body += piece
        if run and k == max(places) and len(span) < width:
            span += range(len(body), len(body) + width - len(span))
            body += [body[-1]] * (span[-1] + 1 - len(body))
    full, plain = tokenizer(text)["input_ids"], tokenizer(text, add_special_tokens=False)["input_ids"]
    offset = next(i for i in range(len(full) - len(plain) + 1) if full[i:i + len(plain)] == plain)  # the special tokens
    return full[:offset] + body + full[offset + len(plain):], [offset + p for p in span]


def render(pipe, compact: bool, length: int, states: list, seeds: list[int], sample: SampleSettings,
           batch_size: int = 16, output_type: str = "np", negative=None) -> list:
    """Clips (F, H, W, 3) in [0, 1] conditioned on text-encoder output states [(T_i, D)]; clip i
    drawn with seed ``seeds[i]``, the negative prompt as ``vidunlearn eval`` uses it, or the states
    ``negative`` (T, D) given (``output_type='latent'``: the denoised latents (C, F', H', W') instead)."""
    import torch

    from .textpath import encode_prompts

    def padded(rows: list) -> torch.Tensor:
        width = min(length, max(r.shape[0] for r in rows) + 1) if compact else length
        return torch.stack([torch.cat([r, r.new_zeros(width - r.shape[0], r.shape[1])]) for r in rows])

    if negative is None:
        with torch.no_grad():
            negative = encode_prompts(pipe.tokenizer, pipe.text_encoder, [sample.negative_prompt], length, sample.device)[0]
    clips: list[np.ndarray] = []
    for begin in range(0, len(states), batch_size):
        batch = states[begin:begin + batch_size]
        generators = [torch.Generator(device="cpu").manual_seed(s) for s in seeds[begin:begin + len(batch)]]
        result = pipe(prompt_embeds=padded(batch).to(pipe.transformer.dtype),
                      negative_prompt_embeds=padded([negative] * len(batch)).to(pipe.transformer.dtype)
                      if sample.guidance > 1 else None,
                      height=sample.height, width=sample.width, num_frames=sample.frames,
                      num_inference_steps=sample.steps, guidance_scale=sample.guidance, generator=generators,
                      output_type=output_type)
        clips.extend(result.frames[:len(batch)])
    return clips


@dataclass
class ModelAttack:
    model: dict
    start_verdicts: list[dict[str, str]]
    verdicts: list[dict[str, str]]
    found: list[Found]
    texts: list[str | None]                       # discrete: the prompt found, as a person types it
    seconds: float
    start_clips: list[np.ndarray] = field(default_factory=list, repr=False)
    clips: list[np.ndarray] = field(default_factory=list, repr=False)


def attack_model(model: str, concept: Concept, starts: list[Start], settings: AttackSettings, sample: SampleSettings,
                 judge, *, label: str = "model", reporter: Reporter = SILENT, references: list | None = None,
                 reference_clips: np.ndarray | None = None) -> ModelAttack:
    """Attack ``model`` from every starting prompt, render the starts and what was found, judge both.
    ``references``: one (K, C, F', H', W') latent tensor per start; ``reference_clips``: uint8 clips
    (K, F, H, W, 3) encoded by this model's VAE and shared by every start (default: the world's
    generator renders each start's ``target`` labels)."""
    import torch

    from .textpath import encode_prompts

    settings.check()
    sample.check()
    started = time.perf_counter()
    source, pipe, compact, length = load_attacked(model, sample)
    tokenizer, encoder, transformer = pipe.tokenizer, pipe.text_encoder, pipe.transformer
    banned = {concept.value, *(w.lower() for s in starts for w in dict(s.target).get("words", "").split())}
    allowed = allowed_tokens(tokenizer, banned) if settings.space == "discrete" else None   # never the concept's own words
    shared = encode_clips(pipe.vae, reference_clips).to(sample.device) if reference_clips is not None else None
    found, texts = [], []
    per_start = settings.steps * settings.restarts
    with reporter.task(f"attacking {label} ({settings.space})", total=per_start * len(starts)) as advance:
        for i, start in enumerate(starts):
            if shared is not None:
                latents = shared
            elif references is not None:
                latents = references[i].to(sample.device)
            else:
                latents = reference_latents(pipe.vae, dict(start.target), settings.references, seed=10_000 * (i + 1))
            ids, span = places_span(tokenizer, start.text, start.places, settings.span)
            with torch.enable_grad():
                result = search(transformer, encoder, torch.tensor(ids, device=sample.device), span, latents,
                                replace(settings, seed=settings.seed + 1_000 * i), allowed, advance)
            text = None
            if settings.space == "discrete":
                text = tokenizer.decode(result.ids.tolist(), skip_special_tokens=True)
                with torch.no_grad():  # render what a person would type: the decoded text, encoded again
                    result = replace(result, states=encode_prompts(tokenizer, encoder, [text], length, sample.device)[0])
            found.append(result)
            texts.append(text)
    with torch.no_grad():
        start_states = encode_prompts(tokenizer, encoder, [s.text for s in starts], length, sample.device)
    seeds = [s.seed for s in starts]
    with reporter.task(f"rendering {label}", total=2) as advance:
        start_clips = render(pipe, compact, length, start_states, seeds, sample)
        advance(1)
        clips = render(pipe, compact, length, [f.states for f in found], seeds, sample)
        advance(1)
    return ModelAttack(source.describe(), [judge.judge(c) for c in start_clips], [judge.judge(c) for c in clips],
                       found, texts, time.perf_counter() - started, start_clips, clips)


def rate(verdicts: list[dict[str, str]], concept: Concept) -> float:
    return float(np.mean([v.get(concept.attribute) == concept.value for v in verdicts]))


def summary(run: ModelAttack, concept: Concept, judge) -> dict:
    return {"model": run.model, "start_rate": rate(run.start_verdicts, concept),
            "attack_success_rate": rate(run.verdicts, concept),
            "frame_rates": frame_rates(judge, run.clips, concept),
            "start_frame_rates": frame_rates(judge, run.start_clips, concept),
            "mean_loss_start": float(np.mean([f.loss_start for f in run.found])),
            "mean_loss": float(np.mean([f.loss for f in run.found])), "seconds": round(run.seconds, 1)}


def frames_plot(concept: Concept, results: dict[str, dict]) -> str:
    """An SVG plot of the share of clips showing the concept at each frame index, attacked and as
    typed, per model (the base dashed): temporal re-emergence shows as a line rising to the right."""
    from .htmlreport import rate_plot

    series = {f"{concept.value}, {kind}, {name}": results[name][key]
              for kind, key in (("attacked", "frame_rates"), ("as typed", "start_frame_rates")) for name in results}
    return rate_plot(series, group=len(results))


def report(concept: Concept, starts: list[Start], settings: AttackSettings, sample: SampleSettings, judge,
           runs: dict[str, ModelAttack]) -> dict:
    """The attack.json document (schema :data:`SCHEMA`, docs/attack.md)."""
    prompts = []
    for i, start in enumerate(starts):
        entry = {"start": start.text, "seed": start.seed, "target": dict(start.target)}
        for name, run in runs.items():
            entry[name] = {"start_verdict": run.start_verdicts[i], "verdict": run.verdicts[i],
                           "loss_start": run.found[i].loss_start, "loss": run.found[i].loss,
                           **({"found_text": run.texts[i]} if run.texts[i] is not None else {})}
        prompts.append(entry)
    return {"schema": SCHEMA, "kind": "vidunlearn-attack", "tool_version": __version__, "concept": asdict(concept),
            "attack": asdict(settings), "sampling": asdict(sample), "judge": judge.name,
            "results": {name: summary(run, concept, judge) for name, run in runs.items()}, "prompts": prompts}


def save_found(path: Path, runs: dict[str, ModelAttack], document: dict) -> None:
    """Every found conditioning, safetensors: ``{model|base}.{i}.states`` (T, D) output states;
    ``.ids`` the token ids (input, discrete); ``.embeddings`` the span's input embeddings (input)."""
    from safetensors.torch import save_file

    tensors = {}
    for name, run in runs.items():
        for i, found in enumerate(run.found):
            tensors[f"{name}.{i}.states"] = found.states.cpu().contiguous()
            if found.ids is not None:
                tensors[f"{name}.{i}.ids"] = found.ids.cpu().contiguous()
            if found.embeddings is not None:
                tensors[f"{name}.{i}.embeddings"] = found.embeddings.cpu().contiguous()
    meta = {"kind": "vidunlearn-attack", "schema": str(SCHEMA), "attack": json.dumps(document["attack"], sort_keys=True),
            "concept": json.dumps(document["concept"], sort_keys=True)}
    save_file(tensors, str(path), metadata=meta)


@dataclass(frozen=True)
class AttackResult:
    out: Path
    document: dict


def attack(model: str, concept: Concept, starts: list[Start], *, out: Path, settings: AttackSettings = AttackSettings(),
           sample: SampleSettings = SampleSettings(), judge="oracle", compare: str | None = None, force: bool = False,
           reporter: Reporter = SILENT, reference_clips: Path | None = None) -> AttackResult:
    """Attack ``model`` (and ``compare``, the base, from the same starts); write ``out/attack.json``,
    ``out/found.safetensors``, ``out/sheet.png`` and ``out/frames.svg`` (the per-frame rates)."""
    from .judges import load_judge
    from .model import resolve_model
    from .sheet import SheetRow, compare_sheet

    settings.check()
    sample.check()
    sampled = reference_clips is None and any(dict(s.target).get("prompt") for s in starts)  # a pairs file's starts
    if sampled and not compare:
        raise VidunlearnError("--pairs needs --compare BASE: the reference clips are the base model's own samples "
                              "of the pairs' unsafe prompts", fix="add --compare with the unedited model, or --reference-clips DIR")
    check_writable(out, force=force)
    check_apart(out, [("the model folder", resolve_model(m).path) for m in (model, compare) if m])
    chosen = load_judge(judge) if isinstance(judge, str) else judge
    references, clips, source = None, None, "the benchmark world's generator"
    if reference_clips is not None:   # the user's clips, shared by every start
        clips = read_reference_clips(reference_clips, settings.references, sample.frames, sample.height, sample.width)
        source = f"{len(clips)} clips of {reference_clips}"
    elif sampled:   # the base's own samples of the unsafe prompts
        source = "the --compare model's samples of the unsafe prompts"
        references = sampled_references(compare, starts, settings.references, sample, reporter)
    refs = {"references": references, "reference_clips": clips}
    runs = {"model": attack_model(model, concept, starts, settings, sample, chosen, label="model", reporter=reporter, **refs)}
    if compare:
        runs["base"] = attack_model(compare, concept, starts, settings, sample, chosen, label="base", reporter=reporter, **refs)
    document = {**report(concept, starts, settings, sample, chosen, runs), "reference_clips": source}
    with atomic_output(out, directory=True, replace=force) as temp:
        write_json(temp / "attack.json", document)
        save_found(temp / "found.safetensors", runs, document)
        rows = []
        for i, start in enumerate(starts[:12]):
            for name, run in runs.items():
                shown = run.texts[i] or f"{settings.space} soft prompt"
                found = run.verdicts[i].get(concept.attribute)
                rows.append(SheetRow(start.text, (run.start_clips[i], run.clips[i]), tag=name,
                                     lines=(f"start: {run.start_verdicts[i].get(concept.attribute)}",
                                            f"attacked ({shown}): {found}"),
                                     failed=found == concept.value))  # the concept came back
        compare_sheet(rows, ("start", "attacked"), temp / "sheet.png",
                      footer=f"{concept.attribute} {concept.value!r}, {settings.space} attack; failed: the concept came back")
        (temp / "frames.svg").write_text(frames_plot(concept, document["results"]), encoding="utf-8")
    return AttackResult(out, document)
