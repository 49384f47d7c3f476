"""Turn a COCO detection export (CVAT/Datumaro, Roboflow, Label Studio) into Ground Truth
manifest lines.

Boxes labeled outside Ground Truth then train exactly like a labeling job's output.
Decisions, each so that the output is what Ground Truth itself would write, and what the
COCO format means (https://cocodataset.org/#format-data):

* Crowd regions (``iscrowd: 1``) mark many objects at once, which COCO's own evaluation
  ignores: they are skipped and counted in ``crowd_skipped``, never trained as one box.
* An annotation without ``bbox`` (segmentation-only exports) gets the box enclosing its
  polygons, which is how COCO defines ``bbox``; keypoints are ignored.
* Categories that end up with no box (Roboflow's placeholder category 0, a label nobody
  used) get no class id, and are listed in ``unused_categories``; with
  ``keep_empty_categories`` they keep one. The others become class ids 0..k-1 in
  ascending category id order, and every line carries the whole class map.
* Box edges are rounded to whole pixels (ties to even) and clamped inside the image.
  A box left with no width or height (a sliver, or one wholly outside the image) is
  dropped and counted in ``dropped_boxes``: it cannot train a detector.
* Each kept box gets ``{"confidence": 1.0}`` in ``objects``: people drew it.
* Images without boxes stay, with an empty ``annotations`` list.
* ``file_name`` is a path below the image prefix: Windows separators (Label Studio on
  Windows) become "/"; a path that climbs out (".."), starts at a root ("/", "C:") or is
  a URL is refused, naming the image entry, as it matches no uploaded image.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from counting_core.datasets.manifest import (
    MAX_CLASSES,
    METADATA_SUFFIX,
    OBJECT_DETECTION_TYPE,
    SOURCE_REF,
    check_label_attribute_name,
    is_s3_object_uri,
    is_s3_uri,
    to_json_line,
)
from counting_core.errors import InputError

IMAGE_DEPTH = 3  # Colour images; the algorithm reads RGB.
# Ground Truth's creation-date format (strftime), for ``human_label_metadata``.
CREATION_DATE_FORMAT = "%Y-%m-%dT%H:%M:%S.%f"
HUMAN_CONFIDENCE = 1.0

# "C:", "C:\" and "c:/": a Windows drive, which no S3 key below the prefix starts with.
_DRIVE = re.compile(r"[A-Za-z]:")


@dataclass(frozen=True)
class CocoConversion:
    """Manifest lines (one per COCO image, in COCO's order) and what went into them."""

    lines: tuple[str, ...]
    class_map: dict[str, str]
    objects: int
    dropped_boxes: int
    crowd_skipped: int = 0
    # Categories without boxes: left out (no class id), or kept as classes when asked.
    unused_categories: tuple[str, ...] = ()
    empty_classes: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        return {
            "images": len(self.lines),
            "objects": self.objects,
            "dropped_boxes": self.dropped_boxes,
            "crowd_skipped": self.crowd_skipped,
            "unused_categories": list(self.unused_categories),
            "empty_classes": list(self.empty_classes),
            "classes": self.class_map,
        }

    def summary_line(self) -> str:
        """One line for a person: what was imported, and what was skipped and why."""
        imported = (
            f"imported {count_of(len(self.lines), 'image')} with {count_of(self.objects, 'box')} "
            f"in {count_of(len(self.class_map), 'class')}"
        )
        if self.empty_classes:
            imported += (
                f" ({len(self.empty_classes)} without boxes: "
                f"{', '.join(map(repr, self.empty_classes))})"
            )
        skipped = [
            f"{count_of(self.crowd_skipped, 'crowd region')} (iscrowd: 1)"
            if self.crowd_skipped
            else "",
            f"{count_of(self.dropped_boxes, 'box')} with no area inside its image"
            if self.dropped_boxes
            else "",
            f"{count_of(len(self.unused_categories), 'category', 'categories')} without boxes "
            f"({', '.join(map(repr, self.unused_categories))})"
            if self.unused_categories
            else "",
        ]
        listed = [text for text in skipped if text]
        return imported + (f"; skipped {', '.join(listed)}" if listed else "")


@dataclass(frozen=True)
class _Image:
    id: int
    source_ref: str
    width: int
    height: int


@dataclass(frozen=True)
class _Category:
    id: int
    name: str


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
    keep_empty_categories: bool = False,
) -> CocoConversion:
    """Convert a parsed COCO file; images are ``image_prefix`` + ``file_name`` in S3.

    ``creation_date`` is written as given (the CLI passes the current UTC time), so the
    output is reproducible; ``job_name`` defaults to the label attribute.
    """
    check_label_attribute_name(label_attribute)
    prefix = normalise_image_prefix(image_prefix)
    if isinstance(coco, list):
        raise InputError(
            f"the file is a JSON array of {len(coco)} item(s), not a COCO object with images, "
            "annotations and categories (Label Studio's JSON export is such an array of "
            "tasks: convert it with `counting manifest from-label-studio`)"
        )
    if not isinstance(coco, Mapping):
        raise InputError("a COCO file is a JSON object with images, annotations and categories")
    images = _read_images(_section(coco, "images"), prefix)
    categories = _read_categories(_section(coco, "categories"))
    boxes, dropped, crowd = _read_annotations(_section(coco, "annotations"), images, categories)
    used = {category_id for image_boxes in boxes.values() for category_id, _ in image_boxes}
    kept = sorted(categories if keep_empty_categories else used)
    if len(kept) > MAX_CLASSES:
        which = (
            "would get class ids (--keep-empty-categories)"
            if keep_empty_categories
            else "have boxes"
        )
        raise InputError(
            f"{len(kept):,} categories {which}, but a model here trains at most {MAX_CLASSES:,} "
            "classes: merge or leave out categories in the labeling tool before exporting"
        )
    class_ids = {category_id: class_id for class_id, category_id in enumerate(kept)}
    class_map = {str(class_ids[category_id]): categories[category_id].name for category_id in kept}
    metadata = human_label_metadata(class_map, creation_date, job_name or label_attribute)
    lines = tuple(
        manifest_line(
            image.source_ref,
            (image.width, image.height),
            [
                {"class_id": class_ids[category_id], **box}
                for category_id, box in boxes.get(image.id, [])
            ],
            label_attribute,
            metadata,
        )
        for image in images.values()
    )
    objects = sum(len(image_boxes) for image_boxes in boxes.values())
    empty = tuple(categories[category_id].name for category_id in sorted(set(categories) - used))
    if keep_empty_categories:
        return CocoConversion(lines, class_map, objects, dropped, crowd, empty_classes=empty)
    return CocoConversion(lines, class_map, objects, dropped, crowd, unused_categories=empty)


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
        file_name = _field(entry, "file_name", where)
        source_ref = source_ref_below(prefix, file_name, f"{where}: file_name")
        # One image listed twice could land in both training and validation.
        if source_ref in first_use:
            raise InputError(f"{where}: file_name is also used by {first_use[source_ref]}")
        first_use[source_ref] = where
        width = _positive(_field(entry, "width", where), "width", where)
        height = _positive(_field(entry, "height", where), "height", where)
        images[image_id] = _Image(image_id, source_ref, width, height)
    return images


