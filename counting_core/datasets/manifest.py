"""Ground Truth bounding-box manifests: parse, check, summarise and split for training.

A manifest is JSON Lines with one image per line: the "augmented manifest" that
a Ground Truth bounding-box job writes and that the built-in Object Detection
algorithm reads in Pipe mode. Each line holds ``source-ref`` (the image in S3),
``<attr>`` (image size and boxes) and ``<attr>-metadata`` (class map, job
details); a failed item has no ``<attr>`` and a ``failure-reason`` instead.

Every problem is an ``InputError`` naming the line (1-based, as an editor shows
it) and, for a box, its index in ``annotations`` (0-based, as in the JSON).

``stats`` and ``split`` stream a manifest file: they read it once to check and count it,
keeping per line only its place in the file, its state and a hash of its image, so memory
stays nearly flat with size; ``Split.write`` reads it a second time to copy each kept
line, byte for byte, into its channel.

One image, one label: lines with the same ``source-ref`` are the same image (merged
labeling batches list some images twice). Their labels (image size and boxes, in any
order; a failed line has none) must agree: the image then counts once, on its first
line with a label, and the other lines are reported as ``duplicates``. Lines that
label one image differently are refused with both line numbers. So no image can reach
both the training and the validation channel.
"""

from __future__ import annotations

import io
import json
import math
import random
import re
from array import array
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import count, islice
from typing import Any, BinaryIO, Literal, NamedTuple, TypeGuard

from counting_core import json_input
from counting_core.errors import InputError
from counting_core.json_input import UTF8_BOM, json_type

OBJECT_DETECTION_TYPE = "groundtruth/object-detection"
SOURCE_REF = "source-ref"
METADATA_SUFFIX = "-metadata"
# The algorithm's own default; the label record is a 2-value header plus
# 5 values (class, left, top, width, height) per box, padded to label_width.
DEFAULT_LABEL_WIDTH = 350
LABEL_HEADER_WIDTH = 2
VALUES_PER_BOX = 5
# Class ids a manifest may use: 0..MAX_CLASSES-1. The algorithm trains ids 0..num_classes-1
# for any positive num_classes (Object Detection hyperparameters: no maximum documented), and
# each class widens the network's output, so the bound is ours: ten times COCO's 80 classes
# and far above any counting task, so that a stray id (10,000,000) is refused, never trained
# as millions of empty classes. A Ground Truth bounding-box job writes ids 0..9 only (at most
# 10 labels, checked when a labeling request is read); COCO exports may use many more.
# https://docs.aws.amazon.com/sagemaker/latest/dg/object-detection-api-config.html
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeLabelingJob.html
MAX_CLASSES = 1000
# Far above any real line (a line with 1,000 boxes is about 100 kB); bounds what one line
# can make the reader hold.
MAX_LINE_BYTES = 1 << 20

Status = Literal["labeled", "empty", "failed"]

# An S3 bucket name as S3 has ever allowed it: today's rule (3-63 lower-case letters,
# digits, dots and hyphens) and the legacy US East (N. Virginia) rule of buckets created
# before March 1, 2018 (up to 255 characters, upper case and underscores too), which
# botocore also accepts (botocore.handlers.VALID_BUCKET).
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
_S3_URI = re.compile(r"s3://(?P<bucket>[A-Za-z0-9._-]{3,255})(?:/(?P<key>.*))?", re.S)
# Class-map keys are class ids written as canonical decimal strings: "0", "1", ...
_CLASS_ID_KEY = re.compile(r"0|[1-9][0-9]{0,8}")
_BOX_KEYS = ("left", "top", "width", "height")
_NUMBER_TYPES = frozenset((int, float))
_MAX_LISTED = 10
# Enough for every label combination of a real job; bounds the cache whatever the input.
_MAX_MERGED_MAPS = 1024
# Line states in a scan's ``statuses`` array.
_LABELED, _EMPTY, _FAILED, _DUPLICATE = 0, 1, 2, 3
_STATUS_CODES: dict[Status, int] = {"labeled": _LABELED, "empty": _EMPTY, "failed": _FAILED}


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
    """How many images go to the train and validation channels, and the hyperparameters
    the data decides.

    ``class_map`` is in Ground Truth's ``class-map`` form (``{"0": "car"}``), ready for JSON.
    """

    label_attribute: str
    class_map: dict[str, str]
    num_training_samples: int
    num_validation_samples: int
    label_width: int
    dropped_failed: int
    dropped_empty: int
    # Images without boxes kept in the channels, as negatives (``split(keep_empty=True)``).
    kept_empty: int = 0

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
            "kept_empty": self.kept_empty,
        }


