"""UCE on the motion model's text path (vidunlearn/motion/uce.py): only cond_emb changes, violent
captions map onto their safe twins, keep captions barely move; the patched folder loads back."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from vidunlearn.motion import uce
from vidunlearn.motion.momask import CHECKPOINT_FILES, load_checkpoint, load_model

ROOT = Path(__file__).resolve().parents[2] / "models" / "momask-world"


@pytest.fixture(scope="module")
def edited():
    torch.set_num_threads(1)
    model = load_model(ROOT)
    pairs, keep = uce.uce_sets()
    weights, result = uce.uce_weights(model, pairs, keep)
    return model, pairs, keep, weights, result


def test_sets_pair_every_violent_caption_with_a_safe_twin(edited):
    _, pairs, keep, _, result = edited
    assert len(pairs) == 32 and len(keep) == 88 and result.n_unsafe == 32
    assert ("a man kicks with his right leg", "a man walks forward") in pairs
    assert ("a woman throws a punch with her left arm", "a woman raises her left hand and waves") in pairs
    assert all(safe in keep for _, safe in pairs)


def test_violent_captions_map_onto_twins_and_keep_captions_stay(edited):
    model, pairs, keep, weights, _ = edited
    unsafe = model.encode_text([u for u, _ in pairs])
    safe = model.encode_text([s for _, s in pairs])
    kept = model.encode_text(keep)
    for stage, new in weights.items():
        w = getattr(model, stage).cond_emb.weight.detach()
        moved = (unsafe @ new.T - safe @ w.T).norm(dim=1) / (unsafe @ w.T - safe @ w.T).norm(dim=1)
        assert moved.max() < 0.1, (stage, moved.max())     # measured 0.05
        kept_change = (kept @ new.T - kept @ w.T).norm(dim=1) / (kept @ w.T).norm(dim=1)
        assert kept_change.max() < 0.05, (stage, kept_change.max())  # measured 0.02


def test_patched_folder_changes_only_cond_emb_and_loads(edited, tmp_path):
    model, _, _, weights, result = edited
    out = uce.write_patched(ROOT, tmp_path / "uce", model, weights, result)
    assert (out / "uce.json").is_file()
    for stage in ("vq", "mask", "res"):
        name = str(model.opts[stage]["name"])
        before, _ = load_checkpoint(ROOT, stage, name)
        after, _ = load_checkpoint(out, stage, name)
        key = CHECKPOINT_FILES[stage][1]
        assert set(before) == set(after) and before["ep"] == after["ep"] and before["total_it"] == after["total_it"]
        assert set(before[key]) == set(after[key])
        changed = [k for k in before[key] if not torch.equal(before[key][k], after[key][k])]
        assert changed == ([] if stage == "vq" else ["cond_emb.weight"]), (stage, changed)
        if stage != "vq":
            assert torch.allclose(after[key]["cond_emb.weight"], weights[stage])
    patched = load_model(out)
    patched.text = model.text
    assert torch.equal(patched.mask.cond_emb.weight, weights["mask"].to(patched.mask.cond_emb.weight.dtype))
    with pytest.raises(Exception):
        uce.write_patched(ROOT, out, model, weights)  # an existing folder is refused


def test_rece_rounds_erase_the_inputs_that_still_gave_the_concept(edited):
    """RECE (harden): the text vectors c* that still give each violent caption's outputs after plain
    UCE are sent towards the twins' outputs by one round; the violent captions themselves stay mapped."""
    from vidunlearn.edit import UCE_RIDGE, uce_factors
    from vidunlearn.harden import rece_inputs, site_gram

    model, pairs, keep, plain, _ = edited
    hardened, result = uce.uce_weights(model, pairs, keep, harden=1)
    assert result.harden == 1
    unsafe, safe, kept = (model.encode_text(t) for t in ([u for u, _ in pairs], [s for _, s in pairs], keep))
    left, right = uce_factors(unsafe, safe, kept, 1.0, ridge=UCE_RIDGE)
    gram = site_gram(getattr(model, stage).cond_emb.weight.detach() for stage in uce.STAGES)
    found = rece_inputs(left, right, gram, [unsafe])[0]  # what still gives the concept after plain UCE
    for stage in uce.STAGES:
        w = getattr(model, stage).cond_emb.weight.detach()
        gap = lambda new, x: ((x @ new.T - safe @ w.T).norm(dim=1) / (unsafe @ w.T - safe @ w.T).norm(dim=1)).mean()
        assert gap(hardened[stage], found) < 0.5 * gap(plain[stage], found), stage
        assert gap(hardened[stage], unsafe) < 0.15, stage
