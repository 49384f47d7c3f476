"""Ground Truth manifest parsing, checks, stats and the train/validation split."""

from __future__ import annotations

import contextlib
import io
import json
import re
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from counting_core.datasets import manifest
from counting_core.errors import InputError
from tests.core.hand_checked_manifest import (
    HAND_CHECKED,
    HAND_CHECKED_SPLIT_AT_0_2,
    HAND_CHECKED_STATS,
    HAND_CHECKED_USABLE,
)
from tests.core.manifest_fixtures import damages, json_values

ATTRIBUTE = "vehicles"
CLASS_MAP = {"0": "car", "1": "truck"}


def hand_checked() -> io.BytesIO:
    return io.BytesIO(HAND_CHECKED.read_bytes())


def as_file(*lines: dict[str, Any] | str) -> io.BytesIO:
    """A manifest file of ``lines`` (objects as JSON, text as it is)."""
    text = "".join(f"{line if isinstance(line, str) else json.dumps(line)}\n" for line in lines)
    return io.BytesIO(text.encode("utf-8"))


def split_lines(file: io.BytesIO, **options: Any) -> tuple[manifest.SplitResult, list, list]:
    """Split ``file`` and return the result with the train and validation lines written."""
    split = manifest.split(file, **options)
    train, validation = io.BytesIO(), io.BytesIO()
    split.write(train, validation)
    return (
        split.result,
        train.getvalue().decode().splitlines(),
        validation.getvalue().decode().splitlines(),
    )


def box(class_id: Any = 0, left: Any = 1, top: Any = 2, width: Any = 3, height: Any = 4) -> dict:
    return {"class_id": class_id, "left": left, "top": top, "width": width, "height": height}


def labeled(
    name: str = "a.jpg",
    boxes: list | None = None,
    *,
    size: tuple[int, int] = (640, 480),
    class_map: dict | None = None,
) -> dict[str, Any]:
    """A Ground Truth line for ``name`` with ``boxes`` (default: one car)."""
    boxes = [box()] if boxes is None else boxes
    return {
        "source-ref": f"s3://counting-data/images/{name}",
        ATTRIBUTE: {
            "image_size": [{"width": size[0], "height": size[1], "depth": 3}],
            "annotations": boxes,
        },
        f"{ATTRIBUTE}-metadata": {
            "objects": [{"confidence": 0.9} for _ in boxes],
            "class-map": dict(CLASS_MAP if class_map is None else class_map),
            "type": "groundtruth/object-detection",
            "human-annotated": "yes",
            "creation-date": "2026-11-26T10:00:00.000000",
            "job-name": f"labeling-job/{ATTRIBUTE}",
        },
    }


def failed(name: str = "f.jpg") -> dict[str, Any]:
    return {
        "source-ref": f"s3://counting-data/images/{name}",
        f"{ATTRIBUTE}-metadata": {"failure-reason": "ClientError: timed out"},
    }


def records(*lines: dict[str, Any]) -> list[manifest.Record]:
    return manifest.parse_manifest(json.dumps(line) for line in lines)


def names(lines: list[str]) -> list[str]:
    return [json.loads(line)["source-ref"].rsplit("/", 1)[1] for line in lines]


# --- the hand-checked manifest ---------------------------------------------------------


def test_hand_checked_stats():
    assert manifest.stats(hand_checked()) == HAND_CHECKED_STATS


def test_hand_checked_split_figures():
    result, train, validation = split_lines(hand_checked(), validation_fraction=0.2, seed=7)

    assert result.figures() == HAND_CHECKED_SPLIT_AT_0_2
    assert result.label_attribute == "vehicles"
    assert result.class_map == CLASS_MAP
    assert sorted(names(train + validation)) == HAND_CHECKED_USABLE
    assert (len(train), len(validation)) == (4, 1)


