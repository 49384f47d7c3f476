"""Ground Truth manifest lines -> torchvision training targets.

A line is the augmented-manifest form Prepare writes into the train and validation
channels: ``source-ref``, ``<label attribute>`` (``image_size`` and ``annotations`` with
``class_id``, ``left``, ``top``, ``width``, ``height`` in pixels) and its ``-metadata``.
torchvision wants corner boxes (xmin, ymin, xmax, ymax) and labels from 1, its label 0
being the background, so class id k trains as label k + 1.

Items are kept as Prepare keeps them (counting_core.datasets.manifest.split): a failed item (no
label, a ``failure-reason`` in its metadata) and an item without boxes cannot train, and
are counted, not used.
"""

from __future__ import annotations

import json
import posixpath
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SOURCE_REF = "source-ref"
METADATA_SUFFIX = "-metadata"
FAILURE_REASON = "failure-reason"
# torchvision's label 0 is the background class.
LABEL_OFFSET = 1
# How many missing images an error names before it only counts the rest.
NAMED_MISSING = 5
# How far a label's width-to-height ratio may be from the image's: rounding when an image is
# shrunk moves it by well under 1 %.
ASPECT_TOLERANCE = 0.02

Corners = tuple[float, float, float, float]


class DataError(ValueError):
    """Training data that cannot be used; the message names the file, line or image."""


@dataclass(frozen=True)
class Target:
    """One image's boxes as torchvision trains them, in the labeled image's pixels."""

    source_ref: str
    image_size: tuple[int, int]  # (width, height) the boxes were drawn on
    boxes: tuple[Corners, ...]  # (xmin, ymin, xmax, ymax), clipped to the image
    labels: tuple[int, ...]  # class id + LABEL_OFFSET


@dataclass(frozen=True)
class Targets:
    """A manifest's trainable images (those without boxes too: negatives), how many of them
    have no box, and how many failed lines were left out."""

    targets: tuple[Target, ...]
    failed: int
    empty: int

    @property
    def with_boxes(self) -> int:
        return len(self.targets) - self.empty


