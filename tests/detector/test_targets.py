"""Manifest lines -> torchvision targets (detector.targets), checked by hand and against the
core's own manifest parsing on the project's and real-world Ground Truth manifests."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from counting_core.datasets.manifest import read_manifest, validate_manifest
from counting_core.errors import InputError
from detector import targets
from detector.targets import DataError, Target
from tests.conftest import ROOT

REAL_WORLD = ROOT.parent / "shared" / "real-world" / "2026-11-29"
CLASS_MAP = {"0": "car", "1": "bus", "2": "van"}


def line(source_ref: str, boxes: list[dict], size: tuple[int, int] = (200, 100)) -> dict:
    return {
        "source-ref": source_ref,
        "cars": {
            "image_size": [{"width": size[0], "height": size[1], "depth": 3}],
            "annotations": boxes,
        },
        "cars-metadata": {"class-map": CLASS_MAP, "type": "groundtruth/object-detection"},
    }


FAILED = {
    "source-ref": "s3://b/images/failed.jpg",
    "cars-metadata": {"failure-reason": "ClientError: the worker skipped it"},
}


def test_class_ids_become_labels_from_one_and_boxes_become_corners():
    boxes = [
        {"class_id": 0, "left": 10, "top": 20, "width": 30, "height": 40},
        {"class_id": 2, "left": 0.5, "top": 0, "width": 199.5, "height": 100},
    ]

    target = targets.line_target(line("s3://b/images/a.jpg", boxes), "cars", "line 1")

    # (left, top, left + width, top + height); torchvision's label 0 is the background.
    assert target == Target(
        source_ref="s3://b/images/a.jpg",
        image_size=(200, 100),
        boxes=((10.0, 20.0, 40.0, 60.0), (0.5, 0.0, 200.0, 100.0)),
        labels=(1, 3),
    )


def test_a_box_reaching_past_the_border_keeps_its_part_inside_the_image():
    boxes = [{"class_id": 1, "left": 190, "top": -2, "width": 15, "height": 12}]

    target = targets.line_target(line("s3://b/images/a.jpg", boxes), "cars", "line 1")

    # x 190..205 -> 190..200 (width 200); y -2..10 -> 0..10.
    assert target is not None
    assert target.boxes == ((190.0, 0.0, 200.0, 10.0),)


def test_a_box_wholly_outside_the_image_is_refused_by_line_and_index():
    boxes = [
        {"class_id": 1, "left": 1, "top": 1, "width": 5, "height": 5},
        {"class_id": 1, "left": 250, "top": 10, "width": 5, "height": 5},
    ]

    with pytest.raises(DataError) as raised:
        targets.line_target(line("s3://b/images/a.jpg", boxes), "cars", "train.manifest: line 4")

    assert str(raised.value) == (
        "train.manifest: line 4: annotations[1] has no area inside the image"
    )


def test_images_without_boxes_are_kept_as_negatives_and_failed_items_left_out():
    lines = [
        (
            1,
            line(
                "s3://b/images/a.jpg",
                [{"class_id": 1, "left": 0, "top": 0, "width": 4, "height": 4}],
            ),
        ),
        (2, FAILED),
        (3, line("s3://b/images/empty.jpg", [])),
    ]

    found = targets.manifest_targets(lines, "cars", num_classes=3, name="train.manifest")

    assert [target.source_ref for target in found.targets] == [
        "s3://b/images/a.jpg",
        "s3://b/images/empty.jpg",
    ]
    assert found.targets[1].boxes == found.targets[1].labels == ()
    assert (found.failed, found.empty, found.with_boxes) == (1, 1, 1)


def test_a_line_without_label_or_failure_reason_is_refused():
    with pytest.raises(DataError) as raised:
        targets.line_target({"source-ref": "s3://b/a.jpg"}, "cars", "train.manifest: line 2")

    assert str(raised.value) == (
        "train.manifest: line 2: no 'cars' and no failure-reason in its metadata"
    )


def test_a_class_id_at_or_above_num_classes_is_refused():
    lines = [
        (7, line("s3://b/a.jpg", [{"class_id": 2, "left": 0, "top": 0, "width": 4, "height": 4}]))
    ]

    with pytest.raises(DataError) as raised:
        targets.manifest_targets(lines, "cars", num_classes=2, name="validation.manifest")

    assert str(raised.value) == (
        "validation.manifest: line 7: class id 2 is outside num_classes=2 (ids 0..1)"
    )


def test_images_are_found_below_the_common_folder_of_their_source_refs():
    refs = ["s3://b/labeling/images/batch1/a.jpg", "s3://b/labeling/images/batch2/sub/b.jpg"]

    prefix = targets.common_prefix(refs)

    assert prefix == "s3://b/labeling/images/"
    assert [targets.image_path(ref, prefix) for ref in refs] == ["batch1/a.jpg", "batch2/sub/b.jpg"]


def test_the_common_folder_ends_at_a_slash_not_inside_a_name():
    # "batch1" and "batch2" share "batch", which is no folder.
    assert targets.common_prefix(["s3://b/batch1/a.jpg", "s3://b/batch2/a.jpg"]) == "s3://b/"


def test_images_missing_from_the_channel_are_refused_in_one_error_naming_them(tmp_path):
    (tmp_path / "there.jpg").write_bytes(b"x")
    wanted = ["there.jpg"] + [f"gone{number}.jpg" for number in range(7)]

    with pytest.raises(DataError) as raised:
        targets.check_images(wanted, tmp_path)

    # Seven missing: five named, two counted.
    assert str(raised.value) == (
        f"7 image(s) missing from the images channel {tmp_path}: gone0.jpg, gone1.jpg, "
        "gone2.jpg, gone3.jpg, gone4.jpg and 2 more"
    )


def test_a_manifest_with_a_byte_order_mark_and_blank_lines_is_read(tmp_path):
    path = tmp_path / "train.manifest"
    path.write_bytes(b'\xef\xbb\xbf{"source-ref": "s3://b/a.jpg"}\n\n  \n{"x": 1}\n')

    assert targets.read_lines(path) == [(1, {"source-ref": "s3://b/a.jpg"}), (4, {"x": 1})]


def test_a_line_that_is_not_json_is_named(tmp_path):
    path = tmp_path / "train.manifest"
    path.write_text('{"a": 1}\n{oops\n')

    with pytest.raises(DataError) as raised:
        targets.read_lines(path)

    assert str(raised.value).startswith("train.manifest: line 2: not JSON")


# --- agreement with the core's parsing --------------------------------------------------


def ground_truth_manifests() -> list[Path]:
    """The project's hand-checked manifests, and the real-world corpus's Ground Truth
    manifests where that corpus is beside the checkout."""
    found = [ROOT / "tests" / "data" / "hand_checked.manifest"]
    found += sorted((ROOT / "tests" / "data" / "ground_truth").glob("*.manifest"))
    if REAL_WORLD.is_dir():
        found += sorted(REAL_WORLD.glob("gt*/*.manifest"))
    return found


@pytest.mark.parametrize(
    "path", ground_truth_manifests(), ids=lambda path: f"{path.parent.name}/{path.name}"
)
def test_targets_agree_with_the_cores_parsing_line_by_line(path):
    with path.open("rb") as file:
        records = read_manifest(file)
    # Every label attribute the core accepts here (an adjustment job's output has two).
    attributes = sorted(
        {key.removesuffix("-metadata") for record in records for key in record.data}
        - {"source-ref"}
    )
    compared = 0
    for attribute in attributes:
        try:
            checked = validate_manifest(records, attribute)
        except InputError:
            continue  # refused by the core: Prepare never passes it to training
        for item in checked.items:
            assert_same_reading(item.record.data, attribute, item.status, item.class_ids)
            compared += 1
    if not compared:
        pytest.skip("the core refuses this manifest: Prepare never passes it to training")


def assert_same_reading(data: dict, attribute: str, status: str, class_ids: tuple) -> None:
    target = targets.line_target(data, attribute, "line")
    if status == "failed":
        assert target is None
        return
    assert target is not None
    assert [label - 1 for label in target.labels] == list(class_ids)
    # The core accepted every box inside its image, so no clipping: plain corners.
    assert list(target.boxes) == [
        (box["left"], box["top"], box["left"] + box["width"], box["top"] + box["height"])
        for box in data[attribute]["annotations"]
    ]
    assert (status == "empty") == (not target.boxes)


def test_the_real_world_corpus_was_read_where_it_is_present():
    # Guards the parametrisation above against silently finding no real-world file.
    if not REAL_WORLD.is_dir():
        pytest.skip("../shared/real-world is not beside this checkout")
    assert len(sorted(REAL_WORLD.glob("gt*/*.manifest"))) >= 5


def test_the_scenes_manifest_is_json_lines_the_core_accepts(tmp_path):
    from detector import scenes

    files = scenes.write_scenes(tmp_path, 3, seed=4, size=(256, 256), max_objects=5)
    with files.manifest.open("rb") as file:
        checked = validate_manifest(read_manifest(file))

    assert checked.label_attribute == "scenes"
    assert checked.class_map == {0: "circle", 1: "square", 2: "triangle", 3: "diamond"}
    assert json.loads(files.class_map.read_text()) == {
        "0": "circle", "1": "square", "2": "triangle", "3": "diamond"
    }  # fmt: skip


@pytest.mark.parametrize(
    ("labeled", "upright"),
    [
        ((200, 400), (200, 400)),
        # Shrunk to half since it was labeled: the same shape.
        ((400, 800), (200, 400)),
        # Rounding when shrinking: 1001 x 2000 against 500 x 1000 is 0.1 % off.
        ((1001, 2000), (500, 1000)),
    ],
)
def test_a_label_drawn_on_the_upright_image_fits(labeled, upright):
    targets.check_orientations([("a.jpg", labeled, upright)])


def test_labels_drawn_on_sideways_photos_are_refused_naming_them():
    # A phone photo stored 400 x 200 with EXIF orientation 6 is 200 x 400 upright; a label
    # made at 400 x 200 was drawn on the sideways picture: every box would land wrong.
    labeled = [
        ("ok.jpg", (200, 400), (200, 400)),
        ("phone/1.jpg", (400, 200), (200, 400)),
        ("phone/2.jpg", (4032, 3024), (3024, 4032)),
    ]

    with pytest.raises(DataError) as refused:
        targets.check_orientations(labeled)

    assert str(refused.value) == (
        "2 image(s) labeled at a shape other than the upright image's (EXIF orientation "
        "applied): phone/1.jpg (labeled 400x200, upright 200x400); phone/2.jpg (labeled "
        "4032x3024, upright 3024x4032)"
    )