def test_images_without_boxes_are_kept_as_negatives_when_asked():
    # The hand-checked manifest's 5 labeled images and d.jpg, labeled without boxes: 6 usable,
    # round(6 * 0.2) = 1 validation, 5 train; only the 2 failed items dropped.
    result, train, validation = split_lines(
        hand_checked(), validation_fraction=0.2, seed=7, keep_empty=True
    )

    assert result.figures() == {
        **HAND_CHECKED_SPLIT_AT_0_2,
        "num_training_samples": 5,
        "dropped_empty": 0,
        "kept_empty": 1,
    }
    assert sorted(names(train + validation)) == sorted([*HAND_CHECKED_USABLE, "d.jpg"])


def test_keeping_images_without_boxes_still_needs_one_box_to_learn_from():
    no_boxes = "\n".join(
        json.dumps({"source-ref": f"s3://data/{name}.jpg", "vehicles": {
            "image_size": [{"width": 10, "height": 10, "depth": 3}], "annotations": []},
            "vehicles-metadata": {"class-map": {}}})
        for name in ("a", "b", "c")
    ).encode()  # fmt: skip

    with pytest.raises(InputError) as refused:
        manifest.split(io.BytesIO(no_boxes), validation_fraction=0.2, seed=7, keep_empty=True)

    assert str(refused.value) == (
        "no image has a box (0 failed, 3 without boxes): nothing to train on"
    )


def test_half_is_rounded_to_even():
    result, _, _ = split_lines(hand_checked(), validation_fraction=0.5, seed=7)

    assert (result.num_training_samples, result.num_validation_samples) == (3, 2)


def test_split_lines_are_the_manifest_lines_byte_for_byte():
    originals = {names([line])[0]: line for line in HAND_CHECKED.read_text().splitlines()}

    _, train, validation = split_lines(hand_checked(), validation_fraction=0.2, seed=7)

    for line in train + validation:
        assert line == originals[names([line])[0]]


def test_windows_line_endings_and_a_byte_order_mark_stay_out_of_the_channels():
    text = "\ufeff" + HAND_CHECKED.read_text().replace("\n", "\r\n")

    _, train, validation = split_lines(io.BytesIO(text.encode()), validation_fraction=0.2, seed=7)

    assert all(json.loads(line) for line in train + validation)
    assert not any(line.endswith("\r") or line.startswith("\ufeff") for line in train + validation)


def test_the_report_holds_stats_figures_and_inputs():
    split = manifest.split(hand_checked(), validation_fraction=0.2, seed=7)

    assert split.report() == {
        **HAND_CHECKED_STATS,
        **HAND_CHECKED_SPLIT_AT_0_2,
        "class_map": CLASS_MAP,
        "unnamed_class_ids": [],
        "validation_fraction": 0.2,
        "seed": 7,
    }


def test_images_outside_the_image_source_are_refused_with_their_line():
    with pytest.raises(InputError) as caught:
        manifest.split(
            hand_checked(),
            validation_fraction=0.2,
            seed=7,
            image_source="s3://counting-data/labeling/images/",
        )

    assert str(caught.value).startswith(
        "line 1: image s3://counting-data/images/a.jpg is outside "
        "s3://counting-data/labeling/images/: training reads images only there"
    )


# --- parsing -------------------------------------------------------------------------


def test_a_line_ending_does_not_move_the_error_column():
    with pytest.raises(
        InputError, match=r"^line 1: the line ends at column 5 before its JSON is comp"
    ):
        manifest.parse_manifest(['{"a":\r\n'])


def test_blank_lines_are_skipped_and_lines_keep_their_numbers():
    parsed = manifest.parse_manifest(["", json.dumps(labeled()), "  \t\r\n", "{}\n"])

    assert [record.line_number for record in parsed] == [2, 4]
    assert parsed[1].data == {}


