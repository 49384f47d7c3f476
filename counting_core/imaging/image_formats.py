"""Tell JPEG from PNG by their first bytes: all the built-in Object Detection algorithm takes.

https://docs.aws.amazon.com/sagemaker/latest/dg/object-detection-in-formats.html

Apart from ``images`` (which needs Pillow) so that what only sniffs a file, such as a bulk
run's selection and the stacks that name its layout, imports no imaging library.
"""

from __future__ import annotations

from typing import Literal

from counting_core.errors import InputError

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
# Bytes read before the body to tell the format: the longer of the two signatures.
MAGIC_BYTES = len(PNG_MAGIC)
# Names both counting pipelines take as images (compared in lower case); the first bytes
# decide whether a file really is one.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".jpe", ".jfif", ".png")

ImageFormat = Literal["jpeg", "png"]


def is_image_name(key: str) -> bool:
    """Whether ``key`` is named like an image, in any letter case."""
    return key.lower().endswith(IMAGE_SUFFIXES)


def detect_format(data: bytes) -> ImageFormat:
    """Name the format from the first bytes; raise InputError unless JPEG or PNG."""
    if not data:
        raise InputError("image is empty")
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(PNG_MAGIC):
        return "png"
    raise InputError(f"not a JPEG or PNG image (starts with {bytes(data[:MAGIC_BYTES])!r})")
