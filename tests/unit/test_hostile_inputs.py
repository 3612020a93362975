"""Hostile inputs to the two loaders a user feeds files to (pairs YAML, artifacts), fuzzed with
hypothesis: no input may raise anything but the project's own error type. Plus YAML bombs and
tags, oversized prompts, degenerate covariances, and a source scan for unsafe loading calls."""

from __future__ import annotations

import ast
import json
import re
import tempfile
from pathlib import Path

import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vidunlearn.artifacts import ActivationSet, RefusalVectors, _checksum
from vidunlearn.errors import ArtifactError, FactorizeError, PairsError
from vidunlearn.factorize import factorize_site
from vidunlearn.pairs import load_pairs

ROOT = Path(__file__).resolve().parents[2]
VALID = (ROOT / "pairs" / "violence.yaml").read_bytes()
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _load_bytes(loader, data: bytes, suffix: str):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"input{suffix}"
        path.write_bytes(data)
        return loader(path)


def _only_own_error(loader, error: type, data: bytes, suffix: str) -> None:
    """``loader`` on ``data`` either succeeds or raises ``error`` with a one-line message; any
    other exception fails the test."""
    try:
        _load_bytes(loader, data, suffix)
    except error as exc:
        assert "\n" not in exc.one_line()


def _pairs_only_own_error(data: bytes) -> None:
    _only_own_error(load_pairs, PairsError, data, ".yaml")


# --------------------------------------------------------------------------------- pairs fuzz
@FUZZ
@given(st.binary(max_size=2000))
def test_fuzz_pairs_random_bytes(data):
    _pairs_only_own_error(data)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(VALID) - 1), st.binary(min_size=0, max_size=4)), min_size=1, max_size=6))
def test_fuzz_pairs_mutated_valid_file(edits):
    data = bytearray(VALID)
    for position, replacement in edits:
        data[position:position + 1] = replacement
    _pairs_only_own_error(bytes(data))


_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=30))
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4) |
                       st.dictionaries(st.sampled_from(["unsafe", "safe", "x", "version"]) | st.text(max_size=5), inner, max_size=4),
                       max_leaves=20)


@FUZZ
@given(st.dictionaries(st.sampled_from(["version", "concept", "description", "pairs", "neutral", "probes", "retain"]),
                       _values, max_size=7))
def test_fuzz_pairs_structured_documents(document):
    _pairs_only_own_error(yaml.safe_dump(document).encode())


HOSTILE_YAML = {
    "python tag": ("version: 1\nconcept: x\npairs:\n  - unsafe: !!python/object/apply:os.system ['touch {marker}']\n"
                   "    safe: b\n  - {{unsafe: c, safe: d}}\nneutral: [e, f]\n", "expected a text string"),
    "python name": "version: 1\nconcept: !!python/name:os.system\n",
    "billion laughs": ("version: 1\nconcept: x\nprobes:\n  - &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
                       + "".join(f"  - &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 9)}]\n" for i in range(8))
                       + "pairs: [{unsafe: a, safe: b}, {unsafe: c, safe: d}]\nneutral: [e, f]\n", "expected a text string"),
    "deep nesting": ("version: 1\nconcept: x\nneutral: " + "[" * 20000 + "]" * 20000 + "\n", "nested too deeply"),
    "megabyte prompt": ("version: 1\nconcept: x\nneutral: ['" + "a" * (1 << 20) + "']\n", "limit"),
    "long prompt": ("version: 1\nconcept: x\npairs: [{unsafe: '" + "a " * 3000 + "', safe: b}]\n", "characters long"),
    "many prompts": ("version: 1\nconcept: x\npairs: [{unsafe: a, safe: b}, {unsafe: c, safe: d}]\nneutral: ["
                     + ", ".join(f"p{i}" for i in range(5000)) + "]\n", "limit 1000"),
    "duplicate keys": ("version: 1\nconcept: x\nconcept: y\n", "duplicate key 'concept'"),
    "path in concept": ("version: 1\nconcept: ../../etc\n", "not a slug"),
    "binary": ("\x00\x01\x02\xff", None),
}


@pytest.mark.parametrize("case", sorted(HOSTILE_YAML))
def test_hostile_yaml_gives_pairs_error_and_runs_nothing(case, tmp_path):
    text, message = HOSTILE_YAML[case] if isinstance(HOSTILE_YAML[case], tuple) else (HOSTILE_YAML[case], None)
    marker = tmp_path / "marker"
    path = tmp_path / "p.yaml"
    path.write_text(text.replace("{marker}", str(marker)).replace("{{", "{").replace("}}", "}"), encoding="utf-8")
    with pytest.raises(PairsError) as info:
        load_pairs(path)
    if message:
        assert message in str(info.value)
    assert not marker.exists()


