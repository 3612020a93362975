"""benchmarks/sweep.py: its job order (tasks outer, then training seeds, variants, kinds), the command
each job runs (efficacy's eval sets held out alike with --hold-out-context), what a finished job's
files read as, that a variant's keep_context prompts are held out of the efficacy eval, and that
efficacy.py's and attack.py's --device reaches the edits they train."""

from __future__ import annotations

import json
import sys
from argparse import Namespace

import pytest

from conftest import ROOT

sys.path.insert(0, str(ROOT / "benchmarks"))


def test_jobs_run_tasks_outer_then_seeds_and_commands_carry_the_device_and_the_hold_out(tmp_path):
    from sweep import command, jobs

    args = Namespace(tasks="circle-to-square,red", variants="a,b", seeded=2, kinds="efficacy,attack", seeds="0,1",
                     device="cuda", hold_out_context=8, base_from=[tmp_path / "base.json"])
    order = jobs(args)
    assert order[:4] == [("efficacy", "circle-to-square", "a"), ("attack", "circle-to-square", "a"),
                         ("efficacy", "circle-to-square", "b"), ("attack", "circle-to-square", "b")]
    assert order[4][2] == "a-seed1" and order[8][1] == "red" and len(order) == 16
    efficacy = command(args, "efficacy", "red", "a-seed1", tmp_path)
    assert efficacy[efficacy.index("--hold-out-context") + 1] == "8" and efficacy[efficacy.index("--device") + 1] == "cuda"
    assert efficacy[efficacy.index("--base-from") + 1] == str(tmp_path / "base.json")
    attack = command(args, "attack", "red", "a", tmp_path)
    assert "--hold-out-context" not in attack and "--held-out" in attack and "--base-from" not in attack


def test_outcome_reads_missed_targets_and_attack_rates(tmp_path):
    from sweep import outcome

    (tmp_path / "efficacy-seeds0-1.json").write_text(json.dumps({"runs": [
        {"variants": {"v": {"missed": []}}}, {"variants": {"v": {"missed": ["shape retain -6pt"]}}}]}))
    assert outcome("efficacy", tmp_path) == "met / shape retain -6pt"
    (tmp_path / "attack.json").write_text(json.dumps({"results": [
        {"space": "input", "attack_success_rate": 0.125}, {"space": "discrete", "attack_success_rate": 0.0}]}))
    assert outcome("attack", tmp_path) == "input 12 % / discrete 0 %"


def test_keep_context_prompts_are_held_out_of_every_variants_eval():
    from efficacy import PAIRS, TASKS
    from efficacy_variants import trained_on

    pairs = [PAIRS / f for f in TASKS["circle-to-square"][0]]
    assert trained_on(["adversarial200-te-keep4-anchor3-ac0.3"], pairs) == ()
    held = trained_on(["adversarial200-te-keep4-anchor3-ac0.3", "adversarial200-te-keep4-anchor3-ac0.3-kc8"], pairs)
    assert held == trained_on(["default"], pairs, at_least=8) and len(held) == 5
    assert all("triangle" in t for t in held)
    # unsafe_context's prompts and targets in the order asked for, and in each variant's own
    listed = trained_on([], pairs, unsafe_at_least=2)
    spread = trained_on([], pairs, unsafe_at_least=2, order="spread")
    both = trained_on([], pairs, unsafe_at_least=2, order="both")
    assert len(listed) == len(spread) == 20 and set(both) == set(listed) | set(spread) and set(spread) != set(listed)
    assert set(trained_on(["adversarial200-te-keep4-anchor3-ac0.3-uc2-spread"], pairs)) == set(both)


@pytest.mark.parametrize("script, extra", [("efficacy", ["--quick", "--seeds", "0"]),
                                           ("attack", ["--prompts", "1", "--spaces", "input", "--no-checks"])])
def test_benchmarks_train_each_edit_on_the_device_they_render_on(tmp_path, monkeypatch, script, extra):
    """--device reaches api.apply's LoadOptions (the trained edits), not only the rendering: the GPU sweep's
    efficacy jobs had trained on the CPU. ``cpu:0`` stands in for a GPU (the default is ``cpu``)."""
    import importlib

    from vidunlearn import api

    seen = []

    def apply(*args, load=None, **kwargs):
        seen.append(load)
        raise KeyboardInterrupt   # stop the benchmark at its first edit

    monkeypatch.setattr(api, "apply", apply)
    monkeypatch.setattr(sys, "argv", [script, "--tasks", "red", "--variants", "default", "--device", "cpu:0",
                                      "--out", str(tmp_path), *extra])
    with pytest.raises(KeyboardInterrupt):
        importlib.import_module(script).main()
    assert seen and seen[0].device == "cpu:0"


