"""Hostile or damaged MoMask folders and motion files (the momask family's inputs): every one is a
single `error:` line naming the file, nothing is written, no code in a checkpoint runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.conftest import one_error, run

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "momask-world"
PAIRS = ROOT / "pairs" / "motion-violence.yaml"
T2M = Path("checkpoints/t2m")
VQ, MASK = T2M / "rvq_world_nq4_nc256_cd128", T2M / "mtrans_world_nl4_ld128_ff256"


class Payload:
    """Unpickling this would need code: weights_only refuses it."""

    def __reduce__(self):
        return (print, ("code ran",))


def _opt_line(folder: Path, run: Path, key: str, value: str | None) -> None:
    path = folder / run / "opt.txt"
    lines = [line for line in path.read_text().splitlines() if not line.startswith(f"{key}: ")]
    path.write_text("\n".join(lines[:-1] + ([f"{key}: {value}"] if value is not None else []) + lines[-1:]) + "\n")


DAMAGE = {
    "size not a number": (lambda f: _opt_line(f, VQ, "nb_code", "lots"), "nb_code is 'lots'"),
    "absurd size": (lambda f: _opt_line(f, VQ, "nb_code", "1000000000"), "from 1 to 65536"),
    "missing rate": (lambda f: _opt_line(f, VQ, "mu", None), "mu is 'None'"),
    "heads not dividing": (lambda f: _opt_line(f, MASK, "n_heads", "3"), "divisor of latent_dim"),
    "opt.txt against weights": (lambda f: _opt_line(f, VQ, "width", "64"), "do not fit its opt.txt"),
    "pickled statistics": (lambda f: np.save(f / VQ / "meta/std.npy", np.array([{"a": 1}], dtype=object),
                                            allow_pickle=True), "cannot read the feature statistics"),
    "statistics of another width": (lambda f: np.save(f / VQ / "meta/mean.npy", np.zeros(10, np.float32)),
                                    "expected (137,)"),
    "code in the checkpoint": (lambda f: torch.save({"vq_model": Payload(), "ep": 0}, f / VQ / "model/net_best_fid.tar"),
                               "weights_only=True"),
    "truncated checkpoint": (lambda f: (f / VQ / "model/net_best_fid.tar").write_bytes(
        (MODEL / VQ / "model/net_best_fid.tar").read_bytes()[:5000]), "cannot read the checkpoint"),
    "code in the masked transformer": (lambda f: torch.save({"t2m_transformer": Payload()}, f / MASK / "model/latest.tar"),
                                       "cannot read the checkpoint with weights_only=True (UnpicklingError: Weights only load failed)"),
}


@pytest.mark.parametrize("name", list(DAMAGE))
def test_a_damaged_momask_folder_is_one_line_and_writes_nothing(tmp_path, capfd, name):
    damage, needle = DAMAGE[name]
    folder = tmp_path / "model"
    shutil.copytree(MODEL, folder)
    damage(folder)
    one_error(run("apply", "--model", folder, "--pairs", PAIRS, "--out", tmp_path / "out", "--motion-samples", "1"), needle)
    assert not (tmp_path / "out").exists() and "code ran" not in capfd.readouterr().out


def test_a_pickled_motion_file_is_one_line(tmp_path):
    for name in ("forget", "retain"):
        (tmp_path / name).mkdir()
        np.save(tmp_path / name / "0.npy", np.zeros((40, 137), np.float32))
    np.save(tmp_path / "forget" / "1.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    one_error(run("apply", "--model", MODEL, "--pairs", PAIRS, "--out", tmp_path / "out", "--forget-motions",
                  tmp_path / "forget", "--retain-motions", tmp_path / "retain"), "cannot read the motion", "1.npy")
    assert not (tmp_path / "out").exists()


def test_an_enormous_motion_file_is_refused_before_it_is_read(tmp_path):
    for name in ("forget", "retain"):
        (tmp_path / name).mkdir()
        np.save(tmp_path / name / "0.npy", np.zeros((40, 137), np.float32))
    # 2 GB of frames on paper (a sparse file here): refused from its header, never loaded
    np.lib.format.open_memmap(tmp_path / "retain" / "1.npy", mode="w+", dtype=np.float32, shape=(4_000_000, 137)).flush()
    one_error(run("apply", "--model", MODEL, "--pairs", PAIRS, "--out", tmp_path / "out", "--forget-motions",
                  tmp_path / "forget", "--retain-motions", tmp_path / "retain"), "cannot read the motion", "1.npy",
              "frames <= 100000")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("field, value, needle", [
    ("edited", "everything", "'edited' entry 0"),
    ("edited", [{"component": "vq", "tensor": "x", "rows": ["1"]}], "'edited' entry 0"),
    ("base", {"runs": {"vq": "a"}}, "no 'base' runs"),
    ("recipe", {"method": "rm -rf"}, "is not lcr or uce"),
    ("files", {"../../etc/passwd": "0" * 64}, "not a file inside the output folder"),
])
def test_a_forged_momask_manifest_is_one_line(tmp_path, field, value, needle):
    import json

    out = tmp_path / "out"
    assert run("apply", "--model", MODEL, "--pairs", PAIRS, "--out", out, "--motion-samples", "1").exit_code == 0
    manifest = json.loads((out / "vidunlearn.json").read_text())
    manifest[field] = value
    (out / "vidunlearn.json").write_text(json.dumps(manifest))
    one_error(run("verify", out), needle)
