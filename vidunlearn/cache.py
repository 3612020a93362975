"""The reuse rule of the activation and refusal caches (docs/artifacts.md): an artifact is reused
only when its recorded cache key equals the key of the current inputs."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import ArtifactError, OutputError
from .progress import Reporter


def load_cached(load: Callable[[Path], Any], path: Path, key: str, what: str, reporter: Reporter, *,
           reuse: bool = True, force: bool = True) -> Any:
    """The artifact at ``path`` when its cache key equals ``key``; None (recompute) otherwise,
    also when the file is unreadable. A cache whose key does not match is never reused, and
    without ``force`` not replaced either (an OutputError). ``reuse=False`` never reads it."""
    if reuse and path.is_file():
        try:
            artifact = load(path)
        except ArtifactError:
            artifact = None
        if artifact is not None and artifact.meta.get("cache_key") == key:
            reporter.note(f"reusing cached {what} {path}")
            return artifact
    if os.path.lexists(path):
        if not force:
            raise OutputError(f"output already exists{f' and holds other {what}' if reuse else ''}", where=str(path),
                              fix="pass --force to replace it, or choose another path")
        reporter.note(f"cached {what} at {path} {'do not match these inputs' if reuse else 'not read (--no-cache)'}; recomputing")
    return None
