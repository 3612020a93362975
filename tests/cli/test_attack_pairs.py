"""`vidunlearn attack --pairs`: the attack on a model other than the benchmark world's captions:
starts from a pairs file's prompts at the words each pair changes, reference clips sampled from the
--compare base, any judge. Run here on the shipped benchmark model (pairs/bench/red.yaml), the
oracle and a plug-in judge file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

from vidunlearn.cli import app

ROOT = Path(__file__).resolve().parents[2]
BENCH_MODEL = ROOT / "models" / "shapes-wan"
RED = ROOT / "pairs" / "bench" / "red.yaml"
runner = CliRunner()
needs_model = pytest.mark.skipif(not (BENCH_MODEL / "model_index.json").is_file(),
                                 reason="the trained benchmark model models/shapes-wan is not in this checkout")

# a judge file: the oracle's colour read as one yes/no attribute, as a real model's judge reports
JUDGE = '''
from vidunlearn.judges import load_judge

class Redness:
    name = "redness"
    attributes = ("redness",)

    def __init__(self):
        self.oracle = load_judge("oracle")

    def judge(self, clip):
        return {"redness": "yes" if self.oracle.judge(clip).get("colour") == "red" else "no"}

def load():
    return Redness()
'''


def run(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def pairs_file(tmp_path: Path, name: str, **change) -> Path:
    document = yaml.safe_load(RED.read_text())
    if "safe0" in change:
        document["pairs"][0]["safe"] = change.pop("safe0")
    document.update(change)
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


@pytest.mark.parametrize("case,message", [
    ("both", "not both or neither"),
    ("neither", "not both or neither"),
    ("no-compare", "--pairs needs --compare BASE"),
    ("adds-only", "unsafe prompt has none (the pair only adds words)"),
    ("removes-only", "safe prompt has none (the pair only removes words)"),
    ("not-world", "not one of its values"),
])
def test_attack_pairs_bad_inputs_one_line(tmp_path, case, message):
    args = {
        "both": ("--concept", "red", "--pairs", RED, "--compare", BENCH_MODEL),
        "neither": (),
        "no-compare": ("--pairs", RED),
        "adds-only": ("--pairs", pairs_file(tmp_path, "adds", safe0="a red circle moving up on a dark background today"),
                      "--compare", BENCH_MODEL),
        "removes-only": ("--pairs", pairs_file(tmp_path, "removes", safe0="a circle moving up on a dark background"),
                         "--compare", BENCH_MODEL, "--start", "other"),
        "not-world": ("--pairs", pairs_file(tmp_path, "violence", concept="violence"), "--compare", BENCH_MODEL),
    }[case]
    result = run("attack", "--model", BENCH_MODEL, "--out", tmp_path / "a", *args)
    assert result.exit_code == 1 and message in result.output, result.output
    assert result.output.count("error:") == 1 and not (tmp_path / "a").exists()
    if case in ("adds-only", "removes-only"):
        assert "pairs[0]" in result.output


@needs_model
def test_attack_from_a_pairs_file_brings_red_back_from_the_safe_twins(tmp_path, one_thread):
    """From the pairs' safe twins ("a green circle ...", "a blue square ..."), attacked at the changed
    word with reference clips the base itself drew for the unsafe prompts: no clip is red as typed,
    the attacked ones are; the oracle and a plug-in judge file agree."""
    budget = ("--pairs", RED, "--compare", BENCH_MODEL, "--start", "other", "--prompts", "2", "--steps", "20",
              "--references", "4")
    result = run("attack", "--model", BENCH_MODEL, "--out", tmp_path / "oracle", *budget)
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "oracle" / "attack.json").read_text())
    pairs = yaml.safe_load(RED.read_text())["pairs"]
    assert [p["start"] for p in document["prompts"]] == [pairs[0]["safe"], pairs[1]["safe"]]
    assert [p["target"] for p in document["prompts"]] == [{"prompt": pairs[i]["unsafe"], "words": "red"} for i in (0, 1)]
    assert document["concept"] == {"attribute": "colour", "value": "red"}
    for name in ("model", "base"):
        assert document["results"][name]["start_rate"] == 0.0
        assert document["results"][name]["attack_success_rate"] >= 0.5
        assert document["results"][name]["mean_loss"] < document["results"][name]["mean_loss_start"]

    judge = tmp_path / "redness.py"
    judge.write_text(JUDGE)
    result = run("attack", "--model", BENCH_MODEL, "--out", tmp_path / "plugin", "--judge", judge, *budget)
    assert result.exit_code == 0, result.output
    plugin = json.loads((tmp_path / "plugin" / "attack.json").read_text())
    assert plugin["concept"] == {"attribute": "redness", "value": "yes"} and plugin["judge"] == "redness"
    for name in ("model", "base"):
        for key in ("start_rate", "attack_success_rate", "mean_loss"):
            assert plugin["results"][name][key] == document["results"][name][key]


def test_attack_refuses_a_family_it_cannot_search_in_one_line(tmp_path, tiny_i2v):
    """The searches call Wan's text-to-video transformer; an image-to-video Wan is refused before any work."""
    result = run("attack", "--model", tiny_i2v, "--concept", "red", "--prompts", "1", "--steps", "1", "--out", tmp_path / "a")
    assert result.exit_code == 1 and "runs on Wan text-to-video models" in result.output, result.output
    assert "wan-i2v" in result.output and result.output.count("error:") == 1 and not (tmp_path / "a").exists()


