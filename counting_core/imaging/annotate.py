"""Draw counted detections on their image: each box outlined, its number at the centre, and
a legend with the total, the count per class and the threshold.

The legend goes in a corner of the picture where it hides no counted box; when every corner
would hide one, in a strip added below the picture, so no box is ever covered.

The guide's notebook drew with matplotlib, which lays out a whole figure to draw a few
rectangles; Pillow's ImageDraw writes straight into the pixels (bench/bench_counting.py
compares the two).
"""

from __future__ import annotations

import colorsys
import io
import math
from collections.abc import Iterable, Sequence

from PIL import Image, ImageDraw

from counting_core.counts.predictions import CountedDetection, CountResult, pixel_box
from counting_core.imaging.fonts import font as typeface
from counting_core.imaging.images import open_image
from counting_core.imaging.tiling import Window

# Okabe-Ito's colours, chosen to stay distinct for colour-blind readers, with white in place
# of its black, which vanishes on dark photos; then Paul Tol's "muted" scheme (also made for
# colour-blind readers) less its cyan and teal, too close to Okabe-Ito's sky blue and bluish
# green, and a vivid red. Every two differ by at least 21 in CIE76 Lab distance (the test
# works it out), and each from the legend's grey by more. Class id N takes colour N modulo
# the palette's size, so a class keeps its colour from one image to the next.
# https://jfly.uni-koeln.de/color/  https://personal.sron.nl/~pault/
PALETTE = (
    (230, 159, 0),
    (86, 180, 233),
    (0, 158, 115),
    (240, 228, 66),
    (0, 114, 178),
    (213, 94, 0),
    (204, 121, 167),
    (255, 255, 255),
    (204, 102, 119),
    (51, 34, 136),
    (221, 204, 119),
    (17, 119, 51),
    (136, 34, 85),
    (153, 153, 51),
    (170, 68, 153),
    (190, 0, 50),
)
# The legend's swatch for the classes summed on one line.
REST_COLOUR = (160, 160, 160)
# zlib level 1: on a 1080p photo, under a third of the default level's (6) time for about
# 1.5% more bytes. Encoding the PNG is most of the time annotate takes.
PNG_COMPRESS_LEVEL = 1


# The legend is read with the whole image fitted to a screen, never enlarged: a phone held
# upright (390 x 844 CSS px, iPhone 12 to 15) and a 4K monitor (3840 x 2160).
SCREENS = ((390, 844), (3840, 2160))
# Its text is at least this many screen pixels high (font size) on both: the smallest size
# commonly used for secondary text on phones.
# https://developer.apple.com/design/human-interface-guidelines/typography (caption: 12 pt)
LEGEND_TEXT_PX = 12
# Classes listed by name, most objects first; the rest are summed on one line.
LEGEND_CLASSES = 12
# Longer class names are cut to this many characters in the legend (the JSON has them whole).
LEGEND_NAME_CHARACTERS = 32
# The legend's backing darkens the photo under it to this fraction of its brightness.
LEGEND_SHADE = 0.25
# The strip below the picture, when the legend cannot go in a corner free of boxes.
STRIP_COLOUR = (24, 24, 24)


def class_colour(class_id: int) -> tuple[int, int, int]:
    """The class's own colour, the same on every image (two classes may share it)."""
    return PALETTE[class_id % len(PALETTE)]


def image_colours(class_ids: Iterable[int]) -> dict[int, tuple[int, int, int]]:
    """A different colour for each class of one image: its own, unless a lower class id of
    the image took it; then the first colour of the palette no class of the image has.

    Past the palette (more classes in one image than colours), hues are spread around the
    colour wheel by the golden angle, each new one as far as can be from those before.
    """
    classes = sorted(set(class_ids))
    colours: dict[int, tuple[int, int, int]] = {}
    unused = list(PALETTE)
    for class_id in classes:
        own = class_colour(class_id)
        if own in unused:
            colours[class_id] = own
            unused.remove(own)
    extra = 0
    for class_id in (class_id for class_id in classes if class_id not in colours):
        if unused:
            colours[class_id] = unused.pop(0)
        else:
            hue = (extra * 0.618033988749895) % 1.0
            red, green, blue = colorsys.hsv_to_rgb(hue, 0.85, 0.95)
            colours[class_id] = (round(red * 255), round(green * 255), round(blue * 255))
            extra += 1
    return colours


