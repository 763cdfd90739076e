"""`make bench`: run every benchmark module, or those named on the command line.

Each module `tests/bench/bench_*.py` has a `main() -> None` that prints its figures.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
from pathlib import Path


def _modules() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if m.name.startswith("bench_"))


def main(argv: list[str]) -> int:
    names = argv or _modules()
    for name in names:
        mod = importlib.import_module(
            f"tests.bench.{name if name.startswith('bench_') else 'bench_' + name}"
        )
        print(f"== {mod.__name__} ==", flush=True)
        mod.main()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
