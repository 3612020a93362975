"""Kill `vidunlearn apply` and `sample` (SIGKILL; Ctrl-C = SIGINT; SIGTERM) at named moments of writing.

Each run is a real subprocess paused by the VIDUNLEARN_PAUSE_AT hook (vidunlearn/faults.py) at
an exact point, then signalled. Afterwards the output either does not exist or is a complete
checkpoint whose every SHA-256 matches vidunlearn.json, and a re-run succeeds and leaves no
temporary sibling behind. The runs start in parallel (one fixture) to keep the suite fast.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading

import pytest
from typer.testing import CliRunner

from conftest import PAIRS, checkpoint_problems, leftovers
from vidunlearn.cli import app

# name -> (pause point, signal, what runs, output exists before). "pairs": apply --pairs (extract
# and factorize in the run), "refusal": apply --refusal, "sample": sample (a samples folder).
CASES = {
    "kill-while-writing-cache": ("artifact-written", signal.SIGKILL, "pairs", False),
    "kill-mid-checkpoint": ("file-written", signal.SIGKILL, "refusal", False),
    "kill-before-rename": ("before-rename", signal.SIGKILL, "refusal", False),
    "kill-before-rename-over-old-output": ("before-rename", signal.SIGKILL, "refusal", True),
    "kill-after-rename": ("after-rename", signal.SIGKILL, "refusal", False),
    "kill-samples-before-rename": ("before-rename", signal.SIGKILL, "sample", False),
    "ctrl-c-mid-checkpoint": ("file-written", signal.SIGINT, "refusal", False),
    "ctrl-c-while-writing-cache": ("artifact-written", signal.SIGINT, "pairs", False),
    "sigterm-mid-checkpoint": ("file-written", signal.SIGTERM, "refusal", False),
}


def _ctrl_c_reaches_it() -> None:
    """The child takes Ctrl-C as a foreground command does. A shell without job control starts a
    background command (`make test &`, a CI step put in the background) with SIGINT ignored, and
    the child would inherit that: Python then installs no KeyboardInterrupt handler, and the
    ctrl-c cases waited for a signal that never came."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


@pytest.fixture(scope="module")
def killed(tiny_wan, tiny_refusal, tmp_path_factory) -> dict[str, dict]:
    """Start every case, wait until each is paused at its point, signal it, collect results."""
    runs: dict[str, dict] = {}
    for name, (point, _, kind, existing) in CASES.items():
        root = tmp_path_factory.mktemp(name)
        out, work = root / "out", root / "work"
        if existing:
            result = CliRunner().invoke(app, ["apply", "--model", str(tiny_wan), "--refusal", str(tiny_refusal),
                                              "--out", str(out)])
            assert result.exit_code == 0, result.output
        source = {"pairs": ["--pairs", str(PAIRS / "violence.yaml"), "--work-dir", str(work)],
                  "refusal": ["--refusal", str(tiny_refusal)],
                  "sample": ["--prompt", "a cat", "--steps", "1", "--frames", "1", "--height", "16", "--width", "16"]}[kind]
        args = [sys.executable, "-m", "vidunlearn.cli", "sample" if kind == "sample" else "apply", "--model", str(tiny_wan),
                "--out", str(out), *source, *(["--force"] if existing else [])]
        env = {**os.environ, "VIDUNLEARN_PAUSE_AT": point}
        process = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                   preexec_fn=_ctrl_c_reaches_it)
        runs[name] = {"process": process, "root": root, "out": out, "work": work, "args": args}
    try:
        for name, run in runs.items():
            process, sig = run["process"], CASES[name][1]
            watchdog = threading.Timer(180, process.kill)  # a run that never pauses cannot hang the suite
            watchdog.start()
            lines = []
            while True:
                line = process.stderr.readline()
                lines.append(line)
                if not line or "vidunlearn: paused at" in line:  # (a progress bar may precede it on the line)
                    break
            watchdog.cancel()
            assert "vidunlearn: paused at" in lines[-1], "".join(lines)
            process.send_signal(sig)
            stdout, rest = process.communicate(timeout=60)
            run.update(code=process.returncode, stderr="".join(lines) + rest, stdout=stdout)
    finally:  # never leave a paused child behind
        for run in runs.values():
            if run["process"].poll() is None:
                run["process"].kill()
                run["process"].wait()
    return runs


@pytest.mark.parametrize("case", sorted(CASES))
def test_interrupted_apply_leaves_nothing_or_a_complete_checkpoint_and_reruns(killed, case, tiny_wan, tiny_refusal):
    run = killed[case]
    point, sig, kind, existing = CASES[case]
    use_pairs = kind == "pairs"
    out, work = run["out"], run["work"]
    if sig == signal.SIGKILL:
        assert run["code"] == -signal.SIGKILL
    else:  # Ctrl-C (SIGTERM alike): one line, exit 130 (143), nothing left behind, not even a temporary sibling
        assert run["code"] == (130 if sig == signal.SIGINT else 143), run["stderr"]
        after_pause = run["stderr"].split("vidunlearn: paused at", 1)[1].splitlines()[1:]
        said = [line for line in after_pause if line.strip()]
        assert said == ["interrupted: no partial output was left behind"], run["stderr"]
        assert leftovers(run["root"]) == []
    # the output path: absent, or complete and verifiable
    if point == "after-rename" or existing:
        assert checkpoint_problems(out) == []
    else:
        assert not out.exists()
    if use_pairs:  # the cache was being written: absent (its temporary sibling at most)
        assert not (work / "violence" / "activations.safetensors").exists()
    # a re-run (same command, --force where the output exists) succeeds and cleans stale siblings
    args = run["args"][3:] + (["--force"] if out.exists() and "--force" not in run["args"] else [])
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    if kind == "sample":
        assert json.loads((out / "samples.json").read_text())["videos"][0]["prompt"] == "a cat"
    else:
        assert checkpoint_problems(out) == []
    assert leftovers(run["root"]) == []
    if use_pairs:
        assert json.loads((out / "vidunlearn.json").read_text())["recipe"]["concepts"][0]["concept"] == "violence"
