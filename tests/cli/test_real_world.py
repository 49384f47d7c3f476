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
