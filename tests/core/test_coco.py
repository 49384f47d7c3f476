"""COCO detection exports become Ground Truth manifest lines that pass the manifest checks."""

from __future__ import annotations

import copy
import io
import json
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from counting_core.datasets import manifest
from counting_core.datasets.coco import coco_to_manifest, normalise_image_prefix
from counting_core.errors import InputError
from tests.core.manifest_fixtures import damages

DATA = Path(__file__).resolve().parent.parent / "data"
PREFIX = "s3://my-bucket/datasets/cars"
DATE = "2026-11-26T10:00:00.000000"

# tests/data/coco_small.json, converted by hand:
# categories listed 7 bus, 1 car, 3 truck -> by ascending id: car 0, truck 1, bus 2
# images[0] id 10 one.jpg 640 x 480
#   annotations[0] car   [10, 20, 30, 40]              -> left 10, top 20, 30 x 40
#   annotations[1] truck [100.4, 50.6, 200.2, 100.3]   -> edges 100..301 (300.6), 51..151
#                                                         (150.9) -> left 100, top 51, 201 x 100
#   annotations[5] car   [700, 10, 20, 20]             -> wholly right of x = 640: dropped
# images[1] id 2 "two.jpg" 100 x 50
#   annotations[2] bus   [-5, 10, 50, 60]              -> x clamped 0..45, y 10..50 (70)
#                                                         -> left 0, top 10, 45 x 40
#   annotations[3] car   [90, 10, 20, 10]              -> x 90..100 (110) -> 10 x 10
#   annotations[4] truck [20.2, 30, 0.2, 5]            -> x 20..20 (20.4): no width, dropped
# images[2] id 5 three.jpg 320 x 240: no annotations -> kept, empty
# objects 4 (car 2, truck 1, bus 1), dropped 2
CLASS_MAP = {"0": "car", "1": "truck", "2": "bus"}
METADATA = {
    "class-map": CLASS_MAP,
    "type": "groundtruth/object-detection",
    "human-annotated": "yes",
    "creation-date": DATE,
    "job-name": "labeling-job/vehicles",
}


def expected_line(name: str, size: tuple[int, int], boxes: list[tuple]) -> dict[str, Any]:
    keys = ("class_id", "left", "top", "width", "height")
    return {
        "source-ref": f"{PREFIX}/{name}",
        "vehicles": {
            "image_size": [{"width": size[0], "height": size[1], "depth": 3}],
            "annotations": [dict(zip(keys, values, strict=True)) for values in boxes],
        },
        "vehicles-metadata": {"objects": [{"confidence": 1.0}] * len(boxes), **METADATA},
    }


def small_coco() -> dict[str, Any]:
    return json.loads((DATA / "coco_small.json").read_text(encoding="utf-8"))


def stats_of(lines: tuple[str, ...]) -> dict[str, Any]:
    return manifest.stats(io.BytesIO(manifest.manifest_text(lines).encode()))


def convert(coco: dict[str, Any], **options: Any):
    arguments = {"image_prefix": PREFIX, "label_attribute": "vehicles", "creation_date": DATE}
    return coco_to_manifest(coco, **{**arguments, **options})


def test_small_export_converts_as_worked_out_by_hand():
    conversion = convert(small_coco())

    assert [json.loads(line) for line in conversion.lines] == [
        expected_line("img/one.jpg", (640, 480), [(0, 10, 20, 30, 40), (1, 100, 51, 201, 100)]),
        expected_line("two.jpg", (100, 50), [(2, 0, 10, 45, 40), (0, 90, 10, 10, 10)]),
        expected_line("three.jpg", (320, 240), []),
    ]
    assert conversion.summary() == {
        "images": 3,
        "objects": 4,
        "dropped_boxes": 2,
        "crowd_skipped": 0,
        "unused_categories": [],
        "empty_classes": [],
        "classes": CLASS_MAP,
    }
    assert conversion.summary_line() == (
        "imported 3 images with 4 boxes in 3 classes; skipped 2 boxes with no area inside its image"
    )


def test_small_export_passes_the_manifest_checks():
    lines = convert(small_coco()).lines

    assert stats_of(lines) == {
        "label_attribute": "vehicles",
        "lines": 3,
        "duplicates": 0,
        "images": 3,
        "labeled": 2,
        "failed": 0,
        "empty": 1,
        "objects": 4,
        "by_class": {"car": 2, "truck": 1, "bus": 1},
    }


def test_job_name_can_be_given():
    line = json.loads(convert(small_coco(), job_name="cvat-task-12").lines[0])

    assert line["vehicles-metadata"]["job-name"] == "labeling-job/cvat-task-12"


@pytest.mark.parametrize(
    ("prefix", "normalised"),
    [
        ("s3://bucket", "s3://bucket/"),
        ("s3://bucket/a/b", "s3://bucket/a/b/"),
        ("s3://bucket/a/", "s3://bucket/a/"),
    ],
)
def test_image_prefix_ends_in_a_slash(prefix, normalised):
    assert normalise_image_prefix(prefix) == normalised


