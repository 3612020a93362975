"""The model card of every output (README.md), written by the real CLI: base_model only as a Hub
repo id, the title, links that exist, and the eval table from `vidunlearn eval`'s eval.json."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import PAIRS, run


def _apply(model, out: Path, *extra) -> Path:
    result = run("apply", "--model", model, "--pairs", PAIRS / "violence.yaml", "--out", out,
                 "--work-dir", out.parent / "work", *extra)
    assert result.exit_code == 0, result.output
    return out

def test_card_base_model_is_a_hub_id_or_left_out_with_a_reason(tiny_wan, tmp_path):
    """A local base is no Hub id: base_model is left out and stdout says why in one line; the
    base card's own Hub id is taken; a bad --base-model-id is one line before any work."""
    import shutil

    from huggingface_hub import ModelCard

    base = tmp_path / "base"
    shutil.copytree(tiny_wan, base)
    result = run("apply", "--model", base, "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "out",
                 "--work-dir", tmp_path / "work")
    assert result.exit_code == 0, result.output
    card = ModelCard.load(tmp_path / "out" / "README.md")
    assert "base_model" not in card.data.to_dict() and "base_model_relation" not in card.data.to_dict()
    note = [line for line in result.output.splitlines() if "no base_model" in line]
    assert len(note) == 1 and "--base-model-id" in note[0]
    assert card.text.lstrip().startswith("# base without violence") and "github.com" not in card.text
    assert "](vidunlearn.json)" in card.text

    (base / "README.md").write_text("---\nbase_model: Wan-AI/Wan2.1-T2V-1.3B-Diffusers\n---\n# A copy\n")
    result = run("apply", "--model", base, "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "out2",
                 "--work-dir", tmp_path / "work")
    assert result.exit_code == 0 and "no base_model" not in result.output, result.output
    card = ModelCard.load(tmp_path / "out2" / "README.md")
    assert card.data.to_dict()["base_model"] == "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"
    assert card.text.lstrip().startswith("# Wan-AI/Wan2.1-T2V-1.3B-Diffusers without violence")

    bad = run("apply", "--model", base, "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "out3",
              "--work-dir", tmp_path / "work", "--base-model-id", "/tmp/not an id")
    assert bad.exit_code == 1 and bad.output.count("error:") == 1 and "not a valid Hub repo id" in bad.output
    assert not (tmp_path / "out3").exists()


def test_card_takes_the_eval_json_of_vidunlearn_eval_per_concept_with_settings(tiny_wan, tmp_path):
    from vidunlearn.report import card_rows, settings_line

    document = {"kind": "vidunlearn-eval", "schema": 1, "tool_version": "9.9",
                "concepts": [{"attribute": "shape", "value": "circle"}, {"attribute": "motion", "value": "left"}],
                "judge": {"name": "oracle", "attributes": ["colour", "shape"]},
                "settings": {"steps": 7, "frames": 17, "height": 64, "width": 48, "guidance": 2.0, "seed": 3},
                "metrics": {"forget_rate": 0.25, "rest_kept": 0.5, "paraphrase_leak": 0.0,
                            "forget_rate_by_concept": {"circle": 0.5, "left": 0.0},
                            "paraphrase_leak_by_concept": {"circle": 0.0, "left": None},
                            "retain_accuracy": {"colour": 1.0, "shape": 0.75},
                            "counts": {"forget": 4, "retain": 5, "paraphrase": 6}},
                "base": {"metrics": {"forget_rate": 1.0, "rest_kept": 1.0, "paraphrase_leak": 1.0,
                                     "forget_rate_by_concept": {"circle": 1.0, "left": 0.75},
                                     "paraphrase_leak_by_concept": {"circle": 1.0, "left": 0.5},
                                     "retain_accuracy": {"colour": 1.0, "shape": 1.0}}}}
    (tmp_path / "eval.json").write_text(json.dumps(document))
    out = _apply(tiny_wan, tmp_path / "out", "--eval-json", tmp_path / "eval.json")
    text = (out / "README.md").read_text()
    assert "| forget rate: circle | 100% | 50% |" in text and "| forget rate: left | 75% | 0% |" in text
    assert "| paraphrase leak: left | 50% | - |" in text and "| retain accuracy: shape | 100% | 75% |" in text
    assert "4 forget / 5 retain / 6 paraphrase prompts, 7 steps, 17 frames at 64x48, guidance 2, seed 3" in text
    assert "Collateral: on 500 unrelated everyday prompts" in text  # the collateral figure in the same section
    manifest = json.loads((out / "vidunlearn.json").read_text())
    assert manifest["eval"] == card_rows(document) and manifest["eval_settings"] == settings_line(document)


def test_card_takes_an_attack_json_beside_the_eval_json(tiny_wan, tmp_path):
    """--eval-json is repeatable and reads `vidunlearn attack`'s attack.json: the attack success
    rate beside the unattacked rate, base and edited, with the budget it ran at."""
    attack = {"kind": "vidunlearn-attack", "schema": 1, "tool_version": "9.9", "judge": "oracle",
              "concept": {"attribute": "colour", "value": "red"},
              "attack": {"space": "input", "steps": 40, "restarts": 2, "seed": 7},
              "sampling": {"steps": 10}, "prompts": [{}, {}, {}, {}],
              "results": {"model": {"start_rate": 0.0, "attack_success_rate": 0.75},
                          "base": {"start_rate": 1.0, "attack_success_rate": 1.0}}}
    rows = [{"metric": "unsafe rate %", "base": 40, "edited": 5}]
    (tmp_path / "attack.json").write_text(json.dumps(attack))
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    out = _apply(tiny_wan, tmp_path / "out", "--eval-json", tmp_path / "rows.json", "--eval-json", tmp_path / "attack.json")
    text = (out / "README.md").read_text()
    assert "| unsafe rate % | 40 | 5 |" in text
    assert "| red: shown before the attack | 100% | 0% |" in text and "| red: attack success rate (input) | 100% | 75% |" in text
    assert "4 starting prompts, input space, 40 steps x 2 restart(s), seed 7; rendered at 10 steps" in text
    broken = tmp_path / "broken.json"
    broken.write_text(json.dumps({**attack, "results": {}}))
    result = run("apply", "--model", tiny_wan, "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "o2",
                 "--work-dir", tmp_path / "work", "--eval-json", broken)
    assert result.exit_code == 1 and result.output.count("error:") == 1 and "attack.json lacks a field" in result.output
    assert not (tmp_path / "o2").exists()
    (tmp_path / "deep.json").write_text("[" * 100_000 + "]" * 100_000)  # a hostile file: nesting past the recursion limit
    result = run("apply", "--model", tiny_wan, "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "o3",
                 "--work-dir", tmp_path / "work", "--eval-json", tmp_path / "deep.json")
    assert result.exit_code == 1 and result.output.count("error:") == 1 and "cannot read eval JSON" in result.output
    assert "Traceback" not in result.output and not (tmp_path / "o3").exists()
