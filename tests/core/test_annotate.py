"""Drawing counted detections on their image."""

from __future__ import annotations

import io
import itertools
import math

import pytest
from PIL import Image

from counting_core.counts.predictions import Detection, count_detections
from counting_core.imaging.annotate import (
    LEGEND_CLASSES,
    PALETTE,
    REST_COLOUR,
    annotate,
    class_colour,
    image_colours,
    legend_lines,
)
from counting_core.imaging.images import detect_format

GREY = (128, 128, 128)
# The first Okabe-Ito colours (https://jfly.uni-koeln.de/color/), for class ids 0, 1 and 2.
ORANGE, SKY_BLUE, BLUISH_GREEN = (230, 159, 0), (86, 180, 233), (0, 158, 115)
# The palette as its sources publish it: Okabe-Ito's eight with white for black (#000000), then
# Paul Tol's muted scheme (https://personal.sron.nl/~pault/) without cyan #88CCEE and teal
# #44AA99, then a vivid red: 8 + 7 + 1 = 16 colours.
PUBLISHED_PALETTE = [
    ORANGE, SKY_BLUE, BLUISH_GREEN, (240, 228, 66), (0, 114, 178), (213, 94, 0), (204, 121, 167),
    (255, 255, 255),
    (0xCC, 0x66, 0x77), (0x33, 0x22, 0x88), (0xDD, 0xCC, 0x77), (0x11, 0x77, 0x33),
    (0x88, 0x22, 0x55), (0x99, 0x99, 0x33), (0xAA, 0x44, 0x99),
    (190, 0, 50),
]  # fmt: skip


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
    assert len(set(PALETTE)) == 16
    assert [class_colour(i) for i in range(16)] == PUBLISHED_PALETTE
    assert class_colour(16 + 3) == class_colour(3)


def cie_lab(rgb: tuple[int, int, int]) -> tuple[float, float, float]:
    """sRGB (D65) to CIE L*a*b*, by the sRGB and CIE 1976 definitions."""

    def linear(channel: int) -> float:
        value = channel / 255
        return value / 12.92 if value <= 0.04045 else ((value + 0.055) / 1.055) ** 2.4

    red, green, blue = map(linear, rgb)
    x = (0.4124 * red + 0.3576 * green + 0.1805 * blue) / 0.95047
    y = 0.2126 * red + 0.7152 * green + 0.0722 * blue
    z = (0.0193 * red + 0.1192 * green + 0.9505 * blue) / 1.08883

    def f(t: float) -> float:
        return t ** (1 / 3) if t > (6 / 29) ** 3 else t / (3 * (6 / 29) ** 2) + 4 / 29

    return 116 * f(y) - 16, 500 * (f(x) - f(y)), 200 * (f(y) - f(z))


def test_sixteen_colours_each_two_far_apart_and_from_the_legends_grey():
    distances = [
        math.dist(cie_lab(first), cie_lab(second))
        for first, second in itertools.combinations((*PALETTE, REST_COLOUR), 2)
    ]

    assert len(PALETTE) >= 16
    # 21.1 between Okabe-Ito's reddish purple and Tol's rose, the closest pair; about 2.3
    # is a just-noticeable difference.
    assert min(distances) > 21


@pytest.mark.parametrize(
    ("class_ids", "expected"),
    [
        # 16 would take class 0's orange: it gets the first colour no class here has.
        ([0, 16], {0: PALETTE[0], 16: PALETTE[1]}),
        # 17 would take class 1's sky blue; orange (class 0's) is free, as class 0 is absent.
        ([17, 2, 1], {1: PALETTE[1], 2: PALETTE[2], 17: PALETTE[0]}),
        ([3, 3, 5], {3: PALETTE[3], 5: PALETTE[5]}),
    ],
)
def test_two_classes_of_one_image_never_share_a_colour(class_ids, expected):
    assert image_colours(class_ids) == expected


