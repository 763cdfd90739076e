"""The contact sheet, opened with Pillow: the grid's size, poster frames, captions, grey tiles."""

from __future__ import annotations

from typing import Any

from PIL import Image, ImageChops

from batchkling.export.cards import MISSING_TILE
from batchkling.export.contact import CAPTION, TILE, grid_of
from tests.export.conftest import Board
from tests.export.export_helpers import export, listing

_GAP = 8


def _tile_box(n: int, cols: int) -> tuple[int, int, int, int]:
    left = _GAP + (n % cols) * (TILE[0] + _GAP)
    top = _GAP + (n // cols) * (TILE[1] + CAPTION + _GAP)
    return (left, top, left + TILE[0], top + TILE[1])


def test_a_tile_per_take_and_a_grey_one_per_missing_shot(failed_board: Board, fresh: Any) -> None:
    """--takes all: six posters and one grey tile in a 5-column grid, each captioned."""
    board = fresh(failed_board)
    before = listing(board.run_dir / "videos")
    out = board.run_dir.parent / "sheet.png"
    res = export(board.manifest, "--run-dir", board.run_dir, "--contact-sheet", out,
                 "--takes", "all")  # fmt: skip
    assert res.code == 0, res.err
    cols, rows, size = grid_of(7)
    assert (cols, rows) == (5, 2)
    assert res.out == (
        f"contact_sheet: {out}: 4 shots, 6 takes, 1 missing, 5x2 tiles, {size[0]}x{size[1]} px\n"
    )
    with Image.open(out) as img:
        sheet = img.convert("RGB")
    assert sheet.size == size
    blank = Image.new("RGB", (TILE[0], CAPTION), (255, 255, 255))
    for n in range(7):
        left, top, right, bottom = _tile_box(n, cols)
        caption = sheet.crop((left, bottom, right, bottom + CAPTION))
        assert ImageChops.difference(caption, blank).getbbox() is not None, n
        picture = sheet.crop((left, top, right, bottom))
        middle = picture.getpixel((TILE[0] // 2, TILE[1] // 3))
        if n == 6:
            assert middle == MISSING_TILE
        else:
            assert (
                len(picture.getcolors(maxcolors=100_000) or ()) > 50
            )  # a frame of the take, not a flat tile
    # The eighth cell of the grid is empty: as white as the sheet.
    empty = sheet.crop(_tile_box(7, cols))
    assert empty.getextrema() == ((255, 255),) * 3
    assert listing(board.run_dir / "videos") == before