CUT_OFF = "before its JSON is complete: it looks cut off (an interrupted download or copy?)"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"source-ref": ', f"line 3: the line ends at column 15 {CUT_OFF}"),
        ('{"source-ref": "s3://b/a.jpg", "vehi', f"line 3: the line ends at column 36 {CUT_OFF}"),
        ("[1, 2]", "line 3: expected a JSON object, got an array: a manifest has one image's"),
        # A JSON array of image objects, one per line (json.dump with indent=0, say).
        (
            '[{"source-ref": "s3://b/a.jpg"},',
            "line 3 starts a JSON array that goes on over several lines: a manifest is JSON "
            "Lines (one image's JSON object per line), not a JSON array of them",
        ),
        ('"text"', "line 3: expected a JSON object, got a string"),
        ("null", "line 3: expected a JSON object, got null"),
        ('{"a": NaN}', "line 3: not valid JSON: expected value at column 7"),
        ('{"a": 1}{"b": 2}', "line 3: two JSON values on one line: the second starts at column 9"),
        ("{", "line 3 holds only '{': this is one JSON document written over several lines"),
        ('{"a": "\\ud800"}', "line 3: not valid JSON: a \\u escape that is half of a character"),
        ('{"a": ' + "1" * 5000 + "}", "line 3: a number of 5,000 characters (111111111111...)"),
        ("[" * 5000, "line 3: JSON nested more than 32 levels deep (at byte 33)"),
    ],
)
def test_unusable_lines_name_their_line_number(line, message):
    with pytest.raises(InputError) as caught:
        manifest.parse_manifest(["{}", "", line])
    with pytest.raises(InputError) as streamed:
        manifest.stats(as_file("{}", "", line))

    assert str(caught.value).startswith(message)
    assert str(streamed.value).startswith(message)


def test_a_line_that_is_not_utf_8_is_named():
    file = io.BytesIO(b'{"source-ref": "s3://b/caf\xe9.jpg"}\n')

    with pytest.raises(InputError, match=r"^line 1: not UTF-8 text \(byte 27\)$"):
        manifest.stats(file)


def test_an_overlong_line_is_refused_before_it_is_read_whole():
    file = io.BytesIO(b'{"a": "' + b"x" * manifest.MAX_LINE_BYTES + b'"}\n')

    with pytest.raises(InputError, match=r"^line 1 is longer than 1,048,576 bytes"):
        manifest.stats(file)


# --- the label attribute -------------------------------------------------------------


def test_label_attribute_is_found_from_failed_lines_alone():
    assert manifest.detect_label_attribute(records(failed(), failed("g.jpg"))) == ATTRIBUTE


def test_label_attribute_falls_back_to_annotations_when_no_type():
    line = labeled()
    del line[f"{ATTRIBUTE}-metadata"]["type"]

    assert manifest.detect_label_attribute(records(line)) == ATTRIBUTE


def test_two_label_attributes_are_ambiguous():
    line = labeled()
    line["people"] = line[ATTRIBUTE]
    line["people-metadata"] = line[f"{ATTRIBUTE}-metadata"]

    with pytest.raises(InputError, match="several object-detection label attributes: 'people', "):
        manifest.detect_label_attribute(records(line))
    assert manifest.detect_label_attribute(records(line), "people") == "people"


def test_no_label_attribute_lists_the_keys_found():
    with pytest.raises(InputError, match=r"no object-detection label attribute.*'source-ref'"):
        manifest.detect_label_attribute(records({"source-ref": "s3://b/k.jpg", "x": 1}))


def test_an_empty_manifest_has_no_label_attribute():
    with pytest.raises(InputError, match="the manifest has no lines"):
        manifest.detect_label_attribute([])


def test_a_given_label_attribute_must_be_in_the_manifest():
    with pytest.raises(InputError, match="label attribute 'people' is not in the manifest"):
        manifest.stats(as_file(labeled()), "people")


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("boxes-ref", "must not end in '-ref'"),
        ("source-ref", "must not end in '-ref'"),
        ("boxes-metadata-x", "must not contain '-metadata'"),
        (" ", "the label attribute name is empty"),
    ],
)
def test_label_attribute_names_follow_ground_truth_rules(name, message):
    with pytest.raises(InputError, match=message):
        manifest.check_label_attribute_name(name)


# --- line checks ---------------------------------------------------------------------


