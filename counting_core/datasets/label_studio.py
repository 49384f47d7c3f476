"""Turn a Label Studio JSON export (an array of tasks) into Ground Truth manifest lines.

Boxes drawn in Label Studio then train exactly like a labeling job's output. The format is
Label Studio's own: each task has ``data`` (the image reference under ``image_key``) and
``annotations``, each annotation a ``result`` list whose ``rectanglelabels`` regions hold
``x``, ``y``, ``width`` and ``height`` in percent of ``original_width`` and
``original_height``, and a ``rotation`` in degrees, clockwise about the box's top-left corner
(label-studio-converter, ``convert_annotation_to_yolo_obb`` in ``utils.py``). One object
(a task) is read too: what Label Studio's S3 target storage writes per task when
``FUTURE_SAVE_TASK_TO_STORAGE`` is set. Decisions:

* One annotation per task: cancelled ones (``was_cancelled``, the "Skip" button) never
  count; of the others, the one marked ``ground_truth`` wins, else the newest by
  ``updated_at`` (``created_at`` when missing), ties to the higher id. The others are
  counted in ``superseded_annotations``. Tasks with no annotation, or only cancelled ones,
  are left out and counted.
* Class ids: with ``class_names`` (the stage's classes, in order), name i gets id i and a
  label outside the list is refused with its task id; without, the labels used get ids
  0..k-1 in the names' code-point order, so the same labels give the same ids.
* Rotated boxes (``rotation`` not a multiple of 360) are refused, listing their task ids,
  unless ``rotated="enclose"``: then each becomes the axis-aligned box enclosing it.
  Results labeled on an image turned in the editor (``image_rotation`` not 0) are refused.
* Percent becomes pixels, then edges are rounded and clamped as for COCO
  (``coco.pixel_box``); a box left with no area is dropped and counted.
* An annotation with no boxes is an image with no objects: kept, with an empty list, when
  its results give the image size; else left out and counted in ``empty_without_size``
  (Label Studio writes the size only beside regions, and training drops such images).
* Results of other types (choices, text, polygons, ...) are not boxes: counted by type in
  ``ignored_results``, never trained.
* Image references: ``s3://bucket/key`` is kept as it is. A file uploaded to Label Studio
  (``/data/upload/<project>/<8 hex>-<name>``, data_import/models.py) becomes
  ``image_prefix`` + ``<name>``, the file as it was uploaded; a local-storage file
  (``/data/local-files/?d=<path>``) becomes ``image_prefix`` + ``<path>``. Anything else, or
  one of those without ``image_prefix``, is refused naming the task. Two tasks of one image
  are refused: the image could land in both training and validation.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, TypeGuard
from urllib.parse import parse_qs, unquote, urlsplit

from counting_core.datasets.coco import (
    count_of,
    human_label_metadata,
    manifest_line,
    normalise_image_prefix,
    pixel_box,
    source_ref_below,
)
from counting_core.datasets.manifest import (
    MAX_CLASSES,
    check_label_attribute_name,
    is_s3_object_uri,
)
from counting_core.errors import InputError
from counting_core.json_input import json_type

RotatedBoxes = Literal["refuse", "enclose"]
ROTATED_BOX_CHOICES: tuple[RotatedBoxes, ...] = ("refuse", "enclose")
DEFAULT_IMAGE_KEY = "image"
RECTANGLE_TYPE = "rectanglelabels"
FULL_TURN = 360.0

# Label Studio's URLs of files it serves itself (its MEDIA_URL is /data/).
UPLOAD_PATH = "/data/upload/"
LOCAL_FILES_PATH = "/data/local-files/"
# upload_name_generator (data_import/models.py) stores an upload as
# upload/<project id>/<first 8 characters of a uuid4>-<file name>.
_UPLOADED_NAME = re.compile(r"[0-9]+/[0-9a-f]{8}-(?P<name>[^/]+)")
_PERCENT_KEYS = ("x", "y", "width", "height")
_MAX_LISTED = 10


@dataclass(frozen=True)
class LabelStudioConversion:
    """Manifest lines (one per kept task, in the export's order) and what went into them."""

    lines: tuple[str, ...]
    class_map: dict[str, str]
    tasks: int
    objects: int
    dropped_boxes: int = 0
    enclosed_rotated: int = 0
    not_annotated: int = 0
    cancelled: int = 0
    empty_without_size: int = 0
    superseded_annotations: int = 0
    ignored_results: dict[str, int] = field(default_factory=dict)
    # Names of class_names that no box uses (they keep their ids).
    empty_classes: tuple[str, ...] = ()

    def summary(self) -> dict[str, Any]:
        return {
            "tasks": self.tasks,
            "images": len(self.lines),
            "objects": self.objects,
            "dropped_boxes": self.dropped_boxes,
            "enclosed_rotated": self.enclosed_rotated,
            "not_annotated": self.not_annotated,
            "cancelled": self.cancelled,
            "empty_without_size": self.empty_without_size,
            "superseded_annotations": self.superseded_annotations,
            "ignored_results": self.ignored_results,
            "empty_classes": list(self.empty_classes),
            "classes": self.class_map,
        }

    def summary_line(self) -> str:
        """One line for a person: what was imported, and what was left out and why."""
        imported = (
            f"imported {count_of(len(self.lines), 'image')} with "
            f"{count_of(self.objects, 'box')} in {count_of(len(self.class_map), 'class')} "
            f"from {count_of(self.tasks, 'task')}"
        )
        if self.enclosed_rotated:
            imported += f" ({count_of(self.enclosed_rotated, 'rotated box')} enclosed)"
        ignored = ", ".join(f"{number} {kind}" for kind, number in self.ignored_results.items())
        skipped = [
            f"{count_of(self.not_annotated, 'task')} not annotated" if self.not_annotated else "",
            f"{count_of(self.cancelled, 'task')} skipped by annotators" if self.cancelled else "",
            f"{count_of(self.empty_without_size, 'task')} without boxes or image size"
            if self.empty_without_size
            else "",
            f"{count_of(self.superseded_annotations, 'older annotation')} of tasks annotated "
            "more than once"
            if self.superseded_annotations
            else "",
            f"{count_of(self.dropped_boxes, 'box')} with no area inside its image"
            if self.dropped_boxes
            else "",
            f"results that are not boxes ({ignored})" if ignored else "",
        ]
        listed = [text for text in skipped if text]
        return imported + (f"; left out {', '.join(listed)}" if listed else "")


@dataclass(frozen=True)
class _Box:
    label: str
    box: dict[str, int]


# (label, (x, y, width, height) in percent of the image, rotation in degrees, 0 if upright)
_Drawn = tuple[str, tuple[float, float, float, float], float]


@dataclass(frozen=True)
class _Image:
    task: str
    source_ref: str
    size: tuple[int, int]
    boxes: tuple[_Box, ...]


@dataclass
class _Tally:
    dropped_boxes: int = 0
    enclosed_rotated: int = 0
    not_annotated: int = 0
    cancelled: int = 0
    empty_without_size: int = 0
    superseded: int = 0
    ignored: Counter[str] = field(default_factory=Counter)
    rotated_tasks: list[str] = field(default_factory=list)


def label_studio_to_manifest(
    export: object,
    *,
    label_attribute: str,
    creation_date: str,
    image_prefix: str | None = None,
    job_name: str | None = None,
    class_names: Sequence[str] | None = None,
    rotated: RotatedBoxes = "refuse",
    image_key: str = DEFAULT_IMAGE_KEY,
) -> LabelStudioConversion:
    """Convert a parsed Label Studio JSON export (or one task object).

    ``creation_date`` is written as given (the CLI passes the current UTC time), so the output
    is reproducible; ``job_name`` defaults to the label attribute.
    """
    check_label_attribute_name(label_attribute)
    prefix = None if image_prefix is None else normalise_image_prefix(image_prefix)
    if rotated not in ROTATED_BOX_CHOICES:
        raise InputError(f"rotated boxes are refused or enclosed, not {rotated!r}")
    classes = None if class_names is None else class_list(class_names)
    tasks = _tasks(export)
    reader = _Reader(prefix, image_key, rotated)
    tally = reader.tally
    images: list[_Image] = []
    first_use: dict[str, str] = {}
    for index, task in enumerate(tasks):
        image = reader.task(task, index)
        if image is None:
            continue
        if image.source_ref in first_use:
            raise InputError(
                f"{image.task}: image {image.source_ref} is also the image of "
                f"{first_use[image.source_ref]}"
            )
        first_use[image.source_ref] = image.task
        images.append(image)
    if tally.rotated_tasks:
        raise InputError(
            f"{_listing(tally.rotated_tasks)} {'has' if len(tally.rotated_tasks) == 1 else 'have'}"
            " rotated boxes, which an axis-aligned detector cannot train on: straighten them in "
            "Label Studio, or enclose each in an upright box (--rotated enclose)"
        )
    used = sorted({box.label for image in images for box in image.boxes})
    names = classes if classes is not None else used
    if classes is not None:
        _check_labels_known(images, classes)
    if len(names) > MAX_CLASSES:
        raise InputError(
            f"{len(names)} labels have boxes, but a model here trains at most {MAX_CLASSES} "
            "classes: merge or leave out labels in Label Studio before exporting"
        )
    class_ids = {name: class_id for class_id, name in enumerate(names)}
    class_map = {str(class_id): name for class_id, name in enumerate(names)}
    metadata = human_label_metadata(class_map, creation_date, job_name or label_attribute)
    lines = tuple(
        manifest_line(
            image.source_ref,
            image.size,
            [{"class_id": class_ids[box.label], **box.box} for box in image.boxes],
            label_attribute,
            metadata,
        )
        for image in images
    )
    return LabelStudioConversion(
        lines=lines,
        class_map=class_map,
        tasks=len(tasks),
        objects=sum(len(image.boxes) for image in images),
        dropped_boxes=tally.dropped_boxes,
        enclosed_rotated=tally.enclosed_rotated,
        not_annotated=tally.not_annotated,
        cancelled=tally.cancelled,
        empty_without_size=tally.empty_without_size,
        superseded_annotations=tally.superseded,
        ignored_results=dict(sorted(tally.ignored.items())),
        empty_classes=tuple(name for name in names if name not in used),
    )


def _tasks(export: object) -> list[Any]:
    if isinstance(export, list):
        return export
    if isinstance(export, Mapping) and {"images", "annotations", "categories"} <= export.keys():
        raise InputError(
            "the file is a COCO export, not Label Studio's JSON export: use "
            "`counting manifest from-coco`"
        )
    if isinstance(export, Mapping) and "data" in export:
        return [export]  # one task, as the S3 target storage writes it
    raise InputError(
        "a Label Studio JSON export is a JSON array of tasks (Export > JSON in the project)"
    )


def class_list(class_names: Sequence[str]) -> list[str]:
    """The class names as given, in class id order: each a non-empty string, none twice."""
    names = list(class_names)
    if not names:
        raise InputError("the class list is empty")
    for name in names:
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"class names must be non-empty strings, got {name!r}")
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"the class list names {', '.join(map(repr, repeated))} more than once")
    return names


