"""Turn a COCO detection export (CVAT, Label Studio) into Ground Truth manifest lines.

Boxes labeled outside Ground Truth then train exactly like a labeling job's output.
Decisions, each so that the output is what Ground Truth itself would write:

* COCO category ids become class ids 0..k-1 in ascending category id order, and every
  line carries the whole class map, including categories no box uses.
* Box edges are rounded to whole pixels (ties to even) and clamped inside the image.
  A box left with no width or height (a sliver, or one wholly outside the image) is
  dropped and counted in ``dropped_boxes``: it cannot train a detector.
* Each kept box gets ``{"confidence": 1.0}`` in ``objects``: people drew it.
* Images without boxes stay, with an empty ``annotations`` list.
* A leading "/" in ``file_name`` is dropped so that the key does not get a "//".
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from counting_core.errors import InputError
from counting_core.manifest import (
    METADATA_SUFFIX,
    OBJECT_DETECTION_TYPE,
    SOURCE_REF,
    check_label_attribute_name,
    is_s3_object_uri,
    is_s3_uri,
    to_json_line,
)

IMAGE_DEPTH = 3  # Colour images; the algorithm reads RGB.
HUMAN_CONFIDENCE = 1.0


@dataclass(frozen=True)
class CocoConversion:
    """Manifest lines (one per COCO image, in COCO's order) and what went into them."""

    lines: tuple[str, ...]
    class_map: dict[str, str]
    objects: int
    dropped_boxes: int

    def summary(self) -> dict[str, Any]:
        return {
            "images": len(self.lines),
            "objects": self.objects,
            "dropped_boxes": self.dropped_boxes,
            "classes": self.class_map,
        }


@dataclass(frozen=True)
class _Image:
    id: int
    source_ref: str
    width: int
    height: int


def normalise_image_prefix(image_prefix: str) -> str:
    """``image_prefix`` ending in "/", or ``InputError`` if it is not an s3:// URI."""
    if not is_s3_uri(image_prefix):
        raise InputError(f"image prefix {image_prefix!r} is not an s3://bucket/prefix/ URI")
    return image_prefix if image_prefix.endswith("/") else image_prefix + "/"


def coco_to_manifest(
    coco: Mapping[str, Any],
    *,
    image_prefix: str,
    label_attribute: str,
    creation_date: str,
    job_name: str | None = None,
) -> CocoConversion:
    """Convert a parsed COCO file; images are ``image_prefix`` + ``file_name`` in S3.

    ``creation_date`` is written as given (the CLI passes the current UTC time), so the
    output is reproducible; ``job_name`` defaults to the label attribute.
    """
    check_label_attribute_name(label_attribute)
    prefix = normalise_image_prefix(image_prefix)
    if not isinstance(coco, Mapping):
        raise InputError("a COCO file is a JSON object with images, annotations and categories")
    images = _read_images(_section(coco, "images"), prefix)
    class_ids, class_map = _read_categories(_section(coco, "categories"))
    boxes, dropped = _read_annotations(_section(coco, "annotations"), images, class_ids)
    metadata = {
        "class-map": class_map,
        "type": OBJECT_DETECTION_TYPE,
        "human-annotated": "yes",
        "creation-date": creation_date,
        "job-name": f"labeling-job/{job_name or label_attribute}",
    }
    lines = tuple(
        _manifest_line(image, boxes.get(image.id, []), label_attribute, metadata)
        for image in images.values()
    )
    objects = sum(len(image_boxes) for image_boxes in boxes.values())
    return CocoConversion(lines, class_map, objects, dropped)


def _section(coco: Mapping[str, Any], name: str) -> list[Any]:
    entries = coco.get(name)
    if not isinstance(entries, list):
        raise InputError(f"the COCO file has no {name!r} array")
    return entries


def _read_images(entries: list[Any], prefix: str) -> dict[int, _Image]:
    images: dict[int, _Image] = {}
    first_use: dict[str, str] = {}
    for index, entry in enumerate(entries):
        where = f"images[{index}]"
        image_id = _integer(_field(entry, "id", where), "id", where)
        if image_id in images:
            raise InputError(f"{where}: duplicate id {image_id}")
        source_ref = _source_ref(prefix, _field(entry, "file_name", where), where)
        # One image listed twice could land in both training and validation.
        if source_ref in first_use:
            raise InputError(f"{where}: file_name is also used by {first_use[source_ref]}")
        first_use[source_ref] = where
        width = _positive(_field(entry, "width", where), "width", where)
        height = _positive(_field(entry, "height", where), "height", where)
        images[image_id] = _Image(image_id, source_ref, width, height)
    return images


def _read_categories(entries: list[Any]) -> tuple[dict[int, int], dict[str, str]]:
    names: dict[int, str] = {}
    for index, entry in enumerate(entries):
        where = f"categories[{index}]"
        category_id = _integer(_field(entry, "id", where), "id", where)
        name = _field(entry, "name", where)
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{where}: name must be a non-empty string, got {name!r}")
        if category_id in names:
            raise InputError(f"{where}: duplicate id {category_id}")
        # Counts are reported per class name, so two categories must not share one.
        if name in names.values():
            raise InputError(f"{where}: duplicate name {name!r}")
        names[category_id] = name
    ordered = sorted(names)
    class_ids = {category_id: class_id for class_id, category_id in enumerate(ordered)}
    class_map = {str(class_ids[category_id]): names[category_id] for category_id in ordered}
    return class_ids, class_map


def _read_annotations(
    entries: list[Any], images: dict[int, _Image], class_ids: dict[int, int]
) -> tuple[dict[int, list[dict[str, int]]], int]:
    boxes: dict[int, list[dict[str, int]]] = {}
    dropped = 0
    for index, entry in enumerate(entries):
        where = f"annotations[{index}]"
        image_id = _integer(_field(entry, "image_id", where), "image_id", where)
        if image_id not in images:
            raise InputError(f"{where}: image_id {image_id} is not in images")
        category_id = _integer(_field(entry, "category_id", where), "category_id", where)
        if category_id not in class_ids:
            raise InputError(f"{where}: category_id {category_id} is not in categories")
        box = _pixel_box(_bbox(_field(entry, "bbox", where), where), images[image_id])
        if box is None:
            dropped += 1
        else:
            boxes.setdefault(image_id, []).append({"class_id": class_ids[category_id], **box})
    return boxes, dropped


def _bbox(value: object, where: str) -> tuple[float, float, float, float]:
    items = value if isinstance(value, list) else []
    numbers = [number for number in map(_finite_float, items) if number is not None]
    if len(items) != 4 or len(numbers) != 4:
        raise InputError(f"{where}: bbox must be [x, y, width, height] numbers, got {value!r}")
    x, y, width, height = numbers
    if width < 0 or height < 0:
        raise InputError(f"{where}: bbox width and height must not be negative, got {value!r}")
    return x, y, width, height


def _pixel_box(bbox: tuple[float, float, float, float], image: _Image) -> dict[str, int] | None:
    # Rounding the edges, not the size, keeps the box over the pixels it was drawn on.
    x, y, width, height = bbox
    left, right = (_pixel(edge, image.width) for edge in (x, x + width))
    top, bottom = (_pixel(edge, image.height) for edge in (y, y + height))
    if right <= left or bottom <= top:
        return None
    return {"left": left, "top": top, "width": right - left, "height": bottom - top}


def _manifest_line(
    image: _Image, boxes: list[dict[str, int]], attribute: str, metadata: dict[str, Any]
) -> str:
    size = {"width": image.width, "height": image.height, "depth": IMAGE_DEPTH}
    objects = [{"confidence": HUMAN_CONFIDENCE} for _ in boxes]
    return to_json_line(
        {
            SOURCE_REF: image.source_ref,
            attribute: {"image_size": [size], "annotations": boxes},
            attribute + METADATA_SUFFIX: {"objects": objects, **metadata},
        }
    )


def _source_ref(prefix: str, file_name: object, where: str) -> str:
    source_ref = (prefix + file_name.lstrip("/")) if isinstance(file_name, str) else None
    if source_ref is None or not is_s3_object_uri(source_ref):
        raise InputError(f"{where}: file_name {file_name!r} does not name an image file")
    return source_ref


def _field(entry: object, key: str, where: str) -> Any:
    if not isinstance(entry, Mapping):
        raise InputError(f"{where}: expected an object, got {entry!r}")
    if key not in entry:
        raise InputError(f"{where}: missing {key!r}")
    return entry[key]


def _integer(value: object, key: str, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(f"{where}: {key} must be an integer, got {value!r}")
    return value


def _positive(value: object, key: str, where: str) -> int:
    number = _integer(value, key, where)
    if number <= 0:
        raise InputError(f"{where}: {key} must be positive, got {number}")
    return number


def _finite_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range
        return None
    return number if math.isfinite(number) else None


def _pixel(edge: float, size: int) -> int:
    # Clamp before rounding: x + width may overflow to infinity, which round() refuses.
    return round(min(max(edge, 0.0), size))
