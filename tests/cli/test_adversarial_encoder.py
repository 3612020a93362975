"""`apply --adversarial STEPS` with ``site: text_encoder`` (AdvUnlearn's site): the text encoder's layers
trained, the remap the closed form's. The output carries its own text encoder, written as new files
(the base's, which the benchmark model hard-links from an installed package, never touched); verify
--base checks every trained tensor against the manifest; a folder that lost its trained encoder
refuses to fall back to the package's unedited one. Whether it holds is measured by
benchmarks/attack.py (docs/adversarial.md), not here."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

from vidunlearn.cli import app

ROOT = Path(__file__).resolve().parents[2]
BENCH_MODEL = ROOT / "models" / "shapes-wan"
RED = ROOT / "pairs" / "bench" / "red.yaml"
runner = CliRunner()
pytestmark = pytest.mark.skipif(not (BENCH_MODEL / "model_index.json").is_file(),
                                reason="the trained benchmark model models/shapes-wan is not in this checkout")
SMALL = "references: 1\nbatch: 1\nkeep_batch: 2\ninner: 2\ndraws: 1\nlr: 0.001\nsite: text_encoder\n"


def run(*args) -> object:
    return runner.invoke(app, [str(a) for a in args])


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def train_small(tmp_path: Path, name: str, lines: str, steps: int) -> tuple[Path, dict]:
    """A few steps of the small training on red with ``lines`` added to its settings: the output folder and its
    recipe's adversarial settings."""
    path = tmp_path / f"{name}.yaml"
    path.write_text(SMALL + lines)
    out = tmp_path / name
    result = run("apply", "--model", BENCH_MODEL, "--pairs", RED, "--work-dir", tmp_path / "w", "--no-collateral",
                 "--adversarial", steps, "--adversarial-settings", path, "--out", out)
    assert result.exit_code == 0, result.output
    return out, json.loads((out / "vidunlearn.json").read_text())["recipe"]["adversarial"]


def test_text_encoder_site_trains_the_encoder_keeps_the_closed_form_remap_and_verify_checks_it(tmp_path, one_thread):
    from vidunlearn.model import materialise_text_encoder

    materialise_text_encoder(BENCH_MODEL)
    base_encoder = BENCH_MODEL / "text_encoder" / "model.safetensors"
    before = digest(base_encoder)
    settings = tmp_path / "adv.yaml"
    settings.write_text(SMALL)
    common = ("--model", BENCH_MODEL, "--pairs", RED, "--work-dir", tmp_path / "w", "--no-collateral")
    assert run("apply", *common, "--out", tmp_path / "plain").exit_code == 0
    result = run("apply", *common, "--adversarial", 2, "--adversarial-settings", settings, "--out", tmp_path / "te")
    assert result.exit_code == 0, result.output
    assert digest(base_encoder) == before                                  # the base's (package's) file untouched
    transformer = "transformer/diffusion_pytorch_model.safetensors"
    edited, plain = load_file(str(tmp_path / "te" / transformer)), load_file(str(tmp_path / "plain" / transformer))
    assert edited.keys() == plain.keys() and all(edited[k].equal(plain[k]) for k in plain)   # the remap: closed form
    manifest = json.loads((tmp_path / "te" / "vidunlearn.json").read_text())
    listed = {r["tensor"]: r["relative_change"] for r in manifest["text_encoder_edit"]}
    assert manifest["recipe"]["adversarial"]["site"] == "text_encoder" and len(listed) > 50
    assert "embeddings.word_embeddings.weight" not in listed and all(v > 0 for v in listed.values())
    new, old = load_file(str(tmp_path / "te" / "text_encoder" / "model.safetensors")), load_file(str(base_encoder))
    assert {k for k in old if not new[k].equal(old[k])} == set(listed)   # exactly the listed tensors changed
    assert "text encoder's layers trained" in (tmp_path / "te" / "README.md").read_text()
    result = run("verify", tmp_path / "te", "--base", BENCH_MODEL)
    assert result.exit_code == 0 and f"ok: {len(listed)} trained text-encoder tensors" in result.output, result.output

    # a manifest that claims the token table was trained: refused as a forged manifest
    forged = {**manifest, "text_encoder_edit": [*manifest["text_encoder_edit"],
                                                {"tensor": "embeddings.word_embeddings.weight", "relative_change": 0.1}]}
    (tmp_path / "te" / "vidunlearn.json").write_text(json.dumps(forged))
    result = run("verify", tmp_path / "te")
    assert result.exit_code == 1 and "is not a trainable tensor" in result.output, result.output

    # a manifest that hides one trained tensor: verify --base finds it changed and unlisted
    name = sorted(listed)[0]
    manifest["text_encoder_edit"] = [r for r in manifest["text_encoder_edit"] if r["tensor"] != name]
    (tmp_path / "te" / "vidunlearn.json").write_text(json.dumps(manifest))
    result = run("verify", tmp_path / "te", "--base", BENCH_MODEL)
    assert result.exit_code == 1 and "differs from the base but is not listed as edited" in result.output, result.output


