"""Label Studio JSON exports become Ground Truth manifest lines that Prepare accepts."""

from __future__ import annotations

import io
import json
import math
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from counting_core.datasets import manifest
from counting_core.datasets.label_studio import label_studio_to_manifest, pixel_rectangle
from counting_core.errors import InputError

DATE = "2026-12-04T10:00:00.000000"
BUCKET = "s3://my-counting-data"
IMAGES = f"{BUCKET}/labeling/images/"
REAL_EXPORT = (
    Path(__file__).resolve().parents[3]
    / "shared/real-world/2026-12-04/cc15_labelstudio_json_tasks_export/project-export.json"
)
real_world = pytest.mark.skipif(
    not REAL_EXPORT.is_file(), reason=f"{REAL_EXPORT} is not beside this checkout (CI has it)"
)


def box(label: str, x: float, y: float, width: float, height: float, **more: Any) -> dict:
    """A rectanglelabels result as Label Studio writes it, on a 1000 x 500 image by default."""
    size = {"original_width": 1000, "original_height": 500, "image_rotation": 0}
    rotation = more.pop("rotation", 0)
    value = {"x": x, "y": y, "width": width, "height": height, "rotation": rotation}
    return {
        **size,
        **more,
        "value": {**value, "rectanglelabels": [label]},
        "id": f"r{x}{y}",
        "from_name": "label",
        "to_name": "image",
        "type": "rectanglelabels",
        "origin": "manual",
    }


def annotation(results: list[dict], number: int = 1, **more: Any) -> dict:
    return {
        "id": number,
        "completed_by": 1,
        "result": results,
        "was_cancelled": False,
        "ground_truth": False,
        "created_at": "2026-12-01T09:00:00.000000Z",
        "updated_at": "2026-12-01T09:00:00.000000Z",
        **more,
    }


def task(number: int, image: str, annotations: list[dict]) -> dict:
    return {"id": number, "annotations": annotations, "predictions": [], "data": {"image": image}}


def convert(export: Any, **options: Any):
    arguments = {"label_attribute": "vehicles", "creation_date": DATE, "image_prefix": IMAGES}
    return label_studio_to_manifest(export, **{**arguments, **options})


def lines_of(conversion) -> list[dict]:
    return [json.loads(line) for line in conversion.lines]


def boxes_of(line: dict) -> list[tuple[int, int, int, int, int]]:
    keys = ("class_id", "left", "top", "width", "height")
    return [tuple(item[key] for key in keys) for item in line["vehicles"]["annotations"]]


def prepare(conversion) -> dict:
    """What Prepare does with the manifest: check and split it, images in the stage's prefix."""
    split = manifest.split(
        io.BytesIO(manifest.manifest_text(conversion.lines).encode()),
        validation_fraction=0.5,
        seed=1,
        image_source=IMAGES,
    )
    return split.report()