def transform_manifest_chunks(prefix: str, keys: Iterable[str]) -> Iterator[bytes]:
    """Batch Transform's input manifest (``S3DataType: ManifestFile``): a JSON array of
    ``{"prefix": prefix}`` and then keys relative to it, written piece by piece so that
    millions of keys never sit in memory at once. Batch Transform cannot read an augmented
    manifest, so the evaluation and bulk runs list their images so.
    https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformS3DataSource.html
    """
    yield b"[" + json.dumps({"prefix": prefix}).encode()
    for key in keys:
        yield b",\n" + json.dumps(key).encode()
    yield b"]\n"


def read_manifest(file: BinaryIO) -> list[Record]:
    """Parse a whole manifest from a binary file, line by line as ``stats`` and Prepare read
    theirs (a byte-order mark, bad UTF-8 and overlong lines handled alike); blank lines are
    skipped."""
    return [
        Record(number, _parse_line(content, number)) for number, _, content in _read_lines(file)
    ]


def parse_manifest(lines: Iterable[str]) -> list[Record]:
    """Parse JSON Lines held in memory (``text.split("\\n")``), as ``read_manifest`` does."""
    text = "\n".join(line.rstrip("\r\n") for line in lines)
    return read_manifest(io.BytesIO(text.encode("utf-8")))


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
    candidates = _Candidates(label_attribute)
    for record in records:
        candidates.add(record.data)
    return candidates.attribute()


def validate_manifest(records: Sequence[Record], label_attribute: str | None = None) -> Manifest:
    """Check every line held in memory and the class maps together; the first problem raises
    ``InputError``. An image listed on several lines is one item, as ``stats`` and ``split``
    count it: the lines must label it alike (else ``InputError`` with both line numbers)."""
    checker = _LineChecker(detect_label_attribute(records, label_attribute))
    checked = [(record, checker.check(record.data, record.line_number)) for record in records]
    positions: dict[object, list[int]] = defaultdict(list)
    for position, (record, line) in enumerate(checked):
        positions[_image_key(line.source_ref, record.line_number)].append(position)
    repeats: set[int] = set()
    for key, image_positions in positions.items():
        if len(image_positions) > 1:
            lines = [(checked[p][0].line_number, checked[p][1]) for p in image_positions]
            kept = _kept_line(key, lines)
            repeats.update(p for i, p in enumerate(image_positions) if i != kept)
    items = tuple(
        Item(record, line.status, line.class_ids)
        for position, (record, line) in enumerate(checked)
        if position not in repeats
    )
    return Manifest(checker.attribute, items, checker.sorted_class_map())


def stats(file: BinaryIO, label_attribute: str | None = None) -> dict[str, Any]:
    """Counts of a valid manifest file (opened in binary mode, seekable).

    ``lines`` counts non-blank lines; ``duplicates`` the lines that repeat an image an
    earlier line already labels alike. Images are counted once: ``images`` = ``labeled``
    (at least one box) + ``failed`` + ``empty``, and ``lines`` = ``images`` + ``duplicates``.
    ``by_class`` lists every class of the class map, in class id order, even with 0 boxes.
    """
    return _scan(file, label_attribute).stats()