def test_text_encoder_layers_trains_only_the_first_blocks(tmp_path, one_thread, monkeypatch):
    """Also: the free-space check before writing counts the encoder's file, which is written anew."""
    from vidunlearn import api

    checked = []

    def spy(path, sources, rewritten, copy=False):
        checked.append({Path(f).resolve() for f in rewritten})
        return check(path, sources, rewritten, copy)

    check = api.check_free_space
    monkeypatch.setattr(api, "check_free_space", spy)
    settings = tmp_path / "adv.yaml"
    settings.write_text(SMALL + "text_encoder_layers: 1\n")
    result = run("apply", "--model", BENCH_MODEL, "--pairs", RED, "--work-dir", tmp_path / "w", "--no-collateral",
                 "--adversarial", 1, "--adversarial-settings", settings, "--out", tmp_path / "te")
    assert result.exit_code == 0, result.output
    listed = [r["tensor"] for r in json.loads((tmp_path / "te" / "vidunlearn.json").read_text())["text_encoder_edit"]]
    assert listed and all(n.startswith("encoder.layer.0.") for n in listed), listed
    assert len(checked) == 1 and (BENCH_MODEL / "text_encoder" / "model.safetensors").resolve() in checked[0]


def test_an_output_without_its_trained_encoder_never_falls_back_to_the_base_one(tmp_path, one_thread):
    import shutil

    from vidunlearn.errors import ModelError
    from vidunlearn.model import materialise_text_encoder

    settings = tmp_path / "adv.yaml"
    settings.write_text(SMALL)
    result = run("apply", "--model", BENCH_MODEL, "--pairs", RED, "--work-dir", tmp_path / "w", "--no-collateral",
                 "--adversarial", 1, "--adversarial-settings", settings, "--out", tmp_path / "te")
    assert result.exit_code == 0, result.output
    shutil.rmtree(tmp_path / "te" / "text_encoder")
    with pytest.raises(ModelError, match="trained text encoder is missing"):
        materialise_text_encoder(tmp_path / "te")
    assert not (tmp_path / "te" / "text_encoder").exists()


OUTPUTS: dict[str, str] = {}   # each trained_encoder run's console output, by name


def trained_encoder(tmp_path: Path, name: str, lines: str) -> dict:
    """The text encoder's tensors after ``apply --adversarial 2`` on red with SMALL + ``lines``."""
    settings = tmp_path / f"adv-{name}.yaml"
    settings.write_text(SMALL + lines)
    out = tmp_path / f"te-{name}"
    result = run("apply", "--model", BENCH_MODEL, "--pairs", RED, "--work-dir", tmp_path / "w", "--no-collateral",
                 "--adversarial", 2, "--adversarial-settings", settings, "--out", out)
    assert result.exit_code == 0, result.output
    OUTPUTS[name] = result.output
    return load_file(str(out / "text_encoder" / "model.safetensors"))