# Worked out by hand, images 1000 x 500 (percent x 10 across, x 5 down):
# task 10: car   x 10    y 20    w 30  h 40    -> left 100, top 100, 300 x 200
#          truck x 12.34 y 50.05 w 5.5 h 10.01 -> x 123.4..178.4 -> 123..178 (55);
#                                                y 250.25..300.3 -> 250..300 (50)
# task 11: two annotations; the newer (updated 12-02, id 6) has car x 0 y 0 w 100 h 100
#          -> 0, 0, 1000 x 500; the older one (id 5) is superseded
# task 12: a ground-truth annotation (older) wins over a newer one:
#          truck x 50 y 50 w 60 h 60 -> x 500..1100 clamped to 1000 -> 500 wide; y 250..550
#          clamped to 500 -> 250 high
# task 13: only a cancelled (skipped) annotation -> left out
# task 14: no annotation -> left out
# task 15: an annotation with no result -> no image size -> left out
# task 16: uploaded "café.jpg" (URL-quoted), only a keypoint -> kept, no boxes, 640 x 480
# task 17: local file d=dataset/sub/img.jpg; car with no width -> dropped; truck
#          x 50 w 0.04 -> 500..500.4 -> 500..500, no width -> dropped; car x 1 y 1 w 1 h 1
#          -> 10, 5, 10 x 5
# classes by name: car 0, truck 1; objects 5 (car 3, truck 2), dropped 2
def hand_export() -> list[dict]:
    return [
        task(
            10,
            f"{IMAGES}a/one.jpg",
            [annotation([box("car", 10, 20, 30, 40), box("truck", 12.34, 50.05, 5.5, 10.01)])],
        ),
        task(
            11,
            f"{IMAGES}a/two.jpg",
            [
                annotation(
                    [box("car", 0, 0, 100, 100)], 6, updated_at="2026-12-02T08:00:00.000000Z"
                ),
                annotation([box("truck", 1, 1, 2, 2)], 5),
            ],
        ),
        task(
            12,
            f"{IMAGES}a/three.jpg",
            [
                annotation([box("truck", 50, 50, 60, 60)], 7, ground_truth=True),
                annotation([box("car", 5, 5, 5, 5)], 8, updated_at="2026-12-03T08:00:00.000000Z"),
            ],
        ),
        task(13, f"{IMAGES}a/four.jpg", [annotation([], 9, was_cancelled=True)]),
        task(14, f"{IMAGES}a/five.jpg", []),
        task(15, f"{IMAGES}a/six.jpg", [annotation([], 10)]),
        task(
            16,
            "/data/upload/3/1a2b3c4d-caf%C3%A9.jpg",
            [
                annotation(
                    [
                        {
                            "original_width": 640,
                            "original_height": 480,
                            "value": {"x": 5, "y": 5, "keypointlabels": ["car"]},
                            "type": "keypointlabels",
                        }
                    ],
                    11,
                )
            ],
        ),
        task(
            17,
            "/data/local-files/?d=dataset%2Fsub%2Fimg.jpg",
            [
                annotation(
                    [
                        box("car", 40, 40, 0, 10),
                        box("truck", 50, 0, 0.04, 1),
                        box("car", 1, 1, 1, 1),
                    ],
                    12,
                )
            ],
        ),
    ]


def test_hand_made_export_converts_as_worked_out_by_hand():
    conversion = convert(hand_export())

    lines = lines_of(conversion)
    assert [line["source-ref"] for line in lines] == [
        f"{IMAGES}a/one.jpg",
        f"{IMAGES}a/two.jpg",
        f"{IMAGES}a/three.jpg",
        f"{IMAGES}café.jpg",
        f"{IMAGES}dataset/sub/img.jpg",
    ]
    assert [boxes_of(line) for line in lines] == [
        [(0, 100, 100, 300, 200), (1, 123, 250, 55, 50)],
        [(0, 0, 0, 1000, 500)],
        [(1, 500, 250, 500, 250)],
        [],
        [(0, 10, 5, 10, 5)],
    ]
    assert lines[3]["vehicles"]["image_size"] == [{"width": 640, "height": 480, "depth": 3}]
    assert lines[0]["vehicles-metadata"] == {
        "objects": [{"confidence": 1.0}, {"confidence": 1.0}],
        "class-map": {"0": "car", "1": "truck"},
        "type": "groundtruth/object-detection",
        "human-annotated": "yes",
        "creation-date": DATE,
        "job-name": "labeling-job/vehicles",
    }
    assert conversion.summary() == {
        "tasks": 8,
        "images": 5,
        "objects": 5,
        "dropped_boxes": 2,
        "enclosed_rotated": 0,
        "not_annotated": 1,
        "cancelled": 1,
        "empty_without_size": 1,
        "superseded_annotations": 2,
        "ignored_results": {"keypointlabels": 1},
        "empty_classes": [],
        "classes": {"0": "car", "1": "truck"},
    }
    assert conversion.summary_line() == (
        "imported 5 images with 5 boxes in 2 classes from 8 tasks; left out 1 task not "
        "annotated, 1 task skipped by annotators, 1 task without boxes or image size, "
        "2 older annotations of tasks annotated more than once, 2 boxes with no area inside "
        "its image, results that are not boxes (1 keypointlabels)"
    )


def test_the_converted_export_passes_what_prepare_runs():
    report = prepare(convert(hand_export()))

    assert (report["images"], report["labeled"], report["empty"], report["objects"]) == (
        5,
        4,
        1,
        5,
    )
    assert report["by_class"] == {"car": 3, "truck": 2}
    assert report["class_map"] == {"0": "car", "1": "truck"}