@dataclass(frozen=True)
class Split:
    """A checked manifest cut into channels: the figures now, the files on ``write``."""

    result: SplitResult
    stats: dict[str, Any]
    validation_fraction: float
    seed: int
    _scan: _Scan = field(repr=False, compare=False)
    _train: array[int] = field(repr=False, compare=False)
    _validation: array[int] = field(repr=False, compare=False)

    def report(self) -> dict[str, Any]:
        """``stats`` and ``SplitResult.figures`` plus the class map and the split's inputs,
        so a training run can be traced back to exactly how its data was cut."""
        return {
            **self.stats,
            **self.result.figures(),
            "class_map": self.result.class_map,
            "unnamed_class_ids": self.result.unnamed_class_ids,
            "validation_fraction": self.validation_fraction,
            "seed": self.seed,
        }

    def write(self, train: BinaryIO, validation: BinaryIO) -> None:
        """Copy each channel's lines, in shuffled order, from the manifest into the files."""
        for lines, out in ((self._train, train), (self._validation, validation)):
            self._scan.copy_lines(lines, out)


def split(
    file: BinaryIO,
    *,
    label_attribute: str | None = None,
    validation_fraction: float,
    seed: int,
    image_source: str | None = None,
    keep_empty: bool = False,
) -> Split:
    """Drop failed, box-less and duplicate lines, shuffle with ``seed`` and cut off the
    validation channel.

    With ``keep_empty``, images labeled without boxes stay in both channels: the torchvision
    detector learns from them what is not an object, and the count evaluation scores its
    counts of zero. The built-in algorithm's training takes images with boxes only.

    The validation channel gets ``round(n * validation_fraction)`` images (Python's round:
    halves go to the even number), at least 1; the training channel must keep at least 1.
    ``image_source``, if given, is the only ``s3://bucket/prefix`` training may read images
    from: a labeled image elsewhere is refused.
    """
    check_validation_fraction(validation_fraction)
    scan = _scan(file, label_attribute, image_source)
    kept = (_LABELED, _EMPTY) if keep_empty else (_LABELED,)
    usable = array("q", (index for index, code in enumerate(scan.statuses) if code in kept))
    figures = scan.stats()
    dropped_failed = figures["failed"]
    dropped_empty, kept_empty = (0, figures["empty"]) if keep_empty else (figures["empty"], 0)
    if keep_empty and figures["labeled"] == 0:
        raise InputError(
            f"no image has a box ({dropped_failed} failed, {figures['empty']} without boxes): "
            "nothing to train on"
        )
    validation_size = _validation_size(
        f"{len(usable)} usable image(s)" + ("" if keep_empty else " with boxes"),
        len(usable),
        validation_fraction,
        f"{dropped_failed} failed, {dropped_empty} without boxes",
    )
    # Shuffling an array of line indexes draws exactly what shuffling the lines would.
    # Seeded so a split can be repeated; nothing secret is drawn.
    random.Random(seed).shuffle(usable)  # noqa: S311
    result = SplitResult(
        label_attribute=scan.attribute,
        class_map={str(class_id): name for class_id, name in scan.class_map.items()},
        num_training_samples=len(usable) - validation_size,
        num_validation_samples=validation_size,
        label_width=max(DEFAULT_LABEL_WIDTH, VALUES_PER_BOX * scan.most_boxes + LABEL_HEADER_WIDTH),
        dropped_failed=dropped_failed,
        dropped_empty=dropped_empty,
        kept_empty=kept_empty,
    )
    return Split(
        result, figures, validation_fraction, seed, scan, usable[validation_size:],
        usable[:validation_size],
    )  # fmt: skip


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


def split_s3_uri(value: str) -> tuple[str, str] | None:
    """``s3://bucket/key`` -> (bucket, key), the key possibly empty; None if not an S3 URI."""
    match = _S3_URI.fullmatch(value)
    return None if match is None else (match["bucket"], match["key"] or "")


def is_s3_object_uri(value: object) -> TypeGuard[str]:
    """Whether ``value`` names one S3 object: ``s3://bucket/key``, the key not ending in "/"."""
    match = _S3_URI.fullmatch(value) if isinstance(value, str) else None
    if match is None or not match["key"]:
        return False
    return not match["key"].endswith("/")


