"""`vidunlearn verify` on hostile manifests (wrong types, deep nesting, huge, paths out of the
folder, a backtracking regex): one line each, never a traceback; and fuzzed with hypothesis."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from verify_tools import copy_output, fails, manifest_of, rehash, rewrite
from verify_tools import verify_cli as run
from vidunlearn.errors import VidunlearnError
from vidunlearn.hashing import sha256_json
from vidunlearn.verify import verify
from vidunlearn.verify_manifest import parse_manifest, read_manifest

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# --------------------------------------------------------------------------- hostile manifests
HOSTILE_MANIFESTS = {
    "a list": ("[]", "not an object"),
    "a number": ("7", "not an object"),
    "null": ("null", "not an object"),
    "100k nested lists": ("[" * 100_000 + "]" * 100_000, "no readable manifest"),
    "nesting inside the recipe": (None, "no readable manifest"),
    "not UTF-8": (b"\xff\xfe{", "no readable manifest"),
    "huge": (b" " * (17 << 20) + b"{}", "more than"),
    "files is a list": ({"files": []}, "field 'files'"),
    "a path out of the folder": ({"files": {"../../etc/passwd": "0" * 64}}, "not a file inside the output folder"),
    "an absolute path": ({"files": {"/etc/passwd": "0" * 64}}, "not a file inside the output folder"),
    "a bad digest": ({"files": {"README.md": 5}}, "not 64 hex digits"),
    "edited is a string": ({"edited": "x"}, "field 'edited'"),
    "strength is text": ({"recipe.strength": "1"}, "strength"),
    "strength is zero": ({"recipe.strength": 0}, "strength"),
    "strength is true": ({"recipe.strength": True}, "strength"),
    "sites is a number": ({"recipe.sites": 5}, "'sites'"),
    "rank is negative": ({"recipe.concepts": [{"rank": -1}]}, "'rank'"),
    "modules not a regex": ({"recipe.modules": "(("}, "not a valid regex"),
    "modules backtracks forever": ({"recipe.modules": "(a+)+$"}, "repeats a group"),
    "unknown mode": ({"recipe.mode": "erase"}, "recipe mode"),
    "schema 2": ({"schema": 2}, "schema"),
    "format is a dict": ({"format": {}}, "format"),
}


def _hostile(manifest: dict, case: str) -> bytes:
    text, _ = HOSTILE_MANIFESTS[case]
    if isinstance(text, (str, bytes)):
        return text.encode() if isinstance(text, str) else text
    if text is None:  # deep nesting inside an otherwise valid manifest
        body = json.dumps(manifest)
        return (body[:-1] + ', "x": ' + "[" * 100_000 + "]" * 100_000 + "}").encode()
    for path, value in text.items():
        target = manifest
        *parents, last = path.split(".")
        for parent in parents:
            target = target[parent]
        target[last] = value
    return json.dumps(manifest).encode()


@pytest.mark.parametrize("case", sorted(HOSTILE_MANIFESTS))
def test_hostile_manifest_gives_one_line(tiny_wan, made, tmp_path, case):
    out = copy_output(made["lora"], tmp_path / "out")
    (out / "vidunlearn.json").write_bytes(_hostile(manifest_of(out), case))
    for args in ((out,), (out, "--base", tiny_wan)):
        fails(run(*args), HOSTILE_MANIFESTS[case][1])


_json = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
                     lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
                     max_leaves=25)
_FIELDS = ["schema", "format", "files", "edited", "recipe", "recipe.sites", "recipe.modules", "recipe.mode",
           "recipe.strength", "recipe.subspace", "recipe.concepts"]


def _only_own_error(check: Callable[[], object]) -> None:
    try:
        check()
    except VidunlearnError as exc:
        assert "\n" not in exc.one_line()


@FUZZ
@given(st.binary(max_size=600))
def test_fuzz_manifest_random_bytes(data):
    with tempfile.TemporaryDirectory() as folder:
        (Path(folder) / "vidunlearn.json").write_bytes(data)
        _only_own_error(lambda: read_manifest(Path(folder)))


@FUZZ
@given(st.dictionaries(st.sampled_from(_FIELDS), _json, min_size=1, max_size=4))
def test_fuzz_manifest_fields(made, replacements):
    manifest = manifest_of(made["lora"])
    for path, value in replacements.items():
        target = manifest
        *parents, last = path.split(".")
        for parent in parents:
            target = target[parent] if isinstance(target.get(parent), dict) else target.setdefault("_", {})
        target[last] = value
    _only_own_error(lambda: parse_manifest(manifest, Path("vidunlearn.json")))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_FIELDS[4:]), _json | st.sampled_from(["transformer/cross_attn_kv", "to_k", "uce", "replace", 2.0]))
def test_fuzz_recipe_against_the_base(tiny_wan, made, field, value):
    """a forged recipe (metadata forged too) on a real LoRA output, checked against the real base"""
    with tempfile.TemporaryDirectory() as folder:
        out = copy_output(made["lora"], Path(folder) / "out")
        manifest = manifest_of(out)
        target = manifest
        *parents, last = field.split(".")
        for parent in parents:
            target = target[parent]
        target[last] = value
        try:
            digest = sha256_json(manifest["recipe"])
        except (TypeError, ValueError):
            digest = "-"
        rewrite(out / "pytorch_lora_weights.safetensors", lambda t: None, {"vidunlearn.recipe": digest})
        rehash(out, lambda m: m.update(recipe=manifest["recipe"]))
        _only_own_error(lambda: verify(out, str(tiny_wan)))
