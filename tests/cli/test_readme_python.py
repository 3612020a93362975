"""The README's Python example runs as printed (in a scratch folder that sees the checkout's models
and pairs), and writes what it says."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH_MODEL = ROOT / "models" / "shapes-wan"


@pytest.mark.skipif(not (BENCH_MODEL / "model_index.json").is_file(), reason="models/shapes-wan is not in this checkout")
def test_the_readme_python_example_runs(tmp_path, monkeypatch, capsys):
    blocks = re.findall(r"```python\n(.*?)```", (ROOT / "README.md").read_text(encoding="utf-8"), re.S)
    assert len(blocks) == 1
    for name in ("models", "pairs"):
        (tmp_path / name).symlink_to(ROOT / name)
    monkeypatch.chdir(tmp_path)
    exec(compile(blocks[0], "README.md", "exec"), {})
    manifest = (tmp_path / "out" / "shapes-nored" / "vidunlearn.json").read_text()
    assert '"format": "lora"' in manifest and "'mode': 'remap'" in capsys.readouterr().out