def test_the_stage_class_list_fixes_the_ids_and_keeps_unused_classes():
    conversion = convert(hand_export(), class_names=["person", "truck", "car"])

    assert conversion.class_map == {"0": "person", "1": "truck", "2": "car"}
    assert boxes_of(lines_of(conversion)[0]) == [(2, 100, 100, 300, 200), (1, 123, 250, 55, 50)]
    assert conversion.empty_classes == ("person",)


def test_a_label_outside_the_class_list_is_refused_with_its_task():
    with pytest.raises(InputError) as caught:
        convert(hand_export(), class_names=["car"])

    assert str(caught.value) == "task 10: label 'truck' is not one of the classes ('car')"


def test_rotated_boxes_are_refused_listing_their_tasks():
    export = [
        task(1, f"{IMAGES}1.jpg", [annotation([box("car", 10, 10, 5, 5, rotation=30)])]),
        task(2, f"{IMAGES}2.jpg", [annotation([box("car", 10, 10, 5, 5, rotation=360)])]),
        task(3, f"{IMAGES}3.jpg", [annotation([box("car", 10, 10, 5, 5, rotation=-90)])]),
    ]

    with pytest.raises(InputError) as caught:
        convert(export)

    assert str(caught.value) == (
        "task 1, task 3 have rotated boxes, which an axis-aligned detector cannot train on: "
        "straighten them in Label Studio, or enclose each in an upright box (--rotated enclose)"
    )


def test_rotated_boxes_can_be_enclosed():
    # 200 x 100 image; a box at (100, 50), 20 x 20 pixels:
    # turned 90 degrees clockwise about its top-left corner it covers x 80..100, y 50..70;
    # turned 45 degrees its corners are (100, 50), (114.14, 64.14), (100, 78.28),
    # (85.86, 64.14) -> x 86..114, y 50..78.
    size = {"original_width": 200, "original_height": 100}
    export = [
        task(1, f"{IMAGES}1.jpg", [annotation([box("car", 50, 50, 10, 20, rotation=90, **size)])]),
        task(2, f"{IMAGES}2.jpg", [annotation([box("car", 50, 50, 10, 20, rotation=45, **size)])]),
    ]

    conversion = convert(export, rotated="enclose")

    assert [boxes_of(line) for line in lines_of(conversion)] == [
        [(0, 80, 50, 20, 20)],
        [(0, 86, 50, 28, 28)],
    ]
    assert conversion.enclosed_rotated == 2


@real_world
def test_the_real_converter_fixture_names_its_task_for_a_path_that_is_no_image_reference():
    # label-studio-converter's own test export has data.image "/image1": a path on no storage.
    export = json.loads(REAL_EXPORT.read_text(encoding="utf-8"))

    with pytest.raises(InputError) as caught:
        convert(export)

    assert str(caught.value) == (
        "task 1: image '/image1' is neither an s3:// URI nor a file uploaded to or served by "
        "Label Studio"
    )


@real_world
def test_the_real_converter_fixture_converts_as_worked_out_by_hand():
    # Its images given as S3 objects; 2800 x 2800 pixels, so percent x 28.
    # Task 1 has two annotations; id 2 is newer (updated 21:05:03 against 21:04:40):
    #   parasites x 37.887 w 3.825 -> 1060.84..1167.94 -> 1061..1168 (107);
    #             y 71.767 h 4.554 -> 2009.47..2136.98 -> 2009..2137 (128)
    #   white     x 49.180 w 5.282 -> 1377.05..1524.95 -> 1377..1525 (148);
    #             y 23.133 h 4.007 -> 647.72..759.93   -> 648..760 (112)
    # Task 2: white x 19.672 w 3.279 -> 550.82..642.62 -> 551..643 (92);
    #               y 49.727 h 2.914 -> 1392.35..1473.95 -> 1392..1474 (82)
    #         white x 61.749 w 2.550 -> 1728.96..1800.36 -> 1729..1800 (71);
    #               y 37.158 h 4.372 -> 1040.44..1162.84 -> 1040..1163 (123)
    export = json.loads(REAL_EXPORT.read_text(encoding="utf-8"))
    for item in export:
        item["data"]["image"] = f"{IMAGES}cells/{item['id']}.png"

    conversion = convert(export, label_attribute="vehicles")

    lines = lines_of(conversion)
    assert conversion.class_map == {"0": "parasites", "1": "white"}
    assert [boxes_of(line) for line in lines] == [
        [(0, 1061, 2009, 107, 128), (1, 1377, 648, 148, 112)],
        [(1, 551, 1392, 92, 82), (1, 1729, 1040, 71, 123)],
    ]
    assert conversion.superseded_annotations == 1
    assert prepare(conversion)["by_class"] == {"parasites": 1, "white": 3}


