"""Images as the detectors take them, the same in training and in serving: upright.

A photo's EXIF orientation is applied, as the counter applies it before sending an image
(counting_core/imaging/images.py) and as browsers show it to the people who draw the boxes; a
phone photo stored sideways would otherwise train and be counted sideways.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

# EXIF orientations that turn the image a quarter (width and height swap).
# https://www.cipa.jp/std/documents/download_e.html?DC-008-Translation-2023-E (Exif 3.0, 4.6.5)
EXIF_ORIENTATION = 0x0112
QUARTER_TURNS = (5, 6, 7, 8)


def upright_size(path: Path) -> tuple[int, int]:
    """(width, height) of the image as shown, from its header alone (nothing decoded)."""
    with Image.open(path) as opened:
        width, height = opened.size
        turned = opened.getexif().get(EXIF_ORIENTATION) in QUARTER_TURNS
    return (height, width) if turned else (width, height)


def load_image(source: bytes | Path, image_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """The upright image as a (3, H, W) float tensor in [0, 1], and its upright (width, height).

    An image larger than ``image_size`` on its longest side is shrunk to it here: the model
    would shrink it to that size anyway, and Pillow does it faster than torch on a large
    photo; boxes found on the smaller image are fractions of it all the same.
    """
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as opened:
        image = ImageOps.exif_transpose(opened).convert("RGB")
    size = image.size
    longest = max(size)
    if longest > image_size:
        scale = image_size / longest
        shrunk = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
        image = image.resize(shrunk, Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
    return pixels.permute(2, 0, 1).float().div_(255.0), size