@needs_model
def test_the_discrete_attack_never_types_the_pairs_own_words_with_a_plugin_judge(tmp_path, one_thread):
    """A plug-in judge's concept is "yes", not a word: the words the pairs change ("red") are banned
    from the search all the same, so from the safe twins what it finds never asks for red by name."""
    judge = tmp_path / "redness.py"
    judge.write_text(JUDGE)
    result = run("attack", "--model", BENCH_MODEL, "--out", tmp_path / "a", "--judge", judge, "--pairs", RED,
                 "--compare", BENCH_MODEL, "--start", "other", "--space", "discrete", "--prompts", "2", "--steps", "3",
                 "--references", "2")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "a" / "attack.json").read_text())
    found = [p[name]["found_text"] for p in document["prompts"] for name in ("model", "base")]
    assert len(found) == 4 and not any("red" in text.split() for text in found), found


def test_attack_from_pairs_that_rewrite_several_places_on_a_wan_layout(tmp_path, tiny_wan, one_thread):
    """pairs/violence.yaml rewrites several runs of words ("stabs ... with a knife, blood splatters"):
    every changed word of the unsafe prompt is attacked at once, on Wan's own layout (UMT5, T5
    tokenizer), with the base's samples as references and a judge file."""
    judge = tmp_path / "bright.py"
    judge.write_text("import numpy as np\n\nclass Bright:\n    name = 'bright'\n    attributes = ('bright',)\n\n"
                     "    def judge(self, clip):\n        return {'bright': 'yes' if float(np.mean(clip)) > 0.5 else 'no'}\n\n"
                     "def load():\n    return Bright()\n")
    violence = ROOT / "pairs" / "violence.yaml"
    result = run("attack", "--model", tiny_wan, "--compare", tiny_wan, "--pairs", violence, "--judge", judge,
                 "--space", "discrete", "--prompts", "1", "--steps", "2", "--references", "1", "--out", tmp_path / "a")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "a" / "attack.json").read_text())
    pair = yaml.safe_load(violence.read_text())["pairs"][0]
    assert document["prompts"][0]["start"] == pair["unsafe"]
    assert document["prompts"][0]["target"]["words"] == "stabs with knife blood splatters,"
    assert document["concept"] == {"attribute": "bright", "value": "yes"}
    found = document["prompts"][0]["model"]["found_text"].split()
    assert found[:2] == ["a", "man"] and found[-2:] == ["handheld", "camera"], found  # only changed places move


def write_red_clips(folder: Path, n: int = 4) -> Path:
    """``n`` MP4 clips of red shapes drawn by the benchmark world's generator: a user's own references."""
    import numpy as np

    from vidunlearn import world
    from vidunlearn.video import write_mp4

    folder.mkdir()
    for i, (shape, motion) in enumerate([("circle", "up"), ("square", "right"), ("triangle", "left"), ("circle", "down")][:n]):
        write_mp4(world.render(world.Labels(colour="red", shape=shape, motion=motion, background="dark"),
                               np.random.default_rng(i)), folder / f"{i}.mp4")
    return folder


@needs_model
def test_attack_with_a_folder_of_reference_clips_needs_no_base(tmp_path, one_thread):
    """--reference-clips: the user's MP4s (red shapes, none of them the prompt's own) stand in for the
    base's samples; from the safe twins the attack still brings red back, with no --compare."""
    clips = write_red_clips(tmp_path / "clips")
    result = run("attack", "--model", BENCH_MODEL, "--pairs", RED, "--start", "other", "--reference-clips", clips,
                 "--references", "4", "--prompts", "2", "--steps", "20", "--out", tmp_path / "a")
    assert result.exit_code == 0, result.output
    document = json.loads((tmp_path / "a" / "attack.json").read_text())
    assert document["reference_clips"] == f"4 clips of {clips}" and set(document["results"]) == {"model"}
    assert document["results"]["model"]["start_rate"] == 0.0
    assert document["results"]["model"]["attack_success_rate"] >= 0.5


@pytest.mark.parametrize("case,message", [
    ("missing", "reference clip folder does not exist"),
    ("empty", "no .mp4 file in the reference clip folder"),
    ("short", "has 5 frames, the attack reads 9"),
    ("corrupt", "cannot decode the reference clip"),
    ("oversized", "bytes (limit 536870912)"),
])
def test_bad_reference_clips_are_one_line(tmp_path, case, message):
    folder = tmp_path / "clips"
    if case == "empty":
        folder.mkdir()
        (folder / "notes.txt").write_text("no clips here")
    elif case in ("short", "corrupt"):
        write_red_clips(folder, 1)
        if case == "corrupt":
            (folder / "0.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42 not a video at all")
    elif case == "oversized":   # a sparse file: refused from its size, never decoded
        folder.mkdir()
        with open(folder / "0.mp4", "wb") as handle:
            handle.truncate(512 * 1024 * 1024 + 1)
    result = run("attack", "--model", BENCH_MODEL, "--concept", "red", "--reference-clips", folder,
                 *(("--frames", "9") if case == "short" else ()), "--out", tmp_path / "a")
    assert result.exit_code == 1 and message in result.output, result.output
    assert result.output.count("error:") == 1 and not (tmp_path / "a").exists()
