"""`eval` and `sample` at scale: spread over processes (accelerate launch, torchrun; gloo on CPU),
killed part-way and continued, each checked against one plain uninterrupted run. Real
subprocesses on the shipped benchmark model. Every run uses one thread per process, so that the
clips of a plain run and a launched one come from the same arithmetic."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "models" / "shapes-wan"
BIN = Path(sys.executable).parent
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
EVAL = ["eval", "--model", str(BENCH), "--compare", str(BENCH), "--concept", "red", "--forget", "2", "--retain", "2",
        "--paraphrase", "1", "--steps", "2", "--batch-size", "1"]
SAMPLE = ["sample", "--model", str(BENCH), "--compare", str(BENCH), "--prompt", "a red circle moving left on a dark background",
          "--prompt", "a blue square moving up on a light background", "--prompt", "a green triangle moving down on a dark background",
          "--steps", "2", "--frames", "5", "--height", "32", "--width", "32", "--guidance", "2"]


def _port() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return str(s.getsockname()[1])


def plain(*args, env=ENV) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "vidunlearn", *map(str, args)], env=env, capture_output=True, text=True,
                          timeout=600)


def accelerate(*args) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "accelerate"), "launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
                           "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", _port(),
                           "-m", "vidunlearn", *map(str, args)], env=ENV, capture_output=True, text=True, timeout=600)


def torchrun(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port",
                           _port(), "-m", "vidunlearn", *map(str, args)], env=ENV, capture_output=True, text=True, timeout=600)


def killed_at_first_clip(*args, sig=signal.SIGKILL) -> subprocess.Popen:
    """Run until one clip and its record are saved, then send ``sig`` (SIGKILL: no clean-up can
    run). The child takes Ctrl-C even when the suite runs in the background (tests/cli/test_kill.py)."""
    process = subprocess.Popen([sys.executable, "-m", "vidunlearn", *map(str, args)],
                               env={**ENV, "VIDUNLEARN_PAUSE_AT": "clip-saved"}, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    watchdog = threading.Timer(300, process.kill)
    watchdog.start()
    try:
        lines = []
        while (line := process.stderr.readline()) and "vidunlearn: paused at clip-saved" not in line:
            lines.append(line)
        assert line, "".join(lines)
        process.send_signal(sig)
        process.said = "".join(lines) + process.communicate(timeout=60)[1]
    finally:
        watchdog.cancel()
        if process.poll() is None:
            process.kill()
            process.wait()
    return process


pytestmark = pytest.mark.skipif(not (BENCH / "model_index.json").is_file(), reason="models/shapes-wan is not here")


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict:
    """One plain, uninterrupted eval: what every other run must reproduce."""
    out = tmp_path_factory.mktemp("reference") / "eval"
    result = plain(*EVAL, "--out", out)
    assert result.returncode == 0, result.stderr
    return json.loads((out / "eval.json").read_text())


def test_eval_over_two_accelerate_processes_equals_one_process(tmp_path):
    batched = [*EVAL[:-1], "3"]  # whole batches of 3 go to each process, as one process batches them
    one = plain(*batched, "--out", tmp_path / "one")
    assert one.returncode == 0, one.stderr
    reference = json.loads((tmp_path / "one" / "eval.json").read_text())
    out = tmp_path / "eval"
    result = accelerate(*batched, "--out", out)
    assert result.returncode == 0, result.stderr[-3000:]
    assert json.loads((out / "eval.json").read_text()) == reference  # verdicts and every clip's pixel hash
    assert result.stdout.count("eval: red") == 1  # process 0 alone prints the table
    assert len(list((out / "clips" / "model").glob("*.mp4"))) == len(reference["prompts"])
    assert not (tmp_path / "eval.partial").exists()


def test_killed_eval_continues_where_it_stopped(reference, tmp_path):
    out = tmp_path / "eval"
    killed_at_first_clip(*EVAL, "--out", out)
    partial = tmp_path / "eval.partial"
    assert not out.exists() and len(list(partial.glob("*/[0-9]*.json"))) == 1
    changed = plain(*EVAL[:-4], "--steps", "3", "--batch-size", "1", "--out", out)
    assert changed.returncode == 1 and "other settings (changed: settings.steps)" in changed.stderr
    assert len(changed.stderr.strip().splitlines()) == 1, changed.stderr
    again = plain(*EVAL, "--out", out)
    assert again.returncode == 0, again.stderr
    total = 2 * len(reference["prompts"])
    assert f"1 of {total} clips already done" in again.stderr
    assert json.loads((out / "eval.json").read_text()) == reference
    assert not partial.exists()


def test_ctrl_c_keeps_the_finished_clips_and_says_so(tmp_path):
    process = killed_at_first_clip(*EVAL, "--out", tmp_path / "eval", sig=signal.SIGINT)
    assert process.returncode == 130
    assert f"interrupted: 1 finished clips are kept in {tmp_path / 'eval.partial'}; the same command continues" \
        in process.said and "Traceback" not in process.said
    assert (tmp_path / "eval.partial" / "model" / "00000.json").is_file() and not (tmp_path / "eval").exists()


def test_a_prompt_file_with_categories_and_an_own_judge(tmp_path):
    out = tmp_path / "eval"
    result = plain("eval", "--model", BENCH, "--judge", ROOT / "docs/examples/red_judge.py", "--prompts-file",
                   ROOT / "docs/examples/red-prompts.jsonl", "--label-column", "unsafe", "--category-column", "shape",
                   "--seed-column", "seed", "--steps", "10", "--out", out)
    assert result.returncode == 0, result.stderr
    document = json.loads((out / "eval.json").read_text())
    metrics = document["metrics"]
    assert metrics["counts"] == {"forget": 4, "retain": 4, "paraphrase": 0}
    assert set(metrics["by_category"]) == {"circle", "square", "triangle"}
    assert metrics["by_category"]["circle"]["counts"]["forget"] == 2
    assert [p["seed"] for p in document["prompts"]][:4] == [0, 1, 7, 3]  # the row's own seed, else --seed + row
    assert metrics["forget_rate"] >= 0.75 and metrics["retain_accuracy"]["red"] >= 0.75  # the base draws red for red
    assert "forget rate by category" in result.stdout and "frames showing red" in result.stdout


def test_sample_killed_then_continued_by_torchrun_equals_a_plain_run(tmp_path):
    from vidunlearn.video import read_video

    first = plain(*SAMPLE, "--out", tmp_path / "plain")
    assert first.returncode == 0, first.stderr
    out = tmp_path / "resumed"
    killed_at_first_clip(*SAMPLE, "--out", out)
    assert not out.exists()
    again = torchrun(*SAMPLE, "--out", out)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "1 of 6 clips already done" in again.stderr
    expected = json.loads((tmp_path / "plain" / "samples.json").read_text())
    assert json.loads((out / "samples.json").read_text()) == expected  # the pixels' hashes included
    assert all(v["edited_pixels_sha256"] == v["base_pixels_sha256"] for v in expected["videos"])  # same model twice
    assert len({v["edited_pixels_sha256"] for v in expected["videos"]}) == 3
    for video in expected["videos"]:
        for key in ("edited", "base", "compare"):
            assert read_video(out / video[key]).shape == (5, 32, 68 if key == "compare" else 32, 3)  # 4-pixel gap
