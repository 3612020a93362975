"""The run folder that makes sample and eval resumable, and the share of prompts each process takes."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from vidunlearn.distributed import Processes
from vidunlearn.errors import OutputError, VidunlearnError
from vidunlearn.runstore import RunStore, partial_path

RUN = {"kind": "vidunlearn-eval", "settings": {"steps": 4, "frames": 5}, "prompts": "abc"}


def test_records_survive_a_new_store_and_count_as_done(tmp_path):
    out = tmp_path / "eval"
    store = RunStore(out, RUN)
    assert store.open() == 0 and partial_path(out).is_dir() and not out.exists()
    clip = np.zeros((5, 8, 8, 3), dtype=np.uint8)
    store.save("model", 3, {"verdict": {"colour": "red"}}, clip)
    again = RunStore(out, json.loads(json.dumps(RUN)))
    assert again.open() == 1
    assert again.done("model", 3) and not again.done("model", 2) and not again.done("base", 3)
    assert again.record("model", 3) == {"verdict": {"colour": "red"},
                                        "pixels_sha256": hashlib.sha256(clip.tobytes()).hexdigest()}
    assert again.missing("model", 5) == [0, 1, 2, 4]
    assert again.clips("model", 5)[3].shape == (5, 8, 8, 3)
    assert not list(partial_path(out).rglob(".*tmp"))  # no temporary file is left behind


def test_a_run_with_other_settings_is_refused_in_one_line_or_restarted(tmp_path):
    out = tmp_path / "eval"
    store = RunStore(out, RUN)
    store.open()
    store.save("model", 0, {"verdict": {}}, None)
    changed = {**RUN, "settings": {"steps": 8, "frames": 5}}
    with pytest.raises(OutputError) as caught:
        RunStore(out, changed).open()
    message = caught.value.one_line()
    assert "other settings (changed: settings.steps)" in message and "--force" in message and "\n" not in message
    assert RunStore(out, changed).open(restart=True) == 0  # --force: the old records are gone
    assert json.loads((partial_path(out) / "run.json").read_text()) == changed


@pytest.mark.parametrize("count", [1, 2, 3, 5])
@pytest.mark.parametrize("batch", [1, 2, 3])
def test_processes_share_every_prompt_exactly_once_in_whole_batches(count, batch):
    indices = [0, 2, 3, 7, 8, 11, 12]
    shares = [Processes(index, count).mine(indices, batch) for index in range(count)]
    assert sorted(i for share in shares for i in share) == indices
    one_process = [indices[i:i + batch] for i in range(0, len(indices), batch)]
    for share in shares:  # each process runs batches a single process would run
        assert [share[i:i + batch] for i in range(0, len(share), batch)] == [b for b in one_process if b[0] in share]
    assert max(map(len, shares)) - min(map(len, shares)) <= batch


def test_a_run_with_clips_missing_after_every_process_is_one_line(tmp_path):
    store = RunStore(tmp_path / "eval", RUN)
    store.open()
    store.save("model", 0, {"verdict": {}}, None)
    store.check_complete(["model"], 1)
    with pytest.raises(VidunlearnError) as caught:
        store.check_complete(["model", "base"], 1)
    assert "1 clips of base are missing" in caught.value.one_line() and "run the same command again" in caught.value.one_line()
