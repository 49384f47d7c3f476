"""Real label files nobody on this project wrote, from ``../shared/real-world/`` (beside the
checkout, as CI has it; never copied in). Each case's EXPECTED.txt says what a correct tool
does, citing the format's own definition; the tests below hold the tool to it.
"""

from __future__ import annotations

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
