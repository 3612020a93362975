"""Shared fixtures: tiny Wan pipelines built offline from config dicts (random weights)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAIRS = ROOT / "pairs"

os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(autouse=True, scope="session")
def library_loggers():
    """transformers and diffusers bind their log handler to whatever sys.stderr is when they are
    first imported; imported first inside a CliRunner invocation, that handler writes to a stream the
    runner closes, and every later warning is a "Logging error" in the next command's output. Import
    them once here, outside any runner, whatever test comes first."""
    import diffusers  # noqa: F401
    import transformers  # noqa: F401

    transformers.utils.logging.get_verbosity()
    diffusers.utils.logging.get_verbosity()


# The tiny test models' vocabulary: every word of these pairs files. A fixed list, not a glob: the
# vocabulary sets the models' random draw, and the statistical tests (a planted concept removed,
# the remap's fit) are measured on that draw; a new pairs file must not silently redraw them.
VOCABULARY_PAIRS = ("copyrighted-character.yaml", "nudity.yaml", "trademark.yaml", "violence.yaml")


def _all_texts() -> list[str]:
    from vidunlearn.pairs import load_pairs

    texts: list[str] = []
    for path in (PAIRS / name for name in VOCABULARY_PAIRS):
        c = load_pairs(path)
        texts += list(c.unsafe + c.safe + c.neutral + c.probes + c.retain)
    return texts


@pytest.fixture
def one_thread():
    """One torch thread (10x faster than two on a busy 2-core machine), restored afterwards."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_wan(tmp_path_factory) -> Path:
    """Wan2.1 layout, float32 transformer sharded like the Hub's 1.3B repo."""
    from vidunlearn.tiny import build_tiny_wan

    return build_tiny_wan(tmp_path_factory.mktemp("models") / "tiny-wan", texts=_all_texts())


@pytest.fixture(scope="session")
def tiny_wan22(tmp_path_factory) -> Path:
    """Wan2.2 A14B layout: two experts, transformer and transformer_2."""
    from vidunlearn.tiny import build_tiny_wan

    return build_tiny_wan(tmp_path_factory.mktemp("models") / "tiny-wan22", texts=_all_texts(), experts=2)


def pytest_collection_modifyitems(config, items):
    if os.environ.get("VIDUNLEARN_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: set VIDUNLEARN_SLOW=1")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def tiny_wan_planted(tmp_path_factory) -> Path:
    """A tiny Wan whose text encoder represents violence as a direction: the input embedding
    of every word that occurs in violence.yaml's unsafe prompts but in none of its safe ones
    gets one shared vector added. A random model has no concepts; this gives it exactly one,
    so a test can check that the tool finds it and removes it and only it."""
    from vidunlearn.tiny import build_tiny_wan

    path = build_tiny_wan(tmp_path_factory.mktemp("models") / "tiny-wan-planted", texts=_all_texts())
    plant_concept(path)
    return path


def plant_concept(path: Path, tokenizer_dir: str = "tokenizer", encoder_dir: str = "text_encoder") -> None:
    """Give a pipeline's text encoder one concept direction: the input embedding of every token
    that is in violence.yaml's unsafe prompts and in none of its safe or retain ones gets one
    shared vector added (T5/UMT5 ``shared``, CLIP ``token_embedding``, Llama ``embed_tokens``).
    Which tokens those are depends on the tiny vocabulary (every pairs file's words): a token the
    retain prompts share would plant the concept in them too."""
    import torch
    from safetensors.torch import load_file, save_file
    from transformers import AutoTokenizer

    from vidunlearn.pairs import load_pairs

    concept = load_pairs(PAIRS / "violence.yaml")
    tokenizer = AutoTokenizer.from_pretrained(path / tokenizer_dir)
    ids = lambda texts: {i for t in texts for i in tokenizer(t).input_ids}
    # tokens of the unsafe prompts only: not in the safe twins, nor in the retain prompts the edit must spare
    concept_ids = sorted(ids(concept.unsafe) - ids(concept.safe) - ids(concept.retain))
    file = path / encoder_dir / "model.safetensors"
    weights = load_file(file)
    key = next(k for k in weights if k.endswith(("shared.weight", "token_embedding.weight", "embed_tokens.weight")))
    table = weights[key]
    direction = torch.nn.functional.normalize(torch.randn(table.shape[1], generator=torch.Generator().manual_seed(7)), dim=0)
    table[concept_ids] += 3.0 * table.norm(dim=1).mean() * direction
    save_file(weights, file, metadata={"format": "pt"})


def assert_projection_bites(edited: list[dict], base: Path, out: Path, groups: dict, p) -> None:
    """At every edited weight (manifest ``edited`` records; ``base``/``out``: the denoiser
    folders), measured on the layer's outputs, so for any shape (a layer with fewer outputs than
    inputs has no inverse to read its input back through): the edited layer no longer responds
    to the concept direction p (||W' p|| <= 0.1 ||W p||), and the output change (W' - W) x over
    the safe and retain groups' centred activations ``groups`` is under half the unsafe group's."""
    import torch
    from safetensors import safe_open

    from vidunlearn.model import tensor_infos

    from vidunlearn.model import TensorInfo, read_header

    def infos(path: Path) -> dict:  # a denoiser folder, or a single file (Open-Sora's layout)
        if path.is_dir():
            return tensor_infos(path)
        return {k: TensorInfo(path, k, v["dtype"], tuple(v["shape"]), *v["data_offsets"])
                for k, v in read_header(path)[0].items() if k != "__metadata__"}

    base_infos, edited_infos = infos(base), infos(out)

    def load(info):
        with safe_open(str(info.file), framework="pt") as f:
            return f.get_tensor(info.key).double()

    for record in edited:
        w, w_edit = load(base_infos[record["tensor"]]), load(edited_infos[record["tensor"]])
        assert float(torch.linalg.vector_norm(w_edit @ p)) <= 0.1 * float(torch.linalg.vector_norm(w @ p)), record["tensor"]
        moved = {g: float((x @ (w_edit - w).T).norm(dim=1).mean()) for g, x in groups.items()}
        assert moved["safe"] < 0.5 * moved["unsafe"] and moved["retain"] < 0.5 * moved["unsafe"], (record["tensor"], moved)


