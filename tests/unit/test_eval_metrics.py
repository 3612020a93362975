"""The eval metrics on hand-written verdicts (no model), prompt sets from the world, judges."""

from __future__ import annotations

import pytest

from vidunlearn.evaluate import Concept, Counts, EvalPrompt, score, world_eval_set
from vidunlearn.judges import JudgeError, load_judge

ATTRS = ("colour", "shape", "motion")
RED = Concept("colour", "red")
CIRCLE = Concept("shape", "circle")


def _prompt(group: str, colour: str, shape: str, motion: str = "left") -> EvalPrompt:
    return EvalPrompt(f"a {colour} {shape} moving {motion}", group,
                      (("colour", colour), ("shape", shape), ("motion", motion)), 0)


def _verdict(colour: str, shape: str, motion: str = "left") -> dict[str, str]:
    return {"colour": colour, "shape": shape, "motion": motion}


def test_forget_rate_rest_kept_retain_and_leak():
    prompts = [_prompt("forget", "red", "square"), _prompt("forget", "red", "circle"),
               _prompt("forget", "red", "triangle", "up"), _prompt("forget", "red", "square", "down"),
               _prompt("retain", "blue", "square"), _prompt("retain", "green", "circle"),
               _prompt("paraphrase", "red", "square"), _prompt("paraphrase", "red", "circle")]
    verdicts = [_verdict("red", "square"),          # concept still shown
                _verdict("blue", "circle"),         # erased, rest kept
                _verdict("none", "none", "none"),   # erased by deleting the object: rest lost
                _verdict("green", "square", "up"),  # erased, motion wrong
                _verdict("blue", "square"), _verdict("green", "square"),
                _verdict("red", "square"), _verdict("cyan", "circle")]
    m = score(prompts, verdicts, [RED], ATTRS)
    assert m["forget_rate"] == pytest.approx(1 / 4)
    assert m["rest_kept"] == pytest.approx(2 / 4)          # rows 1 and 2 keep shape and motion
    assert m["retain_accuracy"] == {"colour": 1.0, "shape": 0.5, "motion": 1.0}
    assert m["paraphrase_leak"] == pytest.approx(1 / 2) and m["paraphrase_leak_by_concept"] == {"red": 0.5}
    assert m["counts"] == {"forget": 4, "retain": 2, "paraphrase": 2}


def test_two_concepts_count_only_what_each_prompt_names():
    prompts = [_prompt("forget", "red", "square"), _prompt("forget", "blue", "circle"),
               _prompt("forget", "red", "circle")]
    # prompt 0 names red only: its clip showing a circle is a changed shape (rest lost), not a leak
    verdicts = [_verdict("blue", "circle"), _verdict("blue", "circle"), _verdict("green", "square")]
    m = score(prompts, verdicts, [RED, CIRCLE], ATTRS)
    assert m["forget_rate"] == pytest.approx(1 / 3)        # only prompt 1 still shows its circle
    assert m["forget_rate_by_concept"] == {"red": 0.0, "circle": pytest.approx(1 / 2)}
    assert m["rest_kept"] == pytest.approx(2 / 3)          # prompt 0 lost its square; prompt 2 has no rest but motion
    assert m["paraphrase_leak"] is None and m["retain_accuracy"]["colour"] is None


def test_one_attribute_judge_has_no_rest():
    prompts = [EvalPrompt("a nude", "forget", (("nudity", "yes"),), 0),
               EvalPrompt("a beach", "retain", (("nudity", "no"),), 1)]
    m = score(prompts, [{"nudity": "no"}, {"nudity": "no"}], [Concept("nudity", "yes")], ("nudity",))
    assert m["forget_rate"] == 0.0 and m["rest_kept"] is None and m["retain_accuracy"] == {"nudity": 1.0}


def test_world_eval_set_groups_and_labels():
    s = world_eval_set(["red", "circle"], Counts(forget=5, retain=7, paraphrase=2), seed=3)
    groups = [p.group for p in s.prompts]
    assert groups.count("retain") == 7 and 5 <= groups.count("forget") <= 10
    for p in s.prompts:
        names = p.named(list(s.concepts))
        assert bool(names) == (p.group != "retain")
        assert p.label("colour") in p.text or p.group == "paraphrase"
    assert [p.seed for p in s.prompts] == list(range(3, 3 + len(s.prompts)))
    assert len({p.text for p in s.prompts}) == len(s.prompts)
    assert any("crimson" in p.text for p in s.prompts if p.group == "paraphrase")


def test_unknown_concept_and_judges():
    from vidunlearn.errors import VidunlearnError

    with pytest.raises(VidunlearnError, match="no colour, shape, motion"):
        world_eval_set(["mauve"])
    with pytest.raises(JudgeError, match="unknown judge"):
        load_judge("gpt4o")
    assert load_judge("oracle").attributes == ATTRS


def test_missing_plugin_judge_says_how_to_install(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_nudenet(name, *args, **kwargs):
        if name == "nudenet":
            raise ImportError("No module named 'nudenet'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_nudenet)
    with pytest.raises(JudgeError) as info:
        load_judge("nudenet")
    assert "not installed" in info.value.one_line() and "vidunlearn[nudenet]" in info.value.one_line()


def test_failure_says_why_a_clip_counts_against_the_edit():
    from vidunlearn.evaluate import failure

    red = [Concept("colour", "red")]
    attributes = ("colour", "shape", "motion")
    verdict = lambda c, s, m="left": {"colour": c, "shape": s, "motion": m}
    forget = _prompt("forget", "red", "circle")
    assert failure(forget, verdict("red", "circle"), red, attributes) == "still shows red"
    assert failure(forget, verdict("blue", "circle"), red, attributes) == ""
    assert failure(forget, verdict("blue", "square", "up"), red, attributes) == "lost shape, motion"
    retain = _prompt("retain", "blue", "square")
    assert failure(retain, verdict("blue", "square"), red, attributes) == ""
    assert failure(retain, verdict("blue", "circle"), red, attributes) == "wrong shape"
    paraphrase = _prompt("paraphrase", "red", "square")
    assert failure(paraphrase, verdict("red", "square"), red, attributes) == "still shows red"
    assert failure(paraphrase, verdict("green", "circle"), red, attributes) == ""  # rest is not judged there