@pytest.mark.parametrize("prefix", ["bucket/images", "https://bucket/images", "s3://", "s3://B/x"])
def test_image_prefix_must_be_an_s3_uri(prefix):
    with pytest.raises(InputError, match="is not an s3://bucket/prefix/ URI"):
        convert(small_coco(), image_prefix=prefix)


def test_label_attribute_follows_the_manifest_rule():
    with pytest.raises(InputError, match="must not end in '-ref'"):
        convert(small_coco(), label_attribute="boxes-ref")


def _change(path: str, value: Any = None, *, delete: bool = False):
    """Change the COCO document at a /-separated path (list indexes are numbers)."""

    def apply(coco: dict[str, Any]) -> None:
        *parents, last = [int(part) if part.isdigit() else part for part in path.split("/")]
        target: Any = coco
        for part in parents:
            target = target[part]
        if delete:
            del target[last]
        else:
            target[last] = value

    return apply


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_change("images", delete=True), "the COCO file has no 'images' array"),
        (_change("annotations", {}), "the COCO file has no 'annotations' array"),
        (_change("categories/1", "car"), "categories[1]: expected an object, got 'car'"),
        (_change("categories/1/id", "1"), "categories[1]: id must be an integer, got '1'"),
        (_change("categories/1/id", 7), "categories[1]: duplicate id 7"),
        (_change("categories/1/name", "bus"), "categories[1]: duplicate name 'bus'"),
        (_change("categories/1/name", " "), "categories[1]: name must be a non-empty string"),
        (_change("images/1/id", delete=True), "images[1]: missing 'id'"),
        (_change("images/1/id", 10), "images[1]: duplicate id 10"),
        (_change("images/1/id", True), "images[1]: id must be an integer, got True"),
        (_change("images/2/file_name", "img/one.jpg"), "images[2]: file_name is also used by"),
        (_change("images/2/file_name", "/"), "images[2]: file_name '/' is an absolute path"),
        (_change("images/2/file_name", "a/"), "images[2]: file_name 'a/' does not name an image"),
        (_change("annotations/4/iscrowd", 2), "annotations[4]: iscrowd must be 0 or 1, got 2"),
        (
            _change("annotations/3/id", 2),
            "annotations[3]: duplicate id 2, also used by annotations[1]",
        ),
        (_change("annotations/3/id", "4"), "annotations[3]: id must be an integer, got '4'"),
        (_change("annotations/4/bbox", []), "annotations[4]: no bbox, and no polygon segment"),
        (_change("images/2/file_name", 5), "images[2]: file_name 5 does not name an image file"),
        (_change("images/1/width", 0), "images[1]: width must be positive, got 0"),
        (_change("images/1/height", 50.5), "images[1]: height must be an integer, got 50.5"),
        (_change("annotations/4/image_id", 99), "annotations[4]: image_id 99 is not in images"),
        (_change("annotations/4/image_id", [2]), "annotations[4]: image_id must be an integer"),
        (_change("annotations/4/category_id", 2), "annotations[4]: category_id 2 is not in categ"),
        (_change("annotations/4/bbox", delete=True), "annotations[4]: no bbox, and no polygon"),
        (_change("annotations/4/bbox", [1, 2, 3]), "annotations[4]: bbox must be [x, y, width,"),
        (_change("annotations/4/bbox", [1, 2, "3", 4]), "annotations[4]: bbox must be [x, y, "),
        (_change("annotations/4/bbox", [1, 2, True, 4]), "annotations[4]: bbox must be [x, y"),
        (_change("annotations/4/bbox", [1, 2, 10**400, 4]), "annotations[4]: bbox must be [x,"),
        (_change("annotations/4/bbox", [1, 2, -3, 4]), "annotations[4]: bbox width and height"),
    ],
)
def test_malformed_exports_name_the_entry(change, message):
    coco = small_coco()
    change(coco)

    with pytest.raises(InputError) as caught:
        convert(coco)

    assert message in str(caught.value)


def test_a_coco_file_must_be_an_object():
    with pytest.raises(InputError, match="a COCO file is a JSON object"):
        convert("images")


def test_a_json_array_is_named_as_such():
    with pytest.raises(InputError, match=r"^the file is a JSON array of 2 item\(s\), not a COCO"):
        convert([{"id": 1, "data": {"image": "/data/upload/1/a.jpg"}}, {"id": 2}])


# --- properties ----------------------------------------------------------------------


@settings(max_examples=300)
@given(damages(small_coco()))
def test_a_damaged_export_is_refused_or_converts_to_a_valid_manifest(coco):
    try:
        lines = convert(coco).lines
    except InputError:
        return
    if lines:
        manifest.validate_manifest(manifest.parse_manifest(lines))


