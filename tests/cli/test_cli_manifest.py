"""``counting manifest stats | split | from-coco`` on files, without AWS."""

from __future__ import annotations

import json
import re

import pytest

import counting
from counting_core.errors import InputError
from tests.core.hand_checked_manifest import (
    DATA,
    HAND_CHECKED,
    HAND_CHECKED_SPLIT_AT_0_2,
    HAND_CHECKED_STATS,
)

COCO_SMALL = DATA / "coco_small.json"


def run(argv: list[str]) -> int:
    """Parse as ``counting`` does and run the handler, without main's error handling.

    So a test sees the InputError (or OSError) that main would turn into one line.
    """
    args = counting.build_parser().parse_args(["manifest", *argv])
    return args.handler(args)


def printed_json(capsys) -> dict:
    return json.loads(capsys.readouterr().out)


def test_stats_prints_the_hand_checked_figures(capsys):
    assert run(["stats", str(HAND_CHECKED)]) == 0

    assert printed_json(capsys) == HAND_CHECKED_STATS


def test_stats_with_a_missing_label_attribute_names_the_file(tmp_path):
    with pytest.raises(InputError) as caught:
        run(["stats", str(HAND_CHECKED), "--label-attribute", "people"])

    assert str(caught.value).startswith(f"{HAND_CHECKED}: label attribute 'people' is not in")


def test_a_broken_line_is_named_with_file_and_line(tmp_path):
    broken = tmp_path / "broken.manifest"
    lines = HAND_CHECKED.read_text(encoding="utf-8").splitlines()
    lines[6] = lines[6][:40]
    broken.write_text("\n".join(lines), encoding="utf-8")

    with pytest.raises(InputError) as caught:
        run(["stats", str(broken)])

    assert str(caught.value) == (
        f"{broken}: line 7: the line ends at column 40 before its JSON is complete: it looks "
        "cut off (an interrupted download or copy?)"
    )


def test_a_bad_label_attribute_is_not_blamed_on_the_file():
    with pytest.raises(InputError) as caught:
        run(["stats", str(HAND_CHECKED), "--label-attribute", "boxes-ref"])

    assert str(caught.value) == "label attribute 'boxes-ref' must not end in '-ref'"


def test_a_file_that_is_not_utf8_is_named(tmp_path):
    binary = tmp_path / "image.manifest"
    binary.write_bytes(b"\xff\xd8\xff\xe0 not a manifest")

    with pytest.raises(InputError, match=r"image\.manifest: line 1: not UTF-8 text \(byte 1\)$"):
        run(["stats", str(binary)])


def test_a_byte_order_mark_is_not_part_of_line_1(tmp_path):
    with_bom = tmp_path / "bom.manifest"
    with_bom.write_bytes(b"\xef\xbb\xbf" + HAND_CHECKED.read_bytes())

    assert run(["stats", str(with_bom)]) == 0


def test_a_missing_file_is_left_to_the_cli_main(tmp_path):
    with pytest.raises(FileNotFoundError):
        run(["stats", str(tmp_path / "missing.manifest")])


def test_split_writes_both_channels_and_prints_the_figures(tmp_path, capsys):
    out_dir = tmp_path / "split" / "run-1"
    argv = ["split", str(HAND_CHECKED), "--validation-fraction", "0.2", "--seed", "7"]

    assert run([*argv, "--out-dir", str(out_dir)]) == 0

    assert printed_json(capsys) == {**HAND_CHECKED_SPLIT_AT_0_2, "duplicates": 0}
    train = (out_dir / "train.manifest").read_text(encoding="utf-8")
    validation = (out_dir / "validation.manifest").read_text(encoding="utf-8")
    assert train.endswith("\n")
    assert (train.count("\n"), validation.count("\n")) == (4, 1)
    run([*argv, "--out-dir", str(tmp_path / "again")])
    assert (tmp_path / "again" / "train.manifest").read_text(encoding="utf-8") == train


def test_split_with_a_bad_fraction_writes_nothing(tmp_path):
    out_dir = tmp_path / "out"
    argv = ["split", str(HAND_CHECKED), "--validation-fraction", "1", "--seed", "7"]

    with pytest.raises(InputError, match=r"^the validation fraction must be between 0 and 1"):
        run([*argv, "--out-dir", str(out_dir)])
    assert not out_dir.exists()


