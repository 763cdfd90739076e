"""`python -m batchkling` is the same as the `batchkling` command."""

from __future__ import annotations

import sys

try:
    from batchkling.cli import console_main
except KeyboardInterrupt:  # Ctrl-C while the program starts: no traceback
    sys.exit(130)

console_main()
