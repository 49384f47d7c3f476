"""Read an uploaded image within a fixed memory budget, and make what the endpoint and the
annotator need from it.

The built-in Object Detection algorithm takes JPEG and PNG only
(https://docs.aws.amazon.com/sagemaker/latest/dg/object-detection-in-formats.html), so
anything else is refused here, with a reason, rather than by the endpoint with a 4xx.

Memory: the upload is checked by its declared size and first bytes before its body is read;
the body is spooled to a temporary file when large, so its bytes are not held beside the
pixels; a JPEG is decoded at a reduced scale (libjpeg's DCT scaling, Pillow's ``draft``) no
larger than the biggest copy needed; only one decoded copy of the upload exists at a time.
``bench/bench_counting.py`` measures the peak for a 12 MP and a 100 MP photo.
"""

from __future__ import annotations

import io
import math
import tempfile
import warnings
from dataclasses import dataclass
from typing import IO

from PIL import Image, ImageOps

from counting_core.constants import MIN_SIDE_PIXELS, SERVERLESS_MAX_PAYLOAD_BYTES
from counting_core.errors import InputError
from counting_core.imaging.image_formats import (
    IMAGE_SUFFIXES,
    MAGIC_BYTES,
    ImageFormat,
    detect_format,
    is_image_name,
)

# The largest upload the counter reads, in bytes: a 100 MP JPEG straight from a camera is
# 20-60 MB; a larger file is refused before any of it is read.
MAX_UPLOAD_BYTES = 100_000_000
# The most pixels a JPEG may have: the largest camera sensors sold, with room to spare
# (Phase One IQ4 150MP: 14,204 x 10,652 = 151.3 MP; Fujifilm GFX100: 11,648 x 8,736 =
# 101.8 MP). A JPEG is decoded at a reduced scale, so memory grows far slower than this:
# 151 MP decodes at 1/2 for the 4,096 px annotated copy, 37.8 MP or 113 MB as RGB.
# Pillow's own decompression-bomb limit (89 MP, refused outright above 179 MP) is replaced
# by this check below 179 MP.
MAX_JPEG_PIXELS = 160_000_000
# The most pixels a PNG may have. PNG cannot be decoded at a reduced scale: Pillow holds 4
# bytes per pixel (RGB is stored padded), so 50 MP is 200 MB decoded.
MAX_PNG_PIXELS = 50_000_000
# Uploads up to this many bytes are read into memory; larger ones go to a temporary file
# (/tmp), so the compressed bytes never sit beside the decoded pixels.
SPOOL_IN_MEMORY_BYTES = 8_000_000
# Chunk size of that copy, in bytes.
COPY_CHUNK_BYTES = 1 << 20

# Quality of re-encoded images on Pillow's 1..95 scale: a usual setting for photos, which
# keeps the edges a detector relies on free of visible blocking.
JPEG_QUALITY = 85
# Each step that still does not fit shrinks width and height to this fraction (~0.56x bytes).
DOWNSCALE_STEP = 0.75
# Resizing first reduces by whole factors (box filter) down to this many times the target,
# then resamples with Lanczos: the result is as sharp, in a fraction of the time and memory.
# https://pillow.readthedocs.io/en/stable/reference/Image.html#PIL.Image.Image.resize
REDUCING_GAP = 2.0

# What a damaged or hostile file makes Pillow raise while reading headers or decoding.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError, IndexError, TypeError, KeyError)

# EXIF orientation tag, and its values that turn the image a quarter (width <-> height).
# https://www.cipa.jp/std/documents/download_e.html?DC-008-Translation-2023-E (Exif 3.0, 4.6.5)
EXIF_ORIENTATION = 0x0112
QUARTER_TURNS = (5, 6, 7, 8)

# The transpose that turns a stored image upright, per EXIF orientation (as Pillow's
# ImageOps.exif_transpose chooses it); 1 and a missing tag need none.
_UPRIGHT: dict[int, Image.Transpose] = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Modes resized as they are (RGB padded, alpha, grey); others are converted to RGB first.
_RESIZABLE_MODES = ("RGB", "RGBA", "L")
_MAX_PIXELS: dict[ImageFormat, int] = {"jpeg": MAX_JPEG_PIXELS, "png": MAX_PNG_PIXELS}


