"""`apply --push-to-hub` for real, against the loopback Hub in tests/hubserver.py: create_repo +
upload_folder (inline base64 files and the LFS batch/upload/verify path), --private, a branch,
token from HF_TOKEN only; failures give one line and keep the local output."""

from __future__ import annotations

import socket
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from vidunlearn.cli import app

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from hubserver import HubServer  # noqa: E402

PAIRS = Path(__file__).resolve().parents[2] / "pairs"
TOKEN = "hf_loopbacktesttoken0123456789"
runner = CliRunner()


@pytest.fixture
def online(monkeypatch):
    """Allow loopback HTTP (conftest sets HF_HUB_OFFLINE=1); the server speaks LFS, not Xet."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DISABLE_XET", True)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)

    def point_to(url: str, token: str | None) -> None:
        monkeypatch.setattr(constants, "ENDPOINT", url)
        if token is None:
            monkeypatch.delenv("HF_TOKEN", raising=False)
        else:
            monkeypatch.setenv("HF_TOKEN", token)

    return point_to


def _apply(tiny_wan, out: Path, *extra: str):
    return runner.invoke(app, [str(a) for a in ("apply", "--model", tiny_wan, "--pairs", PAIRS / "violence.yaml",
                                                "--out", out, "--work-dir", out.parent / "work", *extra)])


@pytest.mark.parametrize("output_format", ["diffusers", "single-file"])
def test_push_uploads_exactly_the_files_written(tiny_wan, tmp_path, online, output_format):
    with HubServer(TOKEN, lfs_threshold=4096) as hub:
        online(hub.url, TOKEN)
        out = tmp_path / "out"
        result = _apply(tiny_wan, out, "--format", output_format, "--push-to-hub", "me/wan-noviolence",
                        "--private", "--hub-revision", "erased")
        assert result.exit_code == 0, result.output
        assert "pushed to" in result.output and TOKEN not in result.output
        repo = hub.state.repos["me/wan-noviolence"]
        assert repo["private"] is True
        arrived = repo["branches"]["erased"]
        written = {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()}
        assert arrived.keys() == written.keys()
        assert all(arrived[k] == written[k] for k in written)  # byte for byte
        assert "\n# me/wan-noviolence\n" in arrived["README.md"].decode()  # the card's title: the repo id
        large = [k for k, v in written.items() if len(v) > 4096]
        assert large and len(hub.state.lfs) >= 1  # the big files took the LFS path ...
        assert any(len(v) <= 4096 for v in written.values())  # ... small ones went inline
        assert all(TOKEN not in p.read_text(errors="ignore") for p in out.rglob("*") if p.is_file())
        assert ("PUT", f"/lfs/{next(iter(hub.state.lfs))}") in hub.state.requests


def test_push_with_a_wrong_token_says_so_and_keeps_the_output(tiny_wan, tmp_path, online):
    with HubServer(TOKEN) as hub:
        online(hub.url, "hf_wrong_token_value")
        out = tmp_path / "out"
        result = _apply(tiny_wan, out, "--format", "lora", "--push-to-hub", "me/x")
        assert result.exit_code == 1
        assert "HTTP 401" in result.output and "HF_TOKEN" in result.output and "kept" in result.output
        assert "hf_wrong_token_value" not in result.output and result.output.count("error:") == 1
        assert (out / "vidunlearn.json").is_file() and hub.state.repos == {}


def test_push_to_an_unreachable_hub_says_so_and_keeps_the_output(tiny_wan, tmp_path, online):
    with socket.socket() as sock:  # a port with nobody listening
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    online(f"http://127.0.0.1:{port}", TOKEN)
    out = tmp_path / "out"
    result = _apply(tiny_wan, out, "--format", "lora", "--push-to-hub", "me/x")
    assert result.exit_code == 1 and "cannot reach" in result.output and "kept" in result.output
    assert "Traceback" not in result.output and TOKEN not in result.output
    assert (out / "pytorch_lora_weights.safetensors").is_file()


def test_push_without_hf_token_is_refused_before_any_work(tiny_wan, tmp_path, online):
    online("http://127.0.0.1:9", None)
    out = tmp_path / "out"
    result = _apply(tiny_wan, out, "--push-to-hub", "me/x")
    assert result.exit_code == 1 and "HF_TOKEN is not set" in result.output
    assert not out.exists() and not (tmp_path / "work").exists()
