"""The project's exceptions. Every message says what is wrong, where, and how to fix it.

The CLI turns any :class:`VidunlearnError` into one line on stderr and exit code 1; anything else
is a bug and shows a traceback only when ``VIDUNLEARN_DEBUG=1``.
"""

from __future__ import annotations


class VidunlearnError(Exception):
    """Base class: a user-facing error with a one-line message and an optional fix."""

    def __init__(self, what: str, *, where: str | None = None, fix: str | None = None) -> None:
        self.what = what
        self.where = where
        self.fix = fix
        super().__init__(self.one_line())

    def one_line(self) -> str:
        parts = [f"{self.where}: {self.what}" if self.where else self.what]
        if self.fix:
            parts.append(self.fix)
        return " — ".join(parts)


class PairsError(VidunlearnError):
    """A prompt-pair file is missing, malformed or semantically unusable."""


class ModelError(VidunlearnError):
    """A model cannot be found, is of an unsupported family, or lacks a targeted module."""


class ArtifactError(VidunlearnError):
    """A cached artifact is corrupt, of another schema, or from another model/pairs file."""


class FactorizeError(VidunlearnError):
    """The data cannot support the requested factorisation (rank too high, degenerate data)."""


class OutputError(VidunlearnError):
    """An output path exists without --force, or cannot be written."""


class HubError(VidunlearnError):
    """Talking to the Hugging Face Hub failed."""
