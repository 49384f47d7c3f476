"""Image checks, bounded reading and the endpoint payload, on images made in memory."""

from __future__ import annotations

import contextlib
import io
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile

from counting_core.errors import InputError
from counting_core.imaging import image_formats, images

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
    assert image_formats.detect_format(jpeg_200x100) == "jpeg"
    assert image_formats.detect_format(png_200x100) == "png"


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
    for check in (image_formats.detect_format, images.image_size, images.open_image, prepare):
        with pytest.raises(InputError, match=message):
            check(data)


def prepare(data: bytes, payload_side: int = 1024, picture_side: int | None = None, **options):
    return images.prepare(data, payload_side=payload_side, picture_side=picture_side, **options)


def decoded(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_image_size(jpeg_200x100, png_200x100):
    assert images.image_size(jpeg_200x100) == (200, 100)
    assert images.image_size(png_200x100) == (200, 100)


def test_truncated_jpeg_is_refused():
    data = noisy("JPEG", (64, 48))
    truncated = data[: len(data) // 2]

    for check in (images.open_image, prepare):
        with pytest.raises(InputError, match="corrupt JPEG image"):
            check(truncated)


def test_png_with_a_damaged_chunk_is_refused(png_200x100):
    damaged = bytearray(png_200x100)
    damaged[40:48] = b"\x00" * 8  # inside the IHDR/IDAT region: fails its CRC or inflates badly

    with pytest.raises(InputError, match="corrupt PNG image"):
        prepare(bytes(damaged))


@pytest.mark.parametrize(
    ("image_format", "message"),
    [
        ("JPEG", r"20x10 \(0.0 MP\): a JPEG image may have at most 0.000199 megapixels"),
        ("PNG", r"20x10 \(0.0 MP\): a PNG image may have at most 0.000199 megapixels"),
    ],
)
def test_images_over_the_pixel_limit_are_refused_before_decoding(
    monkeypatch, make_image, image_format, message
):
    monkeypatch.setitem(images._MAX_PIXELS, image_format.lower(), 199)
    data = make_image(image_format, (20, 10))

    with pytest.raises(InputError, match=message):
        prepare(data)
    monkeypatch.setitem(images._MAX_PIXELS, image_format.lower(), 200)
    assert prepare(data).size == (20, 10)


@pytest.mark.parametrize(
    "size",
    [(11648, 8736), (14204, 10652)],
    ids=["Fujifilm GFX100, 101.8 MP", "Phase One IQ4 150MP, 151.3 MP"],
)
def test_photos_from_the_largest_camera_sensors_are_counted(size):
    photo = io.BytesIO()
    Image.new("L", size, 128).save(photo, "JPEG", quality=50)  # grey: small and quick

    prepared = prepare(photo.getvalue(), picture_side=4096)

    assert prepared.size == size
    # 1024 px on the longest side, the height in proportion: 1024 * 8736 / 11648 = 768,
    # 1024 * 10652 / 14204 = 767.9 -> 768.
    assert decoded(prepared.payload).size == (1024, 768)


def test_a_jpeg_beyond_the_limit_is_refused_naming_it():
    photo = io.BytesIO()
    Image.new("L", (16000, 10001), 128).save(photo, "JPEG", quality=50)  # 160.016 MP

    with pytest.raises(InputError) as refused:
        prepare(photo.getvalue())

    assert str(refused.value) == (
        "16000x10001 (160.0 MP): a JPEG image may have at most 160 megapixels"
    )


def test_pillows_own_bomb_limit_is_reported_as_the_pixel_limit(monkeypatch, make_image):
    # Pillow refuses outright above twice its MAX_IMAGE_PIXELS, before our check can run.
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)
    with pytest.raises(InputError, match="a PNG image may have at most 50 megapixels"):
        prepare(make_image("PNG", (25, 10)))


@pytest.mark.parametrize(
    ("key", "counted"),
    [
        ("incoming/a.jpg", True),
        ("incoming/b.JPEG", True),
        ("incoming/c.jpe", True),
        ("incoming/d.jfif", True),
        ("incoming/e.Png", True),
        ("incoming/report.pdf", False),
        ("incoming/frame0001", False),
        ("incoming/photo.jpg.txt", False),
        ("incoming/clip.heic", False),
    ],
)
def test_only_jpeg_and_png_names_are_taken(key, counted):
    if counted:
        images.check_name(key)
    else:
        with pytest.raises(InputError, match="not an image name"):
            images.check_name(key)


@pytest.mark.parametrize(
    ("size", "message"),
    [
        (0, "image is empty"),
        (images.MAX_UPLOAD_BYTES + 1, "image is 100,000,001 bytes; at most 100,000,000"),
    ],
)
def test_upload_size_is_checked_before_the_body_is_read(size, message):
    class Unread(io.BytesIO):
        def read(self, *args):
            raise AssertionError("the body was read")

    with pytest.raises(InputError, match=message):
        images.read_upload(Unread(), size)


def test_only_the_first_bytes_are_read_from_a_body_that_is_not_an_image():
    body = io.BytesIO(PDF_START + b"x" * 10_000)

    with pytest.raises(InputError, match="not a JPEG or PNG image"):
        images.read_upload(body, len(body.getvalue()))
    assert body.tell() == 8  # the longer signature: PNG's 8 bytes (JPEG's is 3)


def test_a_body_longer_than_declared_is_refused(png_200x100):
    with pytest.raises(InputError, match="longer than the 20 bytes it declared"):
        images.read_upload(io.BytesIO(png_200x100), 20)


def test_large_uploads_are_spooled_to_a_file(monkeypatch):
    monkeypatch.setattr(images, "SPOOL_IN_MEMORY_BYTES", 1000)
    data = noisy("PNG", (100, 100))

    with images.read_upload(io.BytesIO(data), len(data)) as upload:
        assert upload._rolled  # type: ignore[attr-defined]  # moved to a temporary file
        assert upload.read() == data


def test_payload_is_a_jpeg_scaled_to_its_longest_side():
    data = noisy("PNG", (3000, 2000))

    prepared = prepare(data, payload_side=1024)

    assert prepared.size == (3000, 2000)
    assert prepared.payload_size == (1024, 683)
    assert image_formats.detect_format(prepared.payload) == "jpeg"
    assert decoded(prepared.payload).size == (1024, 683)
    assert prepared.picture is None


def test_small_images_are_not_enlarged(png_200x100):
    prepared = prepare(png_200x100, payload_side=1024, picture_side=4096)

    assert prepared.payload_size == (200, 100)
    assert prepared.picture.size == (200, 100)


def test_large_jpegs_are_decoded_at_a_reduced_scale(monkeypatch):
    decoded_sizes = []
    original_load = ImageFile.ImageFile.load

    def load(image):
        pixels = original_load(image)
        decoded_sizes.append(image.im.size)
        return pixels

    monkeypatch.setattr(ImageFile.ImageFile, "load", load)
    data = noisy("JPEG", (1600, 1200))

    prepared = prepare(data, payload_side=300, picture_side=None)

    # 1/4 scale (400x300) is the smallest libjpeg scale that keeps 300 px on the long side.
    assert set(decoded_sizes) == {(400, 300)}
    assert prepared.size == (1600, 1200)
    assert prepared.payload_size == (300, 225)


def test_the_picture_is_capped_and_upright():
    exif = Image.Exif()
    exif[ORIENTATION] = 6  # rotate 90 degrees clockwise to display
    buffer = io.BytesIO()
    Image.open(io.BytesIO(noisy("PNG", (400, 200)))).save(buffer, format="JPEG", exif=exif)

    prepared = prepare(buffer.getvalue(), payload_side=100, picture_side=300)

    assert prepared.size == (200, 400)  # as displayed
    assert prepared.payload_size == (50, 100)
    assert prepared.picture.size == (150, 300)
    assert ORIENTATION not in decoded(prepared.payload).getexif()


def test_transparent_png_is_sent_as_an_rgb_jpeg():
    gradient = Image.linear_gradient("L").resize((300, 200))
    noise = Image.effect_noise((300, 200), 30)
    data = encode(Image.merge("RGBA", (gradient, noise, gradient, gradient)), "PNG")

    prepared = prepare(data, picture_side=300)

    assert decoded(prepared.payload).mode == "RGB"
    assert prepared.picture.mode == "RGB"


def test_a_png_over_4_mb_with_a_large_exif_block_is_counted():
    exif = Image.Exif()
    exif[0x010E] = "x" * 4_500_000  # ImageDescription, kept in the PNG's eXIf chunk
    buffer = io.BytesIO()
    Image.open(io.BytesIO(noisy("PNG", (300, 200)))).save(buffer, format="PNG", exif=exif)
    data = buffer.getvalue()
    assert len(data) > 4_000_000

    prepared = prepare(data)

    assert len(prepared.payload) < 100_000
    assert prepared.payload_size == (300, 200)


def test_a_png_wider_than_jpeg_allows_is_refused_as_too_narrow(make_image):
    data = make_image("PNG", (65_600, 40))

    with pytest.raises(InputError, match=r"65600x40 image is too narrow to count"):
        prepare(data)


def test_the_payload_shrinks_until_it_fits():
    data = noisy("PNG", (600, 400))

    prepared = prepare(data, max_payload_bytes=60_000)

    assert len(prepared.payload) <= 60_000
    assert prepared.payload_size[0] < 600
    assert prepared.payload_size[0] / prepared.payload_size[1] == pytest.approx(1.5, rel=0.01)


def test_the_payload_says_when_nothing_fits():
    with pytest.raises(
        InputError, match=r"cannot fit the 200x100 image into 100 bytes, even as a \d+x\d+ JPEG"
    ):
        prepare(noisy("PNG", (200, 100)), max_payload_bytes=100)


@settings(max_examples=60, deadline=None)
@given(
    data=st.binary(max_size=300),
    start=st.sampled_from([b"", image_formats.JPEG_MAGIC, image_formats.PNG_MAGIC]),
)
def test_any_bytes_are_prepared_or_refused_with_input_error(data, start):
    with contextlib.suppress(InputError):
        prepare(start + data)
