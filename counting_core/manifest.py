"""Ground Truth bounding-box manifests: parse, check, summarise and split for training.

A manifest is JSON Lines with one image per line: the "augmented manifest" that
a Ground Truth bounding-box job writes and that the built-in Object Detection
algorithm reads in Pipe mode. Each line holds ``source-ref`` (the image in S3),
``<attr>`` (image size and boxes) and ``<attr>-metadata`` (class map, job
details); a failed item has no ``<attr>`` and a ``failure-reason`` instead.

Every problem is an ``InputError`` naming the line (1-based, as an editor shows
it) and, for a box, its index in ``annotations`` (0-based, as in the JSON).
"""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple, TypeGuard

from counting_core.errors import InputError

OBJECT_DETECTION_TYPE = "groundtruth/object-detection"
SOURCE_REF = "source-ref"
METADATA_SUFFIX = "-metadata"
# The algorithm's own default; the label record is a 2-value header plus
# 5 values (class, left, top, width, height) per box, padded to label_width.
DEFAULT_LABEL_WIDTH = 350
LABEL_HEADER_WIDTH = 2
VALUES_PER_BOX = 5

Status = Literal["labeled", "empty", "failed"]

# S3's bucket naming rule (lower-case, digits, dots, hyphens; 3-63 characters).
_S3_URI = re.compile(r"s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<key>.*))?", re.S)
# Class-map keys are class ids written as canonical decimal strings: "0", "1", ...
_CLASS_ID_KEY = re.compile(r"0|[1-9][0-9]*")
# JSON's own whitespace; str.strip() would also drop characters json.loads rejects.
_JSON_WHITESPACE = " \t\r\n"
_BOX_KEYS = ("left", "top", "width", "height")
_MAX_LISTED = 10


class Record(NamedTuple):
    """One non-blank manifest line: its 1-based line number and its JSON object."""

    line_number: int
    data: dict[str, Any]


@dataclass(frozen=True)
class Item:
    """A checked line: whether it can train, and the class id of each of its boxes."""

    record: Record
    status: Status
    class_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class Manifest:
    """A manifest that passed every check; ``class_map`` merges all lines' maps (ids 0..k-1)."""

    label_attribute: str
    items: tuple[Item, ...]
    class_map: dict[int, str]

    def having(self, status: Status) -> list[Item]:
        return [item for item in self.items if item.status == status]


@dataclass(frozen=True)
class SplitResult:
    """Train and validation channels (one JSON line per image) and the hyperparameters they need.

    ``class_map`` is in Ground Truth's ``class-map`` form (``{"0": "car"}``), ready for JSON.
    """

    label_attribute: str
    class_map: dict[str, str]
    train: tuple[str, ...]
    validation: tuple[str, ...]
    label_width: int
    dropped_failed: int
    dropped_empty: int

    @property
    def num_training_samples(self) -> int:
        return len(self.train)

    @property
    def num_validation_samples(self) -> int:
        return len(self.validation)

    @property
    def num_classes(self) -> int:
        """The algorithm's classes are ids 0..num_classes-1, named or not."""
        return max(map(int, self.class_map)) + 1

    @property
    def unnamed_class_ids(self) -> list[int]:
        """Ids below the highest that no line names: labels no worker drew a box for."""
        return sorted(set(range(self.num_classes)) - set(map(int, self.class_map)))

    def figures(self) -> dict[str, int]:
        """The figures a person checks before training, and the training step reads."""
        return {
            "num_training_samples": self.num_training_samples,
            "num_validation_samples": self.num_validation_samples,
            "num_classes": self.num_classes,
            "label_width": self.label_width,
            "dropped_failed": self.dropped_failed,
            "dropped_empty": self.dropped_empty,
        }


@dataclass(frozen=True)
class TrainingData:
    """What the training-data Lambda writes (``split``) and records (``report``)."""

    split: SplitResult
    report: dict[str, Any]


def parse_manifest(lines: Iterable[str]) -> list[Record]:
    """Parse JSON Lines (a file object or ``text.split("\\n")``); blank lines are skipped."""
    return [
        Record(line_number, _parse_line(line, line_number))
        for line_number, line in enumerate(lines, start=1)
        if line.strip(_JSON_WHITESPACE)
    ]


def check_label_attribute_name(name: str) -> str:
    """Return ``name`` if Ground Truth and the training job accept it as a label attribute."""
    if not isinstance(name, str) or not name.strip():
        raise InputError("the label attribute name is empty")
    # Ground Truth treats any "-ref" key as a reference to an S3 object.
    if name.endswith("-ref"):
        raise InputError(f"label attribute {name!r} must not end in '-ref'")
    if METADATA_SUFFIX in name:
        raise InputError(f"label attribute {name!r} must not contain {METADATA_SUFFIX!r}")
    return name


