"""The model card's base_model and title rules (vidunlearn.card), without building a model."""

from __future__ import annotations

import types
from pathlib import Path

from vidunlearn.card import CardOptions, base_model_id, is_hub_id, title


def _source(name: str, repo_id: str | None = None):
    return types.SimpleNamespace(name=name, repo_id=repo_id, path=Path(name))


def test_base_model_comes_from_the_option_the_hub_id_or_alias_then_the_base_card():
    alias = _source("wan2.1", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers")  # resolve_model turns the alias into its id
    assert base_model_id(alias, {}, CardOptions()) == ("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", None)
    assert base_model_id(alias, {}, CardOptions(base_model_id="me/base")) == ("me/base", None)
    local = _source("/tmp/some/folder")
    assert base_model_id(local, {"base_model": "org/model"}, CardOptions()) == ("org/model", None)
    for card in ({}, {"base_model": "/tmp/x"}, {"base_model": ["org/a", "org/b"]}, {"base_model": "../a/b"}):
        found, why = base_model_id(local, card, CardOptions())
        assert found is None and why and "\n" not in why and "--base-model-id" in why, card


def test_a_folder_here_is_not_a_hub_id(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert is_hub_id("models/shapes-wan")
    (tmp_path / "models" / "shapes-wan").mkdir(parents=True)
    assert not is_hub_id("models/shapes-wan") and not is_hub_id("gpt2") and not is_hub_id(None)


def test_title_is_the_pushed_repo_or_base_and_concepts_never_the_output_folder():
    local = _source("models/shapes-wan")
    assert title(local, None, ["circle", "left"], CardOptions()) == "shapes-wan without circle, left"
    assert title(local, "org/base", ["circle"], CardOptions()) == "org/base without circle"
    assert title(local, "org/base", ["circle"], CardOptions(repo_id="me/nocircle")) == "me/nocircle"