# --- reading ---------------------------------------------------------------------------


_FROM_COCO = "for a COCO export, use `counting manifest from-coco`"
# The top-level arrays of a COCO file (https://cocodataset.org/#format-data): a one-line COCO
# export parses as one JSON Lines record holding them.
_COCO_KEYS = frozenset({"images", "annotations", "categories"})
# "[{...}," on a line that is not JSON by itself: a JSON array of image objects written over
# several lines.
_ARRAY_OF_OBJECTS_START = re.compile(rb"\s*\[\s*\{")


def _parse_line(content: bytes, line_number: int) -> dict[str, Any]:
    where = f"line {line_number}"
    if content.strip(b" \t\r\n") in (b"{", b"["):
        raise InputError(
            f"{where} holds only {content.strip().decode()!r}: this is one JSON document "
            "written over several lines, not JSON Lines (one image's JSON object per line); "
            f"{_FROM_COCO}"
        )
    try:
        value = json_input.loads(content, within="line")
    except json_input.JsonInputError as error:
        if _ARRAY_OF_OBJECTS_START.match(content):
            raise InputError(
                f"{where} starts a JSON array that goes on over several lines: a manifest is "
                "JSON Lines (one image's JSON object per line), not a JSON array of them"
            ) from None
        raise InputError(f"{where}: {error}") from None
    if isinstance(value, list):
        raise InputError(
            f"{where}: expected a JSON object, got an array: a manifest has one image's "
            "object per line, not a JSON array of them"
        )
    if not isinstance(value, dict):
        raise InputError(f"{where}: expected a JSON object, got {json_type(value)}")
    return value


def _read_lines(file: BinaryIO) -> Iterator[tuple[int, int, bytes]]:
    """(line number, offset, bytes without the line ending) of each non-blank line."""
    offset = 0
    for line_number in count(1):
        raw = file.readline(MAX_LINE_BYTES + 1)
        if not raw:
            return
        if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
            raise InputError(
                f"line {line_number} is longer than {MAX_LINE_BYTES:,} bytes: "
                "not a manifest line (is this a JSON Lines file?)"
            )
        start, offset = offset, offset + len(raw)
        if line_number == 1 and raw.startswith(UTF8_BOM):
            # A byte-order mark left by a Windows editor is not part of line 1's JSON.
            raw, start = raw[len(UTF8_BOM) :], start + len(UTF8_BOM)
        content = raw.rstrip(b"\r\n")
        if content.strip(b" \t\r\n"):
            yield line_number, start, content


# --- the label attribute -----------------------------------------------------------------


class _Candidates:
    """Collects, line by line, what ``detect_label_attribute`` decides from."""

    def __init__(self, given: str | None = None) -> None:
        self.given = None if given is None else check_label_attribute_name(given)
        self.typed: set[str] = set()
        self.untyped: set[str] = set()
        self.keys: set[str] = set()
        self.lines = 0

    def add(self, data: dict[str, Any]) -> None:
        self.lines += 1
        if len(self.keys) < 100:  # enough to list in a message
            self.keys.update(data)
        for key, value in data.items():
            if not isinstance(value, dict):
                continue
            if key.endswith(METADATA_SUFFIX):
                name = key.removesuffix(METADATA_SUFFIX)
                if value.get("type") == OBJECT_DETECTION_TYPE:
                    self.typed.add(name)
                if "failure-reason" in value:
                    self.untyped.add(name)
            elif key != SOURCE_REF and "annotations" in value:
                self.untyped.add(key)

    def present(self) -> bool:
        given = self.given or ""
        return given in self.keys or given + METADATA_SUFFIX in self.keys

    def attribute(self) -> str:
        if not self.lines:
            raise InputError("the manifest has no lines")
        if self.given is not None:
            if not self.present():
                raise InputError(
                    f"label attribute {self.given!r} is not in the manifest "
                    f"(keys found: {_listing(map(repr, sorted(self.keys)))})"
                )
            return self.given
        candidates = sorted(self.typed or self.untyped)
        if not candidates:
            raise InputError(
                f"no object-detection label attribute: no '<name>{METADATA_SUFFIX}' has type "
                f"{OBJECT_DETECTION_TYPE!r} or a failure-reason and no '<name>' has "
                f"'annotations' (keys found: {_listing(map(repr, sorted(self.keys)))})"
                + (f"; {_FROM_COCO}" if self.keys >= _COCO_KEYS else "")
            )
        if len(candidates) > 1:
            raise InputError(
                f"several object-detection label attributes: {_listing(map(repr, candidates))}; "
                "name the one to use"
            )
        return check_label_attribute_name(candidates[0])

    def guess(self) -> str | None:
        """The attribute the lines so far point to, if any: checking can start with it."""
        if self.given is not None:
            return self.given
        candidates = sorted(self.typed or self.untyped)
        return candidates[0] if candidates else None