def _check_labels_known(images: Iterable[_Image], classes: Sequence[str]) -> None:
    known = set(classes)
    for image in images:
        for box in image.boxes:
            if box.label not in known:
                raise InputError(
                    f"{image.task}: label {box.label!r} is not one of the classes "
                    f"({', '.join(map(repr, classes))})"
                )


@dataclass
class _Reader:
    """Reads tasks one by one, counting what it leaves out."""

    prefix: str | None
    image_key: str
    rotated: RotatedBoxes
    tally: _Tally = field(default_factory=_Tally)

    def task(self, task: object, index: int) -> _Image | None:
        if not isinstance(task, Mapping):
            raise InputError(f"tasks[{index}]: expected a task object, got {json_type(task)}")
        task_id = task.get("id")
        where = f"task {task_id}" if isinstance(task_id, int | str) else f"tasks[{index}]"
        annotations = task.get("annotations")
        if annotations is None and "annotation_id" in task:
            raise InputError(
                f"{where}: this is Label Studio's JSON-MIN export, which leaves out the image "
                "size: export as JSON instead"
            )
        if not isinstance(annotations, list):
            raise InputError(f"{where}: no 'annotations' array")
        for position, annotation in enumerate(annotations):
            if not isinstance(annotation, Mapping):
                raise InputError(f"{where}: annotations[{position}] is {json_type(annotation)}")
        live = [annotation for annotation in annotations if not annotation.get("was_cancelled")]
        if not live:
            if annotations:
                self.tally.cancelled += 1
            else:
                self.tally.not_annotated += 1
            return None
        chosen = max(live, key=lambda annotation: _rank(annotation, where))
        self.tally.superseded += len(live) - 1
        source_ref = _source_ref(task.get("data"), self.image_key, self.prefix, where)
        size, drawn = self._regions(chosen, where)
        if size is None:
            self.tally.empty_without_size += 1
            return None
        return _Image(where, source_ref, size, self._boxes(drawn, size, where))

    def _regions(
        self, annotation: Mapping[str, Any], where: str
    ) -> tuple[tuple[int, int] | None, list[_Drawn]]:
        """The image size the results give (None if none does), and the boxes drawn."""
        results = annotation.get("result", [])
        if not isinstance(results, list):
            raise InputError(f"{where}: the annotation's 'result' is {json_type(results)}")
        size: tuple[int, int] | None = None
        drawn: list[_Drawn] = []
        for position, result in enumerate(results):
            at = f"{where}: result[{position}]"
            if not isinstance(result, Mapping):
                raise InputError(f"{at} is {json_type(result)}, not an object")
            kind = result.get("type")
            if kind != RECTANGLE_TYPE:
                self.tally.ignored[str(kind)] += 1
                if "original_width" not in result:
                    continue
            result_size = _image_size(result, at)
            if size is not None and result_size != size:
                raise InputError(
                    f"{at}: image size {result_size[0]} x {result_size[1]} differs from "
                    f"{size[0]} x {size[1]} in an earlier result"
                )
            size = result_size
            if kind == RECTANGLE_TYPE:
                drawn.append(_rectangle(result, at))
        return size, drawn

    def _boxes(self, drawn: list[_Drawn], size: tuple[int, int], where: str) -> tuple[_Box, ...]:
        boxes = []
        for label, percent, rotation in drawn:
            if rotation and self.rotated == "refuse":
                if where not in self.tally.rotated_tasks:
                    self.tally.rotated_tasks.append(where)
                continue
            self.tally.enclosed_rotated += bool(rotation)
            box = pixel_box(pixel_rectangle(percent, rotation, size), *size)
            if box is None:
                self.tally.dropped_boxes += 1
            else:
                boxes.append(_Box(label, box))
        return tuple(boxes)


