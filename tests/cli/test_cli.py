"""The real CLI end to end on a tiny Wan (CliRunner): outputs load with diffusers, only the
planned tensors change, dtype and sharding are kept, videos decode; bad inputs leave nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from vidunlearn.cli import app
from vidunlearn.model import tensor_infos

PAIRS = Path(__file__).resolve().parents[2] / "pairs"
runner = CliRunner()


def run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for shard in sorted(folder.glob("*.safetensors")):
        out.update(load_file(shard))
    return out


@pytest.fixture(scope="module")
def edited(tiny_wan, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cli") / "edited"
    result = run("apply", "--model", tiny_wan, "--pairs", PAIRS / "violence.yaml", "--out", out,
                 "--work-dir", out.parent / "work")
    assert result.exit_code == 0, result.output
    return out


def test_apply_output_loads_with_diffusers_and_changes_only_planned_tensors(tiny_wan, edited):
    from diffusers import WanPipeline

    pipe = WanPipeline.from_pretrained(edited)
    assert pipe.transformer.blocks[0].attn2.to_k.weight.dtype == torch.float32
    base, new = _tensors(tiny_wan / "transformer"), _tensors(edited / "transformer")
    assert base.keys() == new.keys()
    changed = {k for k in base if not torch.equal(base[k], new[k])}
    assert changed == {f"blocks.{i}.attn2.{kv}.weight" for i in range(2) for kv in ("to_k", "to_v")}
    assert all(base[k].dtype == new[k].dtype for k in base)
    # sharding kept: the same shard files and the same index
    names = lambda d: sorted(p.name for p in (d / "transformer").iterdir())
    assert names(tiny_wan) == names(edited) and len(list((edited / "transformer").glob("*.safetensors"))) > 1
    index = "diffusion_pytorch_model.safetensors.index.json"
    assert (tiny_wan / "transformer" / index).read_bytes() == (edited / "transformer" / index).read_bytes()
    # untouched components are byte-identical; the manifest and card exist
    for rel in ("text_encoder/model.safetensors", "vae/diffusion_pytorch_model.safetensors", "model_index.json"):
        assert (tiny_wan / rel).read_bytes() == (edited / rel).read_bytes()
    manifest = json.loads((edited / "vidunlearn.json").read_text())
    assert len(manifest["edited"]) == 4 and manifest["recipe"]["concepts"][0]["concept"] == "violence"
    # the SHA-256 computed while writing equal a fresh read of every file (but the manifest itself)
    from vidunlearn.checkpoint import hash_outputs
    on_disk = hash_outputs(edited)
    assert manifest["files"] == {k: v for k, v in on_disk.items() if k != "vidunlearn.json"}
    card = (edited / "README.md").read_text()
    assert "vidunlearn" in card and "revert" in card
    assert "base_model:" not in card  # a local folder is no Hub id (see test_outputs for the card's base_model)


def test_dry_run_lists_tensors_and_writes_nothing(tiny_wan, tmp_path):
    result = run("apply", "--model", tiny_wan, "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "o", "--dry-run",
                 "--work-dir", tmp_path / "w")
    assert result.exit_code == 0, result.output
    assert "blocks.1.attn2.to_v.weight" in result.output and "[24, 24]" in result.output
    assert "match the model built on the meta device" in result.output
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("change", [{"ffn_dim": 48}, {"num_layers": 3}], ids=["shape", "keys"])
def test_dry_run_catches_weights_that_do_not_match_the_config(tiny_wan, tmp_path, change):
    import shutil

    model = tmp_path / "model"
    shutil.copytree(tiny_wan, model)
    config_path = model / "transformer" / "config.json"
    config = json.loads(config_path.read_text())
    config_path.write_text(json.dumps({**config, **change}))
    result = run("apply", "--model", model, "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "o", "--dry-run")
    assert result.exit_code == 1
    assert "config.json" in result.output and "different models" in result.output
    assert len(result.output.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


def test_staged_commands_and_multi_concept(tiny_wan, tmp_path):
    for concept in ("violence", "nudity"):
        assert run("extract", "--model", tiny_wan, "--pairs", PAIRS / f"{concept}.yaml", "--work-dir", tmp_path).exit_code == 0
        result = run("factorize", "--activations", tmp_path / concept / "activations.safetensors", "--rank", "2")
        assert result.exit_code == 0, result.output
        assert "retained" in result.output
    refusal = [tmp_path / c / "refusal.safetensors" for c in ("nudity", "violence")]
    result = run("apply", "--model", tiny_wan, "--refusal", refusal[0], "--refusal", refusal[1], "--out", tmp_path / "o")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "o" / "vidunlearn.json").read_text())
    assert [c["concept"] for c in manifest["recipe"]["concepts"]] == ["nudity", "violence"]


def test_sample_writes_playable_videos(edited, tiny_wan, tmp_path):
    from vidunlearn.video import read_video

    out = tmp_path / "samples"
    result = run("sample", "--model", edited, "--compare", tiny_wan, "--prompt", "a man stabs a man", "--out", out,
                 "--steps", "2", "--frames", "5", "--height", "32", "--width", "48", "--fps", "4")
    assert result.exit_code == 0, result.output
    for rel, width in (("edited/00.mp4", 48), ("base/00.mp4", 48), ("compare_00.mp4", 48 * 2 + 4)):
        frames = read_video(out / rel)
        assert frames.shape == (5, 32, width, 3), rel
    assert (out / "sheet.png").stat().st_size > 0
    assert json.loads((out / "samples.json").read_text())["settings"]["frames"] == 5


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


BAD_PAIRS = {
    "malformed": ("pairs: [", "invalid YAML"),
    "empty": ("", "file is empty"),
    "identical": ('version: 1\nconcept: x\npairs:\n  - {unsafe: "a b", safe: "a b"}\n  - {unsafe: "c", safe: "d"}\nneutral: ["e", "f"]\n', "identical"),
    "one pair": ('version: 1\nconcept: x\npairs:\n  - {unsafe: "a b", safe: "a c"}\nneutral: ["e", "f"]\n', "at least 2 needed"),
}


@pytest.mark.parametrize("case", sorted(BAD_PAIRS))
def test_bad_pairs_give_one_line_and_nothing_written(tiny_wan, tmp_path, case):
    text, message = BAD_PAIRS[case]
    pairs = _write(tmp_path, "p.yaml", text)
    out = tmp_path / "out"
    result = run("apply", "--model", tiny_wan, "--pairs", pairs, "--out", out, "--work-dir", tmp_path / "w")
    assert result.exit_code == 1 and message in result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.yaml"]


def test_unknown_model_and_unsupported_family(tmp_path):
    result = run("apply", "--model", "no-such-model", "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "o")
    assert result.exit_code == 1 and "unknown model" in result.output
    folder = tmp_path / "sd"
    folder.mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    result = run("apply", "--model", folder, "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "o")
    assert result.exit_code == 1 and "not supported" in result.output and "wan (WanPipeline)" in result.output
    assert not (tmp_path / "o").exists()


def test_cache_from_another_model_is_refused(tiny_wan, tiny_wan_planted, tmp_path):
    assert run("extract", "--model", tiny_wan_planted, "--pairs", PAIRS / "violence.yaml", "--work-dir", tmp_path).exit_code == 0
    assert run("factorize", "--activations", tmp_path / "violence" / "activations.safetensors").exit_code == 0
    result = run("apply", "--model", tiny_wan, "--refusal", tmp_path / "violence" / "refusal.safetensors", "--out", tmp_path / "o")
    assert result.exit_code == 1 and "computed on" in result.output and not (tmp_path / "o").exists()


def test_existing_output_needs_force(edited, tiny_wan):
    before = sorted(p.name for p in edited.iterdir())
    result = run("apply", "--model", tiny_wan, "--pairs", PAIRS / "violence.yaml", "--out", edited)
    assert result.exit_code == 1 and "--force" in result.output
    assert sorted(p.name for p in edited.iterdir()) == before


def test_rank_larger_than_data_is_refused(tiny_wan, tmp_path):
    result = run("apply", "--model", tiny_wan, "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "o",
                 "--rank", "500", "--work-dir", tmp_path / "w")
    assert result.exit_code == 1 and "exceeds the rank of the data" in result.output
    assert not (tmp_path / "o").exists()


def test_help_has_examples():
    for command in ("apply", "extract", "factorize", "sample"):
        result = run(command, "--help")
        assert result.exit_code == 0 and "Example" in result.output


def test_shard_headers_keep_metadata_and_gain_provenance(tiny_wan, edited):
    base = tensor_infos(tiny_wan / "transformer")
    new = tensor_infos(edited / "transformer")
    assert {k: (v.dtype, v.shape, v.begin, v.end) for k, v in base.items()} == \
           {k: (v.dtype, v.shape, v.begin, v.end) for k, v in new.items()}
    from vidunlearn.model import read_header

    rewritten = {v.file for k, v in new.items() if "attn2.to_k" in k}
    for shard in rewritten:
        meta = read_header(shard)[0]["__metadata__"]
        assert meta["vidunlearn.concepts"] == "violence" and meta["format"] == "pt"