def leftovers(folder: Path) -> list[str]:
    """Temporary siblings (``.NAME.tmp-PID-X``) and ``.partial`` files anywhere below ``folder``."""
    return sorted(p.name for p in folder.rglob("*") if ".tmp-" in p.name or p.name.endswith(".partial"))


def checkpoint_problems(folder: Path) -> list[str]:
    """What is wrong with an output folder: every file listed in its vidunlearn.json with a
    matching SHA-256, and no file that is not listed. Empty list: complete and verifiable."""
    import json

    from vidunlearn.hashing import sha256_file

    manifest_path = folder / "vidunlearn.json"
    if not manifest_path.is_file():
        return ["no vidunlearn.json"]
    listed = json.loads(manifest_path.read_text())["files"]
    present = {p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()} - {"vidunlearn.json"}
    problems = [f"unlisted {rel}" for rel in sorted(present - set(listed))]
    problems += [f"missing {rel}" for rel in sorted(set(listed) - present)]
    problems += [f"hash of {rel}" for rel in sorted(set(listed) & present) if sha256_file(folder / rel) != listed[rel]]
    return problems


@pytest.fixture(scope="session")
def tiny_refusal(tiny_wan, tmp_path_factory) -> Path:
    """refusal.safetensors of violence.yaml on tiny_wan (computed in-process, once)."""
    from vidunlearn import api

    work = tmp_path_factory.mktemp("refusal")
    acts = api.extract(tiny_wan, PAIRS / "violence.yaml", out=work / "activations.safetensors")
    api.factorize(acts.activations, out=work / "refusal.safetensors")
    return work / "refusal.safetensors"


def run(*args):
    """The real CLI in-process (typer's CliRunner), every argument as a string."""
    from typer.testing import CliRunner

    from vidunlearn.cli import app

    return CliRunner().invoke(app, [str(a) for a in args])


def one_error(result, *needles: str) -> None:
    """The command failed with exactly one ``error:`` line (no traceback) containing ``needles``."""
    assert result.exit_code == 1, result.output
    assert result.output.count("error:") == 1 and "Traceback" not in result.output, result.output
    for needle in needles:
        assert needle in result.output, result.output


@pytest.fixture(scope="session")
def made(tiny_wan, tmp_path_factory) -> dict[str, Path]:
    """Real apply outputs of violence.yaml on tiny_wan that the verify tests tamper with (copies)."""
    from verify_tools import apply_violence

    root = tmp_path_factory.mktemp("verify-hostile")
    return {"diffusers": apply_violence(tiny_wan, root / "folder"), "lora": apply_violence(tiny_wan, root / "lora", output_format="lora"),
            "single-file": apply_violence(tiny_wan, root / "single", output_format="single-file"),
            "replace": apply_violence(tiny_wan, root / "replace", mode="replace", method="cpca"),
            "remap": apply_violence(tiny_wan, root / "remap", mode="remap"),
            "remap-lora": apply_violence(tiny_wan, root / "remap-lora", mode="remap", output_format="lora"),
            "remap-single-file": apply_violence(tiny_wan, root / "remap-single", mode="remap", output_format="single-file"),
            "lora-bf16": apply_violence(tiny_wan, root / "lora-bf16", output_format="lora", save_dtype="bfloat16"),
            "single-file-fp16": apply_violence(tiny_wan, root / "single-fp16", output_format="single-file",
                                       save_dtype="float16")}


# ---------------------------------------------------------------- Wan2.1 I2V (tests/models/test_wan_i2v*.py)
I2V_PAIRS = PAIRS / "violence-i2v.yaml"
TEXT_KV = {"to_k", "to_v"}            # the text path's layers in each block's attn2
IMAGE_KV = {"add_k_proj", "add_v_proj"}  # the image path's


def kv_kind(key: str) -> str:
    return key.split(".")[3]  # blocks.N.attn2.<kind>.weight


@pytest.fixture(scope="session")
def tiny_i2v(tmp_path_factory):
    from vidunlearn.tiny_families import build

    return build("wan-i2v", tmp_path_factory.mktemp("i2v") / "wan-i2v", texts=_all_texts())


@pytest.fixture(scope="session")
def i2v_edited(tiny_i2v, tmp_path_factory):
    """The default apply (remap, text and image sites) of pairs/violence-i2v.yaml, and its work folder."""
    from vidunlearn import api

    root = tmp_path_factory.mktemp("i2v-edit")
    result = api.apply(str(tiny_i2v), out=root / "out", pairs=[I2V_PAIRS], work_dir=root / "w")
    return result, root
