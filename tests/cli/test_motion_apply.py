"""`vidunlearn apply` / `verify` on a MoMask model (issue 22) through the CLI: LCR and UCE on the
benchmark model, the output in MoMask's layout and as safetensors, verify's checks (and what it
catches), the one-line refusals, and a folder laid out like MoMask's own release (CLIP text,
263 features, the older checkpoint keys) edited from folders of motion features."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import one_error, run
from vidunlearn.motion.momask import build_mask, build_res, build_vq, load_checkpoint, load_runs, write_opt

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "momask-world"
PAIRS = ROOT / "pairs" / "motion-violence.yaml"
VQ_RUN = "checkpoints/t2m/rvq_world_nq4_nc256_cd128"


@pytest.fixture(scope="module")
def lcr_out(tmp_path_factory) -> Path:
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("lcr") / "out"
    result = run("apply", "--model", MODEL, "--method", "lcr", "--pairs", PAIRS, "--out", out, "--motion-samples", "2")
    assert result.exit_code == 0, result.output
    assert "quantizer.layers.0.codebook" in result.output and "codes now decode to row" in result.output
    return out


def test_lcr_output_layout_manifest_and_card(lcr_out):
    manifest = json.loads((lcr_out / "vidunlearn.json").read_text())
    assert manifest["format"] == "momask" and manifest["recipe"]["method"] == "lcr"
    [row] = manifest["edited"]
    record = json.loads((lcr_out / "lcr.json").read_text())
    assert row["component"] == "vq" and row["rows"] == record["codes"]["0"] and 1 <= len(row["rows"]) <= 128
    assert row["rank"] == len(row["rows"])  # every replaced row is a new, independent row
    files = {p.relative_to(lcr_out).as_posix() for p in lcr_out.rglob("*") if p.is_file()}
    assert files - {"vidunlearn.json"} == set(manifest["files"])
    assert {f for f in files if f.startswith("safetensors/")} == {
        "safetensors/vq_model.safetensors", "safetensors/t2m_transformer.safetensors", "safetensors/res_transformer.safetensors"}
    card = (lcr_out / "README.md").read_text()
    assert "Latent Code Replacement" in card and "gen_t2m.py" in card and "not CLIP-conditioned" in card
    # the output loads (weights_only) and only the listed codebook rows differ from the base
    edited, _ = load_runs(lcr_out)
    base, _ = load_runs(MODEL)
    new, old = edited.vq.quantizer.layers[0].codebook, base.vq.quantizer.layers[0].codebook
    assert (new != old).any(1).nonzero().flatten().tolist() == row["rows"]
    assert torch.equal(edited.mask.cond_emb.weight, base.mask.cond_emb.weight)


def test_verify_passes_and_catches_edits(lcr_out, tmp_path):
    result = run("verify", lcr_out, "--base", MODEL)
    assert result.exit_code == 0, result.output
    assert "only the codebook rows lcr.json lists" in result.output and "1 tensors changed" in result.output
    import shutil

    # a codebook row the manifest does not list, rewritten with its hashes fixed: caught by --base
    forged = tmp_path / "forged"
    shutil.copytree(lcr_out, forged)
    manifest = json.loads((forged / "vidunlearn.json").read_text())
    checkpoint, path = load_checkpoint(forged, "vq", "rvq_world_nq4_nc256_cd128")
    row = next(r for r in range(256) if r not in manifest["edited"][0]["rows"])
    checkpoint["vq_model"]["quantizer.layers.0.codebook"][row] += 1.0
    torch.save(checkpoint, path)
    manifest["files"][path.relative_to(forged).as_posix()] = __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    (forged / "vidunlearn.json").write_text(json.dumps(manifest))
    one_error(run("verify", forged), "safetensors weights differ")
    one_error(run("verify", forged, "--base", MODEL), "safetensors weights differ")
    # a changed byte, and a stray file
    tampered = tmp_path / "tampered"
    shutil.copytree(lcr_out, tampered)
    (tampered / VQ_RUN / "opt.txt").write_text("changed\n")
    one_error(run("verify", tampered), "SHA-256 does not match")
    stray = tmp_path / "stray"
    shutil.copytree(lcr_out, stray)
    (stray / "extra.tar").write_bytes(b"x")
    one_error(run("verify", stray), "not listed in the manifest")


def test_the_same_apply_writes_the_same_bytes(lcr_out, tmp_path):
    """Every weight file, the record and the safetensors headers (metadata in sorted order, not
    safetensors' hash-map order) are bit-identical in a second run; only the card names the folder."""
    again = tmp_path / "out"
    result = run("apply", "--model", MODEL, "--method", "lcr", "--pairs", PAIRS, "--out", again, "--motion-samples", "2")
    assert result.exit_code == 0, result.output
    first, second = (json.loads((o / "vidunlearn.json").read_text())["files"] for o in (lcr_out, again))
    assert {k: v for k, v in first.items() if k != "README.md"} == {k: v for k, v in second.items() if k != "README.md"}


def test_uce_on_the_text_path(tmp_path):
    out = tmp_path / "uce"
    result = run("apply", "--model", MODEL, "--mode", "uce", "--pairs", PAIRS, "--out", out)
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "vidunlearn.json").read_text())
    assert sorted((r["component"], r["tensor"]) for r in manifest["edited"]) == [("mask", "cond_emb.weight"),
                                                                                ("res", "cond_emb.weight")]
    result = run("verify", out, "--base", MODEL)
    assert result.exit_code == 0 and "2 tensors changed" in result.output, result.output