def test_anchor_enters_the_training(tmp_path, one_thread):
    """``anchor`` (the keep prompts' encoder states held to the base's) changes what the training does;
    0 is the plain loss. ``anchor_concept`` (the weight of the changed words' tokens in it) does too, and so
    does ``anchor_batch`` (the anchor on keep prompts drawn on their own), and ``keep_attack`` (keep prompts
    attacked towards the concept and held to what they render as typed), and ``keep_references`` (more of the
    base's clips of each keep prompt), and ``erase_context`` (the erase's gradient through the context words), and
    ``keep_context`` (keep prompts built in the unsafe prompts' context), and ``keep_on_policy`` (the keep loss on
    the edited model's own sampling path), and ``unsafe_context`` (unsafe prompts built in the keep prompts' contexts;
    2 by default, so "plain" has it and the case without it sets 0)."""
    trained = {}
    for name, lines in (("plain", "anchor: 0.0\n"), ("held", "anchor: 1000.0\n"),
                        ("held-free", "anchor: 1000.0\nanchor_concept: 0.0\n"),
                        ("held-all", "anchor: 1000.0\nanchor_batch: 64\n"), ("guarded", "anchor: 0.0\nkeep_attack: 2\n"),
                        ("more-keep-clips", "anchor: 0.0\nkeep_references: 2\n"),
                        ("span-only", "anchor: 0.0\nerase_context: 0.0\n"),
                        ("in-context", "anchor: 0.0\nkeep_context: 2\n"),
                        ("own-path", "anchor: 0.0\nkeep_on_policy: 1.0\n"),
                        ("no-unsafe-context", "anchor: 0.0\nunsafe_context: 0\n")):
        trained[name] = trained_encoder(tmp_path, name, lines)
    assert any(not trained["plain"][k].equal(trained["held"][k]) for k in trained["plain"])
    assert any(not trained["held-free"][k].equal(trained["held"][k]) for k in trained["plain"])
    assert any(not trained["held-all"][k].equal(trained["held"][k]) for k in trained["plain"])
    assert any(not trained["guarded"][k].equal(trained["plain"][k]) for k in trained["plain"])
    assert any(not trained["more-keep-clips"][k].equal(trained["plain"][k]) for k in trained["plain"])
    assert any(not trained["span-only"][k].equal(trained["plain"][k]) for k in trained["plain"])
    assert any(not trained["in-context"][k].equal(trained["plain"][k]) for k in trained["plain"])
    # red's five unsafe prompts, up to two other colours each (tests/unit/test_remap.py): nine not kept already
    assert "keep_context 2: 9 keep prompts built" in " ".join(OUTPUTS["in-context"].split())
    assert "keep_context" not in OUTPUTS["plain"]
    assert any(not trained["own-path"][k].equal(trained["plain"][k]) for k in trained["plain"])
    assert any(not trained["no-unsafe-context"][k].equal(trained["plain"][k]) for k in trained["plain"])
    # the default's unsafe_context 2 on red: two keep prompts' contexts for each of the five pairs, red put in
    # (tests/unit/test_remap.py); at 0 none
    assert "unsafe_context 2 (list order): 10 unsafe prompts built in the keep prompts' contexts (15 attacked in all)" in \
        " ".join(OUTPUTS["plain"].split())
    assert "unsafe_context" not in OUTPUTS["no-unsafe-context"]


def test_soup_is_the_mean_of_the_encoders_of_its_trainings(tmp_path, one_thread):
    """``soup: 2`` writes the mean of the encoders trained at seeds 3 and 4, each as ``seed: S`` alone
    writes it (tensors the trainings leave as the base's stay the base's)."""
    trained = {}
    for name, lines in (("seed3", "seed: 3\n"), ("seed4", "seed: 4\n"), ("soup", "seed: 3\nsoup: 2\n")):
        trained[name] = trained_encoder(tmp_path, name, lines)
    moved = [k for k in trained["soup"] if not trained["seed3"][k].equal(trained["seed4"][k])]
    assert moved
    for key in trained["soup"]:
        mean = (trained["seed3"][key].double() + trained["seed4"][key].double()) / 2
        assert torch.allclose(trained["soup"][key].double(), mean, atol=1e-6), key