@pytest.mark.parametrize(
    ("export", "options", "message"),
    [
        ({"images": [], "annotations": [], "categories": []}, {}, "the file is a COCO export"),
        ({"tasks": []}, {}, "a Label Studio JSON export is a JSON array of tasks"),
        ([3], {}, "tasks[0]: expected a task object, got a number"),
        (
            [{"id": 4, "image": "s3://b/x.jpg", "annotation_id": 2, "label": []}],
            {},
            "task 4: this is Label Studio's JSON-MIN export",
        ),
        ([{"id": 4, "data": {}}], {}, "task 4: no 'annotations' array"),
        (
            [
                task(number, "s3://bucket/a.jpg", [annotation([box("car", 1, 1, 1, 1)])])
                for number in (5, 6)
            ],
            {},
            "task 6: image s3://bucket/a.jpg is also the image of task 5",
        ),
        (
            [task(5, "/data/upload/3/1a2b3c4d-a.jpg", [annotation([box("car", 1, 1, 1, 1)])])],
            {"image_prefix": None},
            "task 5: image '/data/upload/3/1a2b3c4d-a.jpg' is a file Label Studio holds: give "
            "--image-prefix",
        ),
        (
            [task(5, "https://example.com/a.jpg", [annotation([box("car", 1, 1, 1, 1)])])],
            {},
            "task 5: image 'https://example.com/a.jpg' is neither an s3:// URI",
        ),
        (
            [task(5, "/data/local-files/?d=../etc/passwd", [annotation([])])],
            {},
            "task 5: image '../etc/passwd' climbs out of the image folder",
        ),
        (
            [{"id": 5, "data": {"img": "s3://b/a.jpg"}, "annotations": [annotation([])]}],
            {},
            "task 5: data has no 'image' (its keys: 'img')",
        ),
        (
            [task(5, "s3://bucket/a.jpg", [annotation([box("car", 1, "2", 1, 1)])])],
            {},
            "task 5: result[0]: y must be a number, got '2'",
        ),
        (
            [task(5, "s3://bucket/a.jpg", [annotation([box("car", 1, 1, -1, 1)])])],
            {},
            "task 5: result[0]: width and height must not be negative",
        ),
        (
            [
                task(
                    5, "s3://bucket/a.jpg", [annotation([box("car", 1, 1, 1, 1, original_width=0)])]
                )
            ],
            {},
            "task 5: result[0]: original_width and original_height must be positive integers",
        ),
        (
            [
                task(
                    5,
                    "s3://bucket/a.jpg",
                    [
                        annotation(
                            [box("car", 1, 1, 1, 1), box("car", 2, 2, 1, 1, original_width=9)]
                        )
                    ],
                )
            ],
            {},
            "task 5: result[1]: image size 9 x 500 differs from 1000 x 500 in an earlier result",
        ),
        (
            [
                task(
                    5,
                    "s3://bucket/a.jpg",
                    [annotation([box("car", 1, 1, 1, 1, image_rotation=90)])],
                )
            ],
            {},
            "task 5: result[0]: drawn on the image turned by 90 degrees in the editor",
        ),
        (
            [task(5, "s3://bucket/a.jpg", [annotation([], updated_at="yesterday")])],
            {},
            "task 5: annotation time 'yesterday' is not an ISO 8601 time",
        ),
        ([], {"rotated": "ignore"}, "rotated boxes are refused or enclosed, not 'ignore'"),
        ([], {"class_names": ["car", "car"]}, "the class list names 'car' more than once"),
        ([], {"label_attribute": "boxes-ref"}, "label attribute 'boxes-ref' must not end"),
        ([], {"image_prefix": "https://x"}, "image prefix 'https://x' is not an s3://"),
    ],
)
def test_malformed_exports_are_refused_in_one_line_naming_the_task(export, options, message):
    with pytest.raises(InputError) as caught:
        convert(export, **options)

    assert str(caught.value).startswith(message)
    assert "\n" not in str(caught.value)