def _set(path: str, value: Any):
    """Replace the value at a /-separated path of a labeled line; None deletes it."""

    def change(line: dict) -> None:
        *parents, last = path.split("/")
        target: Any = line
        for part in parents:
            target = target[int(part)] if isinstance(target, list) else target[part]
        if value is None:
            del target[last]
        else:
            target[int(last) if isinstance(target, list) else last] = value

    return change


BOXES = f"{ATTRIBUTE}/annotations"
SIZE = f"{ATTRIBUTE}/image_size/0"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (_set("source-ref", None), "line 2: source-ref None is not an s3://bucket/key URI"),
        (_set("source-ref", "https://x/a.jpg"), "source-ref 'https://x/a.jpg' is not an s3"),
        (_set("source-ref", "s3://counting-data/"), "is not an s3://bucket/key URI"),
        (_set("source-ref", "s3://counting-data/dir/"), "is not an s3://bucket/key URI"),
        (_set("source-ref", "s3://my bucket/a.jpg"), "is not an s3://bucket/key URI"),
        (_set("source-ref", "s3://ab/a.jpg"), "is not an s3://bucket/key URI"),
        (_set(ATTRIBUTE, []), "line 2: 'vehicles' is an array, not an object"),
        (_set(f"{ATTRIBUTE}-metadata", "x"), "line 2: 'vehicles-metadata' is a string, not an"),
        (_set(f"{ATTRIBUTE}-metadata/type", "groundtruth/image-classification"), "has type"),
        (_set(f"{ATTRIBUTE}/image_size", []), "line 2: image_size must be an array holding one"),
        (_set(f"{SIZE}/width", 0), "width and height must be positive integers, got 0 x 480"),
        (_set(f"{SIZE}/height", 2.5), "width and height must be positive integers, got 640 x 2.5"),
        (_set(BOXES, None), "line 2: 'vehicles' has no 'annotations' array"),
        (_set(f"{BOXES}/1", "box"), "line 2: annotations[1]: expected an object, got a string"),
        (_set(f"{BOXES}/1/class_id", 2), "annotations[1]: class_id 2 is not in the class-map"),
        (_set(f"{BOXES}/1/class_id", -1), "annotations[1]: class_id -1 is not in the class-map"),
        (_set(f"{BOXES}/1/class_id", 0.5), "annotations[1]: class_id 0.5 is not in the class-map"),
        (_set(f"{BOXES}/1/class_id", True), "annotations[1]: class_id True is not in the class"),
        (_set(f"{BOXES}/1/class_id", None), "annotations[1]: class_id None is not in the class"),
        (_set(f"{BOXES}/1/left", "1"), "annotations[1]: left must be a number, got '1'"),
        (_set(f"{BOXES}/1/top", -1), "annotations[1]: left and top must be >= 0, got 10 and -1"),
        (_set(f"{BOXES}/1/width", 0), "annotations[1]: width and height must be > 0, got 0 and"),
        (_set(f"{BOXES}/1/width", 631), "annotations[1]: the box reaches (641, 30), outside the"),
        (_set(f"{BOXES}/1/height", 461), "reaches (40, 481), outside the 640 x 480 image"),
        (_set(f"{ATTRIBUTE}-metadata/class-map", None), "line 2: the metadata needs a class-map"),
        (_set(f"{ATTRIBUTE}-metadata/class-map/01", "bus"), "class-map key '01' is not a class"),
        (_set(f"{ATTRIBUTE}-metadata/class-map/1", ""), "class-map gives id 1 the name ''"),
    ],
)
def test_a_bad_line_is_named_with_the_box(change, message):
    line = labeled("b.jpg", [box(), box(1, 10, 20, 30, 10)])
    change(line)

    with pytest.raises(InputError) as caught:
        manifest.validate_manifest(records(labeled(), line))

    assert message in str(caught.value)
    assert str(caught.value).startswith("line 2: ")


