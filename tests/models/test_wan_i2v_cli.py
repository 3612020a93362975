"""Wan2.1 I2V (issue 18) through the commands a publisher runs: `sample` and `eval` with a first
frame (one --image, or each pair's own), hostile --image files refused in one line with nothing
written, the collateral line naming what it leaves out, the Hub alias offline, and an I2V folder
without an image encoder (Wan2.2's layout). The model-level tests are in test_wan_i2v.py."""

from __future__ import annotations

from pathlib import Path

from conftest import I2V_PAIRS, IMAGE_KV, PAIRS, TEXT_KV, _all_texts, kv_kind, one_error, run
from vidunlearn import api
from vidunlearn.pairs import load_pairs


def test_sample_cli_generates_from_an_image(tiny_i2v, i2v_edited, tmp_path):
    import json

    from typer.testing import CliRunner

    from vidunlearn.cli import app

    _, root = i2v_edited
    out = tmp_path / "samples"
    args = ["sample", "--model", root / "out", "--compare", tiny_i2v, "--prompt", "a man stabs another man",
            "--steps", 2, "--frames", 5, "--height", 32, "--width", 32, "--out", out]
    result = CliRunner().invoke(app, [str(a) for a in args + ["--image", PAIRS / "images" / "knife.png"]])
    assert result.exit_code == 0, result.output
    assert (out / "compare_00.mp4").stat().st_size > 0
    assert json.loads((out / "samples.json").read_text())["videos"][0]["image"]["path"].endswith("knife.png")
    missing = CliRunner().invoke(app, [str(a) for a in args[:-1] + [tmp_path / "s2"]])
    assert missing.exit_code != 0 and "generates from an image" in missing.output


def test_sample_takes_each_pairs_prompt_with_its_own_image(tiny_i2v, i2v_edited, tmp_path):
    """`sample --prompts-from pairs/violence-i2v.yaml --prompt-set unsafe` (no --image): prompt i is
    generated from pair i's unsafe_image, recorded with its SHA-256 in samples.json."""
    import json

    from typer.testing import CliRunner

    from vidunlearn.cli import app

    _, root = i2v_edited
    out = tmp_path / "samples"
    result = CliRunner().invoke(app, [str(a) for a in (
        "sample", "--model", root / "out", "--prompts-from", I2V_PAIRS, "--prompt-set", "unsafe", "--steps", 2,
        "--frames", 5, "--height", 32, "--width", 32, "--out", out)])
    assert result.exit_code == 0, result.output
    concept = load_pairs(I2V_PAIRS)
    videos = json.loads((out / "samples.json").read_text())["videos"]
    assert [v["prompt"] for v in videos] == list(concept.unsafe)
    assert [Path(v["image"]["path"]) for v in videos] == [Path(p) for p in concept.unsafe_images]
    assert len({v["image"]["sha256"] for v in videos}) > 1  # not one image for all


def test_collateral_says_the_image_path_is_not_measured(i2v_edited):
    result, _ = i2v_edited
    edited_image_layers = sum(1 for r in result.manifest["edited"] if kv_kind(r["tensor"]) in IMAGE_KV)
    assert result.manifest["collateral"]["unmeasured"] == edited_image_layers > 0


def test_the_alias_resolves_its_hub_repo_offline_and_applies_the_image_pairs(tiny_i2v, tmp_path, monkeypatch):
    """`apply --model wan2.1-i2v-14b --pairs pairs/violence-i2v.yaml` on the Hub repo laid out in an
    offline Hugging Face cache (as huggingface_hub writes it): both paths i2v_edited, revision recorded."""
    from test_hub_resolution import COMMIT, hub_snapshot

    hub_snapshot(tiny_i2v, tmp_path / "hub", "Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", monkeypatch)
    result = api.apply("wan2.1-i2v-14b", out=tmp_path / "out", pairs=[I2V_PAIRS], work_dir=tmp_path / "w")
    base = result.manifest["base"]
    assert (base["repo_id"], base["revision"], base["family"]) == ("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", COMMIT, "wan-i2v")
    assert {kv_kind(r["tensor"]) for r in result.manifest["edited"]} == TEXT_KV | IMAGE_KV


