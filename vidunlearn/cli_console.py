"""The console side of the ``vidunlearn`` commands: results on stdout, progress and notes on stderr,
plain-text tables, and :func:`handled`, which turns library errors into one line and exit code 1
(Ctrl-C 130, SIGTERM 143). Every command module (cli.py, cli_attack.py) uses these same objects.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator

import typer
from rich.console import Console
from rich.markup import escape

from .errors import VidunlearnError
from .progress import Reporter

stdout = Console(width=None if os.isatty(1) else 160)
stderr = Console(stderr=True)


class RichReporter(Reporter):
    """Progress bars and notes on stderr; results stay on stdout."""

    @contextlib.contextmanager
    def task(self, description: str, total: float | None = None) -> Iterator[Callable[[float], None]]:
        from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn(),
                      console=stderr, transient=not stderr.is_terminal) as progress:
            task = progress.add_task(escape(description), total=total)
            yield lambda amount=1: progress.advance(task, amount)

    def note(self, message: str) -> None:
        stderr.print(f"[dim]{escape(message)}[/dim]", highlight=False, soft_wrap=True)


def table(title: str, columns: tuple[str, ...], rows: list[tuple[str, ...]], caption: str | None = None):
    """A rich Table whose title, caption and cells are plain text: file names, tensor keys and
    paths may contain ``[...]``, which rich would read as markup (or fail on)."""
    from rich.table import Table

    table = Table(title=escape(title), caption=escape(caption) if caption else None,
                  min_width=min(len(caption), 78) if caption else None)  # a caption on one line where it fits
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(escape(cell) for cell in row))
    return table


def say(text: str) -> None:
    """A result line on stdout, printed verbatim (no markup, no highlighting)."""
    stdout.print(escape(text), highlight=False)


class Terminated(KeyboardInterrupt):
    """SIGTERM (e.g. a cancelled CI job): unwinds and cleans up exactly like Ctrl-C, exit 143."""


def terminate(signum: int, frame: object) -> None:
    raise Terminated()


def handled(command: Callable) -> Callable:
    """Turn library errors and OSErrors into one line + exit 1, Ctrl-C into one line + exit 130
    (SIGTERM: 143)."""

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except VidunlearnError as exc:
            if os.environ.get("VIDUNLEARN_DEBUG"):
                raise
            stderr.print(f"[bold red]error:[/bold red] {escape(exc.one_line())}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except OSError as exc:  # e.g. an unreadable input file; outputs already turn these into OutputError
            if os.environ.get("VIDUNLEARN_DEBUG"):
                raise
            where = f"{exc.filename}: " if exc.filename else ""
            what = exc.strerror or (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            stderr.print(f"[bold red]error:[/bold red] {escape(where + what)}", highlight=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt as exc:
            kept = getattr(exc, "kept", None)  # a resumable run says what it kept (vidunlearn.runstore)
            stderr.print(f"interrupted: {kept or 'no partial output was left behind'}", highlight=False, soft_wrap=True)
            raise typer.Exit(143 if isinstance(exc, Terminated) else 130) from None

    return wrapper
