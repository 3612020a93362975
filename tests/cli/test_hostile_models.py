"""Hostile model folders through the real CLI: unknown or integer dtypes on weights, holes and
overlaps in a shard's byte ranges, configs with strings, floats or absurd sizes where integers
go, a tokenizer folder without its files, and FIFOs or links to /dev/zero where a JSON file goes.

Each must give one `error:` line naming the file and what is wrong, for every command that reads
it (`apply --dry-run`, `apply`, `extract`, `sample`), and leave no output. Before the fixes some
of these hung forever (a FIFO, ``num_layers: 1e9``) or exhausted memory (``vocab_size: 1e12``),
so every command runs in ONE child process (one import of torch for all of them) under a memory
limit (RLIMIT_AS) and a per-command alarm, and the child itself under a timeout: a regression
fails its test instead of hanging or swapping the suite.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from conftest import PAIRS, ROOT
from vidunlearn.model import tensor_infos

SECONDS = 60  # per command; a hostile model is refused in well under a second
CHILD_TIMEOUT = 900  # the whole child (every command), should every command time out
HEADROOM = 4 << 30  # address space the child may map on top of what its imports took
COMMANDS = ("dry-run", "apply", "apply --refusal", "extract", "sample")  # each reads the transformer
TEXT_COMMANDS = ("apply", "extract", "sample")  # each loads the text encoder and tokenizer (apply: --pairs)
TO_K = "blocks.0.attn2.to_k.weight"
INDEX = "transformer/diffusion_pytorch_model.safetensors.index.json"

CHILD = r"""
import json, resource, signal, sys
from typer.testing import CliRunner
from vidunlearn.cli import app
import torch, diffusers, transformers  # imported before the limit: they are not what is measured

plan, seconds, headroom = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
with open("/proc/self/statm") as f:
    mapped = int(f.read().split()[0]) * resource.getpagesize()
resource.setrlimit(resource.RLIMIT_AS, (mapped + headroom, resource.getrlimit(resource.RLIMIT_AS)[1]))

class Alarm(BaseException):  # not an OSError (TimeoutError is one): the CLI must not turn it into a line
    pass

def alarm(*_):
    raise Alarm(f"still running after {seconds} s")

signal.signal(signal.SIGALRM, alarm)
for label, argv in plan.items():
    signal.alarm(seconds)
    try:
        result = CliRunner().invoke(app, argv)
        outcome = [result.exit_code, result.output,
                   None if result.exception is None or isinstance(result.exception, SystemExit) else repr(result.exception)[:300]]
    except BaseException as exc:  # the alarm, or memory, outside the runner's own catch
        outcome = [None, "", repr(exc)[:300]]
    finally:
        signal.alarm(0)
    print(json.dumps({label: outcome}), flush=True)
