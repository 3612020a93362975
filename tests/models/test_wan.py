"""Contract tests on tiny Wan pipelines built offline: extraction reads exactly what the
pipeline feeds its cross-attention, both Wan2.2 experts are covered, and the edit bites."""

from __future__ import annotations

from pathlib import Path

import torch

from conftest import assert_projection_bites
from vidunlearn import api
from vidunlearn.artifacts import RefusalVectors
from vidunlearn.model import resolve_model, tensor_infos
from vidunlearn.pairs import load_pairs
from vidunlearn.textpath import encode_prompts, load_text_encoder, load_text_path

PAIRS = Path(__file__).resolve().parents[2] / "pairs"


def test_encoding_matches_the_pipeline(tiny_wan):
    """Our per-prompt text states equal WanPipeline.encode_prompt's, with pads dropped."""
    from diffusers import WanPipeline

    pipe = WanPipeline.from_pretrained(tiny_wan)
    prompts = ["a man stabs a man in an alley", "a cat"]
    reference, _ = pipe.encode_prompt(prompts, do_classifier_free_guidance=False, device="cpu")
    source = resolve_model(str(tiny_wan))
    tokenizer, encoder = load_text_encoder(source, "cpu", torch.float32)
    ours = encode_prompts(tokenizer, encoder, prompts, 512, "cpu")
    for state, ref in zip(ours, reference):
        torch.testing.assert_close(state, ref[: state.shape[0]], atol=1e-5, rtol=1e-5)
        assert ref[state.shape[0]:].abs().max() == 0, "the pipeline zero-pads after the real tokens"


def test_text_path_loads_only_its_weights(tiny_wan):
    source = resolve_model(str(tiny_wan))
    model = load_text_path(source, "transformer", "cpu", torch.float32)
    materialised = {n for n, p in model.named_parameters() if p.device.type != "meta"}
    assert materialised and all(n.startswith("condition_embedder.text_embedder.") for n in materialised)
    assert model.blocks[0].attn2.to_k.weight.device.type == "meta"


def test_wan22_covers_both_experts(tiny_wan22, tmp_path):
    result = api.extract(str(tiny_wan22), PAIRS / "violence.yaml", out=tmp_path / "a.safetensors")
    assert result.activations.sites == ["transformer/cross_attn_kv", "transformer_2/cross_attn_kv"]
    plan = api.apply(str(tiny_wan22), out=tmp_path / "o", pairs=[PAIRS / "violence.yaml"], dry_run=True).plan
    assert {e.component for e in plan} == {"transformer", "transformer_2"}
    assert len(plan) == 2 * 2 * 2  # 2 experts x 2 blocks x (to_k, to_v)


def test_cache_is_reused_and_invalidated(tiny_wan, tmp_path):
    out = tmp_path / "a.safetensors"
    assert not api.extract(str(tiny_wan), PAIRS / "violence.yaml", out=out).reused
    assert api.extract(str(tiny_wan), PAIRS / "violence.yaml", out=out).reused
    changed = tmp_path / "v.yaml"
    changed.write_text((PAIRS / "violence.yaml").read_text() + "\n# edited\n")
    assert not api.extract(str(tiny_wan), changed, out=out).reused


def test_offloaded_text_encoder_gives_the_same_activations_and_memory_is_reported(tiny_wan, tmp_path, monkeypatch):
    """--offload runs the encoder through accelerate's cpu_offload hooks (weights kept on CPU,
    each layer moved to the execution device while it runs); here the execution device is the
    CPU, which exercises the hooks, not a GPU's memory saving."""
    import accelerate

    calls = []
    real = accelerate.cpu_offload
    monkeypatch.setattr(accelerate, "cpu_offload", lambda module, **kw: calls.append(kw) or real(module, **kw))
    plain = api.extract(str(tiny_wan), PAIRS / "violence.yaml", out=tmp_path / "a.safetensors")
    assert calls == []
    offloaded = api.extract(str(tiny_wan), PAIRS / "violence.yaml", out=tmp_path / "b.safetensors", offload=True)
    for site, groups in plain.activations.tokens.items():
        for group, states in groups.items():
            for a, b in zip(states, offloaded.activations.tokens[site][group]):
                torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-6)
    assert len(calls) == 1 and str(calls[0]["execution_device"]) == "cpu"
    assert offloaded.memory.startswith("peak RSS ") and "MiB" in offloaded.memory


