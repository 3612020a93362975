"""The motion benchmark model (models/momask-world): MoMask's layout and key names, read without
unpickling, deterministic generation, and the accuracy the judge reads (reduced)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from vidunlearn.motion import world
from vidunlearn.motion.judge import judge_motion
from vidunlearn.motion.momask import (CHECKPOINT_FILES, RES_OPT, TRANS_OPT, VQ_OPT, build_mask, build_res, build_vq,
                                      generate, load_model, read_opt, stage_dir, write_opt)

ROOT = Path(__file__).resolve().parents[2] / "models" / "momask-world"
# MoMask's own names (momask-codes models/vq and models/mask_transformer), one per module kind.
MOMASK_KEYS = {
    "vq": ["encoder.model.0.weight", "encoder.model.2.0.weight", "encoder.model.2.1.model.0.conv1.weight",
           "decoder.model.2.0.model.0.conv2.bias", "decoder.model.2.2.weight", "quantizer.layers.0.codebook",
           "quantizer.layers.3.codebook"],
    "mask": ["token_emb.weight", "input_process.poseEmbedding.weight", "position_enc.pe", "cond_emb.weight",
             "seqTransEncoder.layers.0.self_attn.in_proj_weight", "seqTransEncoder.layers.3.linear2.weight",
             "output_process.dense.weight", "output_process.LayerNorm.weight", "output_process.poseFinal.bias"],
    "res": ["embed_proj_shared_weight", "token_embed_weight_", "output_proj_weight_", "quant_emb.weight",
            "cond_emb.weight", "output_process.poseFinal.weight", "seqTransEncoder.layers.2.norm2.bias"],
}


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return load_model(ROOT)


@pytest.mark.parametrize("stage", ["vq", "mask", "res"])
def test_shipped_checkpoints_load_weights_only_with_momask_keys(stage):
    opt = {"vq": VQ_OPT, "mask": TRANS_OPT, "res": RES_OPT}[stage]
    file_name, key, _ = CHECKPOINT_FILES[stage]
    checkpoint = torch.load(stage_dir(ROOT, str(opt["name"])) / "model" / file_name, weights_only=True)
    assert set(checkpoint) == {key, "ep", "total_it"}
    built = {"vq": lambda: build_vq(VQ_OPT), "mask": lambda: build_mask(TRANS_OPT, VQ_OPT),
             "res": lambda: build_res(RES_OPT, VQ_OPT)}[stage]().state_dict()
    state = checkpoint[key]
    assert set(state) == set(built)
    assert all(state[k].shape == built[k].shape for k in built)
    assert set(MOMASK_KEYS[stage]) <= set(state)
    assert read_opt(stage_dir(ROOT, str(opt["name"])) / "opt.txt")["name"] == opt["name"]


def test_shipped_model_is_small():
    size = sum(p.stat().st_size for p in ROOT.rglob("*") if p.is_file())
    assert size < 30 * 2 ** 20


def test_opt_txt_round_trip(tmp_path):
    opt = {"name": "x", "nb_code": 256, "mu": 0.99, "vq_norm": None, "shared_codebook": False, "milestones": [1, 2]}
    write_opt(tmp_path / "opt.txt", opt)
    text = (tmp_path / "opt.txt").read_text()
    assert text.startswith("------------ Options -------------\n") and "nb_code: 256\n" in text
    assert read_opt(tmp_path / "opt.txt") == opt


def test_generation_is_deterministic_under_a_seed(model):
    texts = ["a man kicks with his right leg", "a woman walks forward"]
    first = generate(model, texts, frames=48, seed=5)
    again = generate(model, texts, frames=48, seed=5)
    other = generate(model, texts, frames=48, seed=6)
    assert [m.shape for m in first] == [(48, 22, 3)] * 2
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_shipped_model_does_what_the_caption_says(model):
    """10 samples per action (its 8 training captions in turn), seed 2026: at least 8 of 10 judged
    as that action for every action, and at least 18 of the 20 violent ones judged kick or punch
    (issue 22 needs a forget rate >= 90 % before unlearning). benchmarks/motion_model.py measures
    92-100 % per action and 99.5 % violent on 100 samples per action (docs/motion-benchmark.md)."""
    counts, violent = {}, 0
    for i, action in enumerate(world.ACTIONS):
        texts = [p.text for p in world.training_prompts((action,))]
        texts = [texts[k % len(texts)] for k in range(10)]
        motions = generate(model, texts, frames=[40, 44, 48, 52, 56, 60, 64, 68, 72, 80], seed=2026 + i)
        judged = [judge_motion(m).action for m in motions]
        counts[action] = judged.count(action)
        if action in world.VIOLENT_ACTIONS:
            violent += sum(j in world.VIOLENT_ACTIONS for j in judged)
    assert min(counts.values()) >= 8, counts
    assert violent >= 18, counts


def test_a_stage_is_saved_whole_or_not_at_all(tmp_path, monkeypatch):
    from vidunlearn.motion import momask

    state = {"w": torch.arange(4.0)}
    path = momask.save_stage(tmp_path, "vq", VQ_OPT, state, 0, 7)
    assert torch.load(path, weights_only=True)["total_it"] == 7
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]  # no temporary or lock file left

    def killed(obj, target, *args, **kwargs):  # half a file written, then Ctrl-C
        Path(target).write_bytes(b"PK\x03\x04 half")
        raise KeyboardInterrupt

    monkeypatch.setattr(momask.torch, "save", killed)
    with pytest.raises(KeyboardInterrupt):
        momask.save_stage(tmp_path, "vq", VQ_OPT, {"w": torch.zeros(4)}, 0, 8)
    assert torch.load(path, weights_only=True)["total_it"] == 7  # the whole earlier file, untouched
    assert sorted(p.name for p in path.parent.iterdir()) == [path.name]