"""


# ------------------------------------------------------------------ how each model is damaged
def _edit_header(file: Path, change: Callable[[dict], None]) -> None:
    """Rewrite the JSON header of a safetensors file in place (the data section unchanged)."""
    data = file.read_bytes()
    length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8:8 + length])
    change(header)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    file.write_bytes(len(raw).to_bytes(8, "little") + raw + data[8 + length:])


def _label_dtype(model: Path, dtype: str) -> None:
    _edit_header(tensor_infos(model / "transformer")[TO_K].file, lambda h: h[TO_K].update(dtype=dtype))


def _text_encoder_ranges(model: Path, overlap: bool) -> None:
    """A hole: one tensor's entry dropped from the header (its bytes belong to no tensor). An
    overlap: a tensor pointed at the bytes of an earlier tensor of the same size."""
    def change(header: dict) -> None:
        entries = sorted((v["data_offsets"], k) for k, v in header.items() if k != "__metadata__")
        if not overlap:
            del header[entries[len(entries) // 2][1]]
            return
        sizes: dict[int, str] = {}
        for (begin, end), key in entries:
            if end - begin in sizes:
                header[key]["data_offsets"] = header[sizes[end - begin]]["data_offsets"]
                return
            sizes[end - begin] = key
        raise AssertionError("no two tensors of the same size")

    _edit_header(model / "text_encoder" / "model.safetensors", change)


def _set(rel: str, **fields: object) -> Callable[[Path], None]:
    def change(model: Path) -> None:
        path = model / rel
        path.write_text(json.dumps({**json.loads(path.read_text()), **fields}))
    return change


def _num_layers_float(model: Path) -> None:
    path = model / "transformer" / "config.json"
    config = json.loads(path.read_text())
    config["num_layers"] = "NUM"
    path.write_text(json.dumps(config).replace('"NUM"', "1e9"))  # a JSON float, as a hostile file writes it


def _replace(rel: str, kind: str) -> Callable[[Path], None]:
    def change(model: Path) -> None:
        (model / rel).unlink()
        if kind == "fifo":
            os.mkfifo(model / rel)
        else:
            (model / rel).symlink_to("/dev/zero")
    return change


def _empty_tokenizer(model: Path) -> None:
    for file in (model / "tokenizer").iterdir():
        file.unlink()


# case -> (damage, commands that read it, what the one line must say)
CASES: dict[str, tuple[Callable[[Path], None], tuple[str, ...], tuple[str, ...]]] = {
    "unknown dtype F7": (lambda m: _label_dtype(m, "F7"), COMMANDS, ("unknown dtype 'F7'", ".safetensors")),
    "I32 label on an edited weight": (lambda m: _label_dtype(m, "I32"), COMMANDS, (TO_K, "stored as I32")),
    "hole in the text encoder": (lambda m: _text_encoder_ranges(m, overlap=False), TEXT_COMMANDS,
                                 ("text_encoder/model.safetensors", "a hole")),
    "overlap in the text encoder": (lambda m: _text_encoder_ranges(m, overlap=True), TEXT_COMMANDS,
                                    ("text_encoder/model.safetensors", "an overlap")),
    "num_layers is a string": (_set("transformer/config.json", num_layers="2"), COMMANDS,
                               ("transformer/config.json", "num_layers is '2' (str), not an integer")),
    "num_layers 1e9 (a float)": (_num_layers_float, COMMANDS,
                                 ("transformer/config.json", "num_layers is 1e+09, more than")),
    "num_layers 10**9": (_set("transformer/config.json", num_layers=10**9), COMMANDS,
                         ("transformer/config.json", "num_layers is 1e+09, more than")),
    "num_layers 100,000 (under the number bound)": (_set("transformer/config.json", num_layers=100_000), COMMANDS,
                                                    ("transformer/config.json", "the weights hold 2 blocks")),
    # under the number bound too, and nothing the tool itself reads: caught by the counted meta
    # build (apply --refusal builds nothing from the config and copies it as it is)
    "ffn_dim 100,000": (_set("transformer/config.json", ffn_dim=100_000), ("dry-run", "apply", "extract", "sample"),
                        ("transformer/config.json", "larger model than its weights hold")),
    "huge attention_head_dim": (_set("transformer/config.json", attention_head_dim=10**9), COMMANDS,
                                ("transformer/config.json", "attention_head_dim is 1e+09")),
    "text encoder vocab_size 1e12, hidden_size 1e9": (
        _set("text_encoder/config.json", vocab_size=10**12, hidden_size=10**9), TEXT_COMMANDS,
        ("text_encoder/config.json", "vocab_size is 1e+12")),
    "text encoder d_model 100,000": (_set("text_encoder/config.json", d_model=100_000), TEXT_COMMANDS,
                                     ("text_encoder/config.json", "larger model than its weights hold")),
    "vae base_dim 10**6": (_set("vae/config.json", base_dim=10**6), ("sample",),
                           ("vae/config.json", "larger model than its weights hold")),
    "scheduler num_train_timesteps 10**12": (
        _set("scheduler/scheduler_config.json", num_train_timesteps=10**12), ("sample",),
        ("scheduler_config.json", "num_train_timesteps is 1e+12")),
    "tokenizer folder without its files": (_empty_tokenizer, TEXT_COMMANDS, ("tokenizer", "none of its files")),
    **{f"{kind} as {rel}": (_replace(rel, kind), COMMANDS, (Path(rel).name, needle))
       for rel in ("transformer/config.json", INDEX, "model_index.json")
       for kind, needle in (("fifo", "is a FIFO, not a regular file"), ("zero", "is a character device"))},
}


def _argv(command: str, model: Path, out: Path, work: Path, refusal: Path) -> list[str]:
    pairs = str(PAIRS / "violence.yaml")
    return {"dry-run": ["apply", "--model", str(model), "--pairs", pairs, "--out", str(out), "--dry-run"],
            "apply": ["apply", "--model", str(model), "--pairs", pairs, "--work-dir", str(work), "--out", str(out)],
            "apply --refusal": ["apply", "--model", str(model), "--refusal", str(refusal), "--out", str(out)],
            "extract": ["extract", "--model", str(model), "--pairs", pairs, "--out", str(work / "a.safetensors")],
            "sample": ["sample", "--model", str(model), "--prompt", "a cat", "--out", str(out), "--steps", "1",
                       "--frames", "1", "--height", "16", "--width", "16"]}[command]


def _refusal_for(model: Path, refusal: Path, target: Path) -> Path:
    """``refusal`` relabelled with ``model``'s fingerprint, as an attacker who ships the hostile
    model with its own refusal file would label it, so that ``apply --refusal`` gets past the
    same-model check to the hostile config (the fingerprint hashes config.json). The
    fingerprint is computed without the size checks; where even that fails, or a file is not a
    regular file (this process must never open a FIFO), ``refusal`` as is."""
    from unittest import mock

    from vidunlearn.artifacts import RefusalVectors
    from vidunlearn.errors import VidunlearnError
    from vidunlearn.model import resolve_model

    if any(not path.is_file() and not path.is_dir() for path in model.rglob("*")):
        return refusal
    try:
        with mock.patch("vidunlearn.model.check_sizes", lambda *args: None, create=True):
            fingerprint = resolve_model(str(model)).fingerprint
    except VidunlearnError:
        return refusal
    vectors = RefusalVectors.load(refusal)
    vectors.meta["model"] = {**vectors.meta["model"], "fingerprint": fingerprint}
    vectors.save(target)
    return target


@pytest.fixture(scope="module")
def outcomes(tiny_wan, tiny_refusal, tmp_path_factory) -> dict[str, tuple[list, Path]]:
    """Every (case, command) run once, in one child process: label -> ([exit code, output,
    exception], the folder its outputs would be in)."""
    import shutil

    root = tmp_path_factory.mktemp("hostile")
    plan: dict[str, list[str]] = {}
    folders: dict[str, Path] = {}
    for i, (case, (damage, commands, _)) in enumerate(CASES.items()):
        model = Path(shutil.copytree(tiny_wan, root / f"model{i}"))
        damage(model)
        for command in commands:
            label = f"{case} / {command}"
            folders[label] = root / f"{i}-{command.replace(' --', '-')}"
            folders[label].mkdir()
            refusal = _refusal_for(model, tiny_refusal, root / f"refusal{i}.safetensors") \
                if command == "apply --refusal" else tiny_refusal
            plan[label] = _argv(command, model, folders[label] / "out", folders[label] / "work", refusal)
    env = {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"}
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(plan), str(SECONDS), str(HEADROOM)], cwd=root,
                              env=env, capture_output=True, text=True, timeout=CHILD_TIMEOUT)
        stdout = done.stdout
    except subprocess.TimeoutExpired as exc:
        stdout = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
    results: dict[str, list] = {}
    for line in stdout.splitlines():
        if line.startswith("{"):
            results.update(json.loads(line))
    return {label: (results[label], folders[label]) for label in results}


@pytest.mark.parametrize("case, command", [(c, command) for c, (_, commands, _) in CASES.items() for command in commands])
def test_hostile_model_gives_one_line(outcomes, case, command):
    label = f"{case} / {command}"
    assert label in outcomes, f"{label}: no result (the child process hung or died)"
    (exit_code, output, exception), folder = outcomes[label]
    assert exception is None, f"{label}: {exception}\n{output}"
    assert exit_code == 1, f"{label}: exit {exit_code}\n{output}"
    assert output.count("error:") == 1 and "Traceback" not in output, output
    for needle in CASES[case][2]:
        assert needle in output, f"{label}: {needle!r} not in\n{output}"
    assert [p.name for p in folder.rglob("*")] == [], "an output was left behind"


def test_every_json_read_of_a_model_goes_through_read_json():
    """Source scan: the modules that read model folders parse JSON only in model.read_json (and
    a safetensors header, already bounded, in header.read_header)."""
    allowed = {"header = json.loads(handle.read(length))", "return json.loads(data)"}
    for name in ("model", "header", "textpath", "sampling", "checkpoint", "singlefile", "bounds", "modelfiles"):
        lines = (ROOT / "vidunlearn" / f"{name}.py").read_text().splitlines()
        reads = [line.strip() for line in lines if "json.load" in line or "read_text(" in line]
        assert [line for line in reads if line not in allowed] == [], f"vidunlearn/{name}.py reads JSON itself"


READER = r"""
import json, sys
from pathlib import Path
from vidunlearn.errors import ModelError
from vidunlearn.model import read_json