@dataclass(frozen=True)
class PreparedImage:
    """What one upload becomes: the endpoint's payload and, if asked, a picture to draw on.

    ``size`` is the upload's size in pixels, upright (EXIF orientation applied); boxes the
    endpoint returns are fractions of the payload, which has the same proportions.
    """

    image_format: ImageFormat
    size: tuple[int, int]
    payload: bytes
    payload_size: tuple[int, int]
    picture: Image.Image | None


def check_name(key: str) -> None:
    """Raise InputError unless ``key`` ends like a JPEG or PNG file name."""
    if not is_image_name(key):
        raise InputError(f"not an image name: expected one of {', '.join(IMAGE_SUFFIXES)}")


def check_upload_size(size_bytes: int) -> None:
    """Raise InputError for an empty upload or one over ``MAX_UPLOAD_BYTES``."""
    if size_bytes <= 0:
        raise InputError("image is empty")
    if size_bytes > MAX_UPLOAD_BYTES:
        raise InputError(
            f"image is {size_bytes:,} bytes; at most {MAX_UPLOAD_BYTES:,} bytes are counted"
        )


def read_upload(body: IO[bytes], declared_bytes: int) -> IO[bytes]:
    """Check an upload by its declared size and first bytes, then copy it to a seekable file.

    Nothing but ``MAGIC_BYTES`` is read from ``body`` before both checks pass; a body longer
    than it declared is refused rather than read on without bound.
    """
    check_upload_size(declared_bytes)
    head = body.read(MAGIC_BYTES)
    detect_format(head)
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115
    spool.write(head)
    copied = len(head)
    while chunk := body.read(COPY_CHUNK_BYTES):
        copied += len(chunk)
        if copied > declared_bytes:
            spool.close()
            raise InputError(f"image is longer than the {declared_bytes:,} bytes it declared")
        spool.write(chunk)
    spool.seek(0)
    return spool


def image_size(source: IO[bytes] | bytes) -> tuple[int, int]:
    """(width, height) in pixels, upright, read from the header without decoding.

    A stream is left at its start, ready to be decoded.
    """
    stream = _stream(source)
    image_format = detect_format(stream.read(MAGIC_BYTES))
    stream.seek(0)
    # Not rewound on failure: _open closes the stream of an image it refuses.
    with _open(stream, image_format) as image:
        size = _upright_size(image)
    stream.seek(0)
    return size


def open_image(data: bytes) -> Image.Image:
    """Decode a whole JPEG or PNG, upright and in RGB, to draw on (the CLI's annotated copy)."""
    image_format = detect_format(data)
    image = _open(io.BytesIO(data), image_format)
    try:
        longest = max(image.size)
        return _fit(_decode(image, image_format, longest), longest)
    except _DECODE_ERRORS as error:
        raise InputError(f"corrupt {image_format.upper()} image: {error}") from None


def prepare(
    source: IO[bytes] | bytes,
    *,
    payload_side: int,
    picture_side: int | None,
    max_payload_bytes: int = SERVERLESS_MAX_PAYLOAD_BYTES,
) -> PreparedImage:
    """Decode an upload once and make the endpoint's payload and a picture to draw on.

    The payload is a JPEG whose longest side is at most ``payload_side`` (smaller images are
    not enlarged) and of at most ``max_payload_bytes``. The picture, made only when
    ``picture_side`` is given, is the upright RGB image with its longest side at most
    ``picture_side``. Raises InputError for anything that cannot be counted.
    """
    if payload_side < MIN_SIDE_PIXELS:
        raise InputError(f"payload side must be at least {MIN_SIDE_PIXELS} pixels")
    stream = _stream(source)
    image_format = detect_format(stream.read(MAGIC_BYTES))
    stream.seek(0)
    image = _open(stream, image_format)
    try:
        size = _upright_size(image)
        image = _decode(image, image_format, max(payload_side, picture_side or 0))
        payload, payload_size = encode_jpeg(image, payload_side, max_payload_bytes)
        picture = None if picture_side is None else _fit(image, picture_side)
    except InputError:
        raise
    except _DECODE_ERRORS as error:
        raise InputError(f"corrupt {image_format.upper()} image: {error}") from None
    return PreparedImage(image_format, size, payload, payload_size, picture)