def test_the_trained_encoders_collateral_is_reported_and_anchor_unrelated_holds_it(tmp_path, one_thread):
    """A trained encoder moves the states of prompts far from the pairs (about 45 % on the 500 everyday
    prompts for the default's 200 steps on the circle): apply measures it beside the edited layers' collateral
    (manifest, console, card), and ``anchor_unrelated`` (100 other everyday prompts held to the base's
    states) makes it smaller. The figure is checked against the two encoders' states computed here."""
    from vidunlearn.collateral import collateral_prompts, encoder_change
    from vidunlearn.model import resolve_model
    from vidunlearn.textpath import encode_prompts, load_text_encoder

    reports = {}
    for name, lines in (("plain", ""), ("held", "anchor_unrelated: 1000.0\n")):
        settings = tmp_path / f"{name}.yaml"
        settings.write_text(SMALL + lines)
        out = tmp_path / name
        result = run("apply", "--model", BENCH_MODEL, "--pairs", RED, "--work-dir", tmp_path / "w",
                     "--adversarial", 3, "--adversarial-settings", settings, "--out", out)
        assert result.exit_code == 0, result.output
        assert "the trained text encoder changes those prompts' states by" in " ".join(result.output.split())
        reports[name] = json.loads((out / "vidunlearn.json").read_text())["collateral"]["text_encoder"]
        assert "The trained text encoder changes these prompts' states by" in (out / "README.md").read_text()
    plain, held = reports["plain"], reports["held"]
    assert plain["prompts"] == 500 and 0 < held["mean"] < plain["mean"] and plain["mean"] <= plain["max"]

    worst = plain["prompt"]   # the figure for its worst prompt, from the two folders' own encoders
    assert worst in collateral_prompts()
    base, edited = resolve_model(str(BENCH_MODEL)), resolve_model(str(tmp_path / "plain"))
    (before,), (after,) = (encode_prompts(*load_text_encoder(s, "cpu", torch.float32), [worst],
                                          base.adapter.max_sequence_length, "cpu") for s in (base, edited))
    assert abs(float((after - before).norm() / before.norm()) - plain["max"]) < 1e-4
    _, encoder = load_text_encoder(base, "cpu", torch.float32)
    same = {k: v.detach().clone() for k, v in encoder.named_parameters() if "layer.0." in k}
    assert encoder_change(base, same, "cpu", "float32")["mean"] == 0.0


def test_anchor_tokens_pool_is_one_random_token_in_the_attacks_span_of_a_keep_prompt_and_holds_those_states(tmp_path, one_thread):
    """``anchor_tokens``' pool: each prompt is a keep prompt's discrete-attack ids (the changed word's place,
    ``span`` tokens wide) with exactly one span token replaced by a typeable token that is never a changed word,
    its states the base encoder's, the other span tokens the ones held (the anchor's weight 1 there, 0 elsewhere); the
    same under a seed; the training takes it and records it. Whether it holds is the benchmark's (the circle's typed attack won with "a yellow triangle flu ...": the
    base renders a triangle, the default's trained encoder a circle; docs/adversarial-tokens.md)."""
    from vidunlearn.adversarial_prompts import TOKEN_POOL, token_pool
    from vidunlearn.adversarial_settings import AdversarialSettings
    from vidunlearn.attack import encode
    from vidunlearn.attack_run import places_span
    from vidunlearn.errors import VidunlearnError
    from vidunlearn.model import resolve_model
    from vidunlearn.textpath import load_text_encoder

    base = resolve_model(str(BENCH_MODEL))
    tokenizer, encoder = load_text_encoder(base, "cpu", torch.float32)
    keep = ["a red triangle moving up on a light background", "a green square moving left on a dark background"]
    settings = AdversarialSettings(site="text_encoder", seed=3)
    pool = token_pool(tokenizer, encoder, [{"places": (2,)}], keep, {"circle", "square"}, settings, 512, "cpu")
    again = token_pool(tokenizer, encoder, [{"places": (2,)}], keep, {"circle", "square"}, settings, 512, "cpu")
    assert len(pool) == TOKEN_POOL and all(torch.equal(a["ids"], b["ids"]) for a, b in zip(pool, again))
    typed = [places_span(tokenizer, text, (2,), settings.span) for text in keep]
    banned = {*tokenizer("circle square", add_special_tokens=False).input_ids}
    for item in pool:
        ids = item["ids"].tolist()
        (origin, span), = [(o, s) for o, s in typed if len(o) == len(ids) and all(a == b for k, (a, b) in enumerate(zip(o, ids))
                                                                                  if k not in s)]
        changed = [k for k in span if ids[k] != origin[k]]
        assert len(changed) <= 1 and not {ids[k] for k in changed} & banned   # <= 1: a draw may repeat the token there
        assert len(item["held"]) == len(span) - 1 and set(changed) <= set(span) - set(item["held"])
        assert item["anchor_weights"].tolist() == [float(k in item["held"]) for k in range(len(ids))]
        assert torch.allclose(item["states"], encode(encoder, item["ids"][None])[0])
    assert sum(not torch.equal(a["ids"], b["ids"]) for a, b in zip(
        pool, token_pool(tokenizer, encoder, [{"places": (2,)}], keep, set(), AdversarialSettings(seed=4), 512, "cpu"))) > 400
    with pytest.raises(VidunlearnError, match="anchor_tokens found no keep prompt"):
        token_pool(tokenizer, encoder, [{"places": (12,)}], keep, set(), settings, 512, "cpu")

    from vidunlearn.adversarial_prompts import training_prompts
    from vidunlearn.encoder_edit import changed_words
    from vidunlearn.pairs import load_pairs
    from vidunlearn.progress import Reporter

    red = load_pairs(RED)   # the training's own pool (seed 0), rebuilt here: the kept colour's states beside a random token
    attacked, keep_texts = training_prompts(tokenizer, [red], AdversarialSettings().resolved(), "cpu", Reporter())
    trained_pool = token_pool(tokenizer, encoder, attacked, keep_texts, changed_words(red.pairs), AdversarialSettings(),
                              base.adapter.max_sequence_length, "cpu")
    moved = {}
    for name, lines in (("plain", "anchor: 30.0\n"), ("held", "anchor: 30.0\nanchor_tokens: 64\n")):
        out, recipe = train_small(tmp_path, name, lines, 4)
        assert recipe["anchor_tokens"] == (64 if name == "held" else 0)
        _, edited = load_text_encoder(resolve_model(str(out)), "cpu", torch.float32)
        with torch.no_grad():
            moved[name] = sum(float((encode(edited, p["ids"][None])[0][p["held"]] - p["states"][p["held"]]).norm()
                                    / p["states"][p["held"]].norm()) for p in trained_pool) / len(trained_pool)
    assert moved["held"] < 0.9 * moved["plain"], moved   # measured 0.66 against 0.98