root = Path(sys.argv[1])
for name in sys.argv[2:]:
    try:
        print(json.dumps({name: f"read {read_json(root / name, root)}"}), flush=True)
    except ModelError as exc:
        print(json.dumps({name: exc.one_line()}), flush=True)
"""


def test_read_json_reads_only_regular_files_of_bounded_size_inside_the_folder(tmp_path):
    """The one helper every JSON read of a model folder goes through, on its own (the folder
    check in resolve_model refuses most of these first). In a child under a timeout: a FIFO
    that the helper opened would block it forever."""
    from vidunlearn.model import MAX_JSON_BYTES

    os.mkfifo(tmp_path / "fifo.json")
    (tmp_path / "zero.json").symlink_to("/dev/zero")
    (tmp_path / "folder.json").mkdir()
    with open(tmp_path / "big.json", "wb") as handle:  # sparse: no disk used
        handle.truncate(MAX_JSON_BYTES + 1)
    (tmp_path / "ok.json").write_text('{"a": 1}')
    expected = {"fifo.json": "is a FIFO, not a regular file", "zero.json": "links to a file outside the model folder",
                "folder.json": "is a folder, not a regular file", "big.json": "larger than 16 MiB",
                "ok.json": "read {'a': 1}"}
    done = subprocess.run([sys.executable, "-c", READER, str(tmp_path), *expected], capture_output=True, text=True,
                          timeout=120, env={**os.environ, "PYTHONPATH": str(ROOT)})
    results = {k: v for line in done.stdout.splitlines() for k, v in json.loads(line).items()}
    for name, needle in expected.items():
        assert needle in results.get(name, f"no result: {done.stderr[-500:]}"), (name, results.get(name))