@pytest.mark.parametrize(
    "bucket",
    # Legacy US East (N. Virginia) names, as in AWS's own documentation examples.
    ["AWSDOC-EXAMPLE-BUCKET", "Legacy_Bucket.2017", "b" * 255, "abc"],
)
def test_every_bucket_name_s3_has_allowed_is_an_image_location(bucket):
    line = labeled()
    line["source-ref"] = f"s3://{bucket}/images/a.jpg"

    assert manifest.stats(as_file(line))["labeled"] == 1


def test_boxes_may_touch_the_image_edges_and_use_whole_floats():
    line = labeled(boxes=[box(1.0, 0, 0, 640, 480), box(0, 0.5, 0.5, 10.25, 3)])

    assert manifest.stats(as_file(line))["by_class"] == {"car": 1, "truck": 1}


def test_a_line_without_label_or_failure_reason_is_refused():
    line = failed()
    del line[f"{ATTRIBUTE}-metadata"]["failure-reason"]

    with pytest.raises(InputError, match="line 2: no 'vehicles' and no failure-reason"):
        manifest.validate_manifest(records(labeled(), line))


def test_an_empty_line_needs_no_class_map():
    line = labeled("e.jpg", boxes=[])
    del line[f"{ATTRIBUTE}-metadata"]["class-map"]

    assert manifest.stats(as_file(labeled(), line))["empty"] == 1


# --- class maps ----------------------------------------------------------------------


def test_class_maps_merge_across_lines():
    lines = records(
        labeled(class_map={"0": "car"}), labeled("b.jpg", boxes=[box(1)], class_map=CLASS_MAP)
    )

    assert manifest.validate_manifest(lines).class_map == {0: "car", 1: "truck"}


@pytest.mark.parametrize(
    ("second_map", "message"),
    [
        ({"0": "bus"}, "line 2: class-map names id 0 'bus', an earlier line named it 'car'"),
        ({"0": "car", "2": "truck"}, "line 2: class-map gives 'truck' id 2, but id 1 has"),
        ({"0": "car", "2": "car"}, "line 2: class-map gives 'car' id 2, but id 0 has that name"),
    ],
)
def test_class_maps_must_agree(second_map, message):
    with pytest.raises(InputError, match=message):
        manifest.validate_manifest(records(labeled(), labeled(class_map=second_map)))


@pytest.mark.parametrize(
    "second_map", [{"0": "bus"}, {"0": "car", "2": "truck"}], ids=["id renamed", "name moved"]
)
def test_class_maps_that_disagree_point_to_keep_empty_categories(second_map):
    # Two COCO exports of one project converted apart number their classes apart when one
    # of them has no box of a category (2026-12-04/cc04: bishop 0 in train, unused in valid).
    with pytest.raises(InputError) as refused:
        manifest.validate_manifest(records(labeled(), labeled(class_map=second_map)))

    assert str(refused.value).endswith(
        "; exports of one project converted apart by `counting manifest from-coco` number "
        "their classes alike when each keeps every category (--keep-empty-categories)"
    )


def test_an_image_on_several_lines_is_one_item_if_they_agree_and_refused_if_not():
    # Lines 1 and 3 repeat a.jpg alike (one car): one item, the first line. Line 4 gives
    # b.jpg a truck where line 2 gave it a car.
    agreeing = records(labeled("a.jpg"), labeled("b.jpg"), labeled("a.jpg"))
    conflicting = records(labeled("a.jpg"), labeled("b.jpg"), labeled("b.jpg", [box(1)]))

    items = manifest.validate_manifest(agreeing).items

    assert [item.record.line_number for item in items] == [1, 2]
    with pytest.raises(InputError) as refused:
        manifest.validate_manifest(conflicting)
    assert str(refused.value).startswith(
        "lines 2 and 3 label the same image s3://counting-data/images/b.jpg differently"
    )


def test_one_class_map_must_not_name_two_ids_alike():
    line = labeled(class_map={"0": "car", "1": "car"})

    with pytest.raises(InputError, match="line 1: class-map gives 'car' id 1, but id 0 has"):
        manifest.validate_manifest(records(line))


