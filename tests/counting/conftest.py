"""Shared by the counting tests: tiny images made in memory, and a ``counting`` CLI runner."""

from __future__ import annotations

import io
from collections.abc import Callable

import pytest
from PIL import Image

import counting.cli

GREY = (128, 128, 128)

MakeImage = Callable[..., bytes]
RunCli = Callable[..., tuple[int, str, str]]


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


@pytest.fixture
def cli(capsys) -> RunCli:
    """``cli("count", path, ...)``: run ``counting`` and return (status, stdout, stderr).

    Going through counting.cli.main keeps its error handling (one line, exit status 2).
    Arguments are turned into text, so paths can be passed as they are.
    """

    def run(*argv: object) -> tuple[int, str, str]:
        status = counting.cli.main([str(arg) for arg in argv])
        captured = capsys.readouterr()
        return status, captured.out, captured.err

    return run