# ----------------------------------------------------------------------------- artifact fuzz
def _valid_refusal(tmp_path_factory_dir: Path) -> bytes:
    from vidunlearn.artifacts import SiteVectors

    h = 6
    direction = torch.nn.functional.normalize(torch.ones(h), dim=0)
    vectors = RefusalVectors(sites={"transformer/cross_attn_kv": SiteVectors(direction, direction * 2, direction[:, None].clone(),
                                                                             torch.ones(1), torch.zeros(h))},
                             meta={"sites": ["transformer/cross_attn_kv"], "concept": "x"})
    path = tmp_path_factory_dir / "refusal.safetensors"
    vectors.save(path)
    return path.read_bytes()


def _valid_activations(folder: Path) -> bytes:
    tokens = {"transformer/cross_attn_kv": {g: [torch.randn(3, 6), torch.randn(2, 6)] for g in ("unsafe", "safe", "neutral")}}
    path = folder / "activations.safetensors"
    ActivationSet(tokens=tokens, meta={"sites": ["transformer/cross_attn_kv"]}).save(path)
    return path.read_bytes()


with tempfile.TemporaryDirectory() as _folder:
    ARTIFACTS = {"refusal": _valid_refusal(Path(_folder)), "activations": _valid_activations(Path(_folder))}
LOADERS = {"refusal": RefusalVectors.load, "activations": ActivationSet.load}


def _artifact_only_own_error(kind: str, data: bytes) -> None:
    _only_own_error(LOADERS[kind], ArtifactError, data, ".safetensors")


def test_valid_artifacts_load():
    for kind, data in ARTIFACTS.items():
        _load_bytes(LOADERS[kind], data, ".safetensors")


@FUZZ
@given(st.sampled_from(sorted(ARTIFACTS)), st.binary(max_size=600))
def test_fuzz_artifact_random_bytes(kind, data):
    _artifact_only_own_error(kind, data)


@FUZZ
@given(st.sampled_from(sorted(ARTIFACTS)),
       st.lists(st.tuples(st.integers(0, 10_000), st.binary(min_size=0, max_size=3)), min_size=1, max_size=5),
       st.integers(0, 10_000))
def test_fuzz_artifact_mutated_valid_file(kind, edits, cut):
    data = bytearray(ARTIFACTS[kind])
    for position, replacement in edits:
        position %= len(data)
        data[position:position + 1] = replacement
    _artifact_only_own_error(kind, bytes(data[: len(data) - cut % 64]))


_json_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=3) |
                            st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=10)
_names = st.sampled_from(["transformer/cross_attn_kv", "a", ""])
_suffixes = st.sampled_from([".unsafe", ".safe", ".neutral", ".unsafe.lengths", ".safe.lengths", ".neutral.lengths",
                             ".direction", ".refusal", ".basis", ".eigenvalues", ".safe_mean", ""])
_dtypes = st.sampled_from([torch.float32, torch.float16, torch.int64, torch.int32, torch.uint8, torch.bool])


@FUZZ
@given(st.sampled_from(sorted(ARTIFACTS)),
       st.lists(st.tuples(_names, _suffixes, _dtypes, st.lists(st.integers(0, 4), max_size=3)), max_size=8),
       st.dictionaries(st.sampled_from(["sites", "cache_key", "concept", "model"]), _json_values, max_size=4),
       st.sampled_from(["sites-right", "sites-random"]), st.booleans())
def test_fuzz_artifact_well_formed_files_with_hostile_content(kind, specs, meta, sites_mode, right_checksum):
    """Valid safetensors, right kind and schema (and checksum), arbitrary tensors and metadata:
    this reaches the loaders' own validation."""
    from safetensors.torch import save

    tensors = {}
    for name, suffix, dtype, shape in specs:
        tensors[name + suffix] = (torch.rand(shape) * 4 - 1).to(dtype)
    if sites_mode == "sites-right":
        meta = {**meta, "sites": sorted({name for name, *_ in specs})}
    header = {"vidunlearn.schema": "1", "vidunlearn.kind": kind, "vidunlearn.json": json.dumps(meta),
              "vidunlearn.sha256": _checksum(tensors) if right_checksum else "0"}
    _artifact_only_own_error(kind, save(tensors, metadata=header))


# ------------------------------------------------------------------------ degenerate inputs
def test_degenerate_covariance_all_differences_zero():
    same = [torch.randn(4, 8) for _ in range(3)]
    with pytest.raises(FactorizeError, match="identical"):
        factorize_site(same, [t.clone() for t in same], [torch.randn(5, 8)], site="s")


