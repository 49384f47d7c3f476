"""Tiny images made in memory, shared by the image, annotation and count CLI tests."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from PIL import Image

GREY = (128, 128, 128)

MakeImage = Callable[..., bytes]


def encode(image: Image.Image, image_format: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


@pytest.fixture
def make_image() -> MakeImage:
    """``make_image("PNG", (200, 100), colour=GREY, mode="RGB")``: an encoded plain image."""

    def make(
        image_format: str = "PNG",
        size: tuple[int, int] = (200, 100),
        *,
        colour: tuple[int, ...] = GREY,
        mode: str = "RGB",
    ) -> bytes:
        return encode(Image.new(mode, size, colour), image_format)

    return make


@pytest.fixture
def jpeg_200x100(make_image: MakeImage) -> bytes:
    return make_image("JPEG")


@pytest.fixture
def png_200x100(make_image: MakeImage) -> bytes:
    return make_image("PNG")
