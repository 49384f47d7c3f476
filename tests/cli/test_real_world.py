"""Real label files nobody on this project wrote, from ``../shared/real-world/`` (beside the
checkout, as CI has it; never copied in). Each case's EXPECTED.txt says what a correct tool
does, citing the format's own definition; the tests below hold the tool to it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, RunCli

CASES = ROOT.parent / "shared" / "real-world" / "2026-12-04"

pytestmark = pytest.mark.skipif(
    not CASES.is_dir(), reason=f"{CASES} is not beside this checkout (CI has it)"
)


def test_coco_with_a_repeated_annotation_id_is_refused_naming_both(cli: RunCli, tmp_path: Path):
    # cc09: mmdetection's "wrong format" sample lists annotation id 1 twice with the same box.
    # COCO ids are unique per list; converting both would train and count one car twice.
    case = CASES / "cc09_mmdet_duplicate_annotation_ids"
    out = tmp_path / "wrong.manifest"

    status, stdout, stderr = cli(
        "manifest",
        "from-coco",
        case / "coco_wrong_format_sample.json",
        "--label-attribute",
        "vehicles",
        "--image-prefix",
        "s3://my-counting-data/labeling/images/mmdet/",
        "--out",
        out,
    )

    assert (status, stdout) == (2, "")
    assert stderr == (
        f"counting: error: {case / 'coco_wrong_format_sample.json'}: "
        "annotations[1]: duplicate id 1, also used by annotations[0]\n"
    )
    assert not out.exists()


@pytest.mark.parametrize(
    "name",
    [
        # Roboflow's export, pretty-printed over many lines.
        "_annotations.coco.json",
        # CVAT's (Datumaro) export: the whole document on one line, read as one JSON Lines
        # record holding COCO's three arrays.
        "instances_default.json",
    ],
)
def test_a_coco_file_given_to_manifest_stats_points_to_from_coco(cli: RunCli, name: str):
    case = CASES / "gm17_coco_file_given_to_manifest_commands"

    status, stdout, stderr = cli("manifest", "stats", case / name)

    assert (status, stdout) == (2, "")
    assert stderr.count("\n") == 1
    assert stderr.rstrip().endswith("for a COCO export, use `counting manifest from-coco`")


def test_coco80_categories_are_left_out_or_kept_and_the_summary_says_which(
    cli: RunCli, tmp_path: Path
):
    # cc07: SAHI's file lists COCO's 80 categories; boxes use 6 of them (category ids
    # 0,1,2,3,5,7: person, bicycle, car, motorcycle, bus, truck), 249 boxes in 2 images.
    dataset = CASES / "cc07_sahi_coco80_categories" / "dataset.json"
    argv = ["manifest", "from-coco", dataset, "--label-attribute", "coco"]
    argv += ["--image-prefix", "s3://my-counting-data/labeling/images/coco/"]

    status, stdout, stderr = cli(*argv, "--out", tmp_path / "default.manifest")
    default = json.loads(stdout)
    status_kept, stdout, stderr_kept = cli(
        *argv, "--out", tmp_path / "keep.manifest", "--keep-empty-categories"
    )
    kept = json.loads(stdout)

    assert (status, status_kept) == (0, 0)
    assert default["classes"] == {
        "0": "person",
        "1": "bicycle",
        "2": "car",
        "3": "motorcycle",
        "4": "bus",
        "5": "truck",
    }
    assert (default["objects"], len(default["unused_categories"])) == (249, 74)
    assert "skipped 74 categories without boxes" in stderr
    # Kept: all 80 get class ids, so none is reported as skipped.
    assert (len(kept["classes"]), kept["unused_categories"]) == (80, [])
    assert kept["empty_classes"] == default["unused_categories"]
    assert "in 80 classes (74 without boxes: 'airplane'" in stderr_kept
    assert "skipped" not in stderr_kept


def figures(report: dict, threshold: float) -> dict:
    (row,) = [row for row in report["per_threshold"] if row["threshold"] == threshold]
    return {name: value for name, value in row.items() if name != "threshold"}


def test_an_image_listed_twice_is_scored_once(cli: RunCli):
    # ev02: ev01's four cat images (true counts 0, 1, 2, 1, worked by hand in ev01's
    # EXPECTED.txt) with one line repeated: the same figures as ev01, not a fifth image.
    case = CASES / "ev02_cat_job_image_listed_twice"

    status, out, _ = cli(
        "evaluate", "--manifest", case / "validation.manifest",
        "--predictions-dir", case / "responses", "--thresholds", "0.1,0.3,0.5,0.9",
    )  # fmt: skip
    report = json.loads(out)

    assert status == 0
    assert (report["images"], report["objects"]) == (4, 4)
    # At 0.3 three images over-counted by one (exact 1 of 4, bias +0.75): rmse sqrt(3/4).
    assert figures(report, 0.3) == {
        "mae": 0.75, "rmse": 0.866, "wape": 0.75, "mape": 0.5, "exact_accuracy": 0.25,
        "bias": 0.75,
    }  # fmt: skip
    # At 0.9 two images exact, the other two short by 3 in all (mae and bias 3/4): by one and
    # by two, rmse sqrt((1 + 4) / 4).
    assert figures(report, 0.9) == {
        "mae": 0.75, "rmse": 1.118, "wape": 0.75, "mape": 0.6667, "exact_accuracy": 0.5,
        "bias": -0.75,
    }  # fmt: skip


def test_a_failed_items_response_is_not_scored_and_the_warning_says_why(cli: RunCli):
    # ev08: five responses, one for the failed item; true 2, 1, 1, 0. At 0.2 predicted
    # 2, 1, 2, 1: errors 0, 0, 1, 1 -> mae 0.5, wape 2/4, mape (0 + 0 + 1) / 3, bias 0.5.
    case = CASES / "ev08_failed_item_and_empty_image"

    status, out, err = cli(
        "evaluate", "--manifest", case / "validation.manifest",
        "--predictions-dir", case / "responses", "--thresholds", "0.2,0.5,0.75",
    )  # fmt: skip
    report = json.loads(out)

    assert status == 0
    assert (report["images"], report["objects"]) == (4, 4)
    # rmse sqrt((0 + 0 + 1 + 1) / 4).
    assert figures(report, 0.2) == {
        "mae": 0.5, "rmse": 0.7071, "wape": 0.5, "mape": 0.3333, "exact_accuracy": 0.5,
        "bias": 0.5,
    }  # fmt: skip
    assert err == (
        "counting: warning: 10-10_bcbs-kansas-solutions-inc-id-card-samples.png.out: the "
        "manifest lists s3://bcbs-logo-training-images/gray_images/"
        "10-10_bcbs-kansas-solutions-inc-id-card-samples.png as a failed item (no label to "
        "score against); not scored\n"
    )


def test_evaluate_refuses_an_image_labeled_two_ways_as_stats_does(cli: RunCli):
    # ev11: one exam page on two lines with different boxes.
    case = CASES / "ev11_one_page_labeled_two_ways"
    manifest = case / "validation.manifest"

    stats = cli("manifest", "stats", manifest)
    evaluated = cli("evaluate", "--manifest", manifest, "--predictions-dir", case / "responses")

    for status, out, err in (stats, evaluated):
        assert (status, out) == (2, "")
        assert err.startswith(f"counting: error: {manifest}: lines 1 and 2 label the same image")
        assert "differently (13 boxes / 14 boxes)" in err
        assert err.count("\n") == 1


def test_a_class_id_the_class_map_does_not_name_is_flagged(cli: RunCli):
    # rs04: a one-class plate model's response with a second box of class 1, counted with the
    # one-class map {"0": "plate"}. The count stays 2 (the documented naming by id), and the
    # mismatch is said on stderr and in the JSON, so a wrong class map is noticed.
    case = CASES / "rs04_class_id_not_in_class_map"

    status, out, err = cli("count", case / "response.json", "--class-map", case / "classes.json")
    document = json.loads(out)

    assert status == 0
    assert (document["count"], document["by_class"]) == (2, {"1": 1, "plate": 1})
    assert document["unnamed_class_ids"] == [1]
    assert err == (
        f"counting: warning: {case / 'classes.json'} does not name class id 1 (it names 1 "
        "class): counted under its number; is it this model's class map?\n"
    )


def test_exports_of_twelve_and_thirteen_classes_convert_and_their_join_says_how(
    cli: RunCli, tmp_path: Path
):
    # cc04: Roboflow's chess export. valid has boxes in 12 categories, train in 13 (bishop
    # has boxes in train only; "pieces" is Roboflow's placeholder). labeling.md and
    # training.md both allow 1,000 classes (10 is Ground Truth's request limit), so both
    # convert. Joined, black-bishop is id 1 in train's lines and id 0 in valid's (line 203,
    # after train's 202 lines): refused, pointing to --keep-empty-categories, with which
    # both number all 14 categories alike and the join is 260 images.
    case = CASES / "cc04_roboflow_chess_12_classes"

    def convert(split: str, *options: str) -> tuple[int, dict, Path]:
        out = tmp_path / f"{split}{len(options)}.manifest"
        status, stdout, _ = cli(
            "manifest", "from-coco", case / split / "_annotations.coco.json",
            "--label-attribute", "pieces",
            "--image-prefix", "s3://my-counting-data/labeling/images/chess/",
            "--out", out, *options,
        )  # fmt: skip
        return status, json.loads(stdout), out

    def joined(first: Path, second: Path) -> Path:
        both = tmp_path / f"{first.stem}+{second.stem}.manifest"
        both.write_bytes(first.read_bytes() + second.read_bytes())
        return both

    valid_status, valid, valid_file = convert("valid")
    train_status, train, train_file = convert("train")
    refused = cli("manifest", "stats", joined(train_file, valid_file))
    *_, kept_train = convert("train", "--keep-empty-categories")
    *_, kept_valid = convert("valid", "--keep-empty-categories")
    status, out, _ = cli("manifest", "stats", joined(kept_train, kept_valid))

    assert (valid_status, len(valid["classes"])) == (0, 12)
    assert (train_status, len(train["classes"])) == (0, 13)
    assert refused == (
        2,
        "",
        f"counting: error: {tmp_path / 'train0+valid0.manifest'}: line 203: class-map names "
        "id 0 'black-bishop', an earlier line named it 'bishop'; exports of one project "
        "converted apart by `counting manifest from-coco` number their classes alike when "
        "each keeps every category (--keep-empty-categories)\n",
    )
    assert (status, json.loads(out)["images"]) == (0, 260)
