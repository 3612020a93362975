"""`vidunlearn apply --adversarial STEPS` with ``site: factors``: the remap's factors trained against the
soft-prompt attack (the default site, the text encoder: test_adversarial_encoder.py). The output keeps the remap's form (verify --base checks it like any remap), the training is recorded in
the recipe and deterministic, and every bad input is one line with nothing written. Whether it holds
against the attack is measured by benchmarks/attack.py and benchmarks/efficacy.py (docs/adversarial.md),
not here: a few steps with the smallest settings are what a test can afford."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vidunlearn.cli import app

ROOT = Path(__file__).resolve().parents[2]
BENCH_MODEL = ROOT / "models" / "shapes-wan"
LEFT = ROOT / "pairs" / "bench" / "moving-left.yaml"
runner = CliRunner()
needs_model = pytest.mark.skipif(not (BENCH_MODEL / "model_index.json").is_file(),
                                 reason="the trained benchmark model models/shapes-wan is not in this checkout")
SMALL = "references: 1\nbatch: 1\nkeep_batch: 2\ninner: 2\ndraws: 1\nlr: 0.001\nsite: factors\n"


def run(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def kv(out: Path) -> dict:
    from safetensors.torch import load_file

    weights = load_file(str(out / "transformer" / "diffusion_pytorch_model.safetensors"))
    return {k: v for k, v in weights.items() if k.endswith(("attn2.to_k.weight", "attn2.to_v.weight"))}


@needs_model
def test_adversarial_apply_trains_the_remap_factors_keeps_their_form_and_is_deterministic(tmp_path, one_thread):
    settings = tmp_path / "adv.yaml"
    settings.write_text(SMALL)
    common = ("--model", BENCH_MODEL, "--pairs", LEFT, "--work-dir", tmp_path / "w", "--no-collateral")
    assert run("apply", *common, "--out", tmp_path / "plain").exit_code == 0
    for name in ("held", "again"):
        result = run("apply", *common, "--adversarial", 3, "--adversarial-settings", settings, "--out", tmp_path / name)
        assert result.exit_code == 0, result.output
    recipe = json.loads((tmp_path / "held" / "vidunlearn.json").read_text())["recipe"]
    assert recipe["adversarial"]["steps"] == 3 and recipe["adversarial"]["references"] == 1
    assert recipe["adversarial"]["lr"] == 0.001 and recipe["mode"] == "remap"
    assert "| adversarial training | 3 steps against the input soft-prompt attack" in (tmp_path / "held" / "README.md").read_text()
    plain, held, again = kv(tmp_path / "plain"), kv(tmp_path / "held"), kv(tmp_path / "again")
    assert set(plain) == set(held) and len(held) == 12
    assert all(not held[k].equal(plain[k]) for k in held)          # every edited layer was trained
    assert all(held[k].equal(again[k]) for k in held)              # the same run gives the same weights
    result = run("verify", tmp_path / "held", "--base", BENCH_MODEL)  # the remap's form: rank, shared rows
    assert result.exit_code == 0 and "the changes are exactly the recipe's" in result.output, result.output


@needs_model
def test_adversarial_extra_rank_widens_the_edit_and_verify_checks_the_wider_rank(tmp_path, one_thread):
    settings = tmp_path / "adv.yaml"
    settings.write_text(SMALL + "extra_rank: 3\n")
    common = ("--model", BENCH_MODEL, "--pairs", LEFT, "--work-dir", tmp_path / "w", "--no-collateral")
    assert run("apply", *common, "--out", tmp_path / "plain").exit_code == 0
    result = run("apply", *common, "--adversarial", 2, "--adversarial-settings", settings, "--out", tmp_path / "wide")
    assert result.exit_code == 0, result.output
    plain = json.loads((tmp_path / "plain" / "vidunlearn.json").read_text())["recipe"]
    wide = json.loads((tmp_path / "wide" / "vidunlearn.json").read_text())["recipe"]
    assert wide["edit_rank"] == plain["edit_rank"] + 3 and wide["adversarial"]["extra_rank"] == 3
    base = kv(BENCH_MODEL)
    ranks = [int(torch.linalg.matrix_rank(v.double() - base[k].double(), rtol=1e-4)) for k, v in kv(tmp_path / "wide").items()]
    assert max(ranks) > plain["edit_rank"]                           # the edit did use the new columns
    result = run("verify", tmp_path / "wide", "--base", BENCH_MODEL)
    assert result.exit_code == 0 and "the changes are exactly the recipe's" in result.output, result.output


@pytest.mark.parametrize("case,message", [
    ("negative", "is not a whole number of steps"),
    ("project", "--adversarial needs the default --mode remap and --pairs"),
    ("unknown-key", "unknown adversarial setting 'learning_rate'"),
    ("not-mapping", "must be a YAML mapping"),
    ("wrong-type", "adversarial setting lr = 'fast' must be a float"),
    ("zero-lr", "adversarial setting lr = 0 must be in (0, 10)"),
    ("negative-guidance", "adversarial setting erase_guidance = -1.0 must be in [0, 1000]"),
    ("on-policy-share", "adversarial setting on_policy = 2.0 must be in [0, 1]"),
    ("keep-on-policy-share", "adversarial setting keep_on_policy = -0.5 must be in [0, 1]"),
    ("negative-focus", "adversarial setting frame_focus = -0.5 must be in [0, 1000]"),
    ("negative-restart", "adversarial setting restart = -3 must be a whole number of visits"),
    ("huge-extra-rank", "adversarial setting extra_rank = 5000 must be a whole number from 0 to 4096"),
    ("bad-site", "adversarial setting site = 'unet' is not one of factors, text_encoder"),
    ("site-not-word", "adversarial setting site = 3 must be a word"),
    ("negative-anchor", "adversarial setting anchor = -2.0 must be in [0, 1000]"),
    ("negative-encoder-layers", "adversarial setting text_encoder_layers = -1 must be a whole number"),
    ("huge-anchor-concept", "adversarial setting anchor_concept = 2000.0 must be in [0, 1000]"),
    ("negative-anchor-batch", "adversarial setting anchor_batch = -1 must be a whole number from 0"),
    ("negative-keep-attack", "adversarial setting keep_attack = -2 must be a whole number from 0"),
    ("fractional-keep-restart", "adversarial setting keep_restart = 1.5 must be a"),
    ("zero-soup", "adversarial setting soup = 0 must be a whole number of trainings from 1 to 64"),
    ("zero-keep-references", "adversarial setting keep_references = 0 must be a whole number of at least 1"),
    ("soup-of-factors", "adversarial setting soup = 2 averages trained text encoders, and site is factors"),
    ("huge-erase-context", "adversarial setting erase_context = 2.0 must be in [0, 1]"),
    ("negative-keep-context", "adversarial setting keep_context = -1 must be a whole number of prompts for each unsafe prompt from 0"),
    ("fractional-unsafe-context", "adversarial setting unsafe_context = 2.5 must be a whole number of prompts for each pair from 0"),
    ("bad-context-order", "adversarial setting unsafe_context_order = 'far' is not one of list, spread"),
    ("context-order-not-word", "adversarial setting unsafe_context_order = 2 must be a word"),
    ("negative-anchor-unrelated", "adversarial setting anchor_unrelated = -1.0 must be in [0, 1000]"),
    ("zero-anchor-unrelated-batch", "adversarial setting anchor_unrelated_batch = 0 must be a whole number of at least 1"),
    ("anchor-unrelated-of-factors", "adversarial setting anchor_unrelated = 3.0 holds a trained text encoder, and site is factors"),
    ("random-start-share", "adversarial setting random_start = 2.0 must be in [0, 1]"),
    ("negative-anchor-tokens", "adversarial setting anchor_tokens = -1 must be a whole number of prompts a step from 0"),
    ("negative-typed-attack", "adversarial setting typed_attack = -1 must be a whole number of prompts a step from 0"),
    ("zero-typed-candidates", "adversarial setting typed_candidates = 0 must be a whole number of at least 1"),
    ("anchor-tokens-of-factors", "adversarial setting anchor_tokens = 4 holds a trained text encoder with the anchor's weight, "
                                 "and site is factors"),
    ("anchor-tokens-unweighted", "adversarial setting anchor_tokens = 4 holds a trained text encoder with the anchor's weight, "
                                 "and site is text_encoder, anchor 0.0"),
    ("erase-context-of-factors", "adversarial setting erase_context = 0.0 scales the trained text encoder's gradient, "
                                 "and site is factors"),
    ("encoder-into-lora", "adversarial site text_encoder trains the text encoder, which a lora output cannot carry"),
    ("default-into-single-file", "adversarial site text_encoder trains the text encoder, which a single-file output cannot carry"),
    ("missing-file", "cannot read the adversarial settings"),
    ("bad-frames", "is not of the form 4k+1"),
])
def test_adversarial_bad_inputs_one_line(tmp_path, case, message):
    settings = tmp_path / "adv.yaml"
    settings.write_text({"unknown-key": "learning_rate: 0.1\n", "not-mapping": "- 1\n", "wrong-type": "lr: fast\n",
                         "zero-lr": "lr: 0\n", "negative-guidance": "erase_guidance: -1.0\n",
                         "on-policy-share": "on_policy: 2.0\n", "keep-on-policy-share": "keep_on_policy: -0.5\n",
                         "fractional-unsafe-context": "unsafe_context: 2.5\n",
                         "bad-context-order": "unsafe_context_order: far\n", "context-order-not-word": "unsafe_context_order: 2\n",
                         "bad-frames": "frames: 6\n",
                         "negative-focus": "frame_focus: -0.5\n", "negative-restart": "restart: -3\n",
                         "huge-extra-rank": "extra_rank: 5000\n", "bad-site": "site: unet\n", "site-not-word": "site: 3\n",
                         "negative-anchor": "site: text_encoder\nanchor: -2.0\n",
                         "negative-encoder-layers": "site: text_encoder\ntext_encoder_layers: -1\n",
                         "huge-anchor-concept": "site: text_encoder\nanchor: 1.0\nanchor_concept: 2000.0\n",
                         "negative-anchor-batch": "anchor_batch: -1\n",
                         "negative-keep-attack": "keep_attack: -2\n",
                         "fractional-keep-restart": "keep_restart: 1.5\n",
                         "zero-soup": "soup: 0\n", "soup-of-factors": "site: factors\nsoup: 2\n",
                         "zero-keep-references": "keep_references: 0\n",
                         "huge-erase-context": "erase_context: 2.0\n",
                         "negative-keep-context": "keep_context: -1\n",
                         "erase-context-of-factors": "site: factors\nerase_context: 0.0\n",
                         "negative-anchor-unrelated": "anchor_unrelated: -1.0\n",
                         "zero-anchor-unrelated-batch": "anchor_unrelated_batch: 0\n",
                         "anchor-unrelated-of-factors": "site: factors\nanchor_unrelated: 3.0\n",
                         "random-start-share": "random_start: 2.0\n",
                         "negative-anchor-tokens": "anchor_tokens: -1\n",
                         "negative-typed-attack": "typed_attack: -1\n", "zero-typed-candidates": "typed_candidates: 0\n",
                         "anchor-tokens-of-factors": "site: factors\nanchor_tokens: 4\n",
                         "anchor-tokens-unweighted": "anchor: 0.0\nanchor_tokens: 4\n",
                         "encoder-into-lora": "site: text_encoder\n"}.get(case, ""))
    args = {"negative": ("--adversarial", -1), "project": ("--adversarial", 2, "--mode", "project"),
            "missing-file": ("--adversarial", 2, "--adversarial-settings", tmp_path / "nothing.yaml"),
            "encoder-into-lora": ("--adversarial", 2, "--adversarial-settings", settings, "--format", "lora"),
            "default-into-single-file": ("--adversarial", 2, "--format", "single-file"),
            }.get(case, ("--adversarial", 2, "--adversarial-settings", settings))
    result = run("apply", "--model", BENCH_MODEL, "--pairs", LEFT, "--work-dir", tmp_path / "w", "--out", tmp_path / "o", *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert result.output.count("error:") == 1 and not (tmp_path / "o").exists()
    if case in ("unknown-key", "not-mapping", "wrong-type", "missing-file", "site-not-word", "context-order-not-word"):
        assert "adv.yaml" in result.output or "nothing.yaml" in result.output


def test_each_site_resolves_the_settings_a_file_leaves_out_to_its_own_measured_defaults(tmp_path):
    """The text encoder's default erases in the keep prompts' contexts too (unsafe_context 2, sixteenth session);
    the factors' stays as measured (0); a value the file gives wins; the recipe records the resolved values."""
    from vidunlearn.adversarial_settings import SITE_DEFAULTS, load_settings

    settings = tmp_path / "adv.yaml"
    for text, site, context in (("", "text_encoder", 2), ("site: factors\n", "factors", 0),
                                ("unsafe_context: 0\n", "text_encoder", 0), ("site: factors\nunsafe_context: 1\n", "factors", 1)):
        settings.write_text(text)
        resolved = load_settings(settings, 200).resolved()
        assert (resolved.site, resolved.unsafe_context) == (site, context)
        assert resolved.lr == SITE_DEFAULTS[site]["lr"] and resolved.keep_weight == SITE_DEFAULTS[site]["keep_weight"]
        assert resolved.unsafe_context_order == SITE_DEFAULTS[site]["unsafe_context_order"]
        assert resolved.anchor_tokens == SITE_DEFAULTS[site]["anchor_tokens"]
    settings.write_text("unsafe_context_order: spread\n")
    assert load_settings(settings, 200).resolved().unsafe_context_order == "spread"