def _read_categories(entries: list[Any]) -> dict[int, _Category]:
    categories: dict[int, _Category] = {}
    for index, entry in enumerate(entries):
        where = f"categories[{index}]"
        category_id = _integer(_field(entry, "id", where), "id", where)
        name = _field(entry, "name", where)
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{where}: name must be a non-empty string, got {name!r}")
        if category_id in categories:
            raise InputError(f"{where}: duplicate id {category_id}")
        # Counts are reported per class name, so two categories must not share one.
        if any(category.name == name for category in categories.values()):
            raise InputError(f"{where}: duplicate name {name!r}")
        categories[category_id] = _Category(category_id, name)
    return categories


def _read_annotations(
    entries: list[Any], images: dict[int, _Image], categories: dict[int, _Category]
) -> tuple[dict[int, list[tuple[int, dict[str, int]]]], int, int]:
    """Boxes per image id as (category id, box), and how many were dropped and skipped."""
    boxes: dict[int, list[tuple[int, dict[str, int]]]] = {}
    dropped = crowd = 0
    first_use: dict[int, str] = {}
    for index, entry in enumerate(entries):
        where = f"annotations[{index}]"
        # COCO ids are unique per list; a repeated one is usually an export merged into itself,
        # which would train and count the same object twice. Exports without ids pass.
        if isinstance(entry, Mapping) and "id" in entry:
            annotation_id = _integer(entry["id"], "id", where)
            if annotation_id in first_use:
                first = first_use[annotation_id]
                raise InputError(f"{where}: duplicate id {annotation_id}, also used by {first}")
            first_use[annotation_id] = where
        image_id = _integer(_field(entry, "image_id", where), "image_id", where)
        if image_id not in images:
            raise InputError(f"{where}: image_id {image_id} is not in images")
        category_id = _integer(_field(entry, "category_id", where), "category_id", where)
        if category_id not in categories:
            raise InputError(f"{where}: category_id {category_id} is not in categories")
        if _is_crowd(entry, where):
            crowd += 1
            continue
        image = images[image_id]
        box = pixel_box(_bbox(entry, where), image.width, image.height)
        if box is None:
            dropped += 1
        else:
            boxes.setdefault(image_id, []).append((category_id, box))
    return boxes, dropped, crowd