def detect_label_attribute(records: Sequence[Record], label_attribute: str | None = None) -> str:
    """The object-detection label attribute: ``label_attribute`` checked, or the only candidate.

    A candidate is a key whose ``-metadata`` has type ``groundtruth/object-detection``;
    only when no line has such a type, a key whose value has ``annotations`` or whose
    ``-metadata`` has a ``failure-reason`` (Ground Truth writes no type for a failure).
    """
    if not records:
        raise InputError("the manifest has no lines")
    if label_attribute is not None:
        return _check_present(records, check_label_attribute_name(label_attribute))
    candidates = _typed_candidates(records) or _untyped_candidates(records)
    if not candidates:
        raise InputError(
            f"no object-detection label attribute: no '<name>{METADATA_SUFFIX}' has type "
            f"{OBJECT_DETECTION_TYPE!r} or a failure-reason and no '<name>' has 'annotations' "
            f"(keys found: {_listing(map(repr, _all_keys(records)))})"
        )
    if len(candidates) > 1:
        raise InputError(
            f"several object-detection label attributes: {_listing(map(repr, candidates))}; "
            "name the one to use"
        )
    return check_label_attribute_name(candidates[0])


def validate_manifest(records: Sequence[Record], label_attribute: str | None = None) -> Manifest:
    """Check every line and the class maps together; the first problem raises ``InputError``."""
    attribute = detect_label_attribute(records, label_attribute)
    class_map: dict[int, str] = {}
    items = []
    for record in records:
        item, line_class_map = _check_line(record, attribute)
        _merge_class_map(class_map, line_class_map, record.line_number)
        items.append(item)
    return Manifest(attribute, tuple(items), dict(sorted(class_map.items())))


def stats(records: Sequence[Record], label_attribute: str | None = None) -> dict[str, Any]:
    """Counts of a valid manifest: lines, labeled/failed/empty lines, boxes and boxes per class.

    ``labeled`` counts lines with at least one box, so images = labeled + failed + empty.
    ``by_class`` lists every class of the class map, in class id order, even with 0 boxes.
    """
    return _stats(validate_manifest(records, label_attribute))


def split(
    records: Sequence[Record],
    *,
    label_attribute: str | None = None,
    validation_fraction: float,
    seed: int,
) -> SplitResult:
    """Drop failed and box-less lines, shuffle with ``seed`` and cut off the validation channel.

    The validation channel gets ``round(n * validation_fraction)`` images (Python's round:
    halves go to the even number), at least 1; the training channel must keep at least 1.
    """
    return _split(validate_manifest(records, label_attribute), validation_fraction, seed)


def prepare_training_data(
    lines: Iterable[str],
    *,
    label_attribute: str | None = None,
    validation_fraction: float,
    seed: int,
) -> TrainingData:
    """The training-data Lambda's one call: parse, check, count and split a manifest.

    The report holds ``stats`` and ``SplitResult.figures`` plus the class map and the
    split's inputs, so a training run can be traced back to exactly how its data was cut.
    """
    manifest = validate_manifest(parse_manifest(lines), label_attribute)
    result = _split(manifest, validation_fraction, seed)
    report = {
        **_stats(manifest),
        **result.figures(),
        "class_map": result.class_map,
        "unnamed_class_ids": result.unnamed_class_ids,
        "validation_fraction": validation_fraction,
        "seed": seed,
    }
    return TrainingData(result, report)


def check_validation_fraction(fraction: float) -> float:
    """Return ``fraction`` if it is a number strictly between 0 and 1."""
    if isinstance(fraction, bool) or not isinstance(fraction, int | float) or not 0 < fraction < 1:
        raise InputError(f"the validation fraction must be between 0 and 1, got {fraction!r}")
    return fraction


def to_json_line(data: dict[str, Any]) -> str:
    """One manifest line: compact, ASCII-only JSON, keys in their original order."""
    return json.dumps(data, separators=(",", ":"), allow_nan=False)


def manifest_text(lines: Iterable[str]) -> str:
    """A manifest file's contents: each line ended by a newline."""
    return "".join(f"{line}\n" for line in lines)


def is_s3_uri(value: object) -> bool:
    """Whether ``value`` is ``s3://bucket`` or ``s3://bucket/anything``."""
    return isinstance(value, str) and _S3_URI.fullmatch(value) is not None


def is_s3_object_uri(value: object) -> TypeGuard[str]:
    """Whether ``value`` names one S3 object: ``s3://bucket/key``, the key not ending in "/"."""
    match = _S3_URI.fullmatch(value) if isinstance(value, str) else None
    if match is None or not match["key"]:
        return False
    return not match["key"].endswith("/")