def _rank(annotation: Mapping[str, Any], where: str) -> tuple[bool, datetime, int]:
    """Order of preference: marked ground truth, then newest, then the higher id."""
    stamp = annotation.get("updated_at") or annotation.get("created_at")
    when = datetime.min
    if stamp is not None:
        try:
            parsed = datetime.fromisoformat(stamp) if isinstance(stamp, str) else None
        except ValueError:
            parsed = None
        if parsed is None:
            raise InputError(f"{where}: annotation time {stamp!r} is not an ISO 8601 time")
        # Label Studio writes UTC ("...Z"); a time without zone is taken as UTC too.
        when = parsed.astimezone(UTC).replace(tzinfo=None) if parsed.tzinfo else parsed
    annotation_id = annotation.get("id")
    order = annotation_id if _is_int(annotation_id) else 0
    return bool(annotation.get("ground_truth")), when, order


def pixel_rectangle(
    percent: tuple[float, float, float, float], rotation: float, image_size: tuple[int, int]
) -> tuple[float, float, float, float]:
    """A Label Studio rectangle (x, y, width, height in percent of the image, turned
    ``rotation`` degrees clockwise about its top-left corner) as the upright box enclosing
    it, x, y, width and height in pixels."""
    x, y, width, height = percent
    image_width, image_height = image_size
    left, top = x / 100 * image_width, y / 100 * image_height
    across, down = width / 100 * image_width, height / 100 * image_height
    if not rotation:
        return left, top, across, down
    # Corners as label-studio-converter's convert_annotation_to_yolo_obb computes them; the
    # y axis points down, so a positive angle turns clockwise on the screen.
    turn = math.radians(rotation)
    cos, sin = math.cos(turn), math.sin(turn)
    xs = (left, left + across * cos, left + across * cos - down * sin, left - down * sin)
    ys = (top, top + across * sin, top + across * sin + down * cos, top + down * cos)
    return min(xs), min(ys), max(xs) - min(xs), max(ys) - min(ys)


