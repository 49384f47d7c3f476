"""Images as the detectors take them, the same in training and in serving."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image


def load_image(source: bytes | Path, image_size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """The image as a (3, H, W) float tensor in [0, 1], and its (width, height) as stored.

    An image larger than ``image_size`` on its longest side is shrunk to it here: the model
    would shrink it to that size anyway, and Pillow does it faster than torch on a large
    photo; boxes found on the smaller image are fractions of it all the same.
    """
    with Image.open(io.BytesIO(source) if isinstance(source, bytes) else source) as opened:
        image = opened.convert("RGB")
    size = image.size
    longest = max(size)
    if longest > image_size:
        scale = image_size / longest
        shrunk = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
        image = image.resize(shrunk, Image.Resampling.BILINEAR)
    pixels = torch.from_numpy(np.asarray(image, dtype=np.uint8).copy())
    return pixels.permute(2, 0, 1).float().div_(255.0), size
