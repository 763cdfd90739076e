"""Sample frames for the offline demo: a PNG per name, made in pure Python.

Each name gets a gradient in a colour derived from its hash, with the name
written across it in a 3x5 bitmap font, so a person looking at a report can
tell which frame is which. Encoding is plain zlib and struct: no imaging
library is needed to run the emulator.
"""

from __future__ import annotations

import colorsys
import hashlib
import re
import struct
import zlib
from functools import lru_cache

__all__ = ["FRAME_NAME", "HEIGHT", "WIDTH", "encode_png", "render_frame"]

WIDTH = 640
HEIGHT = 360
FRAME_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")

# 3 columns x 5 rows per glyph; "#" is ink.
_FONT_ROWS = {
    "0": "### #.# #.# #.# ###",
    "1": ".#. ##. .#. .#. ###",
    "2": "### ..# ### #.. ###",
    "3": "### ..# .## ..# ###",
    "4": "#.# #.# ### ..# ..#",
    "5": "### #.. ### ..# ###",
    "6": "### #.. ### #.# ###",
    "7": "### ..# .#. .#. .#.",
    "8": "### #.# ### #.# ###",
    "9": "### #.# ### ..# ###",
    "A": ".#. #.# ### #.# #.#",
    "B": "##. #.# ##. #.# ##.",
    "C": ".## #.. #.. #.. .##",
    "D": "##. #.# #.# #.# ##.",
    "E": "### #.. ##. #.. ###",
    "F": "### #.. ##. #.. #..",
    "G": ".## #.. #.# #.# .##",
    "H": "#.# #.# ### #.# #.#",
    "I": "### .#. .#. .#. ###",
    "J": "..# ..# ..# #.# .#.",
    "K": "#.# #.# ##. #.# #.#",
    "L": "#.. #.. #.. #.. ###",
    "M": "#.# ### ### #.# #.#",
    "N": "##. #.# #.# #.# #.#",
    "O": ".#. #.# #.# #.# .#.",
    "P": "##. #.# ##. #.. #..",
    "Q": ".#. #.# #.# ##. .##",
    "R": "##. #.# ##. #.# #.#",
    "S": ".## #.. .#. ..# ##.",
    "T": "### .#. .#. .#. .#.",
    "U": "#.# #.# #.# #.# ###",
    "V": "#.# #.# #.# #.# .#.",
    "W": "#.# #.# ### ### #.#",
    "X": "#.# #.# .#. #.# #.#",
    "Y": "#.# #.# .#. .#. .#.",
    "Z": "### ..# .#. #.. ###",
    "-": "... ... ### ... ...",
    "_": "... ... ... ... ###",
}
_FONT = {ch: rows.split() for ch, rows in _FONT_ROWS.items()}


def encode_png(width: int, height: int, rows: bytes) -> bytes:
    """An 8-bit RGB PNG from raw scanlines (each a filter byte then width x 3 bytes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows, 6))
        + chunk(b"IEND", b"")
    )


def _base_colour(name: str) -> tuple[float, float, float]:
    hue = hashlib.sha256(name.encode()).digest()[0] / 256
    return colorsys.hsv_to_rgb(hue, 0.65, 0.95)


@lru_cache(maxsize=256)
def render_frame(name: str, width: int = WIDTH, height: int = HEIGHT) -> bytes:
    """The PNG for ``name``: the same bytes every time for the same name."""
    r, g, b = _base_colour(name)
    stride = 1 + width * 3
    # Brightness rises left to right; each band of 8 rows is a little darker
    # than the one above, so the frame is a gradient both ways yet only
    # height / 8 distinct scanlines are computed.
    ramp = [0.35 + 0.65 * x / max(width - 1, 1) for x in range(width)]
    buf = bytearray()
    for band in range(0, height, 8):
        shade = 1.0 - 0.45 * band / max(height, 1)
        line = bytearray(b"\x00")
        for f in ramp:
            k = f * shade * 255
            line += bytes((int(r * k), int(g * k), int(b * k)))
        for _ in range(min(8, height - band)):
            buf += line
    _draw_text(buf, stride, width, height, name.upper())
    return encode_png(width, height, bytes(buf))


def _draw_text(buf: bytearray, stride: int, width: int, height: int, text: str) -> None:
    glyphs = [_FONT.get(ch) for ch in text]
    # The text spans at most four fifths of the width and a third of the height.
    scale = max(2, min(height // 15, (width * 4 // 5) // max(4 * len(glyphs) - 1, 1)))
    text_w = (4 * len(glyphs) - 1) * scale
    left = max((width - text_w) // 2, 0)
    top = (height - 5 * scale) // 2
    for i, glyph in enumerate(glyphs):
        if glyph is None:
            continue
        x0 = left + i * 4 * scale
        for gy, row in enumerate(glyph):
            for gx, cell in enumerate(row):
                if cell == "#":
                    _fill(buf, stride, x0 + gx * scale, top + gy * scale, scale, scale, width)


def _fill(buf: bytearray, stride: int, x: int, y: int, w: int, h: int, width: int) -> None:
    w = min(w, width - x)
    if w <= 0:
        return
    white = b"\xff\xff\xff" * w
    for row in range(y, y + h):
        start = row * stride + 1 + x * 3
        buf[start : start + w * 3] = white
