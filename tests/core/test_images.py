"""Image checks and payload fitting, on images made in memory."""

from __future__ import annotations

import contextlib
import io
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from counting_core import images
from counting_core.errors import InputError

ORIENTATION = 0x0112  # the EXIF tag
PDF_START = b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n"


def encode(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


def noisy(image_format: str, size: tuple[int, int]) -> bytes:
    """Random pixels barely compress: a small image that is big in bytes."""
    width, height = size
    pixels = random.Random(0).randbytes(width * height * 3)
    return encode(Image.frombytes("RGB", size, pixels), image_format)


def test_formats_are_told_by_their_first_bytes(jpeg_200x100, png_200x100):
    assert images.detect_format(jpeg_200x100) == "jpeg"
    assert images.detect_format(png_200x100) == "png"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "image is empty"),
        (PDF_START, r"not a JPEG or PNG image \(starts with b'%PDF-1.4'\)"),
        (b"GIF89a\x01\x00", r"not a JPEG or PNG image \(starts with b'GIF89a\\x01\\x00'\)"),
        (b"\xff\xd8", "not a JPEG or PNG image"),
    ],
)
def test_other_formats_are_refused(data, message):
    for check in (images.detect_format, images.image_size, images.open_image, images.fit_payload):
        with pytest.raises(InputError, match=message):
            check(data)


def test_image_size(jpeg_200x100, png_200x100):
    assert images.image_size(jpeg_200x100) == (200, 100)
    assert images.image_size(png_200x100) == (200, 100)


def test_truncated_jpeg_is_refused():
    data = noisy("JPEG", (64, 48))
    truncated = data[: len(data) // 2]

    with pytest.raises(InputError, match="corrupt JPEG image"):
        images.open_image(truncated)
    with pytest.raises(InputError, match="corrupt JPEG image"):
        images.fit_payload(truncated)


def test_png_with_a_damaged_chunk_is_refused(png_200x100):
    damaged = bytearray(png_200x100)
    damaged[40:48] = b"\x00" * 8  # inside the IHDR/IDAT region: fails its CRC or inflates badly

    with pytest.raises(InputError, match="corrupt PNG image"):
        images.open_image(bytes(damaged))


@pytest.mark.parametrize("pixels", [150, 250])  # Pillow warns above 1x its limit, fails above 2x
def test_decompression_bombs_are_refused(monkeypatch, make_image, pixels):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    data = make_image("PNG", (pixels // 10, 10))

    for check in (images.image_size, images.open_image):
        with pytest.raises(InputError, match="decompression bomb"):
            check(data)


def test_fit_payload_returns_small_images_unchanged(jpeg_200x100):
    assert images.fit_payload(jpeg_200x100, max_bytes=len(jpeg_200x100)) is jpeg_200x100


def test_fit_payload_shrinks_a_large_noisy_image_below_the_limit():
    data = noisy("PNG", (600, 400))
    limit = 60_000
    assert len(data) > 10 * limit

    fitted = images.fit_payload(data, max_bytes=limit)

    assert len(fitted) <= limit
    assert images.detect_format(fitted) == "jpeg"
    width, height = images.image_size(fitted)
    assert width < 600
    assert width / height == pytest.approx(600 / 400, rel=0.01)
    images.open_image(fitted)  # decodes


def test_fit_payload_reencodes_transparent_png_as_jpeg():
    # A gradient with a noisy channel and an alpha channel: about 89 kB as PNG, 27 kB as JPEG.
    gradient = Image.linear_gradient("L").resize((300, 200))
    noise = Image.effect_noise((300, 200), 30)
    data = encode(Image.merge("RGBA", (gradient, noise, gradient, gradient)), "PNG")

    fitted = images.fit_payload(data, max_bytes=len(data) // 2)

    assert images.detect_format(fitted) == "jpeg"
    assert images.image_size(fitted) == (300, 200)  # fits at full size once re-encoded
    assert images.open_image(fitted).mode == "RGB"


def test_fit_payload_keeps_the_exif_orientation():
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    Image.open(io.BytesIO(noisy("PNG", (120, 80)))).save(buffer, format="JPEG", exif=exif)
    data = buffer.getvalue()

    fitted = images.fit_payload(data, max_bytes=len(data) // 3)

    assert len(fitted) <= len(data) // 3
    assert images.open_image(fitted).getexif()[ORIENTATION] == 6


def test_fit_payload_tries_narrow_images_at_full_size():
    data = noisy("PNG", (20, 2000))  # short side already under MIN_SIDE_PIXELS

    fitted = images.fit_payload(data, max_bytes=len(data) // 2)

    assert images.image_size(fitted) == (20, 2000)


def test_fit_payload_says_when_nothing_fits():
    with pytest.raises(
        InputError, match=r"cannot fit the 200x100 image into 100 bytes, even as a \d+x\d+ JPEG"
    ):
        images.fit_payload(noisy("PNG", (200, 100)), max_bytes=100)


def test_fit_payload_needs_a_positive_limit(jpeg_200x100):
    with pytest.raises(InputError, match="payload limit must be positive"):
        images.fit_payload(jpeg_200x100, max_bytes=0)


SAMPLES = [noisy("JPEG", (24, 16)), noisy("PNG", (24, 16))]


@settings(max_examples=200)
@given(
    st.sampled_from(SAMPLES),
    st.integers(min_value=1),
    st.lists(st.tuples(st.integers(min_value=0), st.integers(0, 255)), max_size=8),
)
def test_damaged_images_raise_only_input_error(data, cut, flips):
    damaged = bytearray(data[: 1 + cut % len(data)])
    for position, value in flips:
        damaged[position % len(damaged)] = value

    for check in (images.image_size, images.open_image):
        with contextlib.suppress(InputError):
            check(bytes(damaged))
