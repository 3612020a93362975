"""``python -m vidunlearn ...``: the same as the ``vidunlearn`` command."""

from .cli import main

main()
