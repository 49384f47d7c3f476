"""Draw an evaluation as one PNG: count error against threshold, predicted against true count.

Drawn with Pillow, which the evaluation Lambda already has (its layer), rather than
matplotlib (tens of megabytes, a development dependency only): two panels of lines,
dots and labelled axes need nothing more.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from counting_core.models.evaluation import Evaluation

WIDTH, HEIGHT = 1200, 620
PANEL_TOP, PANEL_BOTTOM = 90, 480
LEGEND_TOP = 550
LEFT_PANEL = (80, 560)
RIGHT_PANEL = (700, 1150)
MAX_TICKS = 6
# Okabe-Ito colours (as in annotate.py): distinct for colour-blind readers.
MAE_COLOUR = (0, 114, 178)
BIAS_COLOUR = (213, 94, 0)
BEST_COLOUR = (0, 158, 115)
DOT_COLOUR = (0, 114, 178)
INK = (40, 40, 40)
GRID = (225, 225, 225)
DIAGONAL = (150, 150, 150)


class _Axes:
    """A panel: maps data (x, y) to pixels and draws its frame, grid and tick labels."""

    def __init__(
        self,
        draw: ImageDraw.ImageDraw,
        font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
        pixels: tuple[int, int],
        x_range: tuple[float, float],
        y_range: tuple[float, float],
    ) -> None:
        self.draw, self.font = draw, font
        self.left, self.right = pixels
        self.x_range, self.y_range = x_range, y_range

    def point(self, x: float, y: float) -> tuple[float, float]:
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        px = self.left + (x - x0) / (x1 - x0) * (self.right - self.left)
        py = PANEL_BOTTOM - (y - y0) / (y1 - y0) * (PANEL_BOTTOM - PANEL_TOP)
        return px, py

    def frame(self, title: str, x_label: str, y_label: str, *, whole: bool) -> None:
        draw, font = self.draw, self.font
        for value in _ticks(*self.y_range, whole=whole):
            _, y = self.point(self.x_range[0], value)
            draw.line((self.left, y, self.right, y), fill=GRID)
            draw.text((self.left - 8, y), _label(value), fill=INK, font=font, anchor="rm")
        for value in _ticks(*self.x_range, whole=whole):
            x, _ = self.point(value, self.y_range[0])
            draw.line((x, PANEL_BOTTOM, x, PANEL_BOTTOM + 5), fill=INK)
            draw.text((x, PANEL_BOTTOM + 8), _label(value), fill=INK, font=font, anchor="mt")
        draw.rectangle((self.left, PANEL_TOP, self.right, PANEL_BOTTOM), outline=INK)
        centre = (self.left + self.right) / 2
        draw.text((centre, PANEL_TOP - 12), title, fill=INK, font=font, anchor="mb")
        draw.text((centre, PANEL_BOTTOM + 34), x_label, fill=INK, font=font, anchor="mt")
        draw.text((self.left, PANEL_TOP - 34), y_label, fill=INK, font=font, anchor="lb")


def plot(evaluation: Evaluation) -> bytes:
    """The evaluation as a PNG image (``evaluation.png``)."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=15)
    best = evaluation.best
    wape = "n/a" if best.wape is None else f"{best.wape:.1%}"
    draw.text(
        (WIDTH / 2, 14),
        f"{best.images} validation images, {best.total_true} objects. At the best threshold "
        f"{best.threshold:g}: MAE {best.mae:.2f}, WAPE {wape}, bias {best.bias:+.2f}, "
        f"exact {best.exact_accuracy:.0%}",
        fill=INK,
        font=font,
        anchor="mt",
    )
    _error_panel(draw, font, evaluation)
    _counts_panel(draw, font, evaluation)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _error_panel(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    evaluation: Evaluation,
) -> None:
    rows = evaluation.per_threshold
    maes = [errors.mae for errors in rows]
    biases = [errors.bias for errors in rows]
    low = min(0.0, *biases)
    high = max(1.0, *maes, *biases)
    axes = _Axes(draw, font, LEFT_PANEL, (0.0, 1.0), (low, high * 1.05))
    axes.frame(
        "Count error against threshold",
        "score threshold",
        "objects per image",
        whole=False,
    )
    zero = axes.point(0, 0)[1]
    draw.line((axes.left, zero, axes.right, zero), fill=INK)
    best_x, _ = axes.point(evaluation.best.threshold, 0)
    draw.line((best_x, PANEL_TOP, best_x, PANEL_BOTTOM), fill=BEST_COLOUR, width=2)
    thresholds = [errors.threshold for errors in rows]
    for values, colour in ((maes, MAE_COLOUR), (biases, BIAS_COLOUR)):
        points = [axes.point(t, v) for t, v in zip(thresholds, values, strict=True)]
        if len(points) > 1:
            draw.line(points, fill=colour, width=3, joint="curve")
        for x, y in points:
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
    legend = (
        ("MAE: mean of |predicted - true| per image", MAE_COLOUR),
        ("bias: mean of predicted - true (above 0: over-counts)", BIAS_COLOUR),
        (f"best threshold {evaluation.best.threshold:g}", BEST_COLOUR),
    )
    # The legend goes under the panel, where no line can run through it.
    for row, (text, colour) in enumerate(legend):
        y = LEGEND_TOP + row * 20
        draw.line((axes.left, y, axes.left + 25, y), fill=colour, width=3)
        draw.text((axes.left + 32, y), text, fill=INK, font=font, anchor="lm")


def _counts_panel(
    draw: ImageDraw.ImageDraw,
    font: ImageFont.ImageFont | ImageFont.FreeTypeFont,
    evaluation: Evaluation,
) -> None:
    images = evaluation.image_counts
    top = max(1, *(image.true_count for image in images), *(i.predicted_count for i in images))
    axes = _Axes(draw, font, RIGHT_PANEL, (0, top * 1.05), (0, top * 1.05))
    axes.frame(
        f"Predicted against true count per image (threshold {evaluation.best.threshold:g})",
        "true count (labels)",
        "predicted count",
        whole=True,
    )
    # Exact counts lie on the diagonal; above it the model over-counts.
    draw.line((*axes.point(0, 0), *axes.point(top * 1.05, top * 1.05)), fill=DIAGONAL, width=2)
    # Images with the same pair share one dot, its area growing with their number.
    for (true, predicted), number in Counter(
        (image.true_count, image.predicted_count) for image in images
    ).items():
        x, y = axes.point(true, predicted)
        radius = 4 * math.sqrt(number)
        draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=DOT_COLOUR)
    for row, text in enumerate(
        (
            "On the line: counted exactly; above it: over-counted, below: under-counted.",
            "A dot's area grows with the number of images at that point.",
        )
    ):
        draw.text((axes.left, LEGEND_TOP + row * 20), text, fill=INK, font=font, anchor="lm")


def _ticks(low: float, high: float, *, whole: bool) -> Sequence[float]:
    """At most MAX_TICKS round values (steps of 1, 2 or 5 times a power of ten) in range."""
    span = high - low
    raw = span / MAX_TICKS
    magnitude = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    step = next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= raw)
    if whole:
        step = max(1, round(step))
    first = math.ceil(low / step) * step
    count = int((high - first) / step + 1e-9) + 1
    return [round(first + index * step, 10) for index in range(count)]


def _label(value: float) -> str:
    return f"{value:g}"
