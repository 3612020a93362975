"""How the library reports progress without depending on a terminal: a tiny protocol that the
CLI implements with rich (to stderr) and that is silent by default."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator


class Reporter:
    """Silent reporter. Subclass and override to show progress and notes."""

    @contextlib.contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[Callable[[float], None]]:
        yield lambda amount=1: None

    def note(self, message: str) -> None:
        """A one-line remark for the user (e.g. "reusing cached activations")."""


SILENT = Reporter()
