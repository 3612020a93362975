"""docs/cli.md is generated from the real --help; it must match the code."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_cli_reference_matches_help():
    result = subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_cli_docs.py"), "--check"],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, "docs/cli.md is stale: run `make docs`\n" + result.stdout + result.stderr


def test_help_is_fast_and_does_not_import_torch():
    code = "import sys, vidunlearn.cli; vidunlearn.cli.app(['--help'], standalone_mode=False); " \
           "assert 'torch' not in sys.modules and 'diffusers' not in sys.modules"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0, result.stderr
