"""Drawing counted detections on their image."""

from __future__ import annotations

import io

from PIL import Image

from counting_core.annotate import PALETTE, annotate, class_colour
from counting_core.images import detect_format
from counting_core.predictions import Detection, count_detections

GREY = (128, 128, 128)
# The first Okabe-Ito colours (https://jfly.uni-koeln.de/color/), for class ids 0, 1 and 2.
ORANGE, SKY_BLUE, BLUISH_GREEN = (230, 159, 0), (86, 180, 233), (0, 158, 115)


def decode(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data)).convert("RGB")


def counted(*detections: Detection, image_size=(200, 100)):
    return count_detections(detections, image_size=image_size).detections


def test_output_is_a_png_of_the_same_size(jpeg_200x100):
    out = annotate(jpeg_200x100, counted(Detection(0, 0.9, 0.1, 0.2, 0.6, 0.9)))

    assert detect_format(out) == "png"
    assert decode(out).size == (200, 100)


def test_box_edges_take_the_class_colour(png_200x100):
    # Pixel boxes: class 0 (20, 20, 120, 90); class 1 (150, 10, 190, 40).
    out = decode(
        annotate(
            png_200x100,
            counted(Detection(0, 0.9, 0.1, 0.2, 0.6, 0.9), Detection(1, 0.8, 0.75, 0.1, 0.95, 0.4)),
        )
    )

    assert out.getpixel((20, 50)) == ORANGE  # left edge
    assert out.getpixel((120, 80)) == ORANGE  # right edge
    assert out.getpixel((40, 20)) == ORANGE  # top edge
    assert out.getpixel((150, 30)) == SKY_BLUE
    assert out.getpixel((10, 5)) == GREY  # outside every box
    assert out.getpixel((30, 80)) == GREY  # inside a box, away from its number


def test_the_number_is_written_on_a_tag_at_the_box_centre(png_200x100):
    out = decode(annotate(png_200x100, counted(Detection(0, 0.9, 0.1, 0.2, 0.6, 0.9))))

    # Centre (70, 55): a tag in the class colour (light orange), the digit "1" on it in black.
    tag = out.crop((60, 45, 81, 66))
    colours = {colour for _, colour in tag.getcolors(maxcolors=1024)}
    assert ORANGE in colours
    assert sum(min(colours, key=sum)) < 100


def test_no_detections_leave_the_image_as_it_was(png_200x100):
    out = annotate(png_200x100, ())

    assert decode(out).size == (200, 100)
    assert decode(out).tobytes() == decode(png_200x100).tobytes()


def test_boxes_follow_fractions_not_the_size_they_were_counted_at(png_200x100):
    # Counted on a 100x50 copy (as sent to the endpoint), drawn on the 200x100 original.
    out = decode(
        annotate(png_200x100, counted(Detection(2, 0.9, 0.1, 0.2, 0.6, 0.9), image_size=(100, 50)))
    )

    assert out.getpixel((20, 50)) == BLUISH_GREEN


def test_palette_is_distinct_and_deterministic():
    assert len(set(PALETTE)) == len(PALETTE)
    assert [class_colour(i) for i in range(len(PALETTE))] == list(PALETTE)
    assert class_colour(len(PALETTE) + 3) == class_colour(3)