def annotate(
    image: Image.Image | bytes,
    detections: Iterable[CountedDetection],
    legend: CountResult | None = None,
) -> bytes:
    """Return ``image`` as a PNG with every detection drawn on it, and ``legend``'s figures.

    Boxes are placed from their fractions of the image, so detections counted on a
    resized copy of the image (as sent to the endpoint) still land in the right place.
    An ``Image`` is drawn on in place (the counter hands over its own copy); bytes are decoded.
    The PNG is the image's size, or taller by the legend's strip when no corner of the
    picture is free of boxes.
    """
    if not isinstance(image, Image.Image):
        image = open_image(image)
    width, height = image.size
    short_side = min(width, height)
    # Lines and tag margins grow with the image so they stay visible once it is scaled down.
    thickness = max(2, short_side // 300)
    font = typeface(max(10, short_side // 40))
    draw = ImageDraw.Draw(image)
    detections = tuple(detections)
    colours = image_colours(detection.class_id for detection in detections)
    for detection in detections:
        colour = colours[detection.class_id]
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
    if legend is not None:
        image = _with_legend(image, legend, detections, colours)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=PNG_COMPRESS_LEVEL)
    return buffer.getvalue()


def legend_font_px(width: int, height: int) -> int:
    """Font size that shows ``LEGEND_TEXT_PX`` high on every screen of ``SCREENS``."""
    smallest_scale = min(
        min(1.0, screen_width / width, screen_height / height)
        for screen_width, screen_height in SCREENS
    )
    return math.ceil(LEGEND_TEXT_PX / smallest_scale)


def legend_lines(result: CountResult) -> tuple[str, list[tuple[str, str | None]]]:
    """The legend's heading and its class entries (text, class name or None for the rest)."""
    heading = f"Total {result.count}  ·  score ≥ {result.threshold:.2f}"
    ranked = sorted(result.by_class.items(), key=lambda entry: (-entry[1], entry[0]))
    shown = ranked if len(ranked) <= LEGEND_CLASSES else ranked[: LEGEND_CLASSES - 1]
    entries: list[tuple[str, str | None]] = [
        (f"{_cut(name)} {count}", name) for name, count in shown
    ]
    if rest := ranked[len(shown) :]:
        entries.append((f"{len(rest)} more classes {sum(c for _, c in rest)}", None))
    return heading, entries


def _with_legend(
    image: Image.Image,
    result: CountResult,
    detections: Sequence[CountedDetection],
    colours: dict[int, tuple[int, int, int]],
) -> Image.Image:
    """The picture with its legend: in a corner free of counted boxes (shading the photo
    under it), or else in a strip added below the picture."""
    width, height = image.size
    size = legend_font_px(width, height)
    font = typeface(size)
    pad, line_height, swatch = size // 2, round(size * 1.3), size
    heading, entries = legend_lines(result)
    draw = ImageDraw.Draw(image)
    # Lay entries out left to right, wrapping at the image's width.
    lines: list[list[tuple[str, str | None]]] = [[]]
    line_width, most = 0.0, draw.textlength(heading, font=font)
    for text, name in entries:
        entry_width = swatch + pad / 2 + draw.textlength(text, font=font)
        if lines[-1] and line_width + pad * 2 + entry_width > width - 2 * pad:
            lines.append([])
            line_width = 0.0
        line_width += (pad * 2 if lines[-1] else 0) + entry_width
        lines[-1].append((text, name))
        most = max(most, line_width)
    lines = [line for line in lines if line]
    box_width = min(width, math.ceil(most) + 2 * pad)
    box_height = (1 + len(lines)) * line_height + 2 * pad
    corner = _free_corner(width, height, box_width, box_height, detections)
    if corner is None:
        left, top = 0, height
        strip = Image.new(image.mode, (width, height + box_height), STRIP_COLOUR)
        strip.paste(image, (0, 0))
        image = strip
        draw = ImageDraw.Draw(image)
    else:
        left, top = corner
        area = (left, top, left + box_width, top + box_height)
        shaded = Image.eval(image.crop(area), lambda value: int(value * LEGEND_SHADE))
        image.paste(shaded, area[:2])

    colour_of = {d.class_name: colours[d.class_id] for d in detections}
    draw.text((left + pad, top + pad), heading, fill=(255, 255, 255), font=font)
    for row, line in enumerate(lines, start=1):
        x: float = left + pad
        y = top + pad + row * line_height
        for text, name in line:
            colour = REST_COLOUR if name is None else colour_of.get(name, REST_COLOUR)
            centre_y = y + size * 0.6
            draw.rectangle(
                (x, centre_y - swatch / 2, x + swatch, centre_y + swatch / 2), fill=colour
            )
            x += swatch + pad / 2
            draw.text((x, y), text, fill=(255, 255, 255), font=font)
            x += draw.textlength(text, font=font) + pad * 2
    return image


def _free_corner(
    width: int,
    height: int,
    box_width: int,
    box_height: int,
    detections: Sequence[CountedDetection],
) -> tuple[int, int] | None:
    """Top-left of the first corner box (bottom left, bottom right, top left, top right)
    that fits in the picture and overlaps no counted box, or None."""
    if box_width > width or box_height > height:
        return None
    boxes = [pixel_box(detection.box, width, height) for detection in detections]
    for left, top in (
        (0, height - box_height),
        (width - box_width, height - box_height),
        (0, 0),
        (width - box_width, 0),
    ):
        right, bottom = left + box_width - 1, top + box_height - 1
        # Pixel boxes are inclusive: two boxes touch when they share a pixel.
        if not any(
            x0 <= right and left <= x1 and y0 <= bottom and top <= y1 for x0, y0, x1, y1 in boxes
        ):
            return left, top
    return None


def _cut(name: str) -> str:
    return name if len(name) <= LEGEND_NAME_CHARACTERS else name[: LEGEND_NAME_CHARACTERS - 1] + "…"


def _text_colour(background: tuple[int, int, int]) -> tuple[int, int, int]:
    # Rec. 601 luma: dark text on light tags, white text on dark ones.
    red, green, blue = background
    return (0, 0, 0) if 299 * red + 587 * green + 114 * blue > 128_000 else (255, 255, 255)


#: Tile borders are drawn in mid grey, thinner than boxes: seen on any background, never
#: taken for a detection.
TILE_BORDER_COLOUR = (128, 128, 128)


def mark_tiles(
    picture: Image.Image, image_size: tuple[int, int], windows: Iterable[Window]
) -> None:
    """Draw each tile's border (``windows``: pixels of the upright image of ``image_size``)
    on ``picture``, an upright copy of any size, in place."""
    scale_x, scale_y = picture.width / image_size[0], picture.height / image_size[1]
    thickness = max(1, min(picture.size) // 600)
    draw = ImageDraw.Draw(picture)
    for left, top, right, bottom in windows:
        draw.rectangle(
            (left * scale_x, top * scale_y, right * scale_x - 1, bottom * scale_y - 1),
            outline=TILE_BORDER_COLOUR,
            width=thickness,
        )