def test_degenerate_covariance_all_pairs_identical_rank_one():
    """Every pair the same: the differences have rank 1, so rank 2 is refused, rank 1 works."""
    unsafe, safe = torch.randn(1, 8), torch.randn(1, 8)
    with pytest.raises(FactorizeError, match="exceeds the rank of the data"):
        factorize_site([unsafe] * 4, [safe] * 4, [torch.randn(5, 8)], rank=2, level="pair", site="s")
    assert factorize_site([unsafe] * 4, [safe] * 4, [torch.randn(5, 8)], rank=1, level="pair", site="s").data_rank == 1


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_activations_are_refused(value):
    unsafe = [torch.randn(4, 8) for _ in range(3)]
    unsafe[1][2, 3] = value
    with pytest.raises(FactorizeError, match="NaN or Inf"):
        factorize_site(unsafe, [torch.randn(4, 8) for _ in range(3)], [torch.randn(5, 8)], site="s")


# --------------------------------------------------------------------------- source scan
UNSAFE_CALLS = {
    "trust_remote_code enabled": r"trust_remote_code\s*=\s*(True|1)",
    "pickle": r"^\s*(import pickle|from pickle|import dill|import joblib)",
    "unsafe YAML": r"yaml\.(load|unsafe_load|full_load|load_all)\s*\(|Loader\s*=\s*yaml\.(Loader|FullLoader|UnsafeLoader)",
    "eval/exec": r"(?<![\w.])(eval|exec)\s*\(",
    "weights_only disabled": r"weights_only\s*=\s*False",
}


def test_source_never_unpickles_runs_remote_code_or_loads_yaml_unsafely():
    sources = {p: p.read_text() for p in (ROOT / "vidunlearn").rglob("*.py")}
    for what, pattern in UNSAFE_CALLS.items():
        hits = [f"{p.name}:{text[:m.start()].count(chr(10)) + 1}" for p, text in sources.items()
                for m in re.finditer(pattern, text, flags=re.MULTILINE)]
        assert hits == [], what
    # torch.load only where a format is a torch.save file (convert.py: .bin pipelines; motion/momask.py and
    # motion/train.py: MoMask's checkpoints, issue 22), and only with PyTorch's restricted unpickler (weights_only=True)
    loads = [(p.name, node) for p, text in sources.items() for node in ast.walk(ast.parse(text))
             if isinstance(node, ast.Call) and ast.unparse(node.func) in ("torch.load", "load")
             and (ast.unparse(node.func) == "torch.load" or "from torch import load" in text)]
    assert loads and {name for name, _ in loads} == {"convert.py", "momask.py", "train.py"}
    for name, node in loads:
        assert {k.arg: ast.unparse(k.value) for k in node.keywords}.get("weights_only") == "True", ast.unparse(node)
    assert not re.search(r"\bload\s*=\s*torch\.load|getattr\(torch,\s*['\"]load", "".join(sources.values()))
    # every weight-loading from_pretrained call asks for safetensors only (tokenizers and image
    # processors load no weights: a JSON config and vocabulary files)
    calls = [(p.name, node) for p, text in sources.items() for node in ast.walk(ast.parse(text))
             if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "from_pretrained"]
    weights = [(name, node) for name, node in calls
               if ast.unparse(node.func.value) not in ("transformers.AutoTokenizer", "AutoTokenizer", "processor_cls")]
    assert len(weights) >= 2
    for name, node in weights:
        keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
        assert keywords.get("use_safetensors") == "True" and "trust_remote_code" not in keywords, (name, ast.unparse(node))


# ------------------------------------------------------------------ model header / index fuzz
SHARD = next(iter(sorted((ROOT / "models" / "tiny-wan" / "transformer").glob("*.safetensors")))).read_bytes()


def _header_only_own_error(data: bytes) -> None:
    from vidunlearn.errors import ModelError
    from vidunlearn.model import read_header

    _only_own_error(read_header, ModelError, data, ".safetensors")


@FUZZ
@given(st.binary(max_size=400))
def test_fuzz_model_header_random_bytes(data):
    _header_only_own_error(data)


@FUZZ
@given(st.lists(st.tuples(st.integers(0, 2000), st.binary(min_size=0, max_size=3)), min_size=1, max_size=5), st.integers(0, 64))
def test_fuzz_model_header_mutated_real_shard(edits, cut):
    data = bytearray(SHARD)
    for position, replacement in edits:  # mostly inside the header, where the parser works
        data[position:position + 1] = replacement
    _header_only_own_error(bytes(data[: len(data) - cut]))


@FUZZ
@given(_json_values)
def test_fuzz_index_json(value):
    from vidunlearn.errors import ModelError
    from vidunlearn.model import weight_map

    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "diffusion_pytorch_model.safetensors.index.json").write_text(json.dumps({"weight_map": value}))
        try:
            weight_map(Path(folder))
        except ModelError as exc:
            assert "\n" not in exc.one_line()
