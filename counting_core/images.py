"""Check images before they reach the endpoint, and shrink those too big to send.

The built-in Object Detection algorithm takes JPEG and PNG only
(https://docs.aws.amazon.com/sagemaker/latest/dg/object-detection-in-formats.html),
so anything else is refused here with a message rather than by the endpoint with a 4xx.
"""

from __future__ import annotations

import io
import warnings
from typing import Literal

from PIL import Image

from counting_core.constants import SERVERLESS_MAX_PAYLOAD_BYTES
from counting_core.errors import InputError

JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

# Quality of re-encoded images on Pillow's 1..95 scale: a usual setting for photos, which
# keeps the edges a detector relies on free of visible blocking.
JPEG_QUALITY = 85
# Each step that still does not fit shrinks width and height to this fraction (~0.56x bytes).
DOWNSCALE_STEP = 0.75
# Below this many pixels on the short side there is nothing left worth detecting.
MIN_SIDE_PIXELS = 32

# What a damaged file makes Pillow raise while reading headers or decoding.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)

ImageFormat = Literal["jpeg", "png"]


def detect_format(data: bytes) -> ImageFormat:
    """Name the format from the first bytes; raise InputError unless JPEG or PNG."""
    if not data:
        raise InputError("image is empty")
    if data.startswith(JPEG_MAGIC):
        return "jpeg"
    if data.startswith(PNG_MAGIC):
        return "png"
    raise InputError(f"not a JPEG or PNG image (starts with {bytes(data[:8])!r})")


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels, read from the header without decoding the pixels."""
    with _open(data) as image:
        return image.size


def open_image(data: bytes) -> Image.Image:
    """Decode the whole image, so that truncated or corrupt data is refused with InputError."""
    image = _open(data)
    try:
        image.load()
    except _DECODE_ERRORS as error:
        raise InputError(f"corrupt {detect_format(data).upper()} image: {error}") from None
    return image


def fit_payload(data: bytes, max_bytes: int = SERVERLESS_MAX_PAYLOAD_BYTES) -> bytes:
    """Return ``data`` if it is a valid image of at most ``max_bytes``; else a smaller JPEG.

    The image is re-encoded as JPEG at quality ``JPEG_QUALITY``, first at full size, then
    shrunk by ``DOWNSCALE_STEP`` per side until it fits. Boxes come back as fractions of the
    image, so they apply unchanged to the original. Raises InputError when the last size
    tried before the short side would drop below ``MIN_SIDE_PIXELS`` still does not fit.
    """
    if max_bytes <= 0:
        raise InputError(f"payload limit must be positive, got {max_bytes} bytes")
    image = open_image(data)
    if len(data) <= max_bytes:
        return data
    # JPEG has no alpha channel or palette; transparent areas keep their underlying colour.
    rgb = image.convert("RGB")
    # Keeping EXIF keeps its orientation tag: the endpoint sees the copy as it saw the original.
    exif = image.info.get("exif", b"")
    width, height = rgb.size
    scale = 1.0
    while True:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        candidate = rgb if scale == 1.0 else rgb.resize(size, Image.Resampling.LANCZOS)
        buffer = io.BytesIO()
        candidate.save(buffer, format="JPEG", quality=JPEG_QUALITY, exif=exif)
        if buffer.tell() <= max_bytes:
            return buffer.getvalue()
        scale *= DOWNSCALE_STEP
        if min(width, height) * scale < MIN_SIDE_PIXELS:
            raise InputError(
                f"cannot fit the {width}x{height} image into {max_bytes} bytes, "
                f"even as a {size[0]}x{size[1]} JPEG"
            )


def _open(data: bytes) -> Image.Image:
    """Open lazily (header only), refusing other formats and decompression bombs."""
    image_format = detect_format(data)
    try:
        # Pillow only warns between 1x and 2x its MAX_IMAGE_PIXELS; refuse those too.
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            return Image.open(io.BytesIO(data), formats=[image_format.upper()])
    except (Image.DecompressionBombWarning, Image.DecompressionBombError):
        raise InputError(
            f"image has more than {Image.MAX_IMAGE_PIXELS} pixels, refused as a possible "
            "decompression bomb"
        ) from None
    except _DECODE_ERRORS as error:
        raise InputError(f"corrupt {image_format.upper()} image: {error}") from None
