"""Draw an evaluation as one PNG: count error against threshold (with the count gate's line),
predicted against true count per image, and each class's count error.

Drawn with Pillow, which the evaluation Lambda already has (its layer), rather than
matplotlib (tens of megabytes, a development dependency only): panels of lines, dots, bars
and labelled axes need nothing more.
"""

from __future__ import annotations

import io
import math
from collections import Counter
from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from counting_core.imaging.fonts import font as typeface
from counting_core.models.evaluation import Evaluation

WIDTH, HEIGHT = 1200, 1000
# The two panels of the first row, and the row of per-class bars under their legends.
TOP_ROW = (90, 480)
LEGEND_TOP = 550
LEFT_PANEL = (80, 520)
RIGHT_PANEL = (700, 1150)
CLASS_ROW = (700, 950)
CLASS_PANEL = (300, 1000)
# At most this many classes get a bar, those with the largest MAE; a line says how many more.
CLASS_BARS = 10
MAX_TICKS = 6
# Okabe-Ito colours (as in annotate.py): distinct for colour-blind readers.
MAE_COLOUR = (0, 114, 178)
BIAS_COLOUR = (213, 94, 0)
WAPE_COLOUR = (204, 121, 167)
BEST_COLOUR = (0, 158, 115)
GATE_COLOUR = (0, 0, 0)
DOT_COLOUR = (0, 114, 178)
# Dots are drawn this opaque (of 255), so where many images overlap the colour deepens
# instead of merging into one blob.
DOT_ALPHA = 90
# (1 - 90/255)^12 < 0.01: twelve dots on one point are as dark as any more.
DOTS_TO_SATURATE = 12
INK = (40, 40, 40)
GRID = (225, 225, 225)
DIAGONAL = (150, 150, 150)

Font = ImageFont.ImageFont | ImageFont.FreeTypeFont


class _Axes:
    """A panel: maps data (x, y) to pixels and draws its frame, grid and tick labels."""

    def __init__(
        self,
        draw: ImageDraw.ImageDraw,
        font: Font,
        box: tuple[int, int, int, int],
        x_range: tuple[float, float],
        y_range: tuple[float, float],
    ) -> None:
        self.draw, self.font = draw, font
        self.left, self.top, self.right, self.bottom = box
        self.x_range, self.y_range = x_range, y_range

    def point(self, x: float, y: float) -> tuple[float, float]:
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        px = self.left + (x - x0) / (x1 - x0) * (self.right - self.left)
        py = self.bottom - (y - y0) / (y1 - y0) * (self.bottom - self.top)
        return px, py

    def frame(self, title: str, x_label: str, y_label: str, *, whole: bool) -> None:
        draw, font = self.draw, self.font
        for value in _ticks(*self.y_range, whole=whole):
            _, y = self.point(self.x_range[0], value)
            draw.line((self.left, y, self.right, y), fill=GRID)
            draw.text((self.left - 8, y), _label(value), fill=INK, font=font, anchor="rm")
        for value in _ticks(*self.x_range, whole=whole):
            x, _ = self.point(value, self.y_range[0])
            draw.line((x, self.bottom, x, self.bottom + 5), fill=INK)
            draw.text((x, self.bottom + 8), _label(value), fill=INK, font=font, anchor="mt")
        draw.rectangle((self.left, self.top, self.right, self.bottom), outline=INK)
        centre = (self.left + self.right) / 2
        draw.text((centre, self.top - 12), title, fill=INK, font=font, anchor="mb")
        draw.text((centre, self.bottom + 34), x_label, fill=INK, font=font, anchor="mt")
        draw.text((self.left, self.top - 34), y_label, fill=INK, font=font, anchor="lb")

    def right_scale(self, label: str, *, percent: bool) -> None:
        """Tick labels of this axes' y range on the panel's right edge (a second scale)."""
        for value in _ticks(*self.y_range, whole=False):
            _, y = self.point(self.x_range[0], value)
            self.draw.line((self.right, y, self.right + 5, y), fill=INK)
            text = f"{value:.0%}" if percent else _label(value)
            self.draw.text((self.right + 8, y), text, fill=INK, font=self.font, anchor="lm")
        self.draw.text((self.right, self.top - 34), label, fill=INK, font=self.font, anchor="rb")