# --- checking one line -------------------------------------------------------------------


Box = tuple[int, float, float, float, float]  # class id, left, top, width, height


class _Checked(NamedTuple):
    status: Status
    class_ids: tuple[int, ...]
    # Image size and sorted boxes: what two lines of one image must agree on (None: failed).
    label: tuple[int, int, tuple[Box, ...]] | None
    source_ref: object


# Where disagreeing class maps usually come from: each from-coco conversion leaves out the
# categories that have no box in its own export.
_CLASS_NUMBERING_HINT = (
    "; exports of one project converted apart by `counting manifest from-coco` number their "
    "classes alike when each keeps every category (--keep-empty-categories)"
)


class _LineChecker:
    """Checks lines against one label attribute and merges their class maps."""

    def __init__(self, attribute: str) -> None:
        self.attribute = attribute
        self.metadata_key = attribute + METADATA_SUFFIX
        self.class_map: dict[int, str] = {}
        self._ids: dict[str, int] = {}
        # Class maps already checked and merged, by content: most lines repeat a few.
        self._merged_maps: dict[tuple[tuple[str, str], ...], dict[int, str]] = {}

    def sorted_class_map(self) -> dict[int, str]:
        return dict(sorted(self.class_map.items()))

    def check(self, data: dict[str, Any], line_number: int) -> _Checked:
        where = f"line {line_number}"
        metadata = data.get(self.metadata_key, {})
        if not isinstance(metadata, dict):
            raise InputError(
                f"{where}: {self.metadata_key!r} is {json_type(metadata)}, not an object"
            )
        kind = metadata.get("type", OBJECT_DETECTION_TYPE)
        if kind != OBJECT_DETECTION_TYPE:
            raise InputError(
                f"{where}: {self.metadata_key!r} has type {kind!r}, not {OBJECT_DETECTION_TYPE!r}"
            )
        source_ref = data.get(SOURCE_REF)
        if self.attribute not in data:
            if "failure-reason" not in metadata:
                raise InputError(
                    f"{where}: no {self.attribute!r} and no failure-reason in {self.metadata_key!r}"
                )
            return _Checked("failed", (), None, source_ref)
        if not is_s3_object_uri(source_ref):
            raise InputError(f"{where}: {SOURCE_REF} {source_ref!r} is not an s3://bucket/key URI")
        label = data[self.attribute]
        if not isinstance(label, dict):
            raise InputError(f"{where}: {self.attribute!r} is {json_type(label)}, not an object")
        width, height = _image_size(label, where)
        annotations = label.get("annotations")
        if not isinstance(annotations, list):
            raise InputError(f"{where}: {self.attribute!r} has no 'annotations' array")
        raw_map = metadata.get("class-map")
        map_key = _map_key(raw_map)
        known = None if map_key is None else self._merged_maps.get(map_key)
        class_map = known or _line_class_map(raw_map, where, required=bool(annotations))
        boxes = [
            _fast_box(box, width, height, class_map)
            or _check_box(box, f"{where}: annotations[{index}]", (width, height), class_map)
            for index, box in enumerate(annotations)
        ]
        if known is None:
            self._merge(class_map, line_number)
            if map_key is not None and len(self._merged_maps) < _MAX_MERGED_MAPS:
                self._merged_maps[map_key] = class_map
        class_ids = tuple(box[0] for box in boxes)
        status: Status = "labeled" if boxes else "empty"
        return _Checked(status, class_ids, (width, height, tuple(sorted(boxes))), source_ref)

    def _merge(self, line_map: dict[int, str], line_number: int) -> None:
        # Boxes are counted per class name, so a name must keep one id and an id one name.
        for class_id, name in line_map.items():
            known_name = self.class_map.get(class_id, name)
            if known_name != name:
                raise InputError(
                    f"line {line_number}: class-map names id {class_id} {name!r}, "
                    f"an earlier line named it {known_name!r}{_CLASS_NUMBERING_HINT}"
                )
            known_id = self._ids.get(name, class_id)
            if known_id != class_id:
                raise InputError(
                    f"line {line_number}: class-map gives {name!r} id {class_id}, "
                    f"but id {known_id} has that name{_CLASS_NUMBERING_HINT}"
                )
            self.class_map[class_id] = name
            self._ids[name] = class_id


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