class NativeImage:
    """An upload decoded once at full resolution, kept as stored; cut and scaled upright.

    Turning a 100 MP photo upright would make a second full-size copy (300-400 MB): each
    piece cut or scaled from it is turned instead, and pieces are small. Pillow holds
    4 bytes per pixel of an RGB image, so a 100 MP JPEG takes 400 MB here.
    """

    def __init__(self, stored: Image.Image, upright: Image.Transpose | None) -> None:
        self._stored = stored
        self._upright = upright
        width, height = stored.size
        quarter = upright in _QUARTER_TURN_TRANSPOSES
        self.size: tuple[int, int] = (height, width) if quarter else (width, height)

    def crop(self, box: tuple[int, int, int, int]) -> Image.Image:
        """The upright image's pixels in ``box`` (left, top, right, bottom; right and bottom
        excluded), upright."""
        if self._upright is None:
            return self._stored.crop(box)
        undo = _UNDONE.get(self._upright, self._upright)
        piece = self._stored.crop(_transposed_box(box, undo, self.size))
        return piece.transpose(self._upright)

    def scaled(self, longest_side: int) -> Image.Image:
        """The whole image, upright, in RGB, with its longest side at most ``longest_side``:
        a copy of its own, whoever closes it."""
        small = _fit(self._stored, longest_side)
        if small is self._stored:  # already small enough: closing it would close this image
            small = small.copy()
        return small if self._upright is None else small.transpose(self._upright)

    def close(self) -> None:
        self._stored.close()

    def __enter__(self) -> NativeImage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def decode_native(source: IO[bytes] | bytes) -> NativeImage:
    """Decode a JPEG or PNG once at full resolution; InputError for anything not countable."""
    stream = _stream(source)
    image_format = detect_format(stream.read(MAGIC_BYTES))
    stream.seek(0)
    image = _open(stream, image_format)
    try:
        upright = _UPRIGHT.get(image.getexif().get(EXIF_ORIENTATION, 1))
        image = _decode(image, image_format, max(image.size), upright=False)
    except _DECODE_ERRORS as error:
        raise InputError(f"corrupt {image_format.upper()} image: {error}") from None
    return NativeImage(image, upright)


# Transposes that swap width and height, and the transposes that undo another (each of the
# others undoes itself).
_QUARTER_TURN_TRANSPOSES = (
    Image.Transpose.ROTATE_90,
    Image.Transpose.ROTATE_270,
    Image.Transpose.TRANSPOSE,
    Image.Transpose.TRANSVERSE,
)
_UNDONE = {
    Image.Transpose.ROTATE_90: Image.Transpose.ROTATE_270,
    Image.Transpose.ROTATE_270: Image.Transpose.ROTATE_90,
}


def _transposed_box(
    box: tuple[int, int, int, int], method: Image.Transpose, size: tuple[int, int]
) -> tuple[int, int, int, int]:
    """Where ``box`` of an image of ``size`` lands once the image is transposed by ``method``.

    Boxes exclude their right and bottom edges, so a pixel x maps to w - 1 - x and the box
    [left, right) to [w - right, w - left).
    """
    left, top, right, bottom = box
    width, height = size
    mapped = {
        Image.Transpose.FLIP_LEFT_RIGHT: (width - right, top, width - left, bottom),
        Image.Transpose.FLIP_TOP_BOTTOM: (left, height - bottom, right, height - top),
        Image.Transpose.ROTATE_180: (width - right, height - bottom, width - left, height - top),
        # Counter-clockwise: (x, y) -> (y, w - 1 - x).
        Image.Transpose.ROTATE_90: (top, width - right, bottom, width - left),
        # Clockwise: (x, y) -> (h - 1 - y, x).
        Image.Transpose.ROTATE_270: (height - bottom, left, height - top, right),
        Image.Transpose.TRANSPOSE: (top, left, bottom, right),
        Image.Transpose.TRANSVERSE: (height - bottom, width - right, height - top, width - left),
    }
    return mapped[method]


def _stream(source: IO[bytes] | bytes) -> IO[bytes]:
    return io.BytesIO(source) if isinstance(source, bytes | bytearray) else source