def test_adversarial_refuses_an_image_to_video_model_before_any_work(tmp_path, tiny_i2v):
    pairs = ROOT / "pairs" / "violence-i2v.yaml"
    result = run("apply", "--model", tiny_i2v, "--pairs", pairs, "--adversarial", 2, "--work-dir", tmp_path / "w",
                 "--out", tmp_path / "o")
    assert result.exit_code == 1 and "Wan text-to-video models, and this is a wan-i2v model" in result.output, result.output
    assert result.output.count("error:") == 1 and not (tmp_path / "o").exists() and not (tmp_path / "w").exists()


@needs_model
def test_adversarial_training_makes_the_motion_edit_hold_on_held_out_prompts(tmp_path, one_thread):
    """CI's reduced check of benchmarks/attack.py --held-out (docs/adversarial-encoder.md): from 4 captions
    of the leftward motion that are not the pairs' own prompts, the input soft prompt (the benchmark's 40
    steps) brings the motion back on the default edit (measured: 4 of 4) and at most 1 of 4 after
    ``--adversarial 200`` with its default settings (the text encoder trained since the tenth session;
    the factors measured 0 of 4 here; the benchmark from 8 captions: 1 of 8); as typed, neither edit draws it."""
    from vidunlearn import api, world
    from vidunlearn.adversarial_settings import AdversarialSettings
    from vidunlearn.attack import AttackSettings
    from vidunlearn.attack_run import attack_model, summary, world_starts
    from vidunlearn.judges import load_judge
    from vidunlearn.pairs import load_pairs
    from vidunlearn.sampling import SampleSettings

    from vidunlearn.remap import unsafe_context_pairs

    pairs = load_pairs(LEFT)   # none a prompt the training sees: the pairs' own, nor those its unsafe_context builds
    default = AdversarialSettings().resolved()
    unseen = (*pairs.unsafe, *(u for u, _ in unsafe_context_pairs(pairs, default.unsafe_context, default.unsafe_context_order)))
    concept, starts = world_starts("left", 4, "forget", seed=0, exclude=unseen)
    sample = SampleSettings(steps=10, frames=world.FRAMES, height=world.SIZE, width=world.SIZE, guidance=2.0, seed=0)
    judge, rates = load_judge("oracle"), {}
    for name, steps in (("default", 0), ("held", 200)):
        api.apply(str(BENCH_MODEL), out=tmp_path / name, pairs=[LEFT], work_dir=tmp_path / "w",
                  recipe=api.EditRecipe(adversarial=AdversarialSettings(steps=steps)),
                  output=api.OutputOptions(collateral=False))
        found = attack_model(str(tmp_path / name), concept, starts, AttackSettings(space="input", steps=40), sample, judge)
        rates[name] = summary(found, concept, judge)
    assert rates["default"]["start_rate"] == 0 and rates["held"]["start_rate"] == 0
    assert rates["default"]["attack_success_rate"] >= 0.75
    assert rates["held"]["attack_success_rate"] <= 0.25