def _map_key(raw: object) -> tuple[tuple[str, str], ...] | None:
    """A class-map's items as a dict key, or None if it is not a map of strings."""
    if type(raw) is not dict or not all(type(name) is str for name in raw.values()):
        return None
    return tuple(raw.items())


def _line_class_map(raw: object, where: str, *, required: bool) -> dict[int, str]:
    if raw is None and not required:
        return {}
    if not isinstance(raw, dict):
        raise InputError(f"{where}: the metadata needs a class-map object mapping ids to names")
    class_map = {}
    for key, name in raw.items():
        if not _CLASS_ID_KEY.fullmatch(key):
            raise InputError(f"{where}: class-map key {_quoted(key)} is not a class id (0, 1, ...)")
        class_id = int(key)
        if class_id >= MAX_CLASSES:
            raise InputError(
                f"{where}: class-map key {key!r} is outside the class ids 0..{MAX_CLASSES - 1} "
                "a model here trains"
            )
        if not isinstance(name, str) or not name.strip():
            raise InputError(f"{where}: class-map gives id {key} the name {name!r}")
        class_map[class_id] = name
    return class_map


def _fast_box(
    box: object, image_width: int, image_height: int, class_map: dict[int, str]
) -> Box | None:
    """A well-formed box as (class id, left, top, width, height); None to check it slowly.

    Only the common case, without a message: NaN and infinities fail a comparison here.
    """
    if type(box) is not dict:
        return None
    # A missing value defaults to one the checks below refuse.
    class_id, left, top, width, height = (
        box.get("class_id", -1), box.get("left", -1), box.get("top", -1), box.get("width", 0),
        box.get("height", 0),
    )  # fmt: skip
    if (
        type(class_id) is int
        and class_id in class_map
        and type(left) in _NUMBER_TYPES
        and type(top) in _NUMBER_TYPES
        and type(width) in _NUMBER_TYPES
        and type(height) in _NUMBER_TYPES
        and left >= 0
        and top >= 0
        and width > 0
        and height > 0
        and left + width <= image_width
        and top + height <= image_height
    ):
        return class_id, left, top, width, height
    return None


def _check_box(
    box: object, where: str, image_size: tuple[int, int], class_map: dict[int, str]
) -> Box:
    if not isinstance(box, dict):
        raise InputError(f"{where}: expected an object, got {json_type(box)}")
    class_id = _as_int(box.get("class_id"))
    if class_id not in class_map:
        raise InputError(
            f"{where}: class_id {_quoted(box.get('class_id'))} is not in the class-map "
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
    return class_id, left, top, width, height


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
        raise InputError(f"{where}: {key} must be a number, got {_quoted(value)}")
    return value


def _quoted(value: object) -> str:
    # A value quoted in a message stays short, whatever its size.
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:20]}... ({len(text):,} characters)"