def _rectangle(result: Mapping[str, Any], at: str) -> _Drawn:
    value = result.get("value")
    if not isinstance(value, Mapping):
        raise InputError(f"{at}: no 'value' object")
    labels = value.get(RECTANGLE_TYPE)
    if (
        not isinstance(labels, list)
        or len(labels) != 1
        or not isinstance(labels[0], str)
        or not labels[0].strip()
    ):
        raise InputError(f"{at}: a box needs exactly one label, got {labels!r}")
    x, y, width, height = (_number(value.get(key), key, at) for key in _PERCENT_KEYS)
    if width < 0 or height < 0:
        raise InputError(f"{at}: width and height must not be negative, got {width} and {height}")
    rotation = _number(value.get("rotation", 0), "rotation", at) % FULL_TURN
    image_rotation = result.get("image_rotation", 0)
    if image_rotation not in (0, None):
        raise InputError(
            f"{at}: drawn on the image turned by {image_rotation!r} degrees in the editor; "
            "redraw it on the image as stored"
        )
    return labels[0], (x, y, width, height), rotation


def _image_size(result: Mapping[str, Any], at: str) -> tuple[int, int]:
    width, height = result.get("original_width"), result.get("original_height")
    if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
        raise InputError(
            f"{at}: original_width and original_height must be positive integers, "
            f"got {width!r} x {height!r}"
        )
    return width, height


