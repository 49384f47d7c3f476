"""Turn an Object Detection endpoint response into a count.

The built-in algorithm answers ``{"prediction": [[class_id, score, xmin, ymin, xmax, ymax], ...]}``
with corners as fractions of the image's width and height
(https://docs.aws.amazon.com/sagemaker/latest/dg/object-detection-in-formats.html).
The torchvision detector answers the same and adds ``"max_detections": N``, the most boxes it
returns per image: a response holding N boxes may have been cut there, so its count is
flagged ``capped`` rather than passed off as exact. Without that key the cap is unknown (the
built-in algorithm's) and nothing is flagged.
A response can hold hundreds of boxes, so parsing is one plain loop of range checks; the
careful diagnosis that names the problem runs only for the item that fails them.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

# pydantic_core (installed with pydantic) decodes a 1,000-detection response about 4x faster
# than the json module, which keeps `make bench`'s post-processing goal.
from pydantic_core import from_json

from counting_core.constants import DEFAULT_SCORE_THRESHOLD
from counting_core.errors import InputError

# Boxes of objects cut by the image border may stray a little outside [0, 1] and are clamped;
# corners further out than this are more likely pixels than fractions, so they are refused.
CORNER_SLACK = 0.5

_FIELDS = ("class id", "score", "xmin", "ymin", "xmax", "ymax")
_LOW, _HIGH = -CORNER_SLACK, 1.0 + CORNER_SLACK


class Detection(NamedTuple):
    """One box from the endpoint; corners are fractions (0..1) of the image's width and height.

    A named tuple: immutable, and cheap to create at hundreds of boxes per response.
    """

    class_id: int
    score: float
    xmin: float
    ymin: float
    xmax: float
    ymax: float


class CountedDetection(NamedTuple):
    """A detection that passed the threshold, numbered 1, 2, ... by descending score."""

    number: int
    class_id: int
    class_name: str
    score: float
    box: tuple[float, float, float, float]  # (xmin, ymin, xmax, ymax), fractions of the image
    # Inclusive pixel indices (left, top, right, bottom); None when the image size is unknown.
    box_pixels: tuple[int, int, int, int] | None

    def to_dict(self) -> dict[str, Any]:
        xmin, ymin, xmax, ymax = self.box
        record: dict[str, Any] = {
            "number": self.number,
            "class_id": self.class_id,
            "class_name": self.class_name,
            "score": self.score,
            "box": {"xmin": xmin, "ymin": ymin, "xmax": xmax, "ymax": ymax},
        }
        if self.box_pixels is not None:
            left, top, right, bottom = self.box_pixels
            record["box_pixels"] = {"left": left, "top": top, "right": right, "bottom": bottom}
        return record


@dataclass(frozen=True, slots=True)
class Response:
    """An endpoint response: its detections, in its order, and the cap it echoed (if any)."""

    detections: list[Detection]
    # The most detections the model returns per image; None: the response does not say.
    max_detections: int | None = None

    @property
    def capped(self) -> bool:
        """True when the model may have dropped detections: it returned as many as its cap.

        Counted before any score threshold: the cap applies to what the model returns.
        """
        return self.max_detections is not None and len(self.detections) >= self.max_detections


@dataclass(frozen=True, slots=True)
class CountResult:
    """What ``count_detections`` found; ``to_dict`` gives the JSON the CLI prints."""

    count: int
    by_class: dict[str, int]  # class name -> count, sorted by name
    threshold: float
    detections: tuple[CountedDetection, ...]  # descending score; ties keep the response's order
    image_size: tuple[int, int] | None = None  # (width, height) in pixels
    # "configured", "calibrated" or "default" (model_record.score_threshold); None: not said.
    threshold_origin: str | None = None
    # The model returned as many detections as its cap: the true count may be higher.
    capped: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "capped": self.capped,
            "by_class": dict(self.by_class),
            "threshold": self.threshold,
            "threshold_origin": self.threshold_origin,
            "detections": [detection.to_dict() for detection in self.detections],
        }


def parse_response(body: bytes | str | Mapping[str, Any]) -> Response:
    """Read an endpoint response, raw JSON or already decoded, into its detections and cap.

    Corners slightly outside [0, 1] are clamped into it. Raises InputError naming the
    problem and, for a bad box, its index, e.g. "prediction[3]: expected 6 numbers, got 5";
    a ``max_detections`` that is not a positive integer is refused the same way.
    """
    if isinstance(body, bytes | bytearray | str):
        # JSON true/false decode to bools, which pass every numeric check below; a text
        # that cannot hold those words spares checking the type of every number.
        check_types = _may_hold_booleans(body)
        try:
            body = from_json(body)
        except (ValueError, RecursionError) as error:
            raise InputError(f"response is not JSON: {error}") from None
    else:
        check_types = True
    if not isinstance(body, Mapping) or not isinstance(body.get("prediction"), list | tuple):
        raise InputError("missing 'prediction' list in the response")
    items = body["prediction"]
    max_detections = _max_detections(body)

    detections: list[Detection] = []
    for index, item in enumerate(items):
        try:
            class_id, score, xmin, ymin, xmax, ymax = item
            whole_id = int(class_id)
            # Chained comparisons are False for NaN, so they also refuse non-finite numbers.
            valid = whole_id == class_id >= 0 and 0.0 <= score <= 1.0
            if valid and not (0.0 <= xmin <= xmax <= 1.0 and 0.0 <= ymin <= ymax <= 1.0):
                # Slightly outside [0, 1] (an object cut by the border): clamp into it.
                valid = _LOW <= xmin <= xmax <= _HIGH and _LOW <= ymin <= ymax <= _HIGH
                xmin, ymin, xmax, ymax = _clamp(xmin), _clamp(ymin), _clamp(xmax), _clamp(ymax)
        except (TypeError, ValueError, OverflowError):
            valid = False
        if not valid or (check_types and _holds_boolean(item)):
            raise InputError(f"prediction[{index}]: {_describe_problem(item)}")
        detections.append(Detection(whole_id, score, xmin, ymin, xmax, ymax))
    return Response(detections, max_detections)


def _max_detections(body: Mapping[str, Any]) -> int | None:
    """The cap the response echoes; None when it has none (the built-in algorithm)."""
    if "max_detections" not in body:
        return None
    cap = body["max_detections"]
    # Whole JSON numbers only: 1000.0 or true would be a writer's bug, not a cap to guess at.
    if type(cap) is not int or cap < 1:
        shown = cap if type(cap) in (int, float) else _json_type(cap)
        raise InputError(f"max_detections: expected a positive integer, got {shown}")
    return cap


def _may_hold_booleans(text: bytes | bytearray | str) -> bool:
    # "true" holds a "u" and "false" an "l"; neither letter can appear in numbers, NaN,
    # Infinity or the keys "prediction" and "max_detections". A one-letter search runs at
    # memchr speed: 2 us on a 1,000-box response, against 100 us for searching the two words.
    if isinstance(text, str):
        return "u" in text or "l" in text
    return b"u" in text or b"l" in text


def _holds_boolean(item: Iterable[object]) -> bool:
    return any(type(value) is bool for value in item)


def _clamp(value: float) -> float:
    return min(max(value, 0.0), 1.0)


def _describe_problem(item: object) -> str:
    """Say why one ``prediction`` item was refused; runs only after the fast loop stopped."""
    if not isinstance(item, list | tuple):
        return f"expected a list of 6 numbers, got {_json_type(item)}"
    if len(item) != len(_FIELDS):
        return f"expected 6 numbers, got {len(item)}"
    for field, value in zip(_FIELDS, item, strict=True):
        if type(value) not in (int, float):
            return f"{field} must be a number, got {_json_type(value)}"
        if type(value) is float and not math.isfinite(value):
            return f"{field} must be a finite number, got {value}"
    return _describe_bad_number(item)


def _describe_bad_number(item: list[float] | tuple[float, ...]) -> str:
    class_id, score, xmin, ymin, xmax, ymax = item
    if class_id < 0 or class_id != int(class_id):
        return f"class id must be a non-negative integer, got {class_id}"
    if not 0.0 <= score <= 1.0:
        return f"score {score} is outside [0, 1]"
    for field, value in zip(_FIELDS[2:], item[2:], strict=True):
        if not _LOW <= value <= _HIGH:
            return f"{field} {value} is far outside [0, 1]: corners must be fractions of the image"
    if xmax < xmin:
        return f"xmax {xmax} is less than xmin {xmin}"
    return f"ymax {ymax} is less than ymin {ymin}"


def _json_type(value: object) -> str:
    names = {bool: "a boolean", str: "a string", dict: "an object", list: "a list"}
    return "null" if value is None else names.get(type(value), type(value).__name__)


def count_detections(
    detections: Iterable[Detection],
    *,
    threshold: float = DEFAULT_SCORE_THRESHOLD,
    class_map: Mapping[str, str] | None = None,
    image_size: tuple[int, int] | None = None,
    threshold_origin: str | None = None,
    capped: bool = False,
) -> CountResult:
    """Count the detections scoring at least ``threshold`` (which came from ``threshold_origin``).

    ``class_map`` names classes by their id as text, like Ground Truth's ``{"0": "car"}``;
    a class it does not name is called by its id. With ``image_size`` (width, height) in
    pixels, each detection also gets its box in pixels (see ``pixel_box``). ``capped``
    (``Response.capped``) is carried into the result.
    """
    check_threshold(threshold)
    size = None if image_size is None else _check_image_size(image_size)
    kept = [detection for detection in detections if detection.score >= threshold]
    # list.sort is stable with reverse=True too: equal scores keep the response's order.
    kept.sort(key=lambda detection: detection.score, reverse=True)

    per_class_id = Counter(detection.class_id for detection in kept)
    names = {class_id: _class_name(class_id, class_map) for class_id in per_class_id}
    by_class: Counter[str] = Counter()
    for class_id, number in per_class_id.items():
        by_class[names[class_id]] += number  # two ids may share a name
    counted: list[CountedDetection] = []
    for number, (class_id, score, xmin, ymin, xmax, ymax) in enumerate(kept, 1):
        box = (xmin, ymin, xmax, ymax)
        pixels = None if size is None else pixel_box(box, size[0], size[1])
        counted.append(CountedDetection(number, class_id, names[class_id], score, box, pixels))
    return CountResult(
        count=len(kept),
        by_class=dict(sorted(by_class.items())),
        threshold=threshold,
        detections=tuple(counted),
        image_size=size,
        threshold_origin=threshold_origin,
        capped=capped,
    )


def unnamed_class_ids(class_ids: Iterable[int], class_map: Mapping[str, str] | None) -> list[int]:
    """The ids among ``class_ids`` that ``class_map`` does not name, sorted; none without a map
    (every class is then called by its id). A one-class model cannot find class 1, so a
    detection the map does not name means the map (or the model) is wrong."""
    if not class_map:
        return []
    return sorted({class_id for class_id in class_ids if str(class_id) not in class_map})


def pixel_box(
    box: tuple[float, float, float, float], width: int, height: int
) -> tuple[int, int, int, int]:
    """Turn (xmin, ymin, xmax, ymax), fractions of the image, into pixel indices.

    Returns inclusive (left, top, right, bottom): each corner rounds half up (floor of
    x * width + 0.5) and is then held inside the image, so the box always addresses
    existing pixels and can be drawn as it is.
    """
    xmin, ymin, xmax, ymax = box
    last_x, last_y = width - 1, height - 1
    left, top = math.floor(xmin * width + 0.5), math.floor(ymin * height + 0.5)
    right, bottom = math.floor(xmax * width + 0.5), math.floor(ymax * height + 0.5)
    # Conditional expressions rather than min(max(...)): a third of the time, and this runs
    # for every counted box (make bench, post-processing).
    return (
        0 if left < 0 else last_x if left > last_x else left,
        0 if top < 0 else last_y if top > last_y else top,
        0 if right < 0 else last_x if right > last_x else right,
        0 if bottom < 0 else last_y if bottom > last_y else bottom,
    )


def check_threshold(threshold: float) -> float:
    """Return ``threshold`` if it is a number in [0, 1]; raise InputError otherwise."""
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise InputError(f"threshold must be a number in [0, 1], got {threshold!r}")
    if not 0.0 <= threshold <= 1.0:
        raise InputError(f"threshold must be in [0, 1], got {threshold}")
    return threshold


def _check_image_size(image_size: tuple[int, int]) -> tuple[int, int]:
    width, height = image_size
    if not (isinstance(width, int) and isinstance(height, int) and width > 0 and height > 0):
        raise InputError(f"image size must be two positive whole numbers, got {image_size!r}")
    return width, height


def _class_name(class_id: int, class_map: Mapping[str, str] | None) -> str:
    key = str(class_id)
    return class_map.get(key, key) if class_map else key
