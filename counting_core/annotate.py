"""Draw counted detections on their image: each box outlined, its number at the centre.

The guide's notebook drew with matplotlib, which lays out a whole figure to draw a few
rectangles; Pillow's ImageDraw writes straight into the pixels (bench/bench_counting.py
compares the two).
"""

from __future__ import annotations

import io
from collections.abc import Iterable

from PIL import ImageDraw, ImageFont

from counting_core.images import open_image
from counting_core.predictions import CountedDetection, pixel_box

# Okabe-Ito colours, chosen to stay distinct for colour-blind readers, with white in place of
# its black, which vanishes on dark photos. Class id N takes colour N modulo the palette
# size, so a class keeps its colour from one image to the next.
PALETTE = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
    (255, 255, 255),
)
# zlib level 1: on a 1080p photo, under a third of the default level's (6) time for about
# 1.5% more bytes. Encoding the PNG is most of the time annotate takes.
PNG_COMPRESS_LEVEL = 1


def class_colour(class_id: int) -> tuple[int, int, int]:
    return PALETTE[class_id % len(PALETTE)]


def annotate(image_data: bytes, detections: Iterable[CountedDetection]) -> bytes:
    """Return ``image_data`` as a PNG with every detection drawn on it.

    Boxes are placed from their fractions of the image, so detections counted on a
    resized copy of the image (as sent to the endpoint) still land in the right place.
    """
    image = open_image(image_data).convert("RGB")
    width, height = image.size
    short_side = min(width, height)
    # Lines and tag margins grow with the image so they stay visible once it is scaled down.
    thickness = max(2, short_side // 300)
    font = ImageFont.load_default(size=max(10, short_side // 40))
    draw = ImageDraw.Draw(image)
    for detection in detections:
        colour = class_colour(detection.class_id)
        left, top, right, bottom = pixel_box(detection.box, width, height)
        draw.rectangle((left, top, right, bottom), outline=colour, width=thickness)
        centre = ((left + right) / 2, (top + bottom) / 2)
        label = str(detection.number)
        text_left, text_top, text_right, text_bottom = draw.textbbox(
            centre, label, font=font, anchor="mm"
        )
        # A filled tag behind the number keeps it readable on any background.
        draw.rectangle(
            (
                text_left - thickness,
                text_top - thickness,
                text_right + thickness,
                text_bottom + thickness,
            ),
            fill=colour,
        )
        draw.text(centre, label, fill=_text_colour(colour), font=font, anchor="mm")
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    # Rec. 601 luma: dark text on light tags, white text on dark ones.
    red, green, blue = background
    return (0, 0, 0) if 299 * red + 587 * green + 114 * blue > 128_000 else (255, 255, 255)
