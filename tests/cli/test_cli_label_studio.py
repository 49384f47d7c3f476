"""``counting manifest from-label-studio`` on files, without AWS."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import ROOT, RunCli

REAL_EXPORT = (
    ROOT.parent
    / "shared/real-world/2026-12-04/cc15_labelstudio_json_tasks_export/project-export.json"
)
PREFIX = "s3://my-counting-data/labeling/images/cells/"


def export_file(tmp_path: Path, tasks: list[dict]) -> Path:
    path = tmp_path / "project-export.json"
    path.write_text(json.dumps(tasks, ensure_ascii=False), encoding="utf-8")
    return path


def uploaded_task(number: int, name: str, x: float) -> dict:
    # 400 x 200 image: percent x 4 across, x 2 down.
    result = {
        "original_width": 400,
        "original_height": 200,
        "image_rotation": 0,
        "value": {"x": x, "y": 10, "width": 25, "height": 50, "rotation": 0,
                  "rectanglelabels": ["cell"]},
        "type": "rectanglelabels",
    }  # fmt: skip
    return {
        "id": number,
        "data": {"image": f"/data/upload/2/0f0f0f0f-{name}"},
        "annotations": [{"id": number, "result": [result], "was_cancelled": False}],
    }


def test_writes_the_manifest_and_prints_what_it_did(cli: RunCli, tmp_path: Path):
    # x 10 -> left 40, width 25 % -> 100; y 10 -> top 20, height 50 % -> 100.
    export = export_file(tmp_path, [uploaded_task(1, "a.jpg", 10), uploaded_task(2, "b.jpg", 50)])
    out = tmp_path / "cells.manifest"

    status, stdout, stderr = cli(
        "manifest", "from-label-studio", export, "--label-attribute", "cells",
        "--image-prefix", PREFIX, "--out", out,
    )  # fmt: skip

    assert status == 0
    assert stderr == f"{export}: imported 2 images with 2 boxes in 1 class from 2 tasks\n"
    printed = json.loads(stdout)
    assert (printed["images"], printed["objects"], printed["out"]) == (2, 2, str(out))
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert [line["source-ref"] for line in lines] == [f"{PREFIX}a.jpg", f"{PREFIX}b.jpg"]
    assert [line["cells"]["annotations"] for line in lines] == [
        [{"class_id": 0, "left": 40, "top": 20, "width": 100, "height": 100}],
        [{"class_id": 0, "left": 200, "top": 20, "width": 100, "height": 100}],
    ]
    status, stdout, _ = cli("manifest", "stats", out)
    assert (status, json.loads(stdout)["by_class"]) == (0, {"cell": 2})


def test_classes_fix_the_class_ids(cli: RunCli, tmp_path: Path):
    export = export_file(tmp_path, [uploaded_task(1, "a.jpg", 10)])
    out = tmp_path / "cells.manifest"

    status, stdout, _ = cli(
        "manifest", "from-label-studio", export, "--label-attribute", "cells",
        "--image-prefix", PREFIX, "--out", out, "--classes", "red, cell",
    )  # fmt: skip

    assert status == 0
    assert json.loads(stdout)["classes"] == {"0": "red", "1": "cell"}
    assert json.loads(out.read_text(encoding="utf-8"))["cells"]["annotations"][0]["class_id"] == 1


def test_an_upload_without_an_image_prefix_is_refused_in_one_line(cli: RunCli, tmp_path: Path):
    export = export_file(tmp_path, [uploaded_task(1, "a.jpg", 10)])
    out = tmp_path / "cells.manifest"

    status, stdout, stderr = cli(
        "manifest", "from-label-studio", export, "--label-attribute", "cells", "--out", out
    )

    assert (status, stdout) == (2, "")
    assert stderr == (
        f"counting: error: {export}: task 1: image '/data/upload/2/0f0f0f0f-a.jpg' is a file "
        "Label Studio holds: give --image-prefix, the s3:// folder with the same files\n"
    )
    assert not out.exists()


@pytest.mark.skipif(not REAL_EXPORT.is_file(), reason=f"{REAL_EXPORT} is not beside this checkout")
def test_the_real_fixture_given_to_from_coco_points_to_from_label_studio(
    cli: RunCli, tmp_path: Path
):
    status, _, stderr = cli(
        "manifest", "from-coco", REAL_EXPORT, "--label-attribute", "cells",
        "--image-prefix", PREFIX, "--out", tmp_path / "x.manifest",
    )  # fmt: skip

    assert status == 2
    assert stderr.endswith(
        "(Label Studio's JSON export is such an array of tasks: convert it with "
        "`counting manifest from-label-studio`)\n"
    )