def test_from_coco_writes_a_manifest_that_stats_reads(tmp_path, capsys):
    out = tmp_path / "vehicles.manifest"
    argv = ["from-coco", str(COCO_SMALL), "--image-prefix", "s3://my-bucket/datasets/cars"]

    assert run([*argv, "--label-attribute", "vehicles", "--out", str(out)]) == 0

    printed = capsys.readouterr()
    assert json.loads(printed.out) == {
        "images": 3,
        "objects": 4,
        "dropped_boxes": 2,
        "crowd_skipped": 0,
        "unused_categories": [],
        "empty_classes": [],
        "classes": {"0": "car", "1": "truck", "2": "bus"},
        "out": str(out),
    }
    assert printed.err == (
        f"{COCO_SMALL}: imported 3 images with 4 boxes in 3 classes; skipped 2 boxes with no "
        "area inside its image\n"
    )
    first = json.loads(out.read_text(encoding="utf-8").splitlines()[0])
    metadata = first["vehicles-metadata"]
    assert metadata["job-name"] == "labeling-job/vehicles"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}", metadata["creation-date"])
    assert run(["stats", str(out)]) == 0
    assert printed_json(capsys)["by_class"] == {"car": 2, "truck": 1, "bus": 1}


def test_from_coco_keeps_empty_categories_when_asked(tmp_path, capsys):
    out = tmp_path / "out.manifest"
    argv = ["from-coco", str(DATA / "coco" / "roboflow.json"), "--image-prefix", "s3://b-1/x"]

    run([*argv, "--label-attribute", "vehicles", "--out", str(out), "--keep-empty-categories"])

    assert printed_json(capsys)["classes"] == {"0": "vehicles-8xjm", "1": "car", "2": "truck"}


def test_split_merges_an_image_listed_twice(tmp_path, capsys):
    merged = DATA / "ground_truth" / "merged_batches.manifest"
    argv = ["split", str(merged), "--validation-fraction", "0.34", "--seed", "1"]

    assert run([*argv, "--out-dir", str(tmp_path)]) == 0

    figures = printed_json(capsys)
    assert (figures["num_training_samples"], figures["duplicates"]) == (2, 2)


def test_split_refuses_an_image_labeled_two_ways_and_writes_nothing(tmp_path):
    conflicting = DATA / "ground_truth" / "conflicting_batches.manifest"
    argv = ["split", str(conflicting), "--validation-fraction", "0.5", "--seed", "1"]

    with pytest.raises(InputError, match=r"conflicting_batches\.manifest: lines 1 and 3 label "):
        run([*argv, "--out-dir", str(tmp_path / "out")])
    assert not (tmp_path / "out").exists()


def test_from_coco_blames_a_bad_argument_not_the_file(tmp_path):
    argv = ["from-coco", str(COCO_SMALL), "--image-prefix", "bucket/cars", "--out", "x.manifest"]

    with pytest.raises(InputError) as caught:
        run([*argv, "--label-attribute", "vehicles"])

    assert str(caught.value) == "image prefix 'bucket/cars' is not an s3://bucket/prefix/ URI"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"images": [',
            r"coco\.json: the file ends at line 1 column 12 before its JSON is complete",
        ),
        ("[]", r"coco\.json: the file is a JSON array of 0 item\(s\), not a COCO object"),
        (
            '{"images": []}\n{"images": []}\n',
            r"coco\.json: more than one JSON value: another one starts at line 2 column 1 \(JSON",
        ),
        ("", r"coco\.json: the file is empty$"),
        ('{"images": [], "categories": []}', r"coco\.json: the COCO file has no 'annotations'"),
    ],
)
def test_from_coco_names_the_file_in_errors(tmp_path, content, message):
    coco = tmp_path / "coco.json"
    coco.write_text(content, encoding="utf-8")
    out = tmp_path / "out.manifest"
    argv = ["from-coco", str(coco), "--image-prefix", "s3://bucket-1/x", "--label-attribute", "v"]

    with pytest.raises(InputError, match=message):
        run([*argv, "--out", str(out)])
    assert not out.exists()
