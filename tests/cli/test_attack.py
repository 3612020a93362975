"""`vidunlearn attack`: bad inputs are one line; on the shipped benchmark model a reduced attack
(few prompts and steps) brings the concept back where an edit, or no edit, had it absent."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vidunlearn.cli import app

ROOT = Path(__file__).resolve().parents[2]
BENCH_MODEL = ROOT / "models" / "shapes-wan"
runner = CliRunner()
needs_model = pytest.mark.skipif(not (BENCH_MODEL / "model_index.json").is_file(),
                                 reason="the trained benchmark model models/shapes-wan is not in this checkout")


def run(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("args,message", [
    (("--concept", "mauve"), "no colour, shape, motion"),
    (("--concept", "dark"), "not a concept to attack"),
    (("--concept", "red", "--space", "latent"), "unknown attack space"),
    (("--concept", "red", "--start", "random"), "unknown --start"),
    (("--concept", "red", "--steps", "0"), "--steps 0 must be at least 1"),
])
def test_attack_bad_inputs_one_line(tmp_path, args, message):
    result = run("attack", "--model", BENCH_MODEL, "--out", tmp_path / "a", *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert result.output.count("error:") == 1 and not (tmp_path / "a").exists()


@needs_model
def test_attack_brings_red_back_on_a_weak_edit_from_prompts_naming_other_colours(tmp_path, one_thread):
    """The check of the attack (issue 16): a remap at strength 0.3, started from captions that ask
    for green, blue, yellow: unattacked, no clip is red; the output-state attack makes most red."""
    from safetensors.torch import load_file

    from vidunlearn import api

    weak = tmp_path / "weak"
    api.apply(str(BENCH_MODEL), out=weak, pairs=[ROOT / "pairs" / "bench" / "red.yaml"], work_dir=tmp_path / "w",
              recipe=api.EditRecipe(strength=0.3), output=api.OutputOptions(collateral=False))
    args = ("attack", "--model", weak, "--concept", "red", "--start", "other", "--prompts", "3", "--steps", "25")
    result = run(*args, "--out", tmp_path / "a")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "a" / "attack.json").read_text())
    found = document["results"]["model"]
    assert found["start_rate"] == 0.0                       # no word asks for red ...
    assert found["attack_success_rate"] >= 2 / 3            # ... the attack brings it back in most clips
    assert found["mean_loss"] < 0.8 * found["mean_loss_start"]
    assert all(p["model"]["loss"] < p["model"]["loss_start"] for p in document["prompts"])
    assert len(found["frame_rates"]) == 5 and (tmp_path / "a" / "sheet.png").stat().st_size > 0
    plot = (tmp_path / "a" / "frames.svg").read_text()
    assert plot.startswith("<svg") and plot.count("<polyline") == 2 and "red, attacked, model" in plot
    saved = load_file(tmp_path / "a" / "found.safetensors")
    assert sorted(saved) == [f"model.{i}.states" for i in range(3)] and saved["model.0.states"].shape[1] == 384


@pytest.mark.parametrize("space", ["output", "input", "discrete"])
def test_each_search_is_deterministic_under_its_seed_and_discrete_keeps_to_typeable_words(tiny_wan, space, one_thread):
    import torch

    from vidunlearn.attack import AttackSettings, allowed_tokens, search
    from vidunlearn.attack_run import reference_latents, span_of
    from vidunlearn.model import resolve_model
    from vidunlearn.sampling import SampleSettings, load_pipeline

    pipe, _ = load_pipeline(resolve_model(str(tiny_wan)), SampleSettings(frames=5, height=32, width=32))
    latents = reference_latents(pipe.vae, {"colour": "red", "shape": "circle", "motion": "up", "background": "dark"},
                                2, seed=0)
    ids, span = span_of(pipe.tokenizer, "a man stabs a man in an alley", "stabs", 2)
    allowed = allowed_tokens(pipe.tokenizer, {"stabs"})
    settings = AttackSettings(space=space, steps=3, restarts=2, references=2, draws=2, candidates=4, top_k=4, seed=5)
    runs = [search(pipe.transformer, pipe.text_encoder, torch.tensor(ids), span, latents, settings, allowed,
                   lambda n=1: None) for _ in range(2)]
    assert torch.equal(runs[0].states, runs[1].states) and runs[0].loss == runs[1].loss
    if space == "discrete":
        found = runs[0].ids.tolist()
        assert [t for i, t in enumerate(found) if i not in span] == [t for i, t in enumerate(ids) if i not in span]
        assert all(allowed[found[i]] for i in span if found[i] != ids[i])


@needs_model
def test_sigterm_during_an_attack_exits_143_and_leaves_no_output(tmp_path):
    """`python -m vidunlearn.cli attack` paused just before its output is renamed into place, then
    SIGTERM: the same one line and exit code as apply and sample (143), and no output folder."""
    import os
    import signal
    import subprocess
    import sys

    out = tmp_path / "attack"
    args = [sys.executable, "-m", "vidunlearn.cli", "attack", "--model", BENCH_MODEL, "--concept", "red",
            "--prompts", "1", "--steps", "1", "--out", out]
    env = {**os.environ, "VIDUNLEARN_PAUSE_AT": "before-rename", "OMP_NUM_THREADS": "1"}
    process = subprocess.Popen([str(a) for a in args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        lines = []
        while not lines or (lines[-1] and "vidunlearn: paused at" not in lines[-1]):
            lines.append(process.stderr.readline())
        assert "vidunlearn: paused at" in lines[-1], "".join(lines)
        process.send_signal(signal.SIGTERM)
        _, rest = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 143, rest
    assert "interrupted: no partial output was left behind" in rest and "Traceback" not in rest
    assert not out.exists() and os.listdir(tmp_path) == []