def test_typed_attack_searches_typeable_tokens_at_the_span_warm_started_and_erases_what_it_finds(tmp_path, one_thread, monkeypatch):
    """``typed_attack`` k: each step k unsafe prompts take one coordinate swap (GCG, ``vidunlearn attack --space
    discrete``'s search) at their span, from where their last visit left them, over typeable tokens that are never
    a changed word; what it finds enters the erase (the trained encoder differs from the same training without
    it); recorded in the recipe. Off (0), the search never runs. Whether it holds is the benchmark's."""
    import vidunlearn.attack as attack

    calls = []
    search = attack.discrete

    def recorded(transformer, encoder, ids, span, latents, allowed, settings, generator, advance):
        found = search(transformer, encoder, ids, span, latents, allowed, settings, generator, advance)
        calls.append((ids.clone(), found.clone(), list(span), allowed.clone(), latents.data_ptr(), settings.candidates))
        return found

    monkeypatch.setattr(attack, "discrete", recorded)
    encoders = {}
    for name, lines in (("plain", ""), ("typed", "typed_attack: 2\ntyped_candidates: 6\n")):
        out, recipe = train_small(tmp_path, name, lines, 5)
        assert (recipe["typed_attack"], recipe["typed_candidates"]) == ((2, 6) if name == "typed" else (0, 32))
        encoders[name] = load_file(next(out.glob("text_encoder/*.safetensors")))
        if name == "plain":
            assert calls == []
    assert len(calls) == 10 and all(c[-1] == 6 for c in calls)
    from vidunlearn.encoder_edit import changed_words
    from vidunlearn.model import resolve_model
    from vidunlearn.pairs import load_pairs
    from vidunlearn.textpath import load_text_encoder

    tokenizer, _ = load_text_encoder(resolve_model(str(BENCH_MODEL)), "cpu", torch.float32)
    words = {w.lower() for w in changed_words(load_pairs(RED).pairs)}
    banned = {*tokenizer(" ".join(words), add_special_tokens=False).input_ids}
    last, moved = {}, 0
    for before, after, span, allowed, item, _ in calls:
        outside = [k for k in range(len(before)) if k not in span]
        assert torch.equal(before[outside], after[outside])
        changed = [int(after[k]) for k in span if after[k] != before[k]]
        assert all(allowed[t] for t in changed) and not set(changed) & banned
        if item in last:   # warm-started: a visit starts where the prompt's last one ended
            assert torch.equal(before, last[item])
        last[item] = after
        moved += bool(changed)
    assert moved >= 1 and len(last) < len(calls)
    assert any(not torch.equal(encoders["plain"][k], encoders["typed"][k]) for k in encoders["plain"])
