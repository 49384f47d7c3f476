"""A fake Object Detection endpoint that looks at what it is sent, and scenes to send it.

Scenes are white squares on black. The fake finds each white blob in the JPEG it receives
and answers with its box, as the built-in algorithm answers, but only for blobs at least
``min_width`` pixels wide *in what it received*: the way a real detector misses objects
shrunk below what its features can see. A blob touching the edge of the request is a piece
of an object cut by a tile border, answered with the box of the piece, as a detector
answers for a truncated object.
"""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

WHITE = 255
# Pixels brighter than this are part of a square, whatever JPEG did to its edges.
BRIGHT = 128


def scene(size: tuple[int, int], squares: Iterable[tuple[int, int, int]]) -> Image.Image:
    """A black RGB image with a white square (left, top, side) for each of ``squares``."""
    pixels = np.zeros((size[1], size[0]), dtype=np.uint8)
    for left, top, side in squares:
        pixels[top : top + side, left : left + side] = WHITE
    return Image.fromarray(pixels).convert("RGB")


def grid(
    size: tuple[int, int], side: int, pitch: int, margin: int = 0
) -> list[tuple[int, int, int]]:
    """Squares of ``side`` every ``pitch`` pixels, starting ``margin`` from the top left."""
    width, height = size
    return [
        (left, top, side)
        for top in range(margin, height - side + 1, pitch)
        for left in range(margin, width - side + 1, pitch)
    ]


def jpeg(image: Image.Image, **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=95, **options)
    return buffer.getvalue()


def blobs(mask: np.ndarray) -> list[tuple[int, int, int, int]]:
    """Boxes (left, top, right, bottom; right and bottom excluded) of the bright blobs of a
    mask whose blobs are axis-aligned rectangles that share no row band within a column
    band: the scenes above."""
    found = []
    for left, right in _runs(mask.any(axis=0)):
        band = mask[:, left:right]
        for top, bottom in _runs(band.any(axis=1)):
            columns = _runs(band[top:bottom].any(axis=0))
            found.extend((left + start, top, left + end, bottom) for start, end in columns)
    return found


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """[start, end) of each run of True."""
    padded = np.concatenate(([False], flags, [False])).astype(np.int8)
    changes = np.flatnonzero(np.diff(padded))
    return list(zip(changes[::2].tolist(), changes[1::2].tolist(), strict=True))


@dataclass
class FakeDetector:
    """``invoke(payload) -> body``; counts its calls and the most it had in flight."""

    min_width: int
    max_detections: int | None = None  # echoed like the torchvision detector when set
    score: float = 0.9
    calls: int = 0
    in_flight: int = 0
    most_in_flight: int = 0
    payload_sizes: list[tuple[int, int]] = field(default_factory=list)
    largest_payload: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, payload: bytes) -> bytes:
        with self._lock:
            self.calls += 1
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.largest_payload = max(self.largest_payload, len(payload))
        try:
            with Image.open(io.BytesIO(payload)) as image:
                size = image.size
                mask = np.asarray(image.convert("L")) > BRIGHT
            width, height = size
            prediction = [
                [0, self.score, left / width, top / height, right / width, bottom / height]
                for left, top, right, bottom in blobs(mask)
                if right - left >= self.min_width
            ]
            answer: dict[str, object] = {"prediction": prediction}
            if self.max_detections is not None:
                answer["prediction"] = prediction[: self.max_detections]
                answer["max_detections"] = self.max_detections
            with self._lock:
                self.payload_sizes.append(size)
            return json.dumps(answer).encode()
        finally:
            with self._lock:
                self.in_flight -= 1
