"""Burned-in text (portable/supine stamps, site marks) as bitmaps, rendered once per process with Pillow's font."""

from __future__ import annotations

import functools

import numpy as np

Corner = str  # "top_left" | "top_right" | "bottom_left" | "bottom_right"


@functools.lru_cache(maxsize=64)
def text_bitmap(text: str, height: int, box: bool = False) -> np.ndarray:
    """float32 (h, w) in [0, 1]: anti-aliased text about ``height`` pixels tall; ``box`` draws a frame around it."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=max(6, height))
    left, top, right, bottom = font.getbbox(text)
    pad = max(1, height // 5) if box else 0
    width, tall = right - left + 2 * pad + 2, bottom - top + 2 * pad + 2
    image = Image.new("L", (width, tall), 0)
    draw = ImageDraw.Draw(image)
    draw.text((pad + 1 - left, pad + 1 - top), text, fill=255, font=font)
    if box:
        draw.rectangle((0, 0, width - 1, tall - 1), outline=255, width=max(1, height // 10))
    bitmap = np.asarray(image, dtype=np.float32) / 255.0
    bitmap.setflags(write=False)
    return bitmap


def place(size: int, bitmap: np.ndarray, corner: Corner, margin: int) -> tuple[slice, slice]:
    """Slices of a (size, size) image where ``bitmap`` sits in ``corner``, ``margin`` pixels in."""
    h, w = bitmap.shape
    h, w = min(h, size), min(w, size)
    top = margin if corner.startswith("top") else size - margin - h
    left = margin if corner.endswith("left") else size - margin - w
    top, left = int(np.clip(top, 0, size - h)), int(np.clip(left, 0, size - w))
    return slice(top, top + h), slice(left, left + w)


def burn(image: np.ndarray, region: np.ndarray, code: int, bitmap: np.ndarray, where: tuple[slice, slice],
         value: float) -> None:
    """Burn text into ``image`` (in place, at ``value``) and mark its pixels with ``code`` in ``region``."""
    h = where[0].stop - where[0].start
    w = where[1].stop - where[1].start
    alpha = bitmap[:h, :w]
    patch = image[where]
    image[where] = patch * (1 - alpha) + np.float32(value) * alpha
    region[where][alpha > 0.1] = code
