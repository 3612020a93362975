"""The contract every family beyond Wan keeps (issue 17), on tiny offline pipelines of each
(vidunlearn/tiny_families): extraction reads exactly what the family's own pipeline feeds the
edited layers; apply changes only text-path tensors, keeps dtypes and sharding, and its output
loads with the family's pipeline class and generates; verify passes; the LoRA loads with the
family's own load_lora_weights and reproduces the edit; single-file works where the family has
a layout and is one line otherwise; a planted concept direction is removed (the edit bites)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from conftest import PAIRS, _all_texts, assert_projection_bites, plant_concept
from vidunlearn import api
from vidunlearn.errors import VidunlearnError
from vidunlearn.model import resolve_model
from vidunlearn.pairs import load_pairs
from vidunlearn.record import record_sites
from vidunlearn.verify import verify

# family -> the smallest pipe(...) call its tiny pipeline generates with (2 steps)
CALLS = {
    "ltx": dict(height=32, width=32, num_frames=9),
    "cogvideox": dict(height=16, width=16, num_frames=9),
    "hunyuan": dict(height=16, width=16, num_frames=5),
    "zeroscope": dict(height=32, width=32, num_frames=4),
}
FAMILIES = sorted(CALLS)
SINGLE_FILE = {"ltx"}  # families with a widely used single-file layout
# families whose pipeline's load_lora_weights cannot load their denoiser's LoRA (diffusers 0.42.1:
# UNet3DConditionModel has no load_lora_adapter): the LoRA is loaded with the model card's own code
CARD_LORA_LOADER = {"zeroscope"}


@pytest.fixture(scope="session")
def tiny_family(tmp_path_factory):
    built: dict[str, Path] = {}

    def get(family: str, planted: bool = False) -> Path:
        from vidunlearn.tiny_families import build

        key = family + ("-planted" if planted else "")
        if key not in built:
            path = build(family, tmp_path_factory.mktemp("families") / key, texts=_all_texts())
            if planted:
                plant_concept(path)
            built[key] = path
        return built[key]

    return get


def _pipeline(path: Path):
    import diffusers

    source = resolve_model(str(path))
    pipe = getattr(diffusers, source.adapter.pipeline_class).from_pretrained(str(path), use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _generate(pipe, family: str, prompt: str = "a red square moving left", **extra):
    return pipe(prompt=prompt, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np",
                **CALLS[family], **extra).frames


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        out.update(load_file(file))
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_extract_reads_what_the_pipeline_feeds_the_edited_layers(family, tiny_family):
    """A forward hook on the first target layer of every site, during the family's own pipe(...)
    call (no guidance: one batch row), sees exactly the activations extract records."""
    path = tiny_family(family)
    source = resolve_model(str(path))
    prompt = "a man stabs a man in an alley"
    keys = [f"{source.denoisers[0]}/{name}" for name in source.adapter.sites]
    recorded = record_sites(source, [prompt], keys).tokens
    pipe = _pipeline(path)
    denoiser = getattr(pipe, source.denoisers[0])
    seen: dict[str, torch.Tensor] = {}
    for key in keys:
        site = source.adapter.site(key.split("/", 1)[1])
        first = site.target_modules(source.config(source.denoisers[0]), source.adapter.block_count_key)[0]
        def hook(module, args, output, key=key) -> None:  # returns None: the output stays the module's
            seen.setdefault(key, args[0].detach().clone())

        denoiser.get_submodule(first).register_forward_hook(hook)
    _generate(pipe, family, prompt, guidance_scale=1.0)
    for key in keys:
        ours = recorded[key][0]
        theirs = seen[key].reshape(-1, seen[key].shape[-1])[: ours.shape[0]]  # first batch row (and frame)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-4, msg=f"{family} {key}")


@pytest.mark.parametrize("family", FAMILIES)
def test_apply_changes_only_the_text_path_and_the_output_loads_and_generates(family, tiny_family, tmp_path):
    path = tiny_family(family)
    out = tmp_path / "out"
    result = api.apply(str(path), out=out, pairs=[PAIRS / "violence.yaml"], work_dir=tmp_path / "w")
    source = resolve_model(str(path))
    component = source.denoisers[0]
    planned = {r["tensor"] for r in result.manifest["edited"]}
    sites = [source.adapter.site(name) for name in source.adapter.default_sites]
    targets = {f"{m}.weight" for s in sites for m in s.target_modules(source.config(component), source.adapter.block_count_key)}
    assert planned == targets
    base, edited = _weights(path / component), _weights(out / component)
    assert base.keys() == edited.keys()
    changed = {k for k in base if not torch.equal(base[k], edited[k])}
    assert changed == targets
    assert all(base[k].dtype == edited[k].dtype for k in base)
    assert sorted(p.name for p in (path / component).iterdir()) == sorted(p.name for p in (out / component).iterdir())
    frames = _generate(_pipeline(out), family)
    assert torch.isfinite(torch.as_tensor(frames)).all()
    assert verify(out, str(path)).output_format == "diffusers"


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("mode", ["project", "remap"])
def test_lora_loads_with_the_family_loader_and_reproduces_the_edit(family, mode, tiny_family, tmp_path):
    path = tiny_family(family)
    method = {"project": "cpca", "remap": "remap"}[mode]
    folder, lora = tmp_path / "folder", tmp_path / "lora"
    recipe = api.EditRecipe(mode=mode, method=method)
    api.apply(str(path), out=folder, pairs=[PAIRS / "violence.yaml"], work_dir=tmp_path / "w", recipe=recipe)
    api.apply(str(path), out=lora, pairs=[PAIRS / "violence.yaml"], work_dir=tmp_path / "w", recipe=recipe,
              output=api.OutputOptions(format="lora"))
    assert verify(lora, str(path)).output_format == "lora"
    component = resolve_model(str(path)).denoisers[0]
    if family in CARD_LORA_LOADER:
        pipe = _load_lora_as_the_card_says(path, lora)
        for module in getattr(pipe, component).modules():
            if hasattr(module, "merge") and hasattr(module, "base_layer"):  # peft's LoRA layers
                module.merge()
        fused = {k.replace(".base_layer.", "."): v for k, v in getattr(pipe, component).state_dict().items()}
    else:
        pipe = _pipeline(path)
        pipe.load_lora_weights(str(lora))
        pipe.fuse_lora()
        pipe.unload_lora_weights()
        fused = getattr(pipe, component).state_dict()
    edited = _weights(folder / component)
    for key, value in edited.items():
        torch.testing.assert_close(fused[key], value, atol=1e-5, rtol=1e-4, msg=key)


def _load_lora_as_the_card_says(path: Path, lora: Path):
    """Run the "## Loading" code of the LoRA output's README.md, with the base's folder for its Hub id."""
    import re

    card = (lora / "README.md").read_text()
    code = re.search(r"## Loading\n\n```python\n(.*?)```", card, re.S).group(1)
    base = re.search(r'from_pretrained\("([^"]+)"\)', code).group(1)
    code = code.replace(f'"{base}"', repr(str(path))).replace(f'"{lora.name}/', f'"{lora}/')
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    namespace["pipe"].set_progress_bar_config(disable=True)
    return namespace["pipe"]


@pytest.mark.parametrize("family", FAMILIES)
def test_single_file_has_the_original_names_or_is_refused_in_one_line(family, tiny_family, tmp_path):
    import diffusers

    path = tiny_family(family)
    source = resolve_model(str(path))
    out = tmp_path / "sf"
    if family not in SINGLE_FILE:
        with pytest.raises(VidunlearnError, match=re.escape(source.adapter.single_file_refusal)):
            api.apply(str(path), out=out, pairs=[PAIRS / "violence.yaml"], work_dir=tmp_path / "w",
                      output=api.OutputOptions(format="single-file"))
        assert not out.exists()
        return
    folder = tmp_path / "folder"
    api.apply(str(path), out=folder, pairs=[PAIRS / "violence.yaml"], work_dir=tmp_path / "w")
    api.apply(str(path), out=out, pairs=[PAIRS / "violence.yaml"], work_dir=tmp_path / "w",
              output=api.OutputOptions(format="single-file"))
    assert verify(out, str(path)).output_format == "single-file"
    cls = getattr(diffusers, source.adapter.denoiser_class)
    loaded = cls.from_single_file(str(out / "transformer.safetensors"), config=str(path), subfolder="transformer")
    edited = _weights(folder / "transformer")
    state = loaded.state_dict()
    assert state.keys() == edited.keys()
    for key, value in edited.items():
        assert torch.equal(state[key], value), key


@pytest.mark.parametrize("family", FAMILIES)
def test_projection_removes_a_planted_concept_and_spares_the_rest(family, tiny_family, tmp_path):
    """With a concept planted as one direction of the text encoder's input embeddings, the
    paper's projection at the default site removes >= 90 % of the unsafe prompts' component
    along the found direction, as the edited weights see it, and moves safe and retain prompts
    far less."""
    path = tiny_family(family, planted=True)
    concept = load_pairs(PAIRS / "violence.yaml")
    out = tmp_path / "edited"
    result = api.apply(str(path), out=out, pairs=[PAIRS / "violence.yaml"], work_dir=tmp_path / "w",
                       recipe=api.EditRecipe(mode="project", method="cpca"))
    source = resolve_model(str(path))
    site = f"{source.denoisers[0]}/{source.adapter.default_sites[0]}"
    vectors = api.factorize(tmp_path / "w" / "violence" / "activations.safetensors", method="cpca")
    p = vectors.sites[site].direction.double()

    def means(prompts):
        tokens = record_sites(source, list(prompts), [site]).tokens[site]
        return torch.stack([t.double().mean(0) for t in tokens])

    reference = means(concept.safe).mean(0)
    groups = {g: means(prompts) - reference for g, prompts in
              (("unsafe", concept.unsafe), ("safe", concept.safe), ("retain", concept.retain))}
    component = source.denoisers[0]
    assert_projection_bites(result.manifest["edited"], path / component, out / component, groups, p)


@pytest.mark.parametrize("family", FAMILIES)
def test_every_alias_resolves_its_hub_repo_offline_and_applies(family, tiny_family, tmp_path, monkeypatch):
    """``--model <alias>`` finds the family's Hub repo in the Hugging Face cache (laid out as
    huggingface_hub writes it, offline), records its revision, and apply runs on it."""
    from test_hub_resolution import COMMIT, hub_snapshot

    from vidunlearn.adapters import ADAPTERS

    adapter = next(a for a in ADAPTERS if a.family == family)
    alias, repo_id = next(iter(adapter.aliases.items()))
    hub_snapshot(tiny_family(family), tmp_path / "hub", repo_id, monkeypatch)
    source = resolve_model(alias)
    assert (source.repo_id, source.revision, source.adapter.family) == (repo_id, COMMIT, family)
    result = api.apply(alias, out=tmp_path / "out", pairs=[PAIRS / "violence.yaml"], work_dir=tmp_path / "w")
    base = result.manifest["base"]
    assert (base["repo_id"], base["revision"], base["family"]) == (repo_id, COMMIT, family)


@pytest.mark.parametrize("family", FAMILIES)
def test_sample_cli_generates(family, tiny_family, tmp_path):
    """`vidunlearn sample` writes a playable clip through the family's own pipeline call (its own
    prompt encoding; HunyuanVideo's --guidance is its embedded guidance)."""
    import json

    from typer.testing import CliRunner

    from vidunlearn.cli import app

    call = CALLS[family]
    out = tmp_path / "samples"
    result = CliRunner().invoke(app, [str(a) for a in (
        "sample", "--model", tiny_family(family), "--prompt", "a red square moving left", "--steps", 2,
        "--frames", call["num_frames"], "--height", call["height"], "--width", call["width"], "--out", out)])
    assert result.exit_code == 0, result.output
    assert (out / "edited" / "00.mp4").stat().st_size > 0
    assert json.loads((out / "samples.json").read_text())["settings"]["frames"] == call["num_frames"]
