"""The contact sheet: the poster frame of every chosen take in a grid, one PNG.

The poster is a take's first frame, decoded with PyAV (not the JPEG beside the
video, which a run may not have kept). Each tile is the frame scaled to fit a
16:9 box over a caption strip naming the shot (and the take, when the shot has
several); a shot with no take is a grey tile captioned with why.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import av
from PIL import Image, ImageDraw

from batchkling.errors import CorruptTakeError
from batchkling.export.cards import MISSING_TILE, draw_centered
from batchkling.export.files import write_whole
from batchkling.export.probe import FAILURES
from batchkling.export.takes import Cut, CutShot, Take

__all__ = ["CAPTION", "COLUMNS", "TILE", "ContactSheet", "grid_of", "poster", "write_contact_sheet"]

TILE = (320, 180)  # the picture box of a tile
CAPTION = 28  # the caption strip below it
COLUMNS = 5
_GAP = 8
_BACKGROUND = (255, 255, 255)
_CAPTION_TEXT = (20, 20, 20)


@dataclass(frozen=True)
class ContactSheet:
    """What was written: where, how many shots, tiles and missing shots, the grid's shape."""

    path: Path
    shots: int
    takes: int
    missing: int
    columns: int
    rows: int
    size: tuple[int, int]


def grid_of(tiles: int, columns: int = COLUMNS) -> tuple[int, int, tuple[int, int]]:
    """Columns, rows and pixel size of a sheet of ``tiles`` tiles."""
    cols = max(1, min(columns, tiles))
    rows = max(1, math.ceil(tiles / cols))
    width = _GAP + cols * (TILE[0] + _GAP)
    height = _GAP + rows * (TILE[1] + CAPTION + _GAP)
    return cols, rows, (width, height)


def poster(take: Take) -> Image.Image:
    """The first frame of ``take``'s video; ``CorruptTakeError`` when it does not decode."""
    try:
        with av.open(str(take.path)) as container:
            if not container.streams.video:
                raise CorruptTakeError(take.key, str(take.path), "it has no video stream")
            frame: Any = next(container.decode(container.streams.video[0]), None)
            if frame is None:
                raise CorruptTakeError(take.key, str(take.path), "its first frame does not decode")
            image: Image.Image = frame.to_image()
            return image
    except FAILURES as exc:
        raise CorruptTakeError(take.key, str(take.path), str(exc)) from None


def _fitted(picture: Image.Image) -> Image.Image:
    """``picture`` scaled, up or down, to fit a tile's box."""
    scale = min(TILE[0] / picture.width, TILE[1] / picture.height)
    size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
    return picture.resize(size, Image.Resampling.BILINEAR)


def _tiles(cut: Cut) -> list[tuple[CutShot, Take | None]]:
    return [(s, t) for s in cut.shots for t in (s.takes or (None,))]


def _caption(shot: CutShot, take: Take | None) -> str:
    if take is None:
        return f"{shot.shot.id} · {shot.missing}"
    if len(shot.job_keys) > 1:
        return f"{shot.shot.id} · take {take.job.take}"
    return shot.shot.id


def write_contact_sheet(
    cut: Cut, target: Path, *, columns: int = COLUMNS, tick: Callable[[], None] | None = None
) -> ContactSheet:
    """Draw the sheet of ``cut`` and write it to ``target`` as a PNG (atomically)."""
    tiles = _tiles(cut)
    cols, rows, size = grid_of(len(tiles), columns)
    sheet = Image.new("RGB", size, _BACKGROUND)
    draw = ImageDraw.Draw(sheet)
    for n, (shot, take) in enumerate(tiles):
        left = _GAP + (n % cols) * (TILE[0] + _GAP)
        top = _GAP + (n // cols) * (TILE[1] + CAPTION + _GAP)
        if take is None:
            draw.rectangle((left, top, left + TILE[0] - 1, top + TILE[1] - 1), fill=MISSING_TILE)
        else:
            picture = _fitted(poster(take))
            offset = ((TILE[0] - picture.width) // 2, (TILE[1] - picture.height) // 2)
            draw.rectangle((left, top, left + TILE[0] - 1, top + TILE[1] - 1), fill=(0, 0, 0))
            sheet.paste(picture, (left + offset[0], top + offset[1]))
        box = (left, top + TILE[1], left + TILE[0], top + TILE[1] + CAPTION)
        draw_centered(draw, box, _caption(shot, take), CAPTION * 2 // 3, _CAPTION_TEXT)
        if tick is not None:
            tick()
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    write_whole(target, buf.getvalue())
    return ContactSheet(
        path=target,
        shots=len(cut.shots),
        takes=len(cut.takes),
        missing=len(cut.missing),
        columns=cols,
        rows=rows,
        size=size,
    )