def _parse_line(line: str, line_number: int) -> dict[str, Any]:
    try:
        # Without its line ending, an error at the end of the line is placed on this line.
        text = line.rstrip("\r\n")
        value = json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as error:
        raise InputError(
            f"line {line_number}: not valid JSON: {error.msg} at column {error.pos + 1}"
        ) from None
    except (ValueError, RecursionError) as error:
        # ValueError: a non-finite number or an integer too long to convert.
        raise InputError(f"line {line_number}: not valid JSON: {error}") from None
    if not isinstance(value, dict):
        raise InputError(f"line {line_number}: expected a JSON object, got {_json_type(value)}")
    return value


def _reject_constant(name: str) -> float:
    # json.loads accepts NaN and Infinity, which are not JSON and break the algorithm.
    raise ValueError(f"{name} is not a JSON number")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text[:20]} is out of range")
    return value


def _json_type(value: object) -> str:
    names = {dict: "an object", list: "an array", str: "a string", bool: "true or false"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def _listing(names: Iterable[str]) -> str:
    # Keeps a message to one readable line however many keys or ids there are.
    listed = list(names)
    shown = ", ".join(listed[:_MAX_LISTED])
    return shown + (f" and {len(listed) - _MAX_LISTED} more" if len(listed) > _MAX_LISTED else "")


def _all_keys(records: Sequence[Record]) -> list[str]:
    return sorted({key for record in records for key in record.data})


def _typed_candidates(records: Sequence[Record]) -> list[str]:
    return sorted(
        {
            key.removesuffix(METADATA_SUFFIX)
            for record in records
            for key, value in record.data.items()
            if key.endswith(METADATA_SUFFIX)
            and isinstance(value, dict)
            and value.get("type") == OBJECT_DETECTION_TYPE
        }
    )


def _untyped_candidates(records: Sequence[Record]) -> list[str]:
    return sorted(
        {
            key.removesuffix(METADATA_SUFFIX)
            for record in records
            for key, value in record.data.items()
            if key != SOURCE_REF
            and isinstance(value, dict)
            and ("failure-reason" if key.endswith(METADATA_SUFFIX) else "annotations") in value
        }
    )


def _check_present(records: Sequence[Record], attribute: str) -> str:
    keys = (attribute, attribute + METADATA_SUFFIX)
    if not any(key in record.data for record in records for key in keys):
        raise InputError(
            f"label attribute {attribute!r} is not in the manifest "
            f"(keys found: {_listing(map(repr, _all_keys(records)))})"
        )
    return attribute


def _check_line(record: Record, attribute: str) -> tuple[Item, dict[int, str]]:
    where = f"line {record.line_number}"
    metadata_key = attribute + METADATA_SUFFIX
    metadata = record.data.get(metadata_key, {})
    if not isinstance(metadata, dict):
        raise InputError(f"{where}: {metadata_key!r} is {_json_type(metadata)}, not an object")
    kind = metadata.get("type", OBJECT_DETECTION_TYPE)
    if kind != OBJECT_DETECTION_TYPE:
        raise InputError(
            f"{where}: {metadata_key!r} has type {kind!r}, not {OBJECT_DETECTION_TYPE!r}"
        )
    if attribute not in record.data:
        if "failure-reason" not in metadata:
            raise InputError(f"{where}: no {attribute!r} and no failure-reason in {metadata_key!r}")
        return Item(record, "failed"), {}
    return _check_labeled(record, attribute, metadata, where)


def _check_labeled(
    record: Record, attribute: str, metadata: dict[str, Any], where: str
) -> tuple[Item, dict[int, str]]:
    source_ref = record.data.get(SOURCE_REF)
    if not is_s3_object_uri(source_ref):
        raise InputError(f"{where}: {SOURCE_REF} {source_ref!r} is not an s3://bucket/key URI")
    label = record.data[attribute]
    if not isinstance(label, dict):
        raise InputError(f"{where}: {attribute!r} is {_json_type(label)}, not an object")
    image_size = _image_size(label, where)
    annotations = label.get("annotations")
    if not isinstance(annotations, list):
        raise InputError(f"{where}: {attribute!r} has no 'annotations' array")
    class_map = _line_class_map(metadata, where, required=bool(annotations))
    class_ids = tuple(
        _check_box(box, f"{where}: annotations[{index}]", image_size, class_map)
        for index, box in enumerate(annotations)
    )
    return Item(record, "labeled" if class_ids else "empty", class_ids), class_map


def _image_size(label: dict[str, Any], where: str) -> tuple[int, int]:
    sizes = label.get("image_size")
    size = sizes[0] if isinstance(sizes, list) and sizes else None
    if not isinstance(size, dict):
        raise InputError(f"{where}: image_size must be an array holding one object")
    width, height = _as_int(size.get("width")), _as_int(size.get("height"))
    if width is None or height is None or width <= 0 or height <= 0:
        raise InputError(
            f"{where}: image_size width and height must be positive integers, "
            f"got {size.get('width')!r} x {size.get('height')!r}"
        )
    return width, height


def _line_class_map(metadata: dict[str, Any], where: str, *, required: bool) -> dict[int, str]:
    raw = metadata.get("class-map")
    if raw is None and not required:
        return {}
    if not isinstance(raw, dict):
        raise InputError(f"{where}: the metadata needs a class-map object mapping ids to names")
    class_map = {}
    for key, name in raw.items():
        if not _CLASS_ID_KEY.fullmatch(key):
            raise InputError(f"{where}: class-map key {key!r} is not a class id (0, 1, ...)")
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{where}: class-map gives id {key} the name {name!r}")
        class_map[int(key)] = name
    return class_map


def _check_box(
    box: object, where: str, image_size: tuple[int, int], class_map: dict[int, str]
) -> int:
    if not isinstance(box, dict):
        raise InputError(f"{where}: expected an object, got {_json_type(box)}")
    class_id = _as_int(box.get("class_id"))
    if class_id not in class_map:
        raise InputError(
            f"{where}: class_id {box.get('class_id')!r} is not in the class-map "
            f"(ids {_listing(map(str, class_map))})"
        )
    left, top, width, height = (_as_number(box.get(key), key, where) for key in _BOX_KEYS)
    if left < 0 or top < 0:
        raise InputError(f"{where}: left and top must be >= 0, got {left} and {top}")
    if width <= 0 or height <= 0:
        raise InputError(f"{where}: width and height must be > 0, got {width} and {height}")
    image_width, image_height = image_size
    if left + width > image_width or top + height > image_height:
        raise InputError(
            f"{where}: the box reaches ({left + width}, {top + height}), "
            f"outside the {image_width} x {image_height} image"
        )
    return class_id


def _as_int(value: object) -> int | None:
    """``value`` as an int if it is a whole number (1 or 1.0, not true), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None


def _as_number(value: object, key: str, where: str) -> float:
    # isfinite only on floats: a huge int is finite but cannot be converted to float.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not math.isfinite(value))
    ):
        raise InputError(f"{where}: {key} must be a number, got {value!r}")
    return value


def _merge_class_map(merged: dict[int, str], line_map: dict[int, str], line_number: int) -> None:
    # Boxes are counted per class name, so a name must keep one id and an id one name.
    for class_id, name in line_map.items():
        known_name = merged.get(class_id, name)
        if known_name != name:
            raise InputError(
                f"line {line_number}: class-map names id {class_id} {name!r}, "
                f"an earlier line named it {known_name!r}"
            )
        known_id = {value: key for key, value in merged.items()}.get(name, class_id)
        if known_id != class_id:
            raise InputError(
                f"line {line_number}: class-map gives {name!r} id {class_id}, "
                f"but id {known_id} has that name"
            )
        merged[class_id] = name


def _stats(manifest: Manifest) -> dict[str, Any]:
    counts = Counter(class_id for item in manifest.items for class_id in item.class_ids)
    return {
        "label_attribute": manifest.label_attribute,
        "images": len(manifest.items),
        "labeled": len(manifest.having("labeled")),
        "failed": len(manifest.having("failed")),
        "empty": len(manifest.having("empty")),
        "objects": counts.total(),
        "by_class": {name: counts[class_id] for class_id, name in manifest.class_map.items()},
    }


def _split(manifest: Manifest, validation_fraction: float, seed: int) -> SplitResult:
    usable = manifest.having("labeled")
    dropped_failed, dropped_empty = len(manifest.having("failed")), len(manifest.having("empty"))
    validation_size = _validation_size(
        len(usable), validation_fraction, f"{dropped_failed} failed, {dropped_empty} without boxes"
    )
    random.Random(seed).shuffle(usable)
    lines = tuple(to_json_line(item.record.data) for item in usable)
    most_boxes = max(len(item.class_ids) for item in usable)
    return SplitResult(
        label_attribute=manifest.label_attribute,
        class_map={str(class_id): name for class_id, name in manifest.class_map.items()},
        train=lines[validation_size:],
        validation=lines[:validation_size],
        label_width=max(DEFAULT_LABEL_WIDTH, VALUES_PER_BOX * most_boxes + LABEL_HEADER_WIDTH),
        dropped_failed=dropped_failed,
        dropped_empty=dropped_empty,
    )


def _validation_size(usable: int, fraction: float, dropped: str) -> int:
    size = max(1, round(usable * check_validation_fraction(fraction)))
    if size >= usable:
        raise InputError(
            f"{usable} usable image(s) with boxes ({dropped} dropped) cannot fill both a "
            f"training and a validation channel with validation fraction {fraction}"
        )
    return size