@st.composite
def bboxes(draw, width: int, height: int, *, whole_pixels: bool) -> list[float]:
    """With whole_pixels, a box of at least 1 x 1 inside the image; else any box near it."""
    if whole_pixels:
        x, y = draw(st.integers(0, width - 1)), draw(st.integers(0, height - 1))
        return [x, y, draw(st.integers(1, width - x)), draw(st.integers(1, height - y))]
    near = [st.floats(-50, width + 50), st.floats(-50, height + 50)]
    return [draw(strategy) for strategy in (*near, st.floats(0, 3000), st.floats(0, 3000))]


@st.composite
def coco_exports(draw, *, whole_pixels: bool) -> dict[str, Any]:
    category_ids = draw(st.lists(st.integers(-5, 1000), min_size=1, max_size=4, unique=True))
    image_ids = draw(st.lists(st.integers(0, 10**6), min_size=1, max_size=5, unique=True))
    images = [
        {
            "id": image_id,
            "file_name": f"{index}.jpg",
            "width": draw(st.integers(1, 2000)),
            "height": draw(st.integers(1, 2000)),
        }
        for index, image_id in enumerate(image_ids)
    ]
    annotations = []
    for _ in range(draw(st.integers(0, 12))):
        image = draw(st.sampled_from(images))
        bbox = draw(bboxes(image["width"], image["height"], whole_pixels=whole_pixels))
        category_id = draw(st.sampled_from(category_ids))
        annotations.append({"image_id": image["id"], "category_id": category_id, "bbox": bbox})
    categories = [
        {"id": category_id, "name": f"class {category_id}"} for category_id in category_ids
    ]
    return {"images": images, "annotations": annotations, "categories": categories}


@given(coco_exports(whole_pixels=True))
def test_round_trip_keeps_the_objects_of_each_class_in_category_order(coco):
    conversion = convert(copy.deepcopy(coco))
    names = {category["id"]: category["name"] for category in coco["categories"]}
    expected = Counter(names[annotation["category_id"]] for annotation in coco["annotations"])

    figures = stats_of(conversion.lines)

    assert figures["by_class"] == {
        names[key]: expected[names[key]] for key in sorted(names) if expected[names[key]]
    }
    assert conversion.unused_categories == tuple(
        names[key] for key in sorted(names) if not expected[names[key]]
    )
    assert figures["images"] == len(coco["images"])
    assert conversion.dropped_boxes == 0


@given(coco_exports(whole_pixels=False))
def test_any_valid_export_converts_to_a_valid_manifest(coco):
    conversion = convert(coco)

    figures = stats_of(conversion.lines)

    assert figures["objects"] == conversion.objects
    assert conversion.objects + conversion.dropped_boxes == len(coco["annotations"])
    assert figures["failed"] == 0


@given(st.text(alphabet="ab./\\:C ", max_size=16) | st.text(max_size=16))
def test_any_file_name_is_refused_or_stays_below_the_prefix(file_name):
    image = {"id": 1, "file_name": file_name, "width": 10, "height": 10}
    try:
        conversion = convert({"images": [image], "annotations": [], "categories": []})
    except InputError:
        return

    source_ref = json.loads(conversion.lines[0])["source-ref"]
    assert source_ref.startswith(f"{PREFIX}/")
    key = source_ref.removeprefix(f"{PREFIX}/")
    assert "\\" not in key
    assert ".." not in key.split("/")
    assert not key.startswith("/")


def many_categories(number: int, *, with_boxes: int) -> dict[str, Any]:
    """One 100 x 100 image, ``number`` categories, the first ``with_boxes`` with a box each."""
    categories = [{"id": index + 1, "name": f"kind {index + 1}"} for index in range(number)]
    annotations = [
        {"id": index + 1, "image_id": 1, "category_id": index + 1, "bbox": [0, 0, 10, 10]}
        for index in range(with_boxes)
    ]
    images = [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 100}]
    return {"images": images, "annotations": annotations, "categories": categories}


def test_a_thousand_classes_convert_as_labeling_md_and_training_md_say():
    # labeling.md: class ids 0..k-1, at most 1,000; training.md: class ids 0..999.
    conversion = convert(many_categories(1000, with_boxes=1000))

    assert (len(conversion.class_map), conversion.class_map["999"]) == (1000, "kind 1000")


@pytest.mark.parametrize(
    ("with_boxes", "keep_empty_categories", "counted"),
    [
        (1001, False, "1,001 categories have boxes"),
        (1, True, "1,001 categories would get class ids (--keep-empty-categories)"),
    ],
)
def test_more_than_a_thousand_classes_are_refused_saying_which(
    with_boxes, keep_empty_categories, counted
):
    coco = many_categories(1001, with_boxes=with_boxes)

    with pytest.raises(InputError) as refused:
        convert(coco, keep_empty_categories=keep_empty_categories)

    assert str(refused.value) == (
        f"{counted}, but a model here trains at most 1,000 classes: merge or leave out "
        "categories in the labeling tool before exporting"
    )