def plot(evaluation: Evaluation, *, max_wape: float | None = None) -> bytes:
    """The evaluation as a PNG image (``evaluation.png``); ``max_wape`` is the count gate
    (``training.max_count_wape``), drawn as a line on the WAPE scale when set."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    font = typeface(15)
    best = evaluation.best
    wape = "n/a" if best.wape is None else f"{best.wape:.1%}"
    gate = "" if max_wape is None else f" (gate: at most {max_wape:.1%})"
    draw.text(
        (WIDTH / 2, 14),
        f"{best.images} validation images, {best.total_true} objects. At the best threshold "
        f"{best.threshold:g}: MAE {best.mae:.2f}, WAPE {wape}{gate}, bias {best.bias:+.2f}, "
        f"exact {best.exact_accuracy:.0%}",
        fill=INK,
        font=font,
        anchor="mt",
    )
    _error_panel(draw, font, evaluation, max_wape)
    _counts_panel(image, font, evaluation)
    _class_panel(draw, font, evaluation)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _error_panel(
    draw: ImageDraw.ImageDraw, font: Font, evaluation: Evaluation, max_wape: float | None
) -> None:
    rows = evaluation.per_threshold
    maes = [errors.mae for errors in rows]
    biases = [errors.bias for errors in rows]
    low = min(0.0, *biases)
    high = max(1.0, *maes, *biases)
    box = (LEFT_PANEL[0], TOP_ROW[0], LEFT_PANEL[1], TOP_ROW[1])
    axes = _Axes(draw, font, box, (0.0, 1.0), (low, high * 1.05))
    axes.frame("Count error against threshold", "score threshold", "objects per image", whole=False)
    # WAPE (a fraction of all objects) on its own scale at the right edge.
    wapes = [(errors.threshold, errors.wape) for errors in rows if errors.wape is not None]
    wape_top = max([0.1, *(value for _, value in wapes), *([max_wape] if max_wape else [])])
    wape_axes = _Axes(draw, font, box, (0.0, 1.0), (0.0, wape_top * 1.05))
    wape_axes.right_scale("WAPE", percent=True)
    zero = axes.point(0, 0)[1]
    draw.line((axes.left, zero, axes.right, zero), fill=INK)
    best_x, _ = axes.point(evaluation.best.threshold, 0)
    draw.line((best_x, axes.top, best_x, axes.bottom), fill=BEST_COLOUR, width=2)
    if max_wape is not None:
        _, gate_y = wape_axes.point(0, max_wape)
        _dashed(draw, (axes.left, gate_y), (axes.right, gate_y), GATE_COLOUR)
    thresholds = [errors.threshold for errors in rows]
    for points, colour in (
        ([axes.point(t, v) for t, v in zip(thresholds, maes, strict=True)], MAE_COLOUR),
        ([axes.point(t, v) for t, v in zip(thresholds, biases, strict=True)], BIAS_COLOUR),
        ([wape_axes.point(t, v) for t, v in wapes], WAPE_COLOUR),
    ):
        if len(points) > 1:
            draw.line(points, fill=colour, width=3, joint="curve")
        for x, y in points:
            draw.ellipse((x - 3, y - 3, x + 3, y + 3), fill=colour)
    legend: list[tuple[str, tuple[int, int, int]]] = [
        ("MAE: mean of |predicted - true| per image", MAE_COLOUR),
        ("bias: mean of predicted - true (above 0: over-counts)", BIAS_COLOUR),
        ("WAPE: sum of |predicted - true| / sum of true (right scale)", WAPE_COLOUR),
        (f"best threshold {evaluation.best.threshold:g}", BEST_COLOUR),
    ]
    if max_wape is not None:
        legend.append((f"count gate: WAPE at most {max_wape:.1%} (dashed)", GATE_COLOUR))
    # The legend goes under the panel, where no line can run through it.
    for row, (text, colour) in enumerate(legend):
        y = LEGEND_TOP + row * 20
        draw.line((axes.left, y, axes.left + 25, y), fill=colour, width=3)
        draw.text((axes.left + 32, y), text, fill=INK, font=font, anchor="lm")


def _counts_panel(image: Image.Image, font: Font, evaluation: Evaluation) -> None:
    draw = ImageDraw.Draw(image)
    counts = evaluation.image_counts
    top = max(1, *(c.true_count for c in counts), *(c.predicted_count for c in counts))
    box = (RIGHT_PANEL[0], TOP_ROW[0], RIGHT_PANEL[1], TOP_ROW[1])
    axes = _Axes(draw, font, box, (0, top * 1.05), (0, top * 1.05))
    axes.frame(
        f"Predicted against true count per image (threshold {evaluation.best.threshold:g})",
        "true count (labels)",
        "predicted count",
        whole=True,
    )
    # Exact counts lie on the diagonal; above it the model over-counts.
    draw.line((*axes.point(0, 0), *axes.point(top * 1.05, top * 1.05)), fill=DIAGONAL, width=2)
    # One translucent dot per image (drawing in RGBA mode blends each into the picture): where
    # images share a point or crowd together, the colour deepens with their number. Past
    # DOTS_TO_SATURATE at one point the colour no longer changes, so no more are drawn.
    dots = ImageDraw.Draw(image, "RGBA")
    for (true, predicted), number in Counter(
        (count.true_count, count.predicted_count) for count in counts
    ).items():
        x, y = axes.point(true, predicted)
        for _ in range(min(number, DOTS_TO_SATURATE)):
            dots.ellipse((x - 5, y - 5, x + 5, y + 5), fill=(*DOT_COLOUR, DOT_ALPHA))
    for row, text in enumerate(
        (
            "On the line: counted exactly; above: over-counted; below: under-counted.",
            "One translucent dot per image: the darker, the more images there.",
        )
    ):
        draw.text((axes.left, LEGEND_TOP + row * 20), text, fill=INK, font=font, anchor="lm")


def _class_panel(draw: ImageDraw.ImageDraw, font: Font, evaluation: Evaluation) -> None:
    """Horizontal bars of each class's MAE at the best threshold, largest first, with its bias."""
    ranked = sorted(evaluation.per_class.items(), key=lambda entry: (-entry[1]["mae"], entry[0]))
    shown = ranked[:CLASS_BARS]
    top = max(1.0, *(figures["mae"] for _, figures in shown)) if shown else 1.0
    box = (CLASS_PANEL[0], CLASS_ROW[0], CLASS_PANEL[1], CLASS_ROW[1])
    axes = _Axes(draw, font, box, (0.0, top * 1.05), (0.0, 1.0))
    left, upper, right, lower = box
    draw.text(((left + right) / 2, upper - 12), "Count error per class (MAE, objects per image)",
              fill=INK, font=font, anchor="mb")  # fmt: skip
    for value in _ticks(*axes.x_range, whole=False):
        x, _ = axes.point(value, 0)
        draw.line((x, upper, x, lower), fill=GRID)
        draw.text((x, lower + 8), _label(value), fill=INK, font=font, anchor="mt")
    draw.rectangle(box, outline=INK)
    if not shown:
        draw.text(((left + right) / 2, (upper + lower) / 2), "no classes", fill=INK, font=font,
                  anchor="mm")  # fmt: skip
        return
    band = (lower - upper) / max(len(shown), 4)
    for row, (name, figures) in enumerate(shown):
        y0 = upper + row * band + band * 0.2
        y1 = upper + (row + 1) * band - band * 0.2
        x1, _ = axes.point(figures["mae"], 0)
        draw.rectangle((left, y0, max(left + 1, x1), y1), fill=MAE_COLOUR)
        centre = (y0 + y1) / 2
        draw.text((left - 8, centre), _cut(name), fill=INK, font=font, anchor="rm")
        draw.text((x1 + 6, centre), f"{figures['mae']:.2f}  (bias {figures['bias']:+.2f})",
                  fill=INK, font=font, anchor="lm")  # fmt: skip
    if rest := len(ranked) - len(shown):
        draw.text((left, lower + 34), f"{rest} more classes, each with a smaller MAE",
                  fill=INK, font=font, anchor="lt")  # fmt: skip


def _dashed(
    draw: ImageDraw.ImageDraw,
    start: tuple[float, float],
    end: tuple[float, float],
    colour: tuple[int, int, int],
    dash: int = 8,
) -> None:
    (x0, y), (x1, _) = start, end
    x = x0
    while x < x1:
        draw.line((x, y, min(x + dash, x1), y), fill=colour, width=2)
        x += 2 * dash


def _cut(name: str, characters: int = 28) -> str:
    return name if len(name) <= characters else name[: characters - 1] + "…"


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