def test_a_box_with_two_labels_is_refused():
    result = box("car", 1, 1, 1, 1)
    result["value"]["rectanglelabels"] = ["car", "truck"]

    with pytest.raises(InputError) as caught:
        convert([task(5, "s3://bucket/a.jpg", [annotation([result])])])

    assert str(caught.value) == (
        "task 5: result[0]: a box needs exactly one label, got ['car', 'truck']"
    )


def test_one_task_object_converts_as_the_target_storage_writes_it():
    one = task(7, "s3://bucket/a.jpg", [annotation([box("car", 10, 20, 30, 40)])])

    conversion = convert(one)

    assert [boxes_of(line) for line in lines_of(conversion)] == [[(0, 100, 100, 300, 200)]]


# --- properties ----------------------------------------------------------------------

sizes = st.integers(1, 8000)
angles = st.floats(-720, 720, allow_nan=False)


@st.composite
def percent_boxes(draw) -> tuple[float, float, float, float]:
    """x, y, width, height in percent, inside the image."""
    x, y = draw(st.floats(0, 100)), draw(st.floats(0, 100))
    return x, y, draw(st.floats(0, 100 - x)), draw(st.floats(0, 100 - y))


@given(percent_boxes(), sizes, sizes)
def test_an_upright_box_lands_within_half_a_pixel_of_its_exact_edges(percent, width, height):
    x, y, across, down = percent
    export = [
        task(
            1,
            "s3://bucket/a.jpg",
            [annotation([box("car", *percent, original_width=width, original_height=height)])],
        )
    ]

    conversion = convert(export)

    # Exact edges in rational arithmetic: percent of the size, the far edge clamped.
    exact = [
        Fraction(x) * width / 100,
        Fraction(y) * height / 100,
        min(Fraction(x) * width / 100 + Fraction(across) * width / 100, Fraction(width)),
        min(Fraction(y) * height / 100 + Fraction(down) * height / 100, Fraction(height)),
    ]
    drawn = boxes_of(lines_of(conversion)[0])
    if not drawn:
        # Dropped only when rounding leaves no width or height: edges within a pixel.
        assert conversion.dropped_boxes == 1
        assert exact[2] - exact[0] <= 1 or exact[3] - exact[1] <= 1
        return
    ((_, left, top, box_width, box_height),) = drawn
    got = [left, top, left + box_width, top + box_height]
    assert all(
        abs(edge - want) <= Fraction(1, 2) + Fraction(1, 10**6)
        for edge, want in zip(got, exact, strict=True)
    )
    manifest.validate_manifest(manifest.parse_manifest(conversion.lines))


@given(sizes, sizes)
def test_the_whole_image_in_percent_is_the_whole_image_in_pixels(width, height):
    assert pixel_rectangle((0, 0, 100, 100), 0, (width, height)) == (0, 0, width, height)


@given(percent_boxes(), sizes, sizes, angles)
def test_a_turned_box_encloses_the_upright_one_turned_by_whole_turns(percent, width, height, angle):
    # Turning by a whole turn more changes nothing.
    once = pixel_rectangle(percent, angle, (width, height))
    again = pixel_rectangle(percent, angle + 360, (width, height))
    assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(once, again, strict=True))


@given(percent_boxes(), sizes, sizes)
def test_a_half_turn_flips_the_box_up_and_left_of_its_corner(percent, width, height):
    x, y, across, down = pixel_rectangle(percent, 0, (width, height))

    turned = pixel_rectangle(percent, 180, (width, height))

    expected = (x - across, y - down, across, down)
    assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(turned, expected, strict=True))


@given(percent_boxes(), sizes, sizes)
def test_a_quarter_turn_swaps_width_and_height_left_of_the_corner(percent, width, height):
    x, y, across, down = pixel_rectangle(percent, 0, (width, height))

    turned = pixel_rectangle(percent, 90, (width, height))

    expected = (x - down, y, down, across)
    assert all(math.isclose(a, b, abs_tol=1e-6) for a, b in zip(turned, expected, strict=True))


@given(percent_boxes(), sizes, sizes, angles)
def test_the_enclosing_box_is_at_least_the_box_and_at_most_its_sides_summed(
    percent, width, height, angle
):
    _, _, across, down = pixel_rectangle(percent, 0, (width, height))

    _, _, box_width, box_height = pixel_rectangle(percent, angle, (width, height))

    assert box_width * box_height >= across * down * (1 - 1e-9) - 1e-6
    assert box_width <= across + down + 1e-6
    assert box_height <= across + down + 1e-6
