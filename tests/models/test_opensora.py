"""Open-Sora 2.0 (not a diffusers pipeline: its own folder layout, one safetensors MMDiT with its own
key names, T5 beside it), on a tiny folder laid out like hpcai-tech/Open-Sora-v2
(vidunlearn/tiny_families/opensora.py): extract records exactly what Open-Sora's own text code
feeds ``txt_in``; apply writes the single file with only ``txt_in`` changed, every other tensor
bit-identical and every key name kept; verify passes; a planted concept is removed; the alias
resolves the Hub repo offline; the dry run plans the 11B's real shapes on the meta device."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

from conftest import PAIRS, ROOT, _all_texts, assert_projection_bites, one_error, plant_concept, run
from vidunlearn import api
from vidunlearn.adapters.opensora import FILE, mmdit_config
from vidunlearn.model import read_header, resolve_model
from vidunlearn.pairs import load_pairs
from vidunlearn.record import record_sites
from vidunlearn.verify import verify

T5 = "google/t5-v1_1-xxl"
SITE = "transformer/text_in"
# configs/diffusion/inference/256px.py (hpcaitech/Open-Sora): the 11B's MMDiT
@pytest.fixture(scope="module")
def tiny_opensora(tmp_path_factory) -> Path:
    from vidunlearn.tiny_families import build

    return build("opensora", tmp_path_factory.mktemp("opensora") / "Open-Sora-v2", texts=_all_texts())


@pytest.fixture(scope="module")
def edited(tiny_opensora, tmp_path_factory):
    root = tmp_path_factory.mktemp("opensora-edit")
    result = api.apply(str(tiny_opensora), out=root / "out", pairs=[PAIRS / "violence.yaml"], work_dir=root / "w")
    return result, root / "out"


def _open_sora_t5(folder: Path, prompts: list[str]) -> torch.Tensor:
    """What Open-Sora's HFEmbedder.forward returns for T5 (opensora/models/text/conditioner.py), which
    sampling.prepare hands the MMDiT as ``txt``: T5Tokenizer(legacy=True), padding="max_length" to
    512, truncation, the encoder run with attention_mask=None, last_hidden_state."""
    from transformers import T5EncoderModel, T5Tokenizer

    tokenizer = T5Tokenizer.from_pretrained(folder, max_length=512, legacy=True)
    encoder = T5EncoderModel.from_pretrained(folder).eval()
    batch = tokenizer(prompts, truncation=True, max_length=512, return_length=False, return_overflowing_tokens=False,
                      padding="max_length", return_tensors="pt")
    with torch.no_grad():
        return encoder(input_ids=batch["input_ids"], attention_mask=None, output_hidden_states=False).last_hidden_state


def test_extract_records_what_open_sora_feeds_txt_in(tiny_opensora):
    prompts = ["a man stabs a man in an alley", "a calm lake at dawn"]
    recorded = record_sites(resolve_model(str(tiny_opensora)), prompts, [SITE]).tokens[SITE]
    theirs = _open_sora_t5(tiny_opensora / T5, prompts)
    assert theirs.shape[1] == 512
    for ours, reference in zip(recorded, theirs):
        assert ours.shape == (512, 32)  # every position: nothing in the MMDiT masks the pads
        torch.testing.assert_close(ours, reference, atol=1e-5, rtol=1e-4)
    # the check can fail: with a mask (as Wan encodes), the real tokens' states differ
    from transformers import T5EncoderModel, T5Tokenizer

    tokenizer = T5Tokenizer.from_pretrained(tiny_opensora / T5)
    batch = tokenizer(prompts[:1], padding="max_length", max_length=512, return_tensors="pt")
    masked = T5EncoderModel.from_pretrained(tiny_opensora / T5)(**batch).last_hidden_state[0]
    assert not torch.allclose(masked[:5], recorded[0][:5], atol=1e-3)


def test_apply_changes_only_txt_in_and_keeps_the_file_as_it_was(tiny_opensora, edited):
    result, out = edited
    assert sorted(p.name for p in out.iterdir()) == sorted([FILE, "README.md", "vidunlearn.json"])
    assert {r["tensor"] for r in result.manifest["edited"]} == {"txt_in.weight"}
    base_header, base_start = read_header(tiny_opensora / FILE)
    out_header, out_start = read_header(out / FILE)
    base_keys = [k for k in base_header if k != "__metadata__"]
    assert [k for k in out_header if k != "__metadata__"] == base_keys  # the original names, in their order
    base_bytes, out_bytes = (tiny_opensora / FILE).read_bytes(), (out / FILE).read_bytes()
    changed = set()
    for key in base_keys:
        old, new = base_header[key], out_header[key]
        assert (old["dtype"], old["shape"]) == (new["dtype"], new["shape"]) == (old["dtype"], old["shape"])
        if base_bytes[base_start + old["data_offsets"][0]:base_start + old["data_offsets"][1]] != \
                out_bytes[out_start + new["data_offsets"][0]:out_start + new["data_offsets"][1]]:
            changed.add(key)
    assert changed == {"txt_in.weight"} and out_header["txt_in.weight"]["dtype"] == "BF16"
    assert out_header["__metadata__"]["vidunlearn.sites"] == SITE
    assert "Open_Sora_v2.safetensors" in (out / "README.md").read_text()
    for base in (tiny_opensora, tiny_opensora / FILE):  # the folder, or its file, as --base
        check = verify(out, str(base))
        assert check.output_format == "single-file" and [c.tensor for c in check.changed] == ["txt_in.weight"]


def test_the_cli_refuses_what_it_cannot_write_in_one_line(tiny_opensora, tmp_path):
    pairs = PAIRS / "violence.yaml"
    one_error(run("apply", "--model", tiny_opensora, "--pairs", pairs, "--out", tmp_path / "l", "--format", "lora"),
              "peft adapter folder")
    one_error(run("apply", "--model", tiny_opensora, "--pairs", pairs, "--out", tmp_path / "d", "--format", "diffusers"),
              "stays a single file")
    broken = tmp_path / "no-t5"
    broken.mkdir()
    shutil.copy(tiny_opensora / FILE, broken / FILE)
    one_error(run("apply", "--model", broken, "--pairs", pairs, "--out", tmp_path / "x"), "no google/t5-v1_1-xxl/")
    other = tmp_path / "other"
    shutil.copytree(tiny_opensora, other)
    from safetensors.torch import save_file

    save_file({"patch_embedding.weight": torch.zeros(2, 2)}, str(other / FILE))
    one_error(run("apply", "--model", other, "--pairs", pairs, "--out", tmp_path / "y", "--dry-run"),
              "not an Open-Sora 2.0 MMDiT")
    assert not any((tmp_path / n).exists() for n in "ldxy")
    # vidunlearn renders only through a diffusers pipeline: sample, eval and attack say so before any work
    for command in (["sample", "--prompt", "a cat"], ["eval", "--concept", "red"], ["attack", "--concept", "red"]):
        one_error(run(*command, "--model", tiny_opensora, "--out", tmp_path / command[0]), "has no diffusers pipeline")
        assert not (tmp_path / command[0]).exists() and not (tmp_path / f"{command[0]}.partial").exists()


def test_the_file_itself_as_model_is_its_folder(tiny_opensora, tmp_path):
    result = api.apply(str(tiny_opensora / FILE), out=tmp_path / "o", pairs=[PAIRS / "violence.yaml"], dry_run=True)
    assert [e.weight.key for e in result.plan] == ["txt_in.weight"]


def test_projection_removes_a_planted_concept_and_spares_the_rest(tmp_path):
    from vidunlearn.tiny_families import build

    path = build("opensora", tmp_path / "planted", texts=_all_texts())
    plant_concept(path, tokenizer_dir=T5, encoder_dir=T5)
    concept = load_pairs(PAIRS / "violence.yaml")
    result = api.apply(str(path), out=tmp_path / "out", pairs=[PAIRS / "violence.yaml"], work_dir=tmp_path / "w",
                       recipe=api.EditRecipe(mode="project", method="cpca"))
    source = resolve_model(str(path))
    p = api.factorize(tmp_path / "w" / "violence" / "activations.safetensors", method="cpca").sites[SITE].direction.double()

    def means(prompts):
        return torch.stack([t.double().mean(0) for t in record_sites(source, list(prompts), [SITE]).tokens[SITE]])

    reference = means(concept.safe).mean(0)
    groups = {g: means(prompts) - reference for g, prompts in
              (("unsafe", concept.unsafe), ("safe", concept.safe), ("retain", concept.retain))}
    assert_projection_bites(result.manifest["edited"], path / FILE, tmp_path / "out" / FILE, groups, p)


def test_alias_resolves_the_hub_repo_offline_and_applies(tiny_opensora, tmp_path, monkeypatch):
    from test_hub_resolution import COMMIT, hub_snapshot

    hub_snapshot(tiny_opensora, tmp_path / "hub", "hpcai-tech/Open-Sora-v2", monkeypatch)
    source = resolve_model("open-sora-v2")
    assert (source.repo_id, source.revision, source.adapter.family) == ("hpcai-tech/Open-Sora-v2", COMMIT, "opensora")
    result = api.apply("open-sora-v2", out=tmp_path / "out", pairs=[PAIRS / "violence.yaml"], work_dir=tmp_path / "w",
                       output=api.OutputOptions(collateral=False))
    assert result.manifest["base"]["repo_id"] == "hpcai-tech/Open-Sora-v2"
    assert verify(tmp_path / "out", "open-sora-v2").output_format == "single-file"


def test_dry_run_plans_the_11b_real_shapes_on_the_meta_device(tiny_opensora, tmp_path):
    """The 11B's key names and shapes (its 256px.py config, built on the meta device) as a sparse
    file (the real header, no data): its config is read back from the shapes, and the dry run
    checks every tensor against the module tree built from it."""
    from vidunlearn.adapters.opensora_mmdit import MMDiT

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from hub_layout import LAYOUTS, _write_shard

    REAL_11B = LAYOUTS["open-sora-v2"].config  # configs/diffusion/inference/256px.py of hpcaitech/Open-Sora

    with torch.device("meta"):
        entries = [(k, tuple(v.shape)) for k, v in MMDiT.from_config(REAL_11B).state_dict().items()]
    folder = tmp_path / "Open-Sora-v2"
    shutil.copytree(tiny_opensora / "google", folder / "google")
    _write_shard(folder / FILE, entries, seed=0, dtype="bfloat16", sparse=True)
    assert mmdit_config({k: s for k, s in entries}) == REAL_11B
    # the Hub's Open_Sora_v2.safetensors is 23.8 GB of bf16: the module tree holds as many values
    assert 23.6e9 < 2 * sum(torch.Size(s).numel() for _, s in entries) < 24.0e9
    result = api.apply(str(folder), out=tmp_path / "out", pairs=[PAIRS / "violence.yaml"], dry_run=True)
    assert [(e.weight.key, e.weight.shape) for e in result.plan] == [("txt_in.weight", (3072, 4096))]
    assert result.checked == len(entries) and not (tmp_path / "out").exists()


def test_the_hubs_pickle_t5_is_refused_then_converted(tiny_opensora, tmp_path):
    """The Hub's google/t5-v1_1-xxl holds pytorch_model-0000N-of-00002.bin only: extract refuses the
    pickle in one line; `vidunlearn convert` rewrites it (weights_only), and the copy extracts the same."""
    from safetensors.torch import load_file

    folder = tmp_path / "pickled"
    shutil.copytree(tiny_opensora, folder)
    t5 = folder / T5
    torch.save(load_file(t5 / "model.safetensors"), t5 / "pytorch_model.bin")
    (t5 / "model.safetensors").unlink()
    one_error(run("extract", "--model", folder, "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "a.safetensors"),
              "only pickle files")
    result = run("convert", "--model", folder, "--out", tmp_path / "converted")
    assert result.exit_code == 0, result.output
    prompt = ["a man stabs a man in an alley"]
    ours = record_sites(resolve_model(str(tmp_path / "converted")), prompt, [SITE]).tokens[SITE][0]
    torch.testing.assert_close(ours, record_sites(resolve_model(str(tiny_opensora)), prompt, [SITE]).tokens[SITE][0])