def _listing(names: Iterable[str]) -> str:
    # Keeps a message to one readable line however many keys or ids there are.
    listed = list(names)
    shown = ", ".join(listed[:_MAX_LISTED])
    return shown + (f" and {len(listed) - _MAX_LISTED} more" if len(listed) > _MAX_LISTED else "")


# --- scanning a file ---------------------------------------------------------------------


@dataclass
class _Scan:
    """One pass over a manifest file: per non-blank line, where it is and what it holds."""

    file: BinaryIO
    attribute: str
    class_map: dict[int, str] = field(default_factory=dict)
    offsets: array[int] = field(default_factory=lambda: array("q"))
    lengths: array[int] = field(default_factory=lambda: array("q"))
    line_numbers: array[int] = field(default_factory=lambda: array("q"))
    # hash() of the source-ref: equal for equal names within one process.
    image_hashes: array[int] = field(default_factory=lambda: array("q"))
    statuses: array[int] = field(default_factory=lambda: array("b"))
    boxes_by_class: Counter[int] = field(default_factory=Counter)
    most_boxes: int = 0

    def stats(self) -> dict[str, Any]:
        states = Counter(self.statuses)
        return {
            "label_attribute": self.attribute,
            "lines": len(self.statuses),
            "images": len(self.statuses) - states[_DUPLICATE],
            "labeled": states[_LABELED],
            "failed": states[_FAILED],
            "empty": states[_EMPTY],
            "duplicates": states[_DUPLICATE],
            "objects": sum(self.boxes_by_class[class_id] for class_id in self.class_map),
            "by_class": {
                name: self.boxes_by_class[class_id] for class_id, name in self.class_map.items()
            },
        }

    def read(self, index: int) -> bytes:
        self.file.seek(self.offsets[index])
        return self.file.read(self.lengths[index])

    def copy_lines(self, indexes: Iterable[int], out: BinaryIO) -> None:
        for index in indexes:
            out.write(self.read(index))
            out.write(b"\n")


def _scan(file: BinaryIO, label_attribute: str | None, image_source: str | None = None) -> _Scan:
    """Check and count every line, then merge or refuse lines that repeat an image.

    Checking needs the label attribute, which may only be known from every line: it starts
    with the one the first lines point to, collects what the whole file points to, and
    checks again from the start in the rare case that differs.
    """
    candidates = _Candidates(label_attribute)
    attribute = candidates.guess() or _first_candidate(file)
    scan = _check_lines(file, attribute, candidates, image_source)
    final = candidates.attribute()
    if final != attribute:
        file.seek(0)
        scan = _check_lines(file, final, None, image_source)
    _merge_duplicates(scan)
    return scan


def _first_candidate(file: BinaryIO) -> str:
    """The label attribute the first line that has one points to; ``InputError`` if none does."""
    candidates = _Candidates()
    for line_number, _, content in _read_lines(file):
        candidates.add(_parse_line(content, line_number))
        guess = candidates.guess()
        if guess is not None:
            file.seek(0)
            return guess
    file.seek(0)
    return candidates.attribute()  # raises: no lines, or no attribute


def _check_lines(
    file: BinaryIO, attribute: str, candidates: _Candidates | None, image_source: str | None
) -> _Scan:
    scan = _Scan(file, attribute)
    checker = _LineChecker(attribute)
    lines = _read_lines(file)
    for line_number, offset, content in lines:
        data = _parse_line(content, line_number)
        if candidates is not None:
            candidates.add(data)
        try:
            checked = checker.check(data, line_number)
            if image_source is not None and checked.status == "labeled":
                _check_image_source(checked.source_ref, image_source, line_number)
        except InputError:
            if candidates is None:
                raise
            # Raised only if the whole file confirms this attribute (or has none).
            _finish_candidates(lines, candidates)
            if candidates.attribute() == attribute:
                raise
            return scan
        scan.offsets.append(offset)
        scan.lengths.append(len(content))
        scan.line_numbers.append(line_number)
        scan.statuses.append(_STATUS_CODES[checked.status])
        scan.image_hashes.append(_image_hash(checked.source_ref, line_number))
        scan.boxes_by_class.update(checked.class_ids)
        scan.most_boxes = max(scan.most_boxes, len(checked.class_ids))
    scan.class_map = checker.sorted_class_map()
    return scan


