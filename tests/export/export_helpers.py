"""What the export tests share: running the command, reading videos back, the videos/ listing."""

from __future__ import annotations

import os
from pathlib import Path

import av

from batchkling.ledger import fold_ledger
from tests.runner_helpers import Result, run_cli

__all__ = ["export", "frame_sizes", "listing", "packets_of", "take_path", "video_length"]


def export(*args: str | Path) -> Result:
    """``batchkling export ARGS`` in this process."""
    return run_cli("export", *(str(a) for a in args))


def take_path(run_dir: Path, job: str) -> Path:
    """The absolute path of ``job``'s video, as the ledger records it."""
    output = fold_ledger(run_dir / "ledger.jsonl").state.record(job).output
    assert output is not None, job
    return (run_dir / output).absolute()


def packets_of(path: Path) -> list[bytes]:
    """The bytes of every video packet of ``path``, in file order."""
    with av.open(str(path)) as c:
        return [bytes(p) for p in c.demux(c.streams.video[0]) if p.size]


def video_length(path: Path) -> tuple[float, int]:
    """The length of ``path``'s video in seconds (first frame's start to last one's end)
    and its number of decoded frames."""
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        frames = list(c.decode(stream))
    step = 1 / float(stream.average_rate)
    first = float(frames[0].pts * frames[0].time_base)
    last = float(frames[-1].pts * frames[-1].time_base)
    return last + step - first, len(frames)


def frame_sizes(path: Path) -> set[tuple[int, int]]:
    """The size of every decoded frame of ``path``."""
    with av.open(str(path)) as c:
        return {(f.width, f.height) for f in c.decode(c.streams.video[0])}


def listing(directory: Path) -> list[tuple[str, int, int]]:
    """Every file under ``directory``: its name, size and modification time (ns)."""
    out = []
    for root, _dirs, files in os.walk(directory):
        for name in files:
            st = os.stat(os.path.join(root, name))
            out.append((os.path.join(root, name), st.st_size, st.st_mtime_ns))
    return sorted(out)
