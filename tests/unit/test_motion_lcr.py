"""Latent Code Replacement (vidunlearn/motion/lcr.py): counting, selection, the row edit, the
patched folder in MoMask's layout, and a reduced effect check on models/momask-world."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vidunlearn.errors import ModelError
from vidunlearn.motion import lcr, world
from vidunlearn.motion.momask import CHECKPOINT_FILES, VQ_OPT, generate, load_model, stage_dir

ROOT = Path(__file__).resolve().parents[2] / "models" / "momask-world"


def test_count_codes_counts_each_motion_once_per_code():
    seqs = [np.array([[1, 9], [1, 9], [2, 9]]), np.array([[2, 0], [3, 0]]), np.array([[-1, 0], [1, 5]])]
    assert lcr.count_codes(seqs, 0, 5).tolist() == [0, 2, 2, 1, 0]  # -1 (dropped) ignored
    assert lcr.count_codes(seqs, 1, 10).tolist() == [2, 0, 0, 0, 0, 1, 0, 0, 0, 1]


def test_select_codes_ranks_forget_heavy_codes_and_skips_unused():
    forget = np.array([10, 10, 0, 5, 1, 0])
    retain = np.array([10, 0, 3, 0, 50, 0])
    raw, rel = lcr.code_scores(forget, retain)
    assert raw.argmax() in (1, 3) and rel[2] == 0 and rel[5] == 0
    assert lcr.select_codes(forget, retain, 2) == [1, 3]
    # k larger than the codes the forget set uses: never an unused code
    assert lcr.select_codes(forget, retain, 6) == [0, 1, 3, 4]
    with pytest.raises(ModelError):
        lcr.select_codes(forget, retain, 0)


def test_pick_target_rules():
    rng = np.random.default_rng(0)
    assert lcr.pick_target([3, 4], 8, "index0", None, rng) == 0
    assert lcr.pick_target([0, 4], 8, "index0", None, rng) not in (0, 4)
    assert lcr.pick_target([2], 4, "retain-top", np.array([1, 0, 9, 5]), rng) == 3
    with pytest.raises(ModelError):
        lcr.pick_target([1], 4, "nearest", None, rng)


def test_replace_rows_changes_only_selected_rows():
    book = torch.randn(16, 8, generator=torch.Generator().manual_seed(1))
    out = lcr.replace_rows(book, [3, 7], 0, 1.0, torch.Generator().manual_seed(0))
    changed = (out != book).any(1).nonzero().flatten().tolist()
    assert changed == [3, 7]
    exact = lcr.replace_rows(book, [3, 7], 5, 0.0, torch.Generator().manual_seed(0))
    assert torch.equal(exact[3], book[5]) and torch.equal(exact[7], book[5])
    noise = (out[[3, 7]] - book[0]).flatten()
    assert 0.3 * book.std() < noise.std() < 3 * book.std()


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return load_model(ROOT)


@pytest.fixture(scope="module")
def edit(model):
    forget, retain = lcr.collect_sets(model, 1, seed=1000)
    return lcr.lcr(model, forget, retain, k=16, seed=1000)


def test_patched_folder_changes_only_the_codebook_and_loads_weights_only(model, edit, tmp_path):
    books, result = edit
    assert result.layers == [0] and 8 <= len(result.codes[0]) <= 32
    assert min(result.forget_counts[0]) > 0
    out = lcr.write_patched(ROOT, tmp_path / "patched", books, result)
    vq_rel = stage_dir(Path("."), str(VQ_OPT["name"])) / "model" / CHECKPOINT_FILES["vq"][0]
    for src in ROOT.rglob("*"):
        if src.is_file() and src.relative_to(ROOT) != vq_rel:
            assert (out / src.relative_to(ROOT)).read_bytes() == src.read_bytes(), src
    old = torch.load(ROOT / vq_rel, weights_only=True)
    new = torch.load(out / vq_rel, weights_only=True)
    assert set(new) == set(old) and new["ep"] == old["ep"] and new["total_it"] == old["total_it"]
    state_old, state_new = old["vq_model"], new["vq_model"]
    assert set(state_new) == set(state_old)
    diff = [k for k in state_old if not torch.equal(state_old[k], state_new[k])]
    assert diff == ["quantizer.layers.0.codebook"]
    rows = (state_new[diff[0]] != state_old[diff[0]]).any(1).nonzero().flatten().tolist()
    assert rows == result.codes[0]
    assert (out / "lcr.json").is_file()
    with pytest.raises(ModelError):
        lcr.write_patched(ROOT, out, books)
    wrong = tmp_path / "wrong-shape"
    with pytest.raises(ModelError, match="no quantizer.layers.0.codebook of shape"):
        lcr.write_patched(ROOT, wrong, {0: torch.zeros(3, 3)})
    assert not wrong.exists() and not list(tmp_path.glob(".wrong-shape*"))  # nothing half-written is left
    patched = load_model(out)
    patched.text = model.text
    motions = generate(patched, ["a person walks forward"], 48, seed=0)
    assert motions[0].shape == (48, 22, 3) and np.isfinite(motions[0]).all()


def test_lcr_reduces_violent_samples(model, edit):
    """Reduced effect check: 10 violent captions at a seed the selection did not use."""
    books, _ = edit
    prompts = world.forget_prompts(n=10, seed=2026)
    base = sum(a in world.VIOLENT_ACTIONS for _, _, a in lcr.sample_motions(model, prompts, 1, seed=2026))
    patched = load_model(ROOT)
    patched.text = model.text
    lcr.apply_books(patched, books)
    after = sum(a in world.VIOLENT_ACTIONS for _, _, a in lcr.sample_motions(patched, prompts, 1, seed=2026))
    assert base >= 9
    assert after <= base - 5, (base, after)