@pytest.mark.parametrize("extra, needle", [
    (["--format", "lora"], "--format is for video models"),
    (["--mode", "project"], "--method lcr (default) or --mode uce"),
    (["--method", "cpca"], "--method lcr (default) or --mode uce"),
    (["--forget-motions", "."], "--forget-motions and --retain-motions go together"),
    (["--codes", "0"], "out of range"),
    (["--harden", "1"], "--harden on a MoMask model is RECE on the text path: it needs --mode uce"),
])
def test_one_line_refusals(tmp_path, extra, needle):
    one_error(run("apply", "--model", MODEL, "--pairs", PAIRS, "--out", tmp_path / "o", *extra), needle)
    assert not (tmp_path / "o").exists()


def test_lcr_is_refused_for_a_video_model_and_without_pairs(tmp_path):
    one_error(run("apply", "--model", MODEL, "--out", tmp_path / "o"), "nothing to remove")


# ------------------------------------------------------------------ a folder laid out like MoMask's release
def _release_like(root: Path) -> dict:
    """MoMask's layout with its own option files' habits: no dim_pose (t2m: 263), no clip_dim, no text
    encoder named (CLIP), checkpoints_dir, and the older state-dict keys 'net' and 'trans'."""
    vq_opt = {"name": "rvq_nq3_dc16_nc16", "dataset_name": "t2m", "checkpoints_dir": "./checkpoints", "nb_code": 16,
              "code_dim": 16, "output_emb_width": 16, "down_t": 2, "stride_t": 2, "width": 16, "depth": 1,
              "dilation_growth_rate": 3, "vq_act": "relu", "vq_norm": None, "num_quantizers": 3,
              "shared_codebook": False, "quantize_dropout_prob": 0.2, "mu": 0.99}
    common = {"dataset_name": "t2m", "checkpoints_dir": "./checkpoints", "vq_name": vq_opt["name"], "latent_dim": 16,
              "ff_size": 32, "n_layers": 1, "n_heads": 2, "dropout": 0.1, "cond_drop_prob": 0.1, "share_weight": True}
    opts = {"vq": vq_opt, "mask": {**common, "name": "t2m_nlayer1_nhead2_ld16"},
            "res": {**common, "name": "tres_nlayer1_ld16_sw"}}
    torch.manual_seed(0)
    nets = {"vq": build_vq(vq_opt), "mask": build_mask(opts["mask"], vq_opt), "res": build_res(opts["res"], vq_opt)}
    for layer in nets["vq"].quantizer.layers:  # a trained codebook, not the zeros it starts from
        layer.codebook = torch.randn(16, 16)
    files = {"vq": ("net_best_fid.tar", "net"), "mask": ("latest.tar", "trans"), "res": ("net_best_fid.tar", "res_transformer")}
    for stage, net in nets.items():
        run_dir = root / "checkpoints" / "t2m" / opts[stage]["name"]
        (run_dir / "model").mkdir(parents=True)
        write_opt(run_dir / "opt.txt", opts[stage])
        torch.save({files[stage][1]: net.state_dict(), "ep": 3, "total_it": 30}, run_dir / "model" / files[stage][0])
    (root / "checkpoints/t2m" / vq_opt["name"] / "meta").mkdir()
    np.save(root / "checkpoints/t2m" / vq_opt["name"] / "meta/mean.npy", np.zeros(263, np.float32))
    np.save(root / "checkpoints/t2m" / vq_opt["name"] / "meta/std.npy", np.ones(263, np.float32))
    return opts


def test_a_release_like_momask_folder_from_motion_folders(tmp_path):
    model = tmp_path / "momask"
    opts = _release_like(model)
    rng = np.random.default_rng(0)
    for name, shift in (("forget", 3.0), ("retain", -3.0)):
        (tmp_path / name).mkdir()
        for i in range(6):
            np.save(tmp_path / name / f"{i:06d}.npy", (rng.normal(size=(40, 263)) + shift).astype(np.float32))
    # no text encoder here: the model's own samples are refused in one line, nothing written
    one_error(run("apply", "--model", model, "--pairs", PAIRS, "--out", tmp_path / "o"), "CLIP ViT-B/32", "--forget-motions")
    one_error(run("apply", "--model", model, "--mode", "uce", "--pairs", PAIRS, "--out", tmp_path / "o"), "CLIP ViT-B/32")
    assert not (tmp_path / "o").exists()
    out = tmp_path / "out"
    result = run("apply", "--model", model / "checkpoints/t2m" / opts["mask"]["name"], "--pairs", PAIRS, "--out", out,
                 "--forget-motions", tmp_path / "forget", "--retain-motions", tmp_path / "retain", "--codes", "4")
    assert result.exit_code == 0, result.output
    manifest = json.loads((out / "vidunlearn.json").read_text())
    assert manifest["recipe"]["sets"]["forget_motions"] == str(tmp_path / "forget")
    assert "safetensors/net.safetensors" in manifest["files"]  # the checkpoint's own (older) key
    assert "not CLIP-conditioned" not in (out / "README.md").read_text()
    checkpoint, _ = load_checkpoint(out, "vq", opts["vq"]["name"])
    assert set(checkpoint) == {"net", "ep", "total_it"} and checkpoint["ep"] == 3
    result = run("verify", out, "--base", model)
    assert result.exit_code == 0, result.output
    # a motion of the wrong width is one line naming the file
    np.save(tmp_path / "retain" / "bad.npy", np.zeros((40, 137), np.float32))
    one_error(run("apply", "--model", model, "--pairs", PAIRS, "--out", tmp_path / "o2", "--forget-motions",
                  tmp_path / "forget", "--retain-motions", tmp_path / "retain"), "bad.npy", "263")
