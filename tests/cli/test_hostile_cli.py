"""A hostile tester's findings through the real CLI (issue 20): outputs that overlap any input,
outputs replaced without --force, two runs racing for one output, Rich markup in user text,
formats that differ from run to run, a poisoned activation cache, and bad numbers, patterns,
devices, repo ids and paths that gave tracebacks. Each must give one `error:` line before any
work and leave every input as it was."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from conftest import PAIRS, ROOT, checkpoint_problems, leftovers, one_error, run



def tree(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# ------------------------------------------------------------- outputs apart from every input
@pytest.mark.parametrize("case", ["out holds the pairs file", "out is the pairs file", "out holds the refusal file",
                                  "out is the work dir", "out holds the work dir", "out is a cache folder",
                                  "out holds the eval json"])
def test_force_never_replaces_an_input(case, tiny_wan, tiny_refusal, tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    pairs = Path(shutil.copy(PAIRS / "violence.yaml", inputs / "violence.yaml"))
    refusal = Path(shutil.copy(tiny_refusal, inputs / "refusal.safetensors"))
    rows = inputs / "eval.json"
    rows.write_text(json.dumps([{"metric": "forget rate", "base": 0.9, "edited": 0.1}]))
    work = inputs / "work"
    (work / "violence").mkdir(parents=True)
    (work / "violence" / "note").write_text("keep")
    source, out, extra = {
        "out holds the pairs file": (["--pairs", pairs], inputs, []),
        "out is the pairs file": (["--pairs", pairs], pairs, []),
        "out holds the refusal file": (["--refusal", refusal], inputs, []),
        "out is the work dir": (["--pairs", pairs, "--work-dir", work], work, []),
        "out holds the work dir": (["--pairs", pairs, "--work-dir", work], inputs, []),
        "out is a cache folder": (["--pairs", pairs, "--work-dir", work], work / "violence", []),
        "out holds the eval json": (["--refusal", tiny_refusal], inputs, ["--eval-json", rows]),
    }[case]
    before = tree(inputs)
    one_error(run("apply", "--model", tiny_wan, *source, "--out", out, "--force", *extra), "--out overlaps")
    assert tree(inputs) == before


def test_an_output_inside_the_work_dir_is_fine(tiny_wan, tmp_path):
    work = tmp_path / "work"
    result = run("apply", "--model", tiny_wan, "--pairs", PAIRS / "violence.yaml", "--work-dir", work,
                 "--out", work / "out", "--rank", "2")
    assert result.exit_code == 0, result.output
    assert checkpoint_problems(work / "out") == []


def test_extract_and_factorize_keep_an_existing_out_without_force(tiny_wan, tmp_path):
    precious = tmp_path / "precious.safetensors"
    precious.write_bytes(b"someone's file")
    one_error(run("extract", "--model", tiny_wan, "--pairs", PAIRS / "violence.yaml", "--out", precious), "already exists")
    assert precious.read_bytes() == b"someone's file"
    acts = tmp_path / "acts.safetensors"
    assert run("extract", "--model", tiny_wan, "--pairs", PAIRS / "violence.yaml", "--out", acts).exit_code == 0
    one_error(run("factorize", "--activations", acts, "--out", precious), "already exists")
    assert precious.read_bytes() == b"someone's file"
    # a matching file is reused without --force (nothing is replaced); --force replaces the other
    assert "reused" in run("extract", "--model", tiny_wan, "--pairs", PAIRS / "violence.yaml", "--out", acts).output
    result = run("factorize", "--activations", acts, "--out", precious, "--force")
    assert result.exit_code == 0, result.output
    from vidunlearn.artifacts import RefusalVectors

    assert RefusalVectors.load(precious).concept == "violence"


def test_extract_and_factorize_never_write_over_their_input(tiny_wan, tmp_path):
    pairs = Path(shutil.copy(PAIRS / "violence.yaml", tmp_path / "violence.yaml"))
    one_error(run("extract", "--model", tiny_wan, "--pairs", pairs, "--out", pairs, "--force"), "overlaps the --pairs file")
    assert pairs.read_bytes() == (PAIRS / "violence.yaml").read_bytes()
    one_error(run("extract", "--model", tiny_wan, "--pairs", pairs, "--out", Path(tiny_wan) / "acts.safetensors", "--force"),
              "overlaps the model folder")
    acts = tmp_path / "acts.safetensors"
    assert run("extract", "--model", tiny_wan, "--pairs", pairs, "--out", acts).exit_code == 0
    before = acts.read_bytes()
    one_error(run("factorize", "--activations", acts, "--out", acts, "--force"), "overlaps the --activations file")
    assert acts.read_bytes() == before


# ------------------------------------------------------------------- two runs, one output
def test_two_concurrent_applies_to_one_out_never_lose_an_output(tiny_wan, tiny_refusal, tmp_path):
    """The first run is paused with its checkpoint complete, before the rename; a second run to
    the same --out (no --force) must fail with one line, and the first must then finish."""
    out, resume = tmp_path / "out", tmp_path / "resume"
    args = [sys.executable, "-m", "vidunlearn.cli", "apply", "--model", str(tiny_wan), "--refusal", str(tiny_refusal),
            "--out", str(out)]
    first = subprocess.Popen(args, env={**os.environ, "VIDUNLEARN_PAUSE_AT": "before-rename",
                                        "VIDUNLEARN_RESUME_FILE": str(resume)},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(240, first.kill)
    watchdog.start()
    try:
        lines = []
        while not lines or (lines[-1] and "vidunlearn: paused at" not in lines[-1]):
            lines.append(first.stderr.readline())
        assert "paused at before-rename" in lines[-1], "".join(lines)
        second = subprocess.run([*args, "--strength", "0.5"], capture_output=True, text=True, timeout=240)
        resume.touch()
        stdout, rest = first.communicate(timeout=120)
    finally:
        watchdog.cancel()
        if first.poll() is None:
            first.send_signal(signal.SIGKILL)
            first.wait()
    errors = [line for line in second.stderr.splitlines() if "error:" in line]
    assert second.returncode == 1 and len(errors) == 1 and "another run is writing" in errors[0], second.stderr
    assert "Traceback" not in second.stderr
    assert first.returncode == 0, "".join(lines) + rest
    assert checkpoint_problems(out) == []
    assert json.loads((out / "vidunlearn.json").read_text())["recipe"]["strength"] == 1.0  # the first run's
    resume.unlink()
    assert leftovers(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no lock file left


# ---------------------------------------------------------------------- markup in user text
def test_markup_in_a_path_is_printed_verbatim(tiny_wan, tiny_refusal, tmp_path):
    out = tmp_path / "a[/x]b" / "c[bold]d"
    result = run("apply", "--model", tiny_wan, "--refusal", tiny_refusal, "--out", out)
    assert result.exit_code == 0 and "Traceback" not in result.output, result.output
    assert checkpoint_problems(out) == []
    flat = "".join(result.output.split())
    assert "a[/x]b/c[bold]d" in flat, result.output
    again = run("apply", "--model", tiny_wan, "--refusal", tiny_refusal, "--out", out)
    one_error(again, "a[/x]b/c[bold]d: output already exists")


def test_markup_in_an_error_keeps_field_names_and_paths(tmp_path, tiny_wan):
    folder = tmp_path / "p[/x]q"
    folder.mkdir(parents=True)
    pairs = folder / "bad[red].yaml"
    pairs.write_text("version: 1\nconcept: Not A Slug\n")
    one_error(run("apply", "--model", tiny_wan, "--pairs", pairs, "--out", tmp_path / "out"),
              f"{pairs}:2 [concept]: concept name 'Not A Slug' is not a slug")


def test_markup_in_a_prompt_is_printed_verbatim(tiny_wan, tmp_path):
    result = run("sample", "--model", tiny_wan, "--prompt", "a [red] car and a [/x] bus", "--out", tmp_path / "s",
                 "--steps", "1", "--frames", "1", "--height", "16", "--width", "16")
    assert result.exit_code == 0, result.output
    assert "a [red] car and a [/x] bus" in result.output


# ---------------------------------------------------------------------- byte-identical formats
@pytest.fixture(scope="module")
def formats_twice(tiny_wan, tiny_refusal, tmp_path_factory) -> dict:
    """Each format written by two subprocesses with different hash seeds (run in parallel)."""
    root = tmp_path_factory.mktemp("formats")
    runs = {}
    for output_format in ("diffusers", "single-file", "lora"):
        for seed in ("1", "2"):
            out = root / seed / output_format / "out"
            args = [sys.executable, "-m", "vidunlearn.cli", "apply", "--model", str(tiny_wan), "--refusal",
                    str(tiny_refusal), "--format", output_format, "--out", str(out)]
            runs[output_format, seed] = (out, subprocess.Popen(args, env={**os.environ, "PYTHONHASHSEED": seed},
                                                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT))
    for out, process in runs.values():
        output, _ = process.communicate(timeout=1200)  # six applies at once on a shared machine
        assert process.returncode == 0, output.decode()
    return {key: out for key, (out, _) in runs.items()}


@pytest.mark.parametrize("output_format", ["diffusers", "single-file", "lora"])
def test_every_format_is_byte_identical_across_hash_seeds(formats_twice, output_format):
    first, second = tree(formats_twice[output_format, "1"]), tree(formats_twice[output_format, "2"])
    assert len(first) >= 3 and first == second


# ------------------------------------------------------------------------ poisoned cache
def _poison(refusal: Path) -> None:
    """What anyone who can write --work-dir can do: keep the cache key, change the vectors."""
    import torch

    from vidunlearn.artifacts import RefusalVectors

    vectors = RefusalVectors.load(refusal)
    for site in vectors.sites.values():
        site.direction = torch.nn.functional.normalize(torch.ones_like(site.direction), dim=0)
        if site.left is not None:  # the remap's factors (the default edit)
            site.left = torch.ones_like(site.left)
    vectors.save(refusal)


def test_a_poisoned_cache_is_recorded_and_no_cache_ignores_it(tiny_wan, tmp_path):
    work = tmp_path / "work"
    base = ["apply", "--model", tiny_wan, "--pairs", PAIRS / "violence.yaml", "--work-dir", work, "--rank", "2"]
    assert run(*base, "--out", tmp_path / "clean" / "out").exit_code == 0
    clean = json.loads((tmp_path / "clean" / "out" / "vidunlearn.json").read_text())
    cache = work / "violence" / "refusal.safetensors"
    assert clean["inputs"]["cache"]["violence"] == {"activations": hashlib.sha256((work / "violence" / "activations.safetensors").read_bytes()).hexdigest(),
                                                    "refusal": hashlib.sha256(cache.read_bytes()).hexdigest()}
    assert clean["inputs"]["cache_read"] is True
    _poison(cache)
    assert run(*base, "--out", tmp_path / "poisoned" / "out").exit_code == 0
    poisoned = json.loads((tmp_path / "poisoned" / "out" / "vidunlearn.json").read_text())
    assert poisoned["inputs"]["cache"]["violence"]["refusal"] == hashlib.sha256(cache.read_bytes()).hexdigest() \
        != clean["inputs"]["cache"]["violence"]["refusal"]  # the manifest shows which cache was used
    assert poisoned["files"] != clean["files"]
    result = run(*base, "--out", tmp_path / "fresh" / "out", "--no-cache")
    assert result.exit_code == 0, result.output
    fresh = json.loads((tmp_path / "fresh" / "out" / "vidunlearn.json").read_text())
    assert fresh["files"] == clean["files"] and fresh["inputs"]["cache"] == clean["inputs"]["cache"]
    assert fresh["inputs"]["cache_read"] is False


def test_two_pairs_files_naming_one_concept_are_refused(tiny_wan, tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text((PAIRS / "violence.yaml").read_text().replace("a cat", "a dog", 1))
    one_error(run("apply", "--model", tiny_wan, "--pairs", PAIRS / "violence.yaml", "--pairs", other,
                  "--work-dir", tmp_path / "work", "--out", tmp_path / "out"), "concept 'violence' is also named by")
    assert not (tmp_path / "out").exists() and not (tmp_path / "work").exists()


def test_a_hub_blob_changed_in_place_is_not_reused(tiny_wan, tmp_path):
    """A Hub-cache layout (snapshot links to blobs named by their SHA-256); the text encoder's
    blob is changed in place, keeping its name, size and modification time."""
    from vidunlearn import api

    snapshot, blobs = tmp_path / "hub" / "snapshots" / "rev", tmp_path / "hub" / "blobs"
    blobs.mkdir(parents=True)
    for file in sorted(p for p in Path(tiny_wan).rglob("*") if p.is_file()):
        data = file.read_bytes()
        blob = blobs / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / file.relative_to(tiny_wan)
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    out = tmp_path / "acts.safetensors"
    assert not api.extract(str(snapshot), PAIRS / "violence.yaml", out=out).reused
    blob = (snapshot / "text_encoder" / "model.safetensors").resolve()
    stat = blob.stat()
    data = bytearray(blob.read_bytes())
    data[-7] ^= 0x40  # a byte of the last tensor
    blob.write_bytes(bytes(data))
    os.utime(blob, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert not api.extract(str(snapshot), PAIRS / "violence.yaml", out=out).reused


# --------------------------------------------------------- bad values: one line before any work
def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("options, message", [
    (["--strength", "1e308"], "--strength 1e+308 is not a finite number"),
    (["--strength", "nan"], "--strength nan is not a finite number"),
    (["--alpha", "nan"], "--alpha nan is not a finite number"),
    (["--sites", "("], "--sites '(' is not a valid regular expression"),
    (["--device", "nonsense"], "--device 'nonsense' is not a torch device"),
    (["--push-to-hub", "not a repo/id/at all"], "not a valid Hub repo id"),
])
def test_bad_values_give_one_line_before_any_work(options, message, tiny_wan, tiny_refusal, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_x")
    one_error(run("apply", "--model", tiny_wan, "--refusal", tiny_refusal, "--out", tmp_path / "out", *options), message)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("options, message", [
    (["--device", "nonsense"], "--device 'nonsense' is not a torch device"),
    (["--guidance", "nan"], "--guidance nan is not a finite number"),
])
def test_sample_checks_its_device_and_guidance_before_any_work(options, message, tiny_wan, tmp_path):
    one_error(run("sample", "--model", tiny_wan, "--prompt", "a cat", "--out", tmp_path / "s", "--steps", "1",
                  "--frames", "1", "--height", "16", "--width", "16", *options), message)
    assert list(tmp_path.iterdir()) == []


def test_out_dot_is_refused(tiny_wan, tiny_refusal, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "keep").write_text("mine")
    for out in (".", "..", str(tmp_path)):
        one_error(run("apply", "--model", tiny_wan, "--refusal", tiny_refusal, "--out", out, "--force"),
                  "is or contains the current folder")
    assert sorted(os.listdir(tmp_path)) == ["keep"]


def test_a_dangling_out_symlink_is_not_replaced_without_force(tiny_wan, tiny_refusal, tmp_path):
    link = tmp_path / "out"
    link.symlink_to(tmp_path / "elsewhere")
    one_error(run("apply", "--model", tiny_wan, "--refusal", tiny_refusal, "--out", link), "already exists")
    assert link.is_symlink() and os.readlink(link) == str(tmp_path / "elsewhere")


def test_credentials_in_hf_endpoint_are_not_printed(tiny_wan, tiny_refusal, tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_TOKEN", "hf_x")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "ENDPOINT", f"http://someone:hunter2@127.0.0.1:{_closed_port()}")
    result = run("apply", "--model", tiny_wan, "--refusal", tiny_refusal, "--out", tmp_path / "out",
                 "--push-to-hub", "someone/x")
    one_error(result, "upload failed: cannot reach http://***@127.0.0.1:")
    assert "hunter2" not in result.output and checkpoint_problems(tmp_path / "out") == []


def test_a_text_encoder_of_another_model_is_one_line(tiny_wan, tmp_path):
    """tiny_wan with the benchmark model's text encoder (BERT, 384 wide; tiny_wan's transformer
    reads 32): extract (and the collateral measure) stop with one line, not a matmul traceback."""
    model = Path(shutil.copytree(tiny_wan, tmp_path / "model"))
    bench = ROOT / "models" / "shapes-wan"
    if not (bench / "text_encoder" / "config.json").is_file():
        pytest.skip("models/shapes-wan's text encoder is not materialised (make install)")
    for component in ("text_encoder", "tokenizer"):
        shutil.rmtree(model / component)
        shutil.copytree(bench / component, model / component)
    index = json.loads((model / "model_index.json").read_text())
    bench_index = json.loads((bench / "model_index.json").read_text())
    index.update(text_encoder=bench_index["text_encoder"], tokenizer=bench_index["tokenizer"])
    (model / "model_index.json").write_text(json.dumps(index))
    one_error(run("apply", "--model", model, "--pairs", PAIRS / "violence.yaml", "--out", tmp_path / "out",
                  "--work-dir", tmp_path / "work"), "text path cannot read the text encoder's states (384 wide)",
              "different models")
    assert not (tmp_path / "out").exists()