def _finish_candidates(lines: Iterator[tuple[int, int, bytes]], candidates: _Candidates) -> None:
    for line_number, _, content in lines:
        candidates.add(_parse_line(content, line_number))


def _image_hash(source_ref: object, line_number: int) -> int:
    # A line without a source-ref (possible for a failed item) is an image of its own.
    return hash(source_ref if isinstance(source_ref, str) else ("no source-ref", line_number))


def _check_image_source(source_ref: object, image_source: str, line_number: int) -> None:
    if not str(source_ref).startswith(image_source):
        raise InputError(
            f"line {line_number}: image {source_ref} is outside {image_source}: training "
            "reads images only there; upload the images there and reference them from the "
            "manifest"
        )


def _merge_duplicates(scan: _Scan) -> None:
    """Mark lines that repeat an image as duplicates, or refuse images labeled two ways.

    Hashes only find the candidates; each is read again and compared exactly, so a hash
    collision can neither merge two images nor refuse one.
    """
    ordered = sorted(scan.image_hashes)
    repeated = {a for a, b in zip(ordered[:-1], islice(ordered, 1, None), strict=True) if a == b}
    del ordered
    if not repeated:
        return
    checker = _LineChecker(scan.attribute)
    groups: dict[object, list[tuple[int, _Checked]]] = {}
    for index, image_hash in enumerate(scan.image_hashes):
        if image_hash in repeated:
            line_number = scan.line_numbers[index]
            checked = checker.check(_parse_line(scan.read(index), line_number), line_number)
            key = _image_key(checked.source_ref, line_number)
            groups.setdefault(key, []).append((index, checked))
    for key, lines in groups.items():
        if len(lines) > 1:
            _merge_image(scan, key, lines)


def _image_key(source_ref: object, line_number: int) -> object:
    return source_ref if isinstance(source_ref, str) else ("no source-ref", line_number)


def _merge_image(scan: _Scan, source_ref: object, lines: list[tuple[int, _Checked]]) -> None:
    kept = _kept_line(source_ref, [(scan.line_numbers[index], line) for index, line in lines])
    for position, (index, checked) in enumerate(lines):
        if position != kept:
            scan.statuses[index] = _DUPLICATE
            scan.boxes_by_class.subtract(checked.class_ids)


def _kept_line(source_ref: object, lines: Sequence[tuple[int, _Checked]]) -> int:
    """Which of the (line number, line) pairs naming one image stands for it: the first with
    a label (else the first). Labeled lines that differ are refused with both line numbers."""
    labeled = [position for position, (_, line) in enumerate(lines) if line.label is not None]
    for position in labeled[1:]:
        (first_number, first), (number, line) = lines[labeled[0]], lines[position]
        if line.label != first.label:
            raise InputError(
                f"lines {first_number} and {number} label the same image {source_ref} "
                f"differently ({_difference(first, line)}): an image can have one label only; "
                "remove or correct one of the lines"
            )
    return labeled[0] if labeled else 0


def _difference(first: _Checked, other: _Checked) -> str:
    counts = [len(checked.class_ids) for checked in (first, other)]
    if counts[0] != counts[1]:
        return " / ".join(
            "no boxes" if not n else f"{n} box{'es' if n > 1 else ''}" for n in counts
        )
    if first.label and other.label and first.label[:2] != other.label[:2]:
        return "different image sizes"
    return "different boxes"


def _validation_size(described: str, usable: int, fraction: float, dropped: str) -> int:
    size = max(1, round(usable * check_validation_fraction(fraction)))
    if size >= usable:
        raise InputError(
            f"{described} ({dropped} dropped) cannot fill both a "
            f"training and a validation channel with validation fraction {fraction}"
        )
    return size