def test_past_the_palette_every_class_still_gets_its_own_colour():
    colours = image_colours(range(20))

    assert [colours[class_id] for class_id in range(16)] == PUBLISHED_PALETTE
    # Class 16: hue 0 at saturation 0.85 and value 0.95: (0.95, 0.95 * 0.15, 0.95 * 0.15).
    assert colours[16] == (242, 36, 36)
    assert len(set(colours.values())) == 20


def test_classes_that_share_a_palette_colour_are_drawn_apart(png_200x100):
    # Classes 0 and 16 (16 % 16 == 0): boxes (20, 20, 120, 90) and (150, 10, 190, 40).
    out = decode(
        annotate(
            png_200x100,
            counted(
                Detection(0, 0.9, 0.1, 0.2, 0.6, 0.9), Detection(16, 0.8, 0.75, 0.1, 0.95, 0.4)
            ),
        )
    )

    assert out.getpixel((20, 50)) == ORANGE
    assert out.getpixel((150, 30)) == SKY_BLUE


# The legend: phones and 4K monitors, measured on the pixels written.
PHONE, MONITOR_4K = (390, 844), (3840, 2160)
# Smallest legible height of the legend's text on screen, in screen pixels: its capital letters
# and digits (about 0.7 of the font size) at 12 px type.
MIN_GLYPH_PX = 8


def legend_result(image_size, classes=(("car", 0, 3), ("person", 1, 2))):
    detections = [
        Detection(class_id, 0.9, 0.45, 0.45, 0.55, 0.55)
        for name, class_id, count in classes
        for _ in range(count)
    ]
    class_map = {str(class_id): name for name, class_id, _ in classes}
    return count_detections(detections, threshold=0.3, class_map=class_map, image_size=image_size)


def heading_glyph_height(out: Image.Image) -> int:
    """Rows of the legend's first line holding light (text) pixels, near the left or right."""
    pixels = out.load()
    width, height = out.size
    white_rows = [
        y
        for y in range(height)
        if any(sum(pixels[x, y]) > 3 * 128 for x in range(0, min(width, 400)))
        or any(sum(pixels[x, y]) > 3 * 128 for x in range(max(0, width - 400), width))
    ]
    # The first run of consecutive white rows is the heading line.
    run = [white_rows[0]]
    for y in white_rows[1:]:
        if y - run[-1] > 1:
            break
        run.append(y)
    return len(run)


def shown_scale(size, screen):
    return min(1.0, screen[0] / size[0], screen[1] / size[1])


@pytest.mark.parametrize(
    "size",
    [(4032, 3024), (3024, 4032), (4096, 2304), (1920, 1080), (640, 480), (300, 200)],
)
def test_the_legend_is_readable_on_a_phone_and_on_a_4k_monitor(size):
    # A dark photo, so white text can only come from the legend.
    image = Image.new("RGB", size, (40, 40, 40))
    result = legend_result(size)

    out = decode(annotate(image, result.detections, result))

    glyph = heading_glyph_height(out)
    for screen in (PHONE, MONITOR_4K):
        assert glyph * shown_scale(out.size, screen) >= MIN_GLYPH_PX, (size, screen, glyph)


def test_the_legend_shows_each_class_in_its_colour(png_200x100):
    result = legend_result((200, 100))

    out = decode(annotate(png_200x100, result.detections, result))

    colours = {colour for _, colour in out.getcolors(maxcolors=100_000)}
    assert class_colour(0) in colours
    assert class_colour(1) in colours
    assert (255, 255, 255) in colours  # the text


def test_the_legend_text_says_total_classes_and_threshold():
    result = legend_result((640, 480))

    heading, entries = legend_lines(result)

    assert heading == "Total 5  ·  score ≥ 0.30"
    assert entries == [("car 3", "car"), ("person 2", "person")]