def test_attack_folders_are_attacked_as_made_and_never_trained(tmp_path, monkeypatch):
    """attack.py --folders NAME=PATH: the folder itself is attacked (no edit trained for it); a path that
    is not a folder is refused in one line."""
    import importlib

    import vidunlearn.attack_run as attack_run
    from vidunlearn import api

    seen = []

    def apply(*args, **kwargs):
        raise AssertionError("a --folders model was trained again")

    def attack_model(model, *args, **kwargs):
        seen.append(model)
        raise KeyboardInterrupt   # stop at the first attack

    module = importlib.import_module("attack")
    monkeypatch.setattr(api, "apply", apply)
    monkeypatch.setattr(attack_run, "attack_model", attack_model)
    monkeypatch.setattr(module, "base_rate", lambda *args: 0.0)
    folder = tmp_path / "made"
    folder.mkdir()
    common = ["attack", "--tasks", "red", "--variants", "", "--prompts", "1", "--spaces", "input", "--no-checks",
              "--out", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", [*common, "--folders", f"mine={folder}"])
    with pytest.raises(KeyboardInterrupt):
        module.main()
    assert seen == [str(folder)]
    monkeypatch.setattr(sys, "argv", [*common, "--folders", f"mine={tmp_path / 'absent'}"])
    with pytest.raises(SystemExit) as stopped:
        module.main()
    assert stopped.value.code == 2


def test_efficacy_folders_are_measured_as_made_and_bad_ones_refused(tmp_path, monkeypatch):
    """efficacy.py --folders NAME=PATH: the folder itself is measured on the task's eval sets (no edit trained
    for it); an entry that is not NAME=PATH of a folder, or folders with two tasks, is refused in one line."""
    import importlib

    import vidunlearn.evaluate as evaluate
    from vidunlearn import api

    seen = []

    def apply(*args, **kwargs):
        raise AssertionError("a --folders model was trained again")

    def run_model(model, *args, **kwargs):
        seen.append(model)
        if len(seen) == 2:   # the base, then the folder: stop there
            raise KeyboardInterrupt
        return Namespace(metrics={"forget_rate": 1.0, "rest_kept": 1.0, "retain_accuracy": {}, "paraphrase_leak": None,
                                  "paraphrase_leak_by_concept": {}, "counts": {}})

    module = importlib.import_module("efficacy")
    monkeypatch.setattr(api, "apply", apply)
    monkeypatch.setattr(evaluate, "run_model", run_model)
    monkeypatch.setattr(module, "edit_size", lambda out, base: None)   # the folder has no manifest here
    folder = tmp_path / "made"
    folder.mkdir()
    common = ["efficacy", "--quick", "--seeds", "0", "--variants", "", "--out", str(tmp_path / "out")]
    monkeypatch.setattr(sys, "argv", [*common, "--tasks", "red", "--folders", f"mine={folder}"])
    with pytest.raises(KeyboardInterrupt):
        module.main()
    assert seen[1] == str(folder)
    for tasks, folders in (("red", "mine"), ("red", f"mine={tmp_path / 'absent'}"), ("red,left", f"mine={folder}")):
        monkeypatch.setattr(sys, "argv", [*common, "--tasks", tasks, "--folders", folders])
        with pytest.raises(SystemExit) as stopped:
            module.main()
        assert stopped.value.code == 2


def test_attack_held_out_context_leaves_out_the_unsafe_prompts_unsafe_context_builds(tmp_path, monkeypatch):
    """attack.py --held-out --held-out-context K: no start is a pairs prompt or one that unsafe_context K builds."""
    import importlib

    import vidunlearn.attack_run as attack_run
    from efficacy import PAIRS
    from vidunlearn.pairs import load_pairs
    from vidunlearn.remap import unsafe_context_pairs

    excluded = []

    def world_starts(value, n, start, seed=0, exclude=()):
        excluded.append(set(exclude))
        raise KeyboardInterrupt

    monkeypatch.setattr(attack_run, "world_starts", world_starts)
    module = importlib.import_module("attack")
    for k, order in ((0, []), (2, []), (2, ["--held-out-order", "spread"]), (2, ["--held-out-order", "both"])):
        monkeypatch.setattr(sys, "argv", ["attack", "--tasks", "circle-to-square", "--variants", "", "--prompts", "1",
                                          "--spaces", "input", "--no-checks", "--held-out", "--held-out-context", str(k),
                                          *order, "--out", str(tmp_path / "out")])
        with pytest.raises(KeyboardInterrupt):
            module.main()
    pairs = load_pairs(PAIRS / "circle-to-square.yaml")
    built = {u for u, _ in unsafe_context_pairs(pairs, 2)}
    spread = {u for u, _ in unsafe_context_pairs(pairs, 2, "spread")}
    assert excluded[0] == set(pairs.unsafe) and excluded[1] == set(pairs.unsafe) | built and len(built) == 10
    assert excluded[2] == set(pairs.unsafe) | spread and excluded[3] == set(pairs.unsafe) | built | spread and spread != built