def _open(stream: IO[bytes], image_format: ImageFormat) -> Image.Image:
    """Open lazily (header only) and refuse an image with too many pixels before decoding."""
    try:
        with warnings.catch_warnings():
            # The pixel limits below replace Pillow's warning between 89 and 179 MP.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(stream, formats=[image_format.upper()])
    except Image.DecompressionBombError:
        raise InputError(_too_many_pixels(image_format, None)) from None
    except _DECODE_ERRORS as error:
        raise InputError(f"corrupt {image_format.upper()} image: {error}") from None
    width, height = image.size
    if width * height > _MAX_PIXELS[image_format]:
        image.close()
        raise InputError(_too_many_pixels(image_format, (width, height)))
    return image


def _too_many_pixels(image_format: ImageFormat, size: tuple[int, int] | None) -> str:
    most = _MAX_PIXELS[image_format] / 1e6
    found = "" if size is None else f"{size[0]}x{size[1]} ({size[0] * size[1] / 1e6:.1f} MP): "
    return f"{found}a {image_format.upper()} image may have at most {most:g} megapixels"


def _upright_size(image: Image.Image) -> tuple[int, int]:
    """The stored size, with width and height swapped when EXIF says to turn it a quarter."""
    width, height = image.size
    turned = image.getexif().get(EXIF_ORIENTATION) in QUARTER_TURNS
    return (height, width) if turned else (width, height)


def _decode(
    image: Image.Image, image_format: ImageFormat, needed_side: int, *, upright: bool = True
) -> Image.Image:
    """Decode once, as small as the largest copy needed allows, and upright unless told not.

    The result is RGB, RGBA or L: the copies made from it are converted to RGB once they are
    small, rather than converting a full-resolution PNG into a second full-size copy.
    """
    if image_format == "jpeg":
        width, height = image.size
        scale = min(1.0, needed_side / max(width, height))
        # libjpeg decodes at 1/2, 1/4 or 1/8 scale directly: the largest reduction that
        # still leaves the longest side at least `needed_side`.
        image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
    image.load()
    if upright:
        # Sent upright and without an orientation tag, the endpoint sees what is drawn on,
        # whether or not its decoder honours EXIF orientation (the algorithm's guide does
        # not say).
        ImageOps.exif_transpose(image, in_place=True)
    if image.mode not in _RESIZABLE_MODES:
        image = image.convert("RGB")  # palette, CMYK, 16-bit: uncommon, converted first
    return image


def _fit(image: Image.Image, longest_side: int) -> Image.Image:
    """``image`` with its longest side at most ``longest_side``, in RGB (itself if it is)."""
    width, height = image.size
    scale = longest_side / max(width, height)
    if scale < 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=REDUCING_GAP)
    # JPEG has no alpha: transparent areas keep their underlying colour.
    return image if image.mode == "RGB" else image.convert("RGB")


def encode_jpeg(
    image: Image.Image, longest_side: int, max_bytes: int
) -> tuple[bytes, tuple[int, int]]:
    """JPEG-encode ``image`` at most ``longest_side`` wide or tall and at most ``max_bytes``
    long, shrinking it until it fits; returns the JPEG and its size in pixels."""
    side = longest_side
    while True:
        candidate = _fit(image, side)
        # Scaling a very long image for the model leaves nothing of its short side.
        if min(candidate.size) < MIN_SIDE_PIXELS and candidate.size != image.size:
            raise InputError(
                f"a {image.size[0]}x{image.size[1]} image is too narrow to count: scaled to "
                f"{candidate.size[0]}x{candidate.size[1]} for the model, its short side is "
                f"under {MIN_SIDE_PIXELS} pixels"
            )
        buffer = io.BytesIO()
        candidate.save(buffer, format="JPEG", quality=JPEG_QUALITY)
        if buffer.tell() <= max_bytes:
            return buffer.getvalue(), candidate.size
        side = math.floor(min(side, max(candidate.size)) * DOWNSCALE_STEP)
        if min(candidate.size) * DOWNSCALE_STEP < MIN_SIDE_PIXELS:
            width, height = image.size
            raise InputError(
                f"cannot fit the {width}x{height} image into {max_bytes} bytes, even as a "
                f"{candidate.size[0]}x{candidate.size[1]} JPEG"
            )
