"""What a model folder may hold before anything reads it: regular files only, and JSON files of a
bounded size.

A FIFO blocks whoever opens it for reading until a writer comes, forever; a link to ``/dev/zero``
feeds a reader without end. diffusers and transformers open the files of a component folder by
name (``config.json``, ``tokenizer_config.json``, shards), so :func:`check_folder_files` refuses
any such file in the model folder and its component folders before the tool, or a library it
calls, opens one. :func:`vidunlearn.model.read_json` checks each file it reads again.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import ModelError

# A JSON file that diffusers or transformers parse themselves (UMT5's tokenizer.json is 16.8 MB).
MAX_LIBRARY_JSON_BYTES = 64 << 20
KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
         (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a folder"))
FIX = "a model folder holds only regular files: replace it with the real file (the folder may be hostile)"


def special_kind(mode: int) -> str | None:
    """None for a regular file; else what it is instead ("a FIFO", "a character device", ...)."""
    if stat.S_ISREG(mode):
        return None
    return next((name for test, name in KINDS if test(mode)), "not a file")


def refuse_special(path: Path, mode: int) -> None:
    kind = special_kind(mode)
    if kind is not None:
        raise ModelError(f"is {kind}, not a regular file", where=str(path), fix=FIX)


def _check_file(path: Path) -> None:
    try:
        info = os.stat(path)  # follows links: a link to /dev/zero is a character device here
    except FileNotFoundError:
        return  # a dangling link: whoever needs the file reports it missing
    except OSError as exc:  # e.g. a loop of links
        raise ModelError(f"cannot be read ({exc.strerror})", where=str(path), fix=FIX) from None
    refuse_special(path, info.st_mode)
    if path.suffix == ".json" and info.st_size > MAX_LIBRARY_JSON_BYTES:
        raise ModelError(f"is {info.st_size >> 20} MiB, more than the {MAX_LIBRARY_JSON_BYTES >> 20} MiB a JSON file "
                         "of a model may have", where=str(path), fix="re-download the model; the file may be hostile")


def check_folder_files(root: Path) -> None:
    """Refuse a FIFO, device or socket (or a link to one) among the files of ``root`` and of its
    folders one level down (the components, where libraries open files by name), and a JSON file
    over :data:`MAX_LIBRARY_JSON_BYTES`. ``.cache`` (huggingface_hub's metadata) is skipped."""
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        if entry.name == ".cache":
            continue
        if entry.is_dir():  # follows a link to a folder, as the libraries do
            for inner in sorted(os.scandir(entry.path), key=lambda e: e.name):
                if not inner.is_dir():
                    _check_file(Path(inner.path))
        else:
            _check_file(Path(entry.path))