def test_labels_no_one_drew_leave_gaps_that_still_train():
    # Ground Truth's class-map names only the labels drawn in each image, by their index
    # in the job's label list: with "car", "van", "bus" and no van drawn, ids are 0 and 2.
    lines = [
        labeled("a.jpg", [box(0)], class_map={"0": "car"}),
        labeled("b.jpg", [box(2)], class_map={"2": "bus"}),
        labeled("c.jpg", [box(0), box(2)], class_map={"0": "car", "2": "bus"}),
    ]

    result = manifest.split(as_file(*lines), validation_fraction=0.34, seed=1).result

    assert result.class_map == {"0": "car", "2": "bus"}
    assert result.num_classes == 3
    assert result.unnamed_class_ids == [1]


# --- split ---------------------------------------------------------------------------


def test_label_width_grows_with_the_busiest_image():
    def width_for(most_boxes: int) -> int:
        busy = labeled("busy.jpg", [box() for _ in range(most_boxes)])
        split = manifest.split(as_file(busy, labeled("b.jpg")), validation_fraction=0.5, seed=1)
        return split.result.label_width

    assert width_for(69) == 350  # 5 * 69 + 2 = 347 fits the default
    assert width_for(70) == 352


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, float("nan"), True, "0.2"])
def test_validation_fraction_must_be_between_0_and_1(fraction):
    with pytest.raises(InputError, match="validation fraction must be between 0 and 1"):
        manifest.split(hand_checked(), validation_fraction=fraction, seed=1)


def test_too_few_usable_images_are_explained():
    lines = as_file(labeled(), failed(), labeled("c.jpg", boxes=[]))

    with pytest.raises(InputError) as caught:
        manifest.split(lines, validation_fraction=0.2, seed=1)

    assert str(caught.value) == (
        "1 usable image(s) with boxes (1 failed, 1 without boxes dropped) cannot fill both a "
        "training and a validation channel with validation fraction 0.2"
    )


def test_a_fraction_leaving_no_training_image_is_refused():
    lines = as_file(labeled("a.jpg"), labeled("b.jpg"))

    with pytest.raises(InputError, match="2 usable image"):
        manifest.split(lines, validation_fraction=0.8, seed=1)


# --- one image, one label ----------------------------------------------------------------


def test_an_image_listed_twice_alike_counts_once():
    twice = labeled("a.jpg", [box(0), box(1, 10, 20, 30, 10)])
    again = labeled("a.jpg", [box(1, 10, 20, 30, 10), box(0)])  # boxes in another order
    again[f"{ATTRIBUTE}-metadata"]["job-name"] = "labeling-job/second-batch"

    figures = manifest.stats(as_file(twice, labeled("b.jpg"), again))

    assert (figures["lines"], figures["images"], figures["duplicates"]) == (3, 2, 1)
    assert figures["by_class"] == {"car": 2, "truck": 1}


def test_a_failed_line_gives_way_to_a_label_of_the_same_image():
    figures = manifest.stats(as_file(failed("a.jpg"), labeled("b.jpg"), labeled("a.jpg")))

    assert (figures["labeled"], figures["failed"], figures["duplicates"]) == (2, 0, 1)


def test_an_image_labeled_two_ways_is_refused_with_both_lines():
    moved = labeled("a.jpg", [box(0, left=2)])

    with pytest.raises(InputError) as caught:
        manifest.stats(as_file(labeled("a.jpg"), labeled("b.jpg"), moved))

    assert str(caught.value) == (
        "lines 1 and 3 label the same image s3://counting-data/images/a.jpg differently "
        "(different boxes): an image can have one label only; remove or correct one of "
        "the lines"
    )


def test_boxes_against_no_boxes_is_a_conflict_too():
    with pytest.raises(InputError, match=r"lines 1 and 2 .* differently \(1 box / no boxes\)"):
        manifest.split(
            as_file(labeled("a.jpg"), labeled("a.jpg", boxes=[])), validation_fraction=0.5, seed=1
        )