def read_lines(path: Path) -> list[tuple[int, dict[str, Any]]]:
    """The JSON object of each non-blank line of a manifest file, with its 1-based number."""
    records = []
    # utf-8-sig: a byte-order mark left by a Windows editor is not part of the JSON.
    with path.open(encoding="utf-8-sig") as file:
        for number, line in enumerate(file, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
            except ValueError as error:
                raise DataError(f"{path.name}: line {number}: not JSON ({error})") from None
            if not isinstance(data, dict):
                raise DataError(f"{path.name}: line {number}: not a JSON object")
            records.append((number, data))
    return records


def line_target(data: dict[str, Any], label_attribute: str, where: str) -> Target | None:
    """The target of one manifest line; None for a failed item (Ground Truth wrote no label).

    An item without boxes gives a target without boxes: an image the model learns holds
    none of the objects it counts.
    """
    metadata = data.get(label_attribute + METADATA_SUFFIX)
    label = data.get(label_attribute)
    if label is None:
        if isinstance(metadata, dict) and FAILURE_REASON in metadata:
            return None
        raise DataError(f"{where}: no {label_attribute!r} and no {FAILURE_REASON} in its metadata")
    source_ref = data.get(SOURCE_REF)
    if not isinstance(source_ref, str) or not source_ref:
        raise DataError(f"{where}: no {SOURCE_REF}")
    try:
        size = label["image_size"][0]
        width, height = int(size["width"]), int(size["height"])
        annotations = label["annotations"]
        boxes = [_box(box, width, height) for box in annotations]
    except (KeyError, IndexError, TypeError, ValueError) as error:
        raise DataError(
            f"{where}: {label_attribute!r} is not a bounding-box label ({error!r})"
        ) from None
    if width <= 0 or height <= 0:
        raise DataError(f"{where}: image_size {width} x {height} is not an image")
    for index, (_, corners) in enumerate(boxes):
        if corners[2] <= corners[0] or corners[3] <= corners[1]:
            raise DataError(f"{where}: annotations[{index}] has no area inside the image")
    return Target(
        source_ref=source_ref,
        image_size=(width, height),
        boxes=tuple(corners for _, corners in boxes),
        labels=tuple(class_id + LABEL_OFFSET for class_id, _ in boxes),
    )


def _box(box: dict[str, Any], width: int, height: int) -> tuple[int, Corners]:
    class_id = box["class_id"]
    if isinstance(class_id, bool) or not isinstance(class_id, int | float) or class_id < 0:
        raise ValueError(f"class_id {class_id!r} is not a class id")
    if class_id != int(class_id):
        raise ValueError(f"class_id {class_id!r} is not a whole number")
    left, top = float(box["left"]), float(box["top"])
    right, bottom = left + float(box["width"]), top + float(box["height"])
    # Ground Truth can store a box reaching a pixel past the border: keep its part inside.
    corners = (
        min(max(left, 0.0), width),
        min(max(top, 0.0), height),
        min(max(right, 0.0), width),
        min(max(bottom, 0.0), height),
    )
    return int(class_id), corners


def manifest_targets(
    lines: Iterable[tuple[int, dict[str, Any]]], label_attribute: str, num_classes: int, name: str
) -> Targets:
    """The trainable targets of a manifest's lines (``name`` says which file, in errors)."""
    targets, failed, empty = [], 0, 0
    for number, data in lines:
        where = f"{name}: line {number}"
        target = line_target(data, label_attribute, where)
        if target is None:
            failed += 1
        elif not target.boxes:
            empty += 1
            targets.append(target)
        else:
            highest = max(target.labels) - LABEL_OFFSET
            if highest >= num_classes:
                raise DataError(
                    f"{where}: class id {highest} is outside num_classes={num_classes} "
                    f"(ids 0..{num_classes - 1})"
                )
            targets.append(target)
    return Targets(tuple(targets), failed, empty)


def common_prefix(source_refs: Sequence[str]) -> str:
    """The longest folder (ending in "/") that holds every image; "" if they share none."""
    folders = [ref.rsplit("/", 1)[0] + "/" if "/" in ref else "" for ref in source_refs]
    if not folders:
        return ""
    shared = posixpath.commonprefix(folders)
    return shared[: shared.rfind("/") + 1]


def image_path(source_ref: str, image_prefix: str) -> str:
    """Where an image lies below the images channel: its source-ref without the prefix."""
    if not source_ref.startswith(image_prefix):
        raise DataError(f"image {source_ref} is outside image_prefix {image_prefix}")
    return source_ref[len(image_prefix) :]


def check_orientations(
    labeled: Iterable[tuple[str, tuple[int, int], tuple[int, int]]],
) -> None:
    """Refuse, in one error, images whose boxes were not drawn on the upright image.

    ``labeled`` is (image, size the label gives, upright size). The image may have been
    shrunk since it was labeled, so the shapes are compared, not the pixels: a label whose
    width-to-height ratio is the upright image's (within 2 %) fits; any other (a label
    drawn on a sideways-stored photo by a tool that ignores EXIF, or on another image)
    would put every box in the wrong place.
    """
    wrong = [
        f"{name} (labeled {labeled_size[0]}x{labeled_size[1]}, upright {size[0]}x{size[1]})"
        for name, labeled_size, size in labeled
        if abs(labeled_size[0] * size[1] - labeled_size[1] * size[0])
        > ASPECT_TOLERANCE * labeled_size[1] * size[0]
    ]
    if wrong:
        named = "; ".join(wrong[:NAMED_MISSING])
        more = f" and {len(wrong) - NAMED_MISSING} more" if len(wrong) > NAMED_MISSING else ""
        raise DataError(
            f"{len(wrong)} image(s) labeled at a shape other than the upright image's "
            f"(EXIF orientation applied): {named}{more}"
        )


def check_images(relative_paths: Iterable[str], images_dir: Path) -> None:
    """Refuse, in one error, images the images channel does not hold (a few named, all counted)."""
    missing = [path for path in relative_paths if not (images_dir / path).is_file()]
    if missing:
        named = ", ".join(missing[:NAMED_MISSING])
        more = f" and {len(missing) - NAMED_MISSING} more" if len(missing) > NAMED_MISSING else ""
        raise DataError(
            f"{len(missing)} image(s) missing from the images channel {images_dir}: {named}{more}"
        )
