"""Delivering the chosen takes of a run: an animatic, an OpenTimelineIO timeline, a contact sheet.

``cut_of`` decides which takes go into the cut (the review's picks and
rejects, ``TakesMode``) and why a shot has none; the writers each make one
file from that cut, atomically, outside the run's ``videos/``, which they only
read; ``record_exports`` notes the files in ``<run-dir>/exports.json``.

    takes.py       which takes, and their files (pure but for a size check per file)
    probe.py       what a take's video is: format, length (PyAV, no decoding)
    animatic.py    the MP4: stream copy when the takes agree (streamcopy.py), else one
                   re-encode (reencode.py); title cards for missing shots (cards.py)
    timeline.py    the .otio file
    contact.py     the PNG grid of poster frames
    record.py      exports.json
    files.py       atomic, fsynced writes, and the videos/ rule
"""

from __future__ import annotations

from batchkling.errors import CorruptTakeError, ExportWriteError
from batchkling.export.animatic import Animatic, write_animatic
from batchkling.export.contact import ContactSheet, write_contact_sheet
from batchkling.export.record import EXPORTS_NAME, read_exports, record_exports
from batchkling.export.takes import Cut, CutShot, Take, cut_of
from batchkling.export.timeline import Timeline, write_timeline

__all__ = [
    "EXPORTS_NAME",
    "Animatic",
    "ContactSheet",
    "CorruptTakeError",
    "Cut",
    "CutShot",
    "ExportWriteError",
    "Take",
    "Timeline",
    "cut_of",
    "read_exports",
    "record_exports",
    "write_animatic",
    "write_contact_sheet",
    "write_timeline",
]