# --- bounds ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("1000", "class-map key '1000' is outside the class ids 0..999 a model here trains"),
        ("10000000", "class-map key '10000000' is outside the class ids 0..999"),
        ("1" * 5000, "class-map key '1111111111111111111... (5,002 characters) is not a class"),
    ],
)
def test_class_ids_stay_within_ground_truths_label_limit(key, message):
    line = labeled(class_map={"0": "car", key: "truck"})

    with pytest.raises(InputError, match=re.escape(message)):
        manifest.stats(as_file(line))


# --- properties ----------------------------------------------------------------------


@given(st.lists(st.text() | json_values.map(json.dumps) | st.just("[" * 5000), max_size=5))
def test_parsing_any_lines_raises_only_input_error(lines):
    with contextlib.suppress(InputError):
        manifest.stats(as_file(*lines))


@settings(max_examples=300)
@given(damages(labeled(boxes=[box(), box(1, 5, 5, 10, 10)])))
def test_checking_a_damaged_line_raises_only_input_error(line):
    with contextlib.suppress(InputError):
        split_lines(as_file(labeled("ok.jpg"), line), validation_fraction=0.5, seed=0)


@st.composite
def manifests(draw, *, repeats: bool = False) -> list[dict[str, Any]]:
    """Lines labeled (1-4 boxes), empty or failed, in any mix; with ``repeats``, images
    may come back on later lines, labeled the same or not."""
    lines = []
    for index in range(draw(st.integers(0, 12))):
        name = f"{draw(st.integers(0, 4)) if repeats else index}.jpg"
        kind = draw(st.sampled_from(["labeled", "labeled", "empty", "failed"]))
        if kind == "failed":
            lines.append(failed(name))
        else:
            count = 0 if kind == "empty" else draw(st.integers(1, 4))
            lines.append(labeled(name, [box(draw(st.integers(0, 1))) for _ in range(count)]))
        if repeats and draw(st.booleans()):
            lines.append(draw(st.sampled_from(lines)))  # an earlier line again, as it was
    return lines


fractions = st.floats(0, 1, exclude_min=True, exclude_max=True)


@given(manifests(), fractions, st.integers())
def test_split_partitions_the_usable_lines_by_the_fraction_rule(lines, fraction, seed):
    usable = [line for line in lines if line.get(ATTRIBUTE, {}).get("annotations")]
    validation_size = max(1, round(len(usable) * fraction))
    if not lines or validation_size >= len(usable):
        with pytest.raises(InputError):
            manifest.split(as_file(*lines), validation_fraction=fraction, seed=seed)
        return

    result, train, validation = split_lines(
        as_file(*lines), validation_fraction=fraction, seed=seed
    )

    assert result.num_validation_samples == len(validation) == validation_size
    assert result.num_training_samples == len(train) == len(usable) - validation_size
    both = [json.loads(line) for line in train + validation]
    assert sorted(both, key=json.dumps) == sorted(usable, key=json.dumps)
    assert result.dropped_failed + result.dropped_empty == len(lines) - len(usable)
    assert split_lines(as_file(*lines), validation_fraction=fraction, seed=seed) == (
        result,
        train,
        validation,
    )


@settings(max_examples=300)
@given(manifests(repeats=True), fractions, st.integers())
def test_no_split_puts_one_image_in_both_channels(lines, fraction, seed):
    try:
        _, train, validation = split_lines(as_file(*lines), validation_fraction=fraction, seed=seed)
    except InputError:
        return  # too few images, or an image labeled two ways

    train_images, validation_images = names(train), names(validation)
    assert not set(train_images) & set(validation_images)
    assert len(set(train_images + validation_images)) == len(train_images + validation_images)


@given(manifests(repeats=True))
def test_stats_add_up(lines):
    try:
        figures = manifest.stats(as_file(*lines))
    except InputError:
        return  # no lines, or an image labeled two ways

    assert figures["images"] == figures["labeled"] + figures["failed"] + figures["empty"]
    assert figures["lines"] == figures["images"] + figures["duplicates"] == len(lines)
    assert figures["images"] == len({line["source-ref"] for line in lines})
    assert figures["objects"] == sum(figures["by_class"].values())
