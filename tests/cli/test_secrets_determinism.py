"""The Hub token is never written anywhere, and two runs give bit-identical outputs.

One real subprocess runs `apply --pairs ... --push-to-hub` with a planted HF_TOKEN against a
dead endpoint (a closed loopback port, HF_HUB_OFFLINE=0, HF_HOME in the test folder): every byte
it writes (checkpoint, caches, Hub home) and prints is searched for the token. The same command
without the push then runs in-process into another folder, with another PYTHONHASHSEED, and every
byte of both outputs and both caches is compared.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import PAIRS, checkpoint_problems
from vidunlearn.cli import app

TOKEN = "hf_vidunlearnPlantedSecret0123456789abcdef"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _apply_args(model: Path, root: Path) -> list[str]:
    return ["apply", "--model", str(model), "--pairs", str(PAIRS / "violence.yaml"), "--pairs", str(PAIRS / "nudity.yaml"),
            "--rank", "2", "--out", str(root / "out"), "--work-dir", str(root / "work")]


def _push_run(tiny_wan: Path, root: Path, hash_seed: str) -> dict:
    """apply --push-to-hub in a subprocess against a closed port: the upload fails, the output stays."""
    env = {**os.environ, "HF_TOKEN": TOKEN, "HUGGING_FACE_HUB_TOKEN": TOKEN, "HF_HUB_OFFLINE": "0",
           "HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}", "HF_HOME": str(root / "hf-home"), "PYTHONHASHSEED": hash_seed}
    env.pop("VIDUNLEARN_DEBUG", None)
    args = [sys.executable, "-m", "vidunlearn.cli", *_apply_args(tiny_wan, root), "--push-to-hub", "someone/tiny-noviolence"]
    done = subprocess.run(args, env=env, capture_output=True, timeout=600)
    return {"root": root, "code": done.returncode, "stdout": done.stdout, "stderr": done.stderr}


@pytest.fixture(scope="module")
def pushed(tiny_wan, tmp_path_factory) -> dict:
    return _push_run(tiny_wan, tmp_path_factory.mktemp("push"), "12345")


def test_failed_push_is_one_line_and_keeps_the_output(pushed):
    assert pushed["code"] == 1, pushed["stderr"]
    errors = [line for line in pushed["stderr"].decode().splitlines() if "error:" in line]
    assert len(errors) == 1 and "upload failed" in errors[0] and "Traceback" not in pushed["stderr"].decode()
    assert checkpoint_problems(pushed["root"] / "out") == []


def test_token_is_never_written_or_printed(pushed):
    written = [p for p in pushed["root"].rglob("*") if p.is_file()]
    assert len(written) > 20  # checkpoint, caches: the search covers real output
    needle = TOKEN.encode()
    assert needle not in pushed["stdout"] and needle not in pushed["stderr"]
    leaks = [str(p) for p in written if needle in p.read_bytes()]
    assert leaks == []


def test_two_runs_are_bit_identical(pushed, tiny_wan, tmp_path):
    """Nothing legitimately differs between two runs of the same command (another hash seed): the
    manifest holds no timestamp and no absolute output path (the model path is the same in both
    runs; the output folders share their name; the card's title is the --push-to-hub repo id)."""
    again = _push_run(tiny_wan, tmp_path, "54321")
    assert again["code"] == pushed["code"] == 1, again["stderr"]
    for folder in ("out", "work"):
        first, second = pushed["root"] / folder, tmp_path / folder
        files = sorted(p.relative_to(first).as_posix() for p in first.rglob("*") if p.is_file())
        assert files == sorted(p.relative_to(second).as_posix() for p in second.rglob("*") if p.is_file())
        different = [rel for rel in files if (first / rel).read_bytes() != (second / rel).read_bytes()]
        assert different == [], folder


def test_token_echoed_back_by_a_hostile_server_is_not_printed(tiny_wan, tiny_refusal, tmp_path, monkeypatch):
    """A loopback 'Hub' answers every request 401 with the Authorization header it received in
    the body: an error message built from the response text would print the token. Both an
    upload and a model download meet it."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    import huggingface_hub.constants as constants

    received: list[str] = []

    class Echo(BaseHTTPRequestHandler):
        def _reply(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            received.append(self.headers.get("authorization") or "")
            body = json.dumps({"error": f"token {self.headers.get('authorization')} has no write access"}).encode()
            self.send_response(401)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_PUT = do_HEAD = _reply

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Echo)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        monkeypatch.setenv("HF_TOKEN", TOKEN)
        monkeypatch.setenv("HF_HUB_OFFLINE", "0")
        monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{server.server_address[1]}")
        monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
        result = CliRunner().invoke(app, ["apply", "--model", str(tiny_wan), "--refusal", str(tiny_refusal),
                                          "--out", str(tmp_path / "out"), "--push-to-hub", "someone/x"])
        download = CliRunner().invoke(app, ["extract", "--model", "someone/model", "--pairs", str(PAIRS / "violence.yaml"),
                                            "--work-dir", str(tmp_path / "work")])
    finally:
        server.shutdown()
    assert any(TOKEN in header for header in received), "the planted token was not used"
    assert result.exit_code == 1 and "HTTP 401" in result.output and TOKEN not in result.output
    assert download.exit_code == 1 and download.output.count("error:") == 1 and TOKEN not in download.output
    assert [p for p in tmp_path.rglob("*") if p.is_file() and TOKEN.encode() in p.read_bytes()] == []
