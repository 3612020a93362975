"""A test hook for fault injection: named pause points in the writing code.

``VIDUNLEARN_PAUSE_AT=<name>`` makes the process print ``vidunlearn: paused at <name>`` to
stderr and sleep when it reaches that point, so a test can SIGKILL or SIGINT it at an exact
moment (tests/cli/test_kill.py). Unset (always, outside tests), a pause point costs one
environment lookup. Points:

- ``artifact-written``: an artifact's temporary file is complete, not yet renamed into place;
- ``file-written``: one more file of a checkpoint is in its temporary folder (every file);
- ``before-rename``: an output folder is complete in its temporary sibling, not yet renamed;
- ``after-rename``: the output is in place (before an optional Hub push).
- ``clip-saved``: ``sample`` or ``eval`` has written one clip and its record to ``<out>.partial``.

With ``VIDUNLEARN_RESUME_FILE=<path>`` the pause ends, and the run goes on, as soon as that file
exists (tests/cli/test_hostile_cli.py lets a second run meet a paused first one, then resumes it).
"""

from __future__ import annotations

import os
import sys
import time


def pause_point(name: str) -> None:
    if os.environ.get("VIDUNLEARN_PAUSE_AT") == name:
        print(f"vidunlearn: paused at {name}", file=sys.stderr, flush=True)
        resume = os.environ.get("VIDUNLEARN_RESUME_FILE")
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline and not (resume and os.path.exists(resume)):
            time.sleep(0.05 if resume else 600)