def test_many_classes_are_summed_after_the_largest():
    classes = tuple((f"class {index:02d}", index, 20 - index) for index in range(15))
    result = legend_result((640, 480), classes)

    _, entries = legend_lines(result)

    # 12 lines: the 11 largest classes by name, then the other 15 - 11 = 4 summed on one.
    assert len(entries) == 12
    assert entries[0] == ("class 00 20", "class 00")
    rest = sum(20 - index for index in range(LEGEND_CLASSES - 1, 15))
    assert entries[-1] == (f"4 more classes {rest}", None)


def test_the_legend_avoids_the_corner_with_boxes():
    size = (1000, 800)
    # One large box filling the bottom-left quarter.
    detections = count_detections(
        [Detection(0, 0.9, 0.0, 0.5, 0.5, 1.0)], image_size=size
    ).detections
    result = count_detections([Detection(0, 0.9, 0.0, 0.5, 0.5, 1.0)], image_size=size)
    image = Image.new("RGB", size, (40, 40, 40))

    out = decode(annotate(image, detections, result))

    # The legend darkens the photo (40 -> 10) in the first corner free of boxes, bottom right;
    # the box's corner, bottom left, keeps its grey.
    assert out.getpixel((size[0] - 5, size[1] - 5)) == (10, 10, 10)
    assert out.getpixel((20, size[1] - 20)) == (40, 40, 40)


def test_every_corner_taken_puts_the_legend_in_a_strip_below_the_picture():
    size = (400, 300)
    # Four boxes, one in each corner: no corner is free for the legend.
    boxes = [
        Detection(0, 0.9, 0.0, 0.0, 0.3, 0.3),
        Detection(0, 0.9, 0.7, 0.0, 1.0, 0.3),
        Detection(0, 0.9, 0.0, 0.7, 0.3, 1.0),
        Detection(0, 0.9, 0.7, 0.7, 1.0, 1.0),
    ]
    result = count_detections(boxes, image_size=size)
    image = Image.new("RGB", size, (40, 40, 40))

    out = decode(annotate(image, result.detections, result))

    # legend_font_px(400, 300) = ceil(12 / min(390/400, 844/300 capped at 1, ...)) = 13;
    # pad 6, line height round(13 * 1.3) = 17; a heading and one line of entries:
    # 2 * 17 + 2 * 6 = 46 px of strip.
    assert out.size == (400, 300 + 46)
    # No pixel of the picture is shaded: its grey and the boxes' outlines stay as drawn.
    assert out.getpixel((200, 150)) == (40, 40, 40)
    assert out.getpixel((200, 299)) == (40, 40, 40)
    assert out.getpixel((0, 299)) == ORANGE  # the bottom-left box's edge, not shaded
    # The strip is dark with white text.
    strip = out.crop((0, 300, 400, 346))
    assert (24, 24, 24) in {colour for _, colour in strip.getcolors(maxcolors=100_000)}
    assert (255, 255, 255) in {colour for _, colour in strip.getcolors(maxcolors=100_000)}


def test_a_corner_free_of_boxes_keeps_the_picture_size():
    size = (400, 300)
    result = count_detections([Detection(0, 0.9, 0.4, 0.4, 0.6, 0.6)], image_size=size)

    out = decode(annotate(Image.new("RGB", size, (40, 40, 40)), result.detections, result))

    assert out.size == size


@pytest.mark.parametrize(
    "name",
    [
        "Fahrräder",
        "Crème brûlée",
        "Señal",
        "Straße",
        "€ coin",
        "Ёлка",
        "Ω",
        "自転車",
        "ナンバー",
        "번호판",
    ],
)
def test_every_character_of_class_names_and_the_legend_has_a_glyph(name):
    from fontTools.ttLib import TTFont

    from counting_core.imaging.fonts import font_path

    characters = TTFont(font_path()).getBestCmap()
    result = count_detections(
        [Detection(0, 0.9, 0.4, 0.4, 0.6, 0.6)], class_map={"0": name}, image_size=(400, 300)
    )
    heading, entries = legend_lines(result)

    text = heading + "".join(entry for entry, _ in entries) + "0123456789…"
    assert {character for character in text if ord(character) not in characters} == set()
