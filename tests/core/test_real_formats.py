"""Files shaped like what real tools write (tests/data/ground_truth, tests/data/coco), with
the figures worked out by hand below each heading.

Ground Truth lines follow "Output data" in the SageMaker Developer Guide (bounding box,
adjustment and verification jobs), bucket name included: AWSDOC-EXAMPLE-BUCKET is a
legacy US East (N. Virginia) name with upper-case letters.
https://docs.aws.amazon.com/sagemaker/latest/dg/sms-data-output.html
COCO files follow each tool's export: Datumaro (CVAT's "COCO 1.0"), Roboflow ("COCO",
with its placeholder category 0), Label Studio ("COCO", on Windows and with upload
paths), a segmentation-only file and COCO 2017's person keypoints.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest

from counting_core import json_input
from counting_core.counts import predictions
from counting_core.counts.responses import RESPONSE_SUFFIXES
from counting_core.datasets import manifest
from counting_core.datasets.coco import coco_to_manifest
from counting_core.errors import InputError

DATA = Path(__file__).resolve().parent.parent / "data"
GROUND_TRUTH = DATA / "ground_truth"
COCO = DATA / "coco"
PREFIX = "s3://counting-data/labeling/images/imported/"


def stats(name: str, label_attribute: str | None = None) -> dict[str, Any]:
    with (GROUND_TRUTH / name).open("rb") as file:
        return manifest.stats(file, label_attribute)


def split_names(name: str, **options: Any) -> tuple[list[str], list[str]]:
    with (GROUND_TRUTH / name).open("rb") as file:
        split = manifest.split(file, **options)
        train, validation = io.BytesIO(), io.BytesIO()
        split.write(train, validation)
    return [
        [json.loads(line)["source-ref"].rsplit("/", 1)[1] for line in out.getvalue().splitlines()]
        for out in (train, validation)
    ]


def convert(name: str, **options: Any):
    coco = json_input.loads((COCO / name).read_bytes())
    return coco_to_manifest(
        coco,
        image_prefix=PREFIX,
        label_attribute="boxes",
        creation_date="2026-11-29T10:00:00.000000",
        **options,
    )


def boxes_of(line: str) -> list[tuple]:
    data = json.loads(line)
    return [
        (box["class_id"], box["left"], box["top"], box["width"], box["height"])
        for box in data["boxes"]["annotations"]
    ]


# --- Ground Truth bounding-box job: bounding_box.manifest ----------------------------------
# labels dog (0), cat (1), ..., bone (5); each class-map names only the labels drawn
#   line 1 example_image.png 500 x 400: dog, bone, bone    (the guide's example line)
#   line 2 dog_2.jpg: cat
#   line 3 dog_3.jpg: failed (failure-reason, no boxes key)
#   line 4 dog_4.jpg: no boxes, class-map {}
#   line 5 toys.jpg 500 x 400: bone at (0, 0), bone touching the right and bottom edges
#          (450 + 50 = 500, 360 + 40 = 400), dog
# images 5 = labeled 3 + failed 1 + empty 1; objects 7: dog 2, cat 1, bone 4
# num_classes 6 (ids 0..5; 2, 3, 4 unnamed); most boxes 3 -> label_width 350
# split at 0.2: round(3 * 0.2) = 1 validation, 2 train


def test_a_bounding_box_jobs_output():
    assert stats("bounding_box.manifest") == {
        "label_attribute": "bounding-box",
        "lines": 5,
        "images": 5,
        "labeled": 3,
        "failed": 1,
        "empty": 1,
        "duplicates": 0,
        "objects": 7,
        "by_class": {"dog": 2, "cat": 1, "bone": 4},
    }


def test_a_bounding_box_jobs_output_splits_with_gaps_in_its_class_ids():
    with (GROUND_TRUTH / "bounding_box.manifest").open("rb") as file:
        result = manifest.split(file, validation_fraction=0.2, seed=7).result

    assert (result.num_classes, result.unnamed_class_ids) == (6, [2, 3, 4])
    assert (result.num_training_samples, result.num_validation_samples) == (2, 1)
    assert result.label_width == 350


# --- adjustment job: adjustment.manifest ------------------------------------------------
# Both lines keep "bounding-box" and add "adjusted-bounding-box" (type object-detection,
# adjustment-status adjusted / unadjusted): two candidates, so the attribute must be named.
#   adjusted line 1: dog, bone, bone; line 2: cat -> objects 4: dog 1, cat 1, bone 2


def test_an_adjustment_jobs_output_needs_the_attribute_named():
    with pytest.raises(InputError) as caught:
        stats("adjustment.manifest")

    assert str(caught.value) == (
        "several object-detection label attributes: 'adjusted-bounding-box', "
        "'bounding-box'; name the one to use"
    )


def test_an_adjustment_jobs_output_counts_the_adjusted_boxes():
    figures = stats("adjustment.manifest", "adjusted-bounding-box")

    assert (figures["images"], figures["labeled"], figures["objects"]) == (2, 2, 4)
    assert figures["by_class"] == {"dog": 1, "cat": 1, "bone": 2}


# --- verification job: verification.manifest -------------------------------------------
# "verify-bounding-box" ("1" bad / "0" good, type groundtruth/label-verification) sits
# beside the boxes and is not a box attribute: "bounding-box" is found alone.
#   line 1: dog, bone, bone; line 2: dog -> objects 4: dog 2, bone 2


def test_a_verification_jobs_output_keeps_its_boxes():
    figures = stats("verification.manifest")

    assert figures["label_attribute"] == "bounding-box"
    assert (figures["images"], figures["labeled"], figures["objects"]) == (2, 2, 4)
    assert figures["by_class"] == {"dog": 2, "bone": 2}


# --- two labeling batches concatenated: merged_batches.manifest -------------------------
#   line 1 a.jpg car, truck (batch 1)       line 4 a.jpg truck, car (batch 2: same boxes)
#   line 2 b.jpg failed (batch 1)           line 5 b.jpg car (batch 2 labeled it)
#   line 3 c.jpg no boxes                   line 6 d.jpg truck
# images 4 (a, b, c, d) = labeled 3 (a at line 1, b at line 5, d) + empty 1 (c);
# duplicates 2 (line 4, line 2); objects 4: car 2 (a, b), truck 2 (a, d)
# split at 0.34: round(3 * 0.34) = 1 validation, 2 train; each image once


def test_merged_batches_count_each_image_once():
    assert stats("merged_batches.manifest") == {
        "label_attribute": "vehicles",
        "lines": 6,
        "images": 4,
        "labeled": 3,
        "failed": 0,
        "empty": 1,
        "duplicates": 2,
        "objects": 4,
        "by_class": {"car": 2, "truck": 2},
    }


@pytest.mark.parametrize("seed", range(20))
def test_merged_batches_never_put_an_image_in_both_channels(seed):
    train, validation = split_names("merged_batches.manifest", validation_fraction=0.34, seed=seed)

    assert (len(train), len(validation)) == (2, 1)
    assert sorted(train + validation) == ["a.jpg", "b.jpg", "d.jpg"]


# --- conflicting_batches.manifest: line 3 moves a.jpg's car from left 10 to 12 ----------


def test_conflicting_batches_are_refused_with_both_lines():
    with pytest.raises(InputError) as caught:
        split_names("conflicting_batches.manifest", validation_fraction=0.5, seed=1)

    assert str(caught.value) == (
        "lines 1 and 3 label the same image s3://counting-data/labeling/images/street/a.jpg "
        "differently (different boxes): an image can have one label only; remove or correct "
        "one of the lines"
    )


# --- CVAT (Datumaro "COCO 1.0"): cvat_datumaro.json ---------------------------------------
# categories car 1, person 2, bicycle 3 (no annotation) -> car 0, person 1; bicycle unused
#   frame_000000.jpg 1280 x 720
#     car    [100, 200, 300, 150]             -> (0, 100, 200, 300, 150)
#     person [640.5, 100.25, 80, 200]         -> x 640.5 -> 640 (ties to even), 720.5 -> 720;
#                                                y 100.25 -> 100, 300.25 -> 300:
#                                                (1, 640, 100, 80, 200)
#     person iscrowd 1 (RLE)                  -> skipped
#   frame_000001.jpg: car [1200, 600, 100, 150] -> clamped to 1280 x 720: (0, 1200, 600, 80, 120)
#   subset/frame_000002.png: no annotations -> empty
# objects 3 (car 2, person 1), crowd 1, dropped 0


def test_a_cvat_export_skips_crowds_and_unused_categories():
    conversion = convert("cvat_datumaro.json")

    assert conversion.class_map == {"0": "car", "1": "person"}
    assert [boxes_of(line) for line in conversion.lines] == [
        [(0, 100, 200, 300, 150), (1, 640, 100, 80, 200)],
        [(0, 1200, 600, 80, 120)],
        [],
    ]
    assert json.loads(conversion.lines[2])["source-ref"] == f"{PREFIX}subset/frame_000002.png"
    assert conversion.summary_line() == (
        "imported 3 images with 3 boxes in 2 classes; skipped 1 crowd region (iscrowd: 1), "
        "1 category without boxes ('bicycle')"
    )


def test_empty_categories_keep_a_class_id_when_asked():
    conversion = convert("cvat_datumaro.json", keep_empty_categories=True)

    assert conversion.class_map == {"0": "car", "1": "person", "2": "bicycle"}
    # bicycle has class id 2 now: it is a class without boxes, not a skipped category.
    assert (conversion.unused_categories, conversion.empty_classes) == ((), ("bicycle",))
    assert conversion.summary_line() == (
        "imported 3 images with 3 boxes in 3 classes (1 without boxes: 'bicycle'); "
        "skipped 1 crowd region (iscrowd: 1)"
    )


# --- Roboflow: roboflow.json --------------------------------------------------------------
# categories 0 "vehicles-8xjm" (Roboflow's placeholder, no box), 1 car, 2 truck -> car 0, truck 1
#   IMG_0412: car [12, 40, 120.5, 80] -> x 12..132.5 -> 132 (ties to even): (0, 12, 40, 120, 80)
#             truck [300, 310, 200, 150] -> (1, 300, 310, 200, 150)
#   IMG_0413: car [0, 0, 64, 48] -> (0, 0, 0, 64, 48)


def test_a_roboflow_export_leaves_out_its_placeholder_category():
    conversion = convert("roboflow.json")

    assert conversion.class_map == {"0": "car", "1": "truck"}
    assert conversion.unused_categories == ("vehicles-8xjm",)
    assert [boxes_of(line) for line in conversion.lines] == [
        [(0, 12, 40, 120, 80), (1, 300, 310, 200, 150)],
        [(0, 0, 0, 64, 48)],
    ]


# --- Label Studio on Windows: label_studio_windows.json ---------------------------------
#   images\cb06a1f2-IMG_2301.png -> <prefix>images/cb06a1f2-IMG_2301.png
#     Car [80, 120, 160.00000000000003, 90] -> x 80..240.00000000000003 -> 240:
#                                              (0, 80, 120, 160, 90)
#   images\5e77d0b4-IMG_2302.png: Truck [400, 300, 240, 180] -> (1, 400, 300, 240, 180)


def test_a_label_studio_export_from_windows_gets_s3_keys():
    conversion = convert("label_studio_windows.json")

    assert [json.loads(line)["source-ref"] for line in conversion.lines] == [
        f"{PREFIX}images/cb06a1f2-IMG_2301.png",
        f"{PREFIX}images/5e77d0b4-IMG_2302.png",
    ]
    assert [boxes_of(line) for line in conversion.lines] == [
        [(0, 80, 120, 160, 90)],
        [(1, 400, 300, 240, 180)],
    ]


def test_label_studio_upload_paths_are_refused_naming_the_image():
    with pytest.raises(InputError) as caught:
        convert("label_studio_upload_paths.json")

    assert str(caught.value) == (
        "images[0]: file_name '..\\\\..\\\\label-studio\\\\media\\\\upload\\\\4\\\\"
        "cb06a1f2-IMG_2301.png' climbs out of the image folder ('..'); give it relative "
        "to that folder"
    )


@pytest.mark.parametrize(
    ("file_name", "problem"),
    [
        ("C:\\Users\\me\\images\\a.png", "is an absolute path"),
        ("c:/images/a.png", "is an absolute path"),
        ("/data/upload/4/a.png", "is an absolute path"),
        ("\\\\server\\share\\a.png", "is an absolute path"),
        (".\\/data/a.png", "is an absolute path"),  # found by a property test
        ("images/../../a.png", "climbs out of the image folder"),
        ("http://localhost:8080/data/upload/4/a.png", "is a URL"),
    ],
)
def test_paths_outside_the_prefix_are_refused(file_name, problem):
    coco = json_input.loads((COCO / "label_studio_windows.json").read_bytes())
    coco["images"][1]["file_name"] = file_name

    with pytest.raises(InputError, match=rf"^images\[1\]: file_name .* {problem}"):
        coco_to_manifest(
            coco, image_prefix=PREFIX, label_attribute="boxes", creation_date="2026-11-29"
        )


# --- segmentation_only.json: no bbox keys, polygons only ---------------------------------
#   bottle [[10,20, 110,20, 110,70, 10,70]] -> x 10..110, y 20..70: (0, 10, 20, 100, 50)
#   can [[200,200, 220,200, 210,230], [230,210, 250,215, 240,240]]
#                                           -> x 200..250, y 200..240: (1, 200, 200, 50, 40)


def test_a_segmentation_only_export_gets_the_boxes_around_its_polygons():
    conversion = convert("segmentation_only.json")

    assert [boxes_of(line) for line in conversion.lines] == [
        [(0, 10, 20, 100, 50), (1, 200, 200, 50, 40)]
    ]


# --- person_keypoints.json (COCO 2017 val, image 785) ------------------------------------
#   person bbox [280.79, 44.73, 218.7, 346.68] -> x 280.79 -> 281, 499.49 -> 499;
#                                                 y 44.73 -> 45, 391.41 -> 391:
#                                                 (0, 281, 45, 218, 346)
#   crowd of people (iscrowd 1, RLE) -> skipped; keypoints and skeleton ignored


def test_a_keypoint_file_imports_its_person_boxes():
    conversion = convert("person_keypoints.json")

    assert [boxes_of(line) for line in conversion.lines] == [[(0, 281, 45, 218, 346)]]
    assert (conversion.crowd_skipped, conversion.class_map) == (1, {"0": "person"})


@pytest.mark.parametrize(
    "name",
    [
        "cvat_datumaro.json",
        "roboflow.json",
        "label_studio_windows.json",
        "segmentation_only.json",
        "person_keypoints.json",
    ],
)
def test_every_import_passes_the_manifest_checks(name):
    conversion = convert(name)
    text = manifest.manifest_text(conversion.lines).encode()

    figures = manifest.stats(io.BytesIO(text))

    assert figures["objects"] == conversion.objects
    assert figures["images"] == len(conversion.lines)


# Real endpoint answers from ../shared/real-world/ (beside the checkout, as CI has it; never
# copied in): the built-in algorithm's, which never say their cap. Boxes counted by hand in
# each file.
REAL_WORLD = Path(__file__).resolve().parents[3] / "shared" / "real-world"
real_world = pytest.mark.skipif(
    not REAL_WORLD.is_dir(), reason=f"{REAL_WORLD} is not beside this checkout (CI has it)"
)


@real_world
@pytest.mark.parametrize(
    ("case", "boxes"),
    [
        ("2026-11-29/r01_docs_response/response.json", 5),
        ("2026-11-29/r04_clarify_cli_response/invoke-endpoint.out", 5),
        ("2026-11-29/r06_batch_transform_out/terrain2.png.out", 5),
        ("2026-11-29/r07_empty_prediction/response.json", 0),
        ("2026-12-04/rs01_anpr_real_response/response.json", 1),
        ("2026-12-04/rs04_class_id_not_in_class_map/response.json", 2),
        ("2026-12-04/rs06_bee_image_response_with_pixels/response.json", 4),
        ("2026-12-04/rs07_gt_metadata_unsorted_classmap/response.json", 6),
    ],
)
def test_real_responses_parse_with_their_cap_unknown(case: str, boxes: int):
    response = predictions.parse_response((REAL_WORLD / case).read_bytes())

    assert len(response.detections) == boxes
    assert (response.max_detections, response.capped) == (None, False)


@real_world
def test_every_real_evaluation_response_parses_and_none_is_capped():
    paths = sorted(
        path
        for path in REAL_WORLD.glob("*/ev*/responses/**/*")
        if path.suffix in RESPONSE_SUFFIXES  # not the notes beside them
    )

    assert len(paths) >= 148  # as of 2026-12-04; the corpus only grows
    for path in paths:
        response = predictions.parse_response(path.read_bytes())
        assert (response.max_detections, response.capped) == (None, False), path