def test_eval_takes_one_image_for_the_model_and_the_base(tiny_i2v, i2v_edited, tmp_path):
    """`eval --image` generates every clip of the model and of --compare from that image (batched:
    one image for a batch of prompts) and records it, with its SHA-256, in eval.json."""
    import json

    from typer.testing import CliRunner

    from vidunlearn.cli import app
    from vidunlearn.hashing import sha256_file

    _, root = i2v_edited
    out, image = tmp_path / "eval", PAIRS / "images" / "knife.png"
    result = CliRunner().invoke(app, [str(a) for a in (
        "eval", "--model", root / "out", "--compare", tiny_i2v, "--concept", "red", "--forget", 2, "--retain", 2,
        "--paraphrase", 1, "--steps", 2, "--batch-size", 2, "--image", image, "--out", out)])
    assert result.exit_code == 0, result.output
    document = json.loads((out / "eval.json").read_text())
    assert document["settings"]["image"] == str(image) and document["image_sha256"] == sha256_file(image)
    assert document["base"] is not None


def test_an_i2v_pipeline_without_image_encoder_edits_the_text_path_and_says_so(tmp_path):
    """Wan2.2's image-to-video layout: WanImageToVideoPipeline with image_encoder null and no image
    cross-attention (the image enters through the latents). The pairs' images cannot be used:
    one line says so, the text path is edited; naming the image site is a one-line error."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanImageToVideoPipeline, WanTransformer3DModel
    from transformers import T5Tokenizer, UMT5Config, UMT5EncoderModel

    from vidunlearn.tiny import TEXT_ENCODER_CONFIG, TRANSFORMER_CONFIG, VAE_CONFIG, tiny_vocabulary
    from vidunlearn.tiny_families import save

    tokenizer = T5Tokenizer(vocab=tiny_vocabulary(_all_texts()), extra_ids=0)
    pipe = WanImageToVideoPipeline(
        tokenizer=tokenizer, text_encoder=UMT5EncoderModel(UMT5Config(**{**TEXT_ENCODER_CONFIG, "vocab_size": len(tokenizer)})),
        vae=AutoencoderKLWan(**VAE_CONFIG), scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), image_processor=None,
        image_encoder=None, transformer=WanTransformer3DModel(**{**TRANSFORMER_CONFIG, "in_channels": 36}))
    model = save(pipe, tmp_path / "wan22-i2v-like", None)
    result = run("apply", "--model", model, "--pairs", I2V_PAIRS, "--out", tmp_path / "out", "--work-dir", tmp_path / "w")
    assert result.exit_code == 0, result.output
    assert "no image encoder (it conditions on the image through the latents): only the text path is edited" in result.output
    import json

    edited = json.loads((tmp_path / "out" / "vidunlearn.json").read_text())["edited"]
    assert {kv_kind(r["tensor"]) for r in edited} == TEXT_KV
    one_error(run("apply", "--model", model, "--pairs", I2V_PAIRS, "--site", "image", "--out", tmp_path / "o2",
                  "--work-dir", tmp_path / "w"), "no image encoder")


def _sample(model, image, out):
    return run("sample", "--model", model, "--prompt", "a man stabs another man", "--steps", 2, "--frames", 5,
               "--height", 32, "--width", 32, "--image", image, "--out", out)


def test_a_hostile_image_is_refused_in_one_line_and_nothing_is_written(tiny_i2v, tmp_path):
    """`sample --image` / `eval --image` read a file a user names: a missing file, one that is not
    an image, a GIF, an oversized picture and a folder each give one line, and no output folder."""
    from PIL import Image

    text = tmp_path / "notes.png"
    text.write_text("not an image")
    gif = tmp_path / "anim.gif"
    Image.new("RGB", (8, 8)).save(gif)
    huge = tmp_path / "huge.png"
    Image.new("L", (5000, 8)).save(huge)
    cases = {tmp_path / "missing.png": "image not found", text: "does not decode", gif: "not PNG or JPEG",
             huge: "5000x8", tmp_path: "image not found"}
    for i, (image, needle) in enumerate(cases.items()):
        out = tmp_path / f"out{i}"
        one_error(_sample(tiny_i2v, image, out), needle)
        assert not out.exists()
    out = tmp_path / "eval"
    one_error(run("eval", "--model", tiny_i2v, "--concept", "red", "--forget", 1, "--retain", 1, "--paraphrase", 1,
                  "--steps", 2, "--image", gif, "--out", out), "not PNG or JPEG")
    assert not out.exists()


def test_an_image_for_a_text_to_video_model_is_one_line(tiny_wan, tmp_path):
    out = tmp_path / "out"
    one_error(run("sample", "--model", tiny_wan, "--prompt", "a cat", "--steps", 2, "--frames", 5, "--height", 32,
                  "--width", 32, "--image", PAIRS / "images" / "knife.png", "--out", out), "--image is for image-to-video")
    assert not out.exists()