def _source_ref(data: object, image_key: str, prefix: str | None, where: str) -> str:
    if not isinstance(data, Mapping) or image_key not in data:
        keys = ", ".join(map(repr, data)) if isinstance(data, Mapping) else "none"
        raise InputError(f"{where}: data has no {image_key!r} (its keys: {keys})")
    reference = data[image_key]
    if is_s3_object_uri(reference):
        return reference
    path = _served_path(reference) if isinstance(reference, str) else None
    if path is None:
        raise InputError(
            f"{where}: image {reference!r} is neither an s3:// URI nor a file uploaded to or "
            "served by Label Studio"
        )
    if prefix is None:
        raise InputError(
            f"{where}: image {reference!r} is a file Label Studio holds: give --image-prefix, "
            "the s3:// folder with the same files"
        )
    return source_ref_below(prefix, path, f"{where}: image")


def _served_path(reference: str) -> str | None:
    """The file's path below the image prefix, for a file Label Studio serves; else None."""
    url = urlsplit(reference)
    if url.path.startswith(UPLOAD_PATH):
        match = _UPLOADED_NAME.fullmatch(unquote(url.path[len(UPLOAD_PATH) :]))
        return None if match is None else match["name"]
    if url.path.startswith(LOCAL_FILES_PATH):
        paths = parse_qs(url.query).get("d", [])
        return paths[0] if len(paths) == 1 else None
    return None


def _number(value: object, key: str, at: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InputError(f"{at}: {key} must be a number, got {value!r}")
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range
        number = math.inf
    if not math.isfinite(number):
        raise InputError(f"{at}: {key} must be a finite number, got {value!r}")
    return number


def _is_int(value: object) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _listing(where: Sequence[str]) -> str:
    shown = ", ".join(where[:_MAX_LISTED])
    return shown + (f" and {len(where) - _MAX_LISTED} more" if len(where) > _MAX_LISTED else "")