def _site_inputs(source, prompts):
    """Mean post-text-embedder activation per prompt: (n, H)."""
    tokenizer, encoder = load_text_encoder(source, "cpu", torch.float32)
    states = encode_prompts(tokenizer, encoder, prompts, 512, "cpu")
    feed = load_text_path(source, "transformer", "cpu", torch.float32).condition_embedder.text_embedder
    with torch.no_grad():
        return torch.stack([feed(s[None])[0].mean(0) for s in states]).double()


def test_projection_bites_on_unsafe_prompts_and_spares_the_rest(tiny_wan_planted, tmp_path):
    """The paper's projection (--mode project --method cpca): at every edited layer, read the concept component that the EDITED weights still see
    (through the base weights' inverse), measured from the safe prompts' mean: for the unsafe
    prompts it must fall by >= 90 %; safe and retain prompts carried far less of it, so the
    edit moves them far less. A purely random model has no concept that is a direction, so
    the fixture plants one (see conftest.tiny_wan_planted)."""
    tiny_wan = tiny_wan_planted
    concept = load_pairs(PAIRS / "violence.yaml")
    out = tmp_path / "edited"
    result = api.apply(str(tiny_wan), out=out, pairs=[PAIRS / "violence.yaml"], work_dir=tmp_path / "w",
                       recipe=api.EditRecipe(mode="project", method="cpca"))
    vectors = api.factorize(tmp_path / "w" / "violence" / "activations.safetensors", method="cpca")
    p = vectors.sites["transformer/cross_attn_kv"].direction.double()
    base, edited = resolve_model(str(tiny_wan)), resolve_model(str(out))
    reference = _site_inputs(base, list(concept.safe)).mean(0)
    groups = {g: _site_inputs(base, list(prompts)) - reference for g, prompts in
              (("unsafe", concept.unsafe), ("probes", concept.probes), ("safe", concept.safe), ("retain", concept.retain))}
    assert_projection_bites(result.manifest["edited"], base.path / "transformer", edited.path / "transformer", groups, p)


def test_default_remap_sends_unsafe_prompts_to_their_targets_and_keeps_the_rest(tiny_wan_planted, tmp_path):
    """The default edit (--mode remap): every edited layer is exactly W + (W A) B^T with the factors
    of the refusal file, and through it each unsafe prompt's output moves towards the base output
    of its target prompt (here each pair's safe twin: violence.yaml rewrites several words), while
    the retain prompts' outputs move far less. Token means per prompt. The tiny model is 24 wide,
    below the remap's ~50 erase rows, so the fit is partial here (a quarter of the gap closed);
    on the benchmark model the same edit erases the concept (docs/method.md)."""
    from vidunlearn.remap import target_prompts

    concept = load_pairs(PAIRS / "violence.yaml")
    targets, how = target_prompts(concept)
    out = tmp_path / "edited"
    result = api.apply(str(tiny_wan_planted), out=out, pairs=[PAIRS / "violence.yaml"], work_dir=tmp_path / "w")
    assert result.manifest["recipe"]["mode"] == "remap" and result.manifest["recipe"]["edit_rank"] > 1
    base, edited = resolve_model(str(tiny_wan_planted)), resolve_model(str(out))
    unsafe, goal = _site_inputs(base, list(concept.unsafe)), _site_inputs(base, list(targets))
    retain = _site_inputs(base, list(concept.retain))
    base_infos, edited_infos = tensor_infos(base.path / "transformer"), tensor_infos(edited.path / "transformer")
    from safetensors import safe_open

    def load(info):
        with safe_open(str(info.file), framework="pt") as f:
            return f.get_tensor(info.key).double()

    factors = RefusalVectors.load(tmp_path / "w" / "violence" / "refusal.safetensors").sites["transformer/cross_attn_kv"]
    a, b = factors.left.double(), factors.right.double()
    for record in result.manifest["edited"]:
        w, w_edit = load(base_infos[record["tensor"]]), load(edited_infos[record["tensor"]])
        torch.testing.assert_close(w_edit, w + (w @ a) @ b.T, atol=1e-5, rtol=1e-4)
        gap_before = (unsafe @ w.T - goal @ w.T).norm(dim=1)
        gap_after = (unsafe @ w_edit.T - goal @ w.T).norm(dim=1)
        retain_moved = (retain @ (w_edit - w).T).norm(dim=1) / (retain @ w.T).norm(dim=1)
        unsafe_moved = (unsafe @ (w_edit - w).T).norm(dim=1) / (unsafe @ w.T).norm(dim=1)
        assert float((gap_after / gap_before).mean()) <= 0.85, (record["tensor"], gap_after / gap_before)
        assert float(retain_moved.mean()) < 0.5 * float(unsafe_moved.mean()), (record["tensor"], retain_moved, unsafe_moved)
