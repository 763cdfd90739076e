"""`python -m batchkling` is the same as the `batchkling` command."""

from __future__ import annotations

from batchkling.cli import console_main

console_main()
