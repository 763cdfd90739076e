"""Pictures an export draws itself, with Pillow: title cards and captions.

A shot with no take to show still takes its place in an animatic, as a card
naming the shot and why it is missing (``s03 · failed``), and in a contact
sheet, as a grey tile. Text uses Pillow's own scalable font, so nothing depends
on the fonts of the machine.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import av
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "CARD_BACKGROUND",
    "MISSING_TILE",
    "draw_centered",
    "font",
    "frame_of",
    "title_card",
]

CARD_BACKGROUND = (24, 24, 28)
MISSING_TILE = (128, 128, 128)
_TEXT = (235, 235, 235)
_DIM = (170, 170, 176)

AnyFont = ImageFont.FreeTypeFont | ImageFont.ImageFont


@lru_cache(maxsize=16)
def font(size: int) -> AnyFont:
    """Pillow's bundled font at ``size`` pixels (its bitmap font without FreeType)."""
    try:
        return ImageFont.load_default(size=max(size, 6))
    except (OSError, TypeError, ValueError):  # pragma: no cover - Pillow without FreeType
        return ImageFont.load_default()


def draw_centered(
    draw: ImageDraw.ImageDraw,
    box: tuple[int, int, int, int],
    text: str,
    size: int,
    fill: tuple[int, int, int] = _TEXT,
) -> None:
    """``text`` centred in ``box`` (left, top, right, bottom), shrunk until it fits."""
    left, top, right, bottom = box
    while True:
        face = font(size)
        x0, y0, x1, y1 = draw.textbbox((0, 0), text, font=face)
        if x1 - x0 <= right - left - 4 or size <= 6:
            break
        size -= 1
    x = left + (right - left - (x1 - x0)) // 2 - x0
    y = top + (bottom - top - (y1 - y0)) // 2 - y0
    draw.text((x, y), text, font=face, fill=fill)


def title_card(width: int, height: int, shot: str, why: str) -> Image.Image:
    """A card for a shot with no take: its id large, and why below it, on a dark ground."""
    image = Image.new("RGB", (width, height), CARD_BACKGROUND)
    draw = ImageDraw.Draw(image)
    middle = height // 2
    draw_centered(draw, (0, middle - height // 3, width, middle + height // 20), shot, height // 4)
    draw_centered(
        draw, (0, middle + height // 12, width, middle + height // 3), why, height // 9, _DIM
    )
    return image


def frame_of(image: Image.Image, pix_fmt: str = "yuv420p") -> Any:
    """``image`` as a PyAV video frame in ``pix_fmt``."""
    frame = av.VideoFrame.from_image(image)  # type: ignore[no-untyped-call]
    return frame.reformat(format=pix_fmt)
