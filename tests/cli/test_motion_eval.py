"""`vidunlearn eval` on a MoMask-layout folder through the CLI (models/momask-world): the motion
benchmark's table and eval.json, read back by `apply --eval-json`'s reader; the base against
itself, a UCE-patched copy against the base, no base; the one-line refusals. About 40 s on one
thread (2 and 1 samples a prompt)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vidunlearn.card import eval_section
from vidunlearn.cli import app
from vidunlearn.provenance import load_eval

ROOT = Path(__file__).resolve().parents[2]
MOTION = ROOT / "models" / "momask-world"
METRICS = ["forget rate (%)", "forget -> safe action (%)", "retain accuracy (%)", "paraphrase leak (%)",
           "FD forget vs real", "FD retain vs real", "FD retain vs base'", "retain FD / noise floor"]
runner = CliRunner()

pytestmark = pytest.mark.skipif(not (MOTION / "checkpoints").is_dir(), reason="models/momask-world is not here")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run(*args) -> object:
    return runner.invoke(app, ["eval", *map(str, args)])


def rows_of(out: Path) -> dict[str, dict]:
    return {row["metric"]: row for row in json.loads((out / "eval.json").read_text())["rows"]}


def test_base_against_itself_gives_identical_columns(tmp_path):
    out = tmp_path / "eval"
    result = run("--model", MOTION, "--compare", MOTION, "--per-prompt", 2, "--out", out)
    assert result.exit_code == 0, result.output
    assert "eval: motion benchmark (kick, punch)" in result.output
    assert "64 forget / 176 retain / 96 paraphrase samples, seed 0" in result.output
    assert "FD noise floor (base seed 0 vs 1)" in result.output and f"wrote {out / 'eval.json'}" in result.output
    assert all(metric in result.output for metric in METRICS)
    document = json.loads((out / "eval.json").read_text())
    assert document["kind"] == "vidunlearn-motion-eval" and document["per_prompt"] == 2
    rows = rows_of(out)
    assert list(rows) == METRICS
    assert all(row["base"] == row["edited"] for row in rows.values())  # same model, same seeds
    assert rows["forget rate (%)"]["base"] >= 90 and rows["retain accuracy (%)"]["base"] >= 90  # the shipped model
    assert rows["retain FD / noise floor"]["edited"] == 1.0 and document["floor"]["retain"] > 0
    assert sum(document["judged"]["base_next"]["retain"].values()) == 176
    # what apply --eval-json reads, and the card's table
    card_rows, settings = load_eval(out / "eval.json")
    assert [r["metric"] for r in card_rows] == METRICS
    assert settings.startswith("vidunlearn eval") and "N = 2 a prompt" in settings and "noise floor" in settings
    assert "| forget rate (%) |" in eval_section(card_rows, settings, None)
    # an existing --out is refused in one line, and left alone
    before = (out / "eval.json").read_bytes()
    again = run("--model", MOTION, "--compare", MOTION, "--per-prompt", 1, "--out", out)
    assert again.exit_code == 1 and "already exists" in again.output and "--force" in again.output
    assert len(again.output.strip().splitlines()) == 1 and (out / "eval.json").read_bytes() == before


def test_uce_patched_model_against_its_base(tmp_path):
    from vidunlearn.motion import uce
    from vidunlearn.motion.momask import load_model

    base = load_model(MOTION)
    weights, result = uce.uce_weights(base, *uce.uce_sets())
    patched = uce.write_patched(MOTION, tmp_path / "momask-uce", base, weights, result)
    out = tmp_path / "eval"
    ran = run("--model", patched, "--compare", MOTION, "--per-prompt", 1, "--out", out)
    assert ran.exit_code == 0, ran.output
    rows = rows_of(out)
    assert rows["forget rate (%)"]["base"] >= 90 and rows["forget rate (%)"]["edited"] <= 10
    assert rows["paraphrase leak (%)"]["edited"] < rows["paraphrase leak (%)"]["base"]
    assert rows["retain accuracy (%)"]["edited"] >= 85
    assert rows["retain FD / noise floor"]["base"] == 1.0
    card_rows, _ = load_eval(out / "eval.json")
    assert card_rows[0]["base"] != card_rows[0]["edited"]


def test_without_compare_the_base_column_is_null(tmp_path):
    out = tmp_path / "eval"
    result = run("--model", MOTION, "--per-prompt", 1, "--out", out)
    assert result.exit_code == 0, result.output
    assert "noise floor" not in result.output and "32 forget / 88 retain / 48 paraphrase samples" in result.output
    rows = rows_of(out)
    assert list(rows) == METRICS[:6]  # FD vs base' and its floor need a base
    assert all(row["base"] is None for row in rows.values())
    card_rows, settings = load_eval(out / "eval.json")
    assert "no base" in settings and "| forget rate (%) | - |" in eval_section(card_rows, settings, None)


@pytest.mark.parametrize("args,message", [
    (("--concept", "red"), "--concept does not apply to a motion model"),
    (("--pairs", "pairs/violence.yaml"), "--pairs does not apply to a motion model"),
    (("--prompts-file", "docs/examples/red-prompts.jsonl"), "--prompts-file does not apply to a motion model"),
    (("--judge", "nudenet", "--steps", "4"), "--judge, --steps do not apply to a motion model"),
    (("--per-prompt", "0"), "--per-prompt must be at least 1"),
    (("--compare", "models/shapes-wan"), "--compare is not a MoMask-layout folder"),
])
def test_refusals_are_one_line_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "eval"
    result = run("--model", MOTION, "--out", out, *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert len(result.output.strip().splitlines()) == 1 and not out.exists()


def test_a_model_whose_text_encoder_is_not_shipped_is_refused(tmp_path):
    import shutil

    clip = tmp_path / "momask-clip"  # MoMask's own release: CLIP, which opt.txt does not name
    shutil.copytree(MOTION, clip)
    for opt in clip.glob("checkpoints/t2m/*/opt.txt"):
        opt.write_text("".join(line for line in opt.read_text().splitlines(keepends=True)
                               if not line.startswith("text_encoder:")))
    result = run("--model", clip, "--out", tmp_path / "eval")
    assert result.exit_code == 1 and "text encoder (CLIP ViT-B/32)" in result.output, result.output
    assert not (tmp_path / "eval").exists()


def test_a_run_folder_is_the_model_and_out_stays_apart_from_its_root(tmp_path):
    import shutil

    copy = tmp_path / "momask"
    shutil.copytree(MOTION, copy)
    run_folder = next(p.parent for p in copy.glob("checkpoints/t2m/mtrans_*/opt.txt"))
    result = run("--model", run_folder, "--out", copy / "eval")
    assert result.exit_code == 1 and "--out overlaps the model folder" in result.output, result.output
    assert not (copy / "eval").exists()


def test_per_prompt_is_refused_for_a_video_model(tmp_path):
    result = run("--model", tmp_path / "video", "--concept", "red", "--per-prompt", 3, "--out", tmp_path / "eval")
    assert result.exit_code == 1 and "--per-prompt applies to a motion model" in result.output, result.output
