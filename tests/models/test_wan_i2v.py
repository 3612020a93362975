"""Wan2.1 I2V (issue 18) on a tiny offline WanImageToVideoPipeline: the image path (CLIP vision
states -> condition_embedder.image_embedder -> attn2.add_k_proj/add_v_proj) is recorded exactly
as the pipeline computes it, edited from the pairs' images alone, and the outputs (folder, LoRA,
single file) carry it under the right names."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from conftest import I2V_PAIRS, IMAGE_KV, PAIRS, TEXT_KV, kv_kind
from vidunlearn import api
from vidunlearn.errors import VidunlearnError
from vidunlearn.factorize import factorize_site
from vidunlearn.model import resolve_model
from vidunlearn.pairs import load_pairs
from vidunlearn.record import record_sites
from vidunlearn.verify import verify

CALL = dict(height=32, width=32, num_frames=5, num_inference_steps=2)


def _pipeline(path: Path):
    from diffusers import WanImageToVideoPipeline

    pipe = WanImageToVideoPipeline.from_pretrained(str(path), use_safetensors=True)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def _image(name: str = "knife"):
    from vidunlearn.adapters.wan_i2v import load_image

    return load_image(PAIRS / "images" / f"{name}.png")


def _weights(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    out: dict[str, torch.Tensor] = {}
    for file in sorted(folder.glob("*.safetensors")):
        out.update(load_file(file))
    return out


def test_the_family_is_found_and_its_sites_are_declared(tiny_i2v):
    source = resolve_model(str(tiny_i2v))
    assert source.adapter.family == "wan-i2v" and source.denoisers == ["transformer"]
    assert {n: s.stream for n, s in source.adapter.sites.items() if n in source.adapter.default_sites} == \
        {"cross_attn_kv": "text", "image_kv": "image"}


def test_image_and_text_activations_equal_what_the_pipeline_computes(tiny_i2v):
    """Hooks on blocks.0.attn2.add_k_proj (image tokens) and to_k (text tokens) during a real
    pipe(image=..., prompt=...) call see what record_sites records for that image and prompt
    (the whole call, ftfy's prompt cleaning included)."""
    source = resolve_model(str(tiny_i2v))
    prompt = "a man stabs another man with a knife in a dark alley, blood splatters, handheld camera"
    keys = ["transformer/cross_attn_kv", "transformer/image_kv"]
    recorded = record_sites(source, [prompt], keys, images=[PAIRS / "images" / "knife.png"]).tokens
    pipe = _pipeline(tiny_i2v)
    seen: dict[str, torch.Tensor] = {}
    for name in ("to_k", "add_k_proj"):
        def hook(module, args, output, name=name) -> None:  # returns None: the output stays the module's
            seen.setdefault(name, args[0].detach().clone())

        pipe.transformer.blocks[0].attn2.get_submodule(name).register_forward_hook(hook)
    pipe(image=_image(), prompt=prompt, guidance_scale=1.0, generator=torch.Generator().manual_seed(0),
         output_type="np", **CALL)
    image = recorded["transformer/image_kv"][0]
    assert image.shape == (17, 24)  # CLS + 4x4 patches, the transformer's width
    torch.testing.assert_close(image, seen["add_k_proj"][0], atol=1e-5, rtol=1e-4)
    text = recorded["transformer/cross_attn_kv"][0]
    torch.testing.assert_close(text, seen["to_k"][0, : text.shape[0]], atol=1e-5, rtol=1e-4)


def test_apply_changes_only_the_text_and_image_paths_and_the_output_generates(tiny_i2v, i2v_edited):
    result, root = i2v_edited
    out = root / "out"
    base, new = _weights(tiny_i2v / "transformer"), _weights(out / "transformer")
    changed = {k for k in base if not torch.equal(base[k], new[k])}
    assert changed == {f"blocks.{b}.attn2.{k}.weight" for b in range(2) for k in TEXT_KV | IMAGE_KV}
    assert {r["tensor"] for r in result.manifest["edited"]} == changed
    assert sorted(result.manifest["recipe"]["sites"]) == ["transformer/cross_attn_kv", "transformer/image_kv"]
    assert result.manifest["inputs"]["pairs"]["violence"] == load_pairs(I2V_PAIRS).sha256
    for component in ("text_encoder", "image_encoder", "vae"):
        assert _weights(tiny_i2v / component).keys() == _weights(out / component).keys()
    frames = _pipeline(out)(image=_image(), prompt="a red square moving left", output_type="np",
                            generator=torch.Generator().manual_seed(0), **CALL).frames
    assert frames.shape == (1, 5, 32, 32, 3) and torch.isfinite(torch.as_tensor(frames)).all()
    assert verify(out, str(tiny_i2v)).output_format == "diffusers"


def test_each_direction_comes_from_its_own_stream(tiny_i2v, i2v_edited):
    """The image site's activations are the pairs' images only (17 tokens each) and the text
    site's the prompts only; the refusal directions are cPCA of exactly those."""
    from vidunlearn.artifacts import ActivationSet

    _, root = i2v_edited
    acts = ActivationSet.load(root / "w" / "violence" / "activations.safetensors")
    concept = load_pairs(I2V_PAIRS)
    image, text = acts.tokens["transformer/image_kv"], acts.tokens["transformer/cross_attn_kv"]
    assert [len(image[g]) for g in ("unsafe", "safe", "neutral")] == [6, 6, 4]
    assert {t.shape[0] for g in ("unsafe", "safe", "neutral") for t in image[g]} == {17}
    assert len(text["unsafe"]) == 6 and len(text["neutral"]) == len(concept.neutral)
    source = resolve_model(str(tiny_i2v))
    again = record_sites(source, [], ["transformer/image_kv"], images=list(concept.unsafe_images)).tokens
    for ours, theirs in zip(image["unsafe"], again["transformer/image_kv"]):
        torch.testing.assert_close(ours, theirs)
    vectors = api.factorize(acts, method="cpca")
    for site, groups in acts.tokens.items():
        expected = factorize_site(groups["unsafe"], groups["safe"], groups["neutral"], method="cpca").direction
        assert abs(float(vectors.sites[site].direction @ expected)) > 0.999, site


def test_projection_removes_the_image_direction_as_the_edited_layers_see_it(tiny_i2v, tmp_path):
    """--mode project: the edited add_k/add_v see (I - p p^T) of their input, so the unsafe
    images' component along the image direction p is gone (pinv(W) @ W'), the safe images' far less moved."""
    from safetensors import safe_open

    from vidunlearn.model import tensor_infos

    out = tmp_path / "out"
    result = api.apply(str(tiny_i2v), out=out, pairs=[I2V_PAIRS], work_dir=tmp_path / "w",
                       recipe=api.EditRecipe(mode="project", method="cpca", sites=["image"]))
    assert {kv_kind(r["tensor"]) for r in result.manifest["edited"]} == IMAGE_KV
    vectors = api.factorize(tmp_path / "w" / "violence" / "activations.safetensors", method="cpca")
    p = vectors.sites["transformer/image_kv"].direction.double()
    concept = load_pairs(I2V_PAIRS)
    source = resolve_model(str(tiny_i2v))

    def means(images):
        tokens = record_sites(source, [], ["transformer/image_kv"], images=list(images)).tokens["transformer/image_kv"]
        return torch.stack([t.double().mean(0) for t in tokens])

    reference = means(concept.neutral_images).mean(0)
    groups = {"unsafe": means(concept.unsafe_images) - reference, "neutral": means(concept.neutral_images) - reference}
    base, new = tensor_infos(tiny_i2v / "transformer"), tensor_infos(out / "transformer")

    def load(info):
        with safe_open(str(info.file), framework="pt") as f:
            return f.get_tensor(info.key).double()

    for record in result.manifest["edited"]:
        seen = torch.linalg.pinv(load(base[record["tensor"]])) @ load(new[record["tensor"]])
        before = {g: (x @ p).abs().mean() for g, x in groups.items()}
        after = {g: (x @ seen.T @ p).abs().mean() for g, x in groups.items()}
        assert after["unsafe"] <= 0.1 * before["unsafe"], record["tensor"]
        assert before["unsafe"] > before["neutral"], "the direction separates the unsafe images"


@pytest.mark.parametrize("site, kinds", [("text", TEXT_KV), ("image", IMAGE_KV), ("image_kv", IMAGE_KV), ("both", TEXT_KV | IMAGE_KV)])
def test_site_selects_the_stream(tiny_i2v, tmp_path, site, kinds):
    result = api.apply(str(tiny_i2v), out=tmp_path / "o", pairs=[I2V_PAIRS], work_dir=tmp_path / "w",
                       recipe=api.EditRecipe(sites=[site]), output=api.OutputOptions(collateral=False))
    assert {kv_kind(r["tensor"]) for r in result.manifest["edited"]} == kinds


def test_pairs_without_images_edit_the_text_path_and_say_so(tiny_i2v, tmp_path):
    from vidunlearn.progress import SILENT

    notes: list[str] = []

    class Notes(type(SILENT)):
        def note(self, text: str) -> None:
            notes.append(text)

    result = api.apply(str(tiny_i2v), out=tmp_path / "o", pairs=[PAIRS / "violence.yaml"], work_dir=tmp_path / "w",
                       output=api.OutputOptions(collateral=False), reporter=Notes())
    assert {kv_kind(r["tensor"]) for r in result.manifest["edited"]} == TEXT_KV
    assert any("the image path (image_kv) is not edited" in n for n in notes), notes
    with pytest.raises(VidunlearnError, match="needs images"):
        api.apply(str(tiny_i2v), out=tmp_path / "o2", pairs=[PAIRS / "violence.yaml"], work_dir=tmp_path / "w",
                  recipe=api.EditRecipe(sites=["image"]), output=api.OutputOptions(collateral=False))


def test_lora_carries_the_image_path_under_wan_names_and_reproduces_the_edit(tiny_i2v, i2v_edited, tmp_path):
    from safetensors import safe_open

    _, root = i2v_edited
    lora = tmp_path / "lora"
    api.apply(str(tiny_i2v), out=lora, pairs=[I2V_PAIRS], work_dir=root / "w", output=api.OutputOptions(format="lora"))
    with safe_open(str(next(lora.glob("*.safetensors"))), framework="pt") as f:
        keys = set(f.keys())
    for b in range(2):
        for name in ("k_img", "v_img", "k", "v"):
            assert f"diffusion_model.blocks.{b}.cross_attn.{name}.lora_A.weight" in keys, (b, name, sorted(keys)[:6])
    assert verify(lora, str(tiny_i2v)).output_format == "lora"
    pipe = _pipeline(tiny_i2v)
    pipe.load_lora_weights(str(lora))
    pipe.fuse_lora()
    pipe.unload_lora_weights()
    fused = pipe.transformer.state_dict()
    for key, value in _weights(root / "out" / "transformer").items():
        torch.testing.assert_close(fused[key], value, atol=1e-5, rtol=1e-4, msg=key)


def test_single_file_carries_the_image_path_under_wan_names(tiny_i2v, i2v_edited, tmp_path):
    from diffusers import WanTransformer3DModel
    from safetensors import safe_open

    _, root = i2v_edited
    out = tmp_path / "sf"
    api.apply(str(tiny_i2v), out=out, pairs=[I2V_PAIRS], work_dir=root / "w", output=api.OutputOptions(format="single-file"))
    with safe_open(str(out / "transformer.safetensors"), framework="pt") as f:
        keys = set(f.keys())
    assert {"blocks.0.cross_attn.k_img.weight", "blocks.1.cross_attn.v_img.weight", "img_emb.proj.1.weight"} <= keys
    assert verify(out, str(tiny_i2v)).output_format == "single-file"
    loaded = WanTransformer3DModel.from_single_file(str(out / "transformer.safetensors"), config=str(tiny_i2v),
                                                    subfolder="transformer").state_dict()
    for key, value in _weights(root / "out" / "transformer").items():
        assert torch.equal(loaded[key], value), key


def test_projection_removes_a_planted_image_concept_and_spares_the_rest(tiny_i2v, tmp_path):
    """A concept planted in the image path: the tiny CLIP vision encoder's patch embedding gets one
    direction d added, weighted by each pixel's (R - G + B) (after the processor's normalisation),
    so a magenta patch pushes its token along d and a grey one barely. Pairs whose unsafe images
    carry a magenta square (a quarter of the image: with a 20x20 square, 1.5 of 16 patches, the
    found direction separated too little for the bar, the safe twins moving 0.50 and the neutral
    images 0.56 of the unsafe images' change) and whose safe twins and neutral images do not make
    that the concept.
    The paper's projection at the image site (--site image --mode project --method cpca) removes
    the edited add_k/add_v's response to the found direction, and moves the safe and neutral
    images' outputs under half as much as the unsafe ones' (conftest.assert_projection_bites)."""
    import shutil

    from PIL import Image, ImageDraw
    from safetensors.torch import load_file, save_file

    from conftest import assert_projection_bites

    model = shutil.copytree(tiny_i2v, tmp_path / "planted")
    file = model / "image_encoder" / "model.safetensors"
    weights = load_file(file)
    key = next(k for k in weights if k.endswith("patch_embedding.weight"))  # (hidden, 3, p, p)
    patch = weights[key]
    d = torch.nn.functional.normalize(torch.randn(patch.shape[0], generator=torch.Generator().manual_seed(3)), dim=0)
    scale = 3.0 * patch.norm() / patch.shape[0] ** 0.5
    for channel, sign in ((0, 1.0), (1, -1.0), (2, 1.0)):
        patch[:, channel] += sign * scale * d[:, None, None] / patch.shape[-1] ** 2
    save_file(weights, file, metadata={"format": "pt"})

    folder = tmp_path / "pairs"
    (folder / "images").mkdir(parents=True)
    rng = torch.Generator().manual_seed(5)

    def draw(name: str, magenta: bool) -> str:
        grey = int(torch.randint(90, 170, (1,), generator=rng))
        image = Image.new("RGB", (64, 64), (grey, grey, grey))
        pen = ImageDraw.Draw(image)
        x, y = (int(v) for v in torch.randint(2, 12, (2,), generator=rng))
        pen.ellipse((x, y, x + 20, y + 20), fill=(grey - 60,) * 3)  # a shape both twins share
        if magenta:
            pen.rectangle((32, 32, 63, 63), fill=(255, 0, 255))  # a quarter of the image: 4 of its 16 patches
        image.save(folder / "images" / f"{name}.png")
        return f"images/{name}.png"

    concept = load_pairs(I2V_PAIRS)
    lines = ["version: 1", "concept: magenta", "pairs:"]
    for i, (unsafe, safe) in enumerate(zip(concept.unsafe, concept.safe)):
        twin_state = rng.get_state()
        unsafe_image = draw(f"u{i}", True)
        rng.set_state(twin_state)  # the safe twin: the same grey and shape, no magenta
        safe_image = draw(f"s{i}", False)
        lines += [f'  - unsafe: "{unsafe}"', f'    safe: "{safe}"', f"    unsafe_image: {unsafe_image}",
                  f"    safe_image: {safe_image}"]
    lines += ["neutral:"] + [f'  - {{prompt: "a quiet scene number {i}", image: {draw(f"n{i}", False)}}}' for i in range(4)]
    pairs = folder / "magenta.yaml"
    pairs.write_text("\n".join(lines) + "\n")

    out = tmp_path / "out"
    result = api.apply(str(model), out=out, pairs=[pairs], work_dir=tmp_path / "w",
                       recipe=api.EditRecipe(mode="project", method="cpca", sites=["image"]))
    assert {kv_kind(r["tensor"]) for r in result.manifest["edited"]} == IMAGE_KV
    planted = load_pairs(pairs)
    p = api.factorize(tmp_path / "w" / "magenta" / "activations.safetensors",
                      method="cpca").sites["transformer/image_kv"].direction.double()
    source = resolve_model(str(model))

    def means(images):
        tokens = record_sites(source, [], ["transformer/image_kv"], images=list(images)).tokens["transformer/image_kv"]
        return torch.stack([t.double().mean(0) for t in tokens])

    reference = means(planted.safe_images).mean(0)
    groups = {"unsafe": means(planted.unsafe_images) - reference, "safe": means(planted.safe_images) - reference,
              "retain": means(planted.neutral_images) - reference}
    assert_projection_bites(result.manifest["edited"], model / "transformer", out / "transformer", groups, p)