def _is_crowd(entry: Mapping[str, Any], where: str) -> bool:
    value = entry.get("iscrowd", 0)
    if value not in (0, 1) or isinstance(value, float):
        raise InputError(f"{where}: iscrowd must be 0 or 1, got {value!r}")
    return bool(value)


def _bbox(entry: Mapping[str, Any], where: str) -> tuple[float, float, float, float]:
    value = entry.get("bbox")
    if value in (None, []) and "segmentation" in entry:
        # Segmentation-only exports: COCO's bbox is the box enclosing the segmentation.
        return _polygon_box(entry["segmentation"], where)
    value = _field(entry, "bbox", where)
    items = value if isinstance(value, list) else []
    numbers = [number for number in map(_finite_float, items) if number is not None]
    if len(items) != 4 or len(numbers) != 4:
        raise InputError(f"{where}: bbox must be [x, y, width, height] numbers, got {value!r}")
    x, y, width, height = numbers
    if width < 0 or height < 0:
        raise InputError(f"{where}: bbox width and height must not be negative, got {value!r}")
    return x, y, width, height


def _polygon_box(segmentation: object, where: str) -> tuple[float, float, float, float]:
    polygons = segmentation if isinstance(segmentation, list) and segmentation else [None]
    points = [
        number
        for polygon in polygons
        if isinstance(polygon, list)
        for number in map(_finite_float, polygon)
        if number is not None
    ]
    # Each polygon is [x1, y1, x2, y2, ...] of at least three points, all numbers.
    if any(
        not isinstance(polygon, list) or len(polygon) < 6 or len(polygon) % 2
        for polygon in polygons
    ) or len(points) != sum(len(polygon) for polygon in polygons if isinstance(polygon, list)):
        raise InputError(
            f"{where}: no bbox, and no polygon segmentation [[x1, y1, x2, y2, ...]] to "
            "take one from"
        )
    xs, ys = points[0::2], points[1::2]
    return min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)


def pixel_box(
    bbox: tuple[float, float, float, float], image_width: int, image_height: int
) -> dict[str, int] | None:
    """``bbox`` (x, y, width, height in pixels) with its edges rounded to whole pixels (ties to
    even) and clamped inside the image; None if no width or height is left."""
    # Rounding the edges, not the size, keeps the box over the pixels it was drawn on.
    x, y, width, height = bbox
    left, right = (_pixel(edge, image_width) for edge in (x, x + width))
    top, bottom = (_pixel(edge, image_height) for edge in (y, y + height))
    if right <= left or bottom <= top:
        return None
    return {"left": left, "top": top, "width": right - left, "height": bottom - top}


def human_label_metadata(
    class_map: dict[str, str], creation_date: str, job_name: str
) -> dict[str, Any]:
    """The ``<attr>-metadata`` fields a Ground Truth job writes, less ``objects``."""
    return {
        "class-map": class_map,
        "type": OBJECT_DETECTION_TYPE,
        "human-annotated": "yes",
        "creation-date": creation_date,
        "job-name": f"labeling-job/{job_name}",
    }


def manifest_line(
    source_ref: str,
    image_size: tuple[int, int],
    boxes: list[dict[str, int]],
    attribute: str,
    metadata: dict[str, Any],
) -> str:
    """One manifest line for an image whose ``boxes`` (with class ids) people drew."""
    width, height = image_size
    size = {"width": width, "height": height, "depth": IMAGE_DEPTH}
    objects = [{"confidence": HUMAN_CONFIDENCE} for _ in boxes]
    return to_json_line(
        {
            SOURCE_REF: source_ref,
            attribute: {"image_size": [size], "annotations": boxes},
            attribute + METADATA_SUFFIX: {"objects": objects, **metadata},
        }
    )


def source_ref_below(prefix: str, file_name: object, where: str) -> str:
    """``prefix`` + ``file_name``, a path below it; ``where`` names the value in errors."""
    if not isinstance(file_name, str):
        raise InputError(f"{where} {file_name!r} does not name an image file")
    path = file_name.replace("\\", "/")
    while path.startswith("./"):
        path = path[2:]
    if "://" in path:
        problem = "is a URL, not a path below the image prefix"
    elif path.startswith("/") or _DRIVE.match(path):
        problem = "is an absolute path; give it relative to the folder of the images"
    elif ".." in path.split("/"):
        problem = "climbs out of the image folder ('..'); give it relative to that folder"
    else:
        problem = ""
    if problem:
        raise InputError(f"{where} {file_name!r} {problem}")
    source_ref = prefix + path
    if not is_s3_object_uri(source_ref):
        raise InputError(f"{where} {file_name!r} does not name an image file")
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


def count_of(number: int, singular: str, plural: str = "") -> str:
    """A number and what it counts: "1 box", "2 boxes", "1,024 images"."""
    if number == 1:
        return f"1 {singular}"
    return f"{number:,} {plural or singular + ('es' if singular.endswith(('s', 'x')) else 's')}"
