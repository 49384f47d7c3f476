"""``counting evaluate`` on the sample in examples/evaluation, its figures counted by hand.

examples/evaluation/validation.manifest (label attribute "vehicles", classes car and truck):

  street-1.jpg  car, car, truck   responses: car .92, car .81, truck .64, car .33, truck .12
  street-2.jpg  car               responses: car .88, truck .27
  street-3.jpg  no boxes          responses: car .18
  street-4.jpg  failed            (skipped: no response needed)
  street-5.jpg  car x 4           responses: car .95, car .71, car .45

images 4, objects 3 + 1 + 0 + 4 = 8. Predicted counts (scores >= t) and errors:

  t = 0.20: 4, 2, 0, 3 -> +1, +1, 0, -1: mae 3/4, wape 3/8, bias +1/4, exact 1/4,
            mape (1/3 + 1/1 + 1/4) / 3 = 19/36 (street-3 has no objects: left out)
  t = 0.35: 3, 1, 0, 3 -> 0, 0, 0, -1: mae 1/4, wape 1/8, bias -1/4, exact 3/4,
            mape (0 + 0 + 1/4) / 3 = 1/12
  t = 0.40 and 0.45 give the same as 0.35; t = 0.50 drops street-5's .45 (mae 2/4).
  t = 0.05 and 0.10 keep everything: 5, 2, 1, 3 -> +2, +1, +1, -1: mae 5/4, bias +3/4.

best_threshold: mae 1/4 is the lowest, shared by 0.35, 0.40, 0.45 with equal |bias|:
the lowest threshold, 0.35. Per class at 0.35: car 0, 0, 0, -1 (mae 1/4, bias -1/4);
truck 0, 0, 0, 0. Review queue: street-5.jpg (3 for 4).
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from PIL import Image

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "evaluation"
MANIFEST = EXAMPLE / "validation.manifest"
RESPONSES = EXAMPLE / "responses"


def run_example(cli, *options):
    return cli("evaluate", "--manifest", MANIFEST, "--predictions-dir", RESPONSES, *options)


def test_the_example_gives_the_hand_checked_figures(cli, tmp_path):
    plot = tmp_path / "evaluation.png"
    status, out, err = run_example(cli, "--plot", plot)

    report = json.loads(out)
    assert (status, err) == (0, "")
    assert report["images"] == 4
    assert report["objects"] == 8
    assert report["capped_images"] == 0  # the built-in algorithm's responses: cap unknown
    assert report["unnamed_class_ids"] == []
    assert report["best_threshold"] == 0.35
    assert report["mae"] == 0.25
    assert report["wape"] == 0.125
    assert report["mape"] == pytest.approx(1 / 12, abs=1e-4)
    assert report["exact_accuracy"] == 0.75
    assert report["bias"] == -0.25
    assert report["rmse"] == 0.5  # errors 0, 0, 0, -1: sqrt(1 / 4)
    # Every box found at 0.35 is centred in the 1/8-image region of its labeled box (street-1's
    # first car: labeled centre (210, 470) of 1280 x 960 = (0.164, 0.490), found (0.165,
    # 0.495): region (1, 3) both); street-5's missed car costs 1 at every level: 1 / 4.
    assert report["game"] == {"1": 0.25, "2": 0.25, "3": 0.25}
    assert report["per_class"] == {
        "car": {"mae": 0.25, "bias": -0.25},
        "truck": {"mae": 0.0, "bias": 0.0},
    }
    rows = {row["threshold"]: row for row in report["per_threshold"]}
    assert list(rows) == [round(0.05 * step, 2) for step in range(1, 20)]
    assert rows[0.2] == {
        "threshold": 0.2,
        "mae": 0.75,
        "rmse": 0.866,  # errors +1, +1, 0, -1: sqrt(3 / 4)
        "wape": 0.375,
        "mape": pytest.approx(19 / 36, abs=1e-4),
        "exact_accuracy": 0.25,
        "bias": 0.25,
    }
    assert (rows[0.05]["mae"], rows[0.05]["bias"]) == (1.25, 0.75)
    assert rows[0.5]["mae"] == 0.5
    assert [entry["source_ref"].rsplit("/", 1)[1] for entry in report["review_queue"]] == [
        "street-5.jpg"
    ]
    assert report["review_queue"][0] | {"source_ref": None} == {
        "source_ref": None,
        "true_count": 4,
        "predicted_count": 3,
        "error": -1,
        # All three of street-5's cars score at least the best threshold; highest first.
        "detections": [
            {"number": 1, "class_id": 0, "class_name": "car", "score": 0.95,
             "box": {"xmin": 0.03, "ymin": 0.62, "xmax": 0.19, "ymax": 0.76}},
            {"number": 2, "class_id": 0, "class_name": "car", "score": 0.71,
             "box": {"xmin": 0.23, "ymin": 0.63, "xmax": 0.4, "ymax": 0.78}},
            {"number": 3, "class_id": 0, "class_name": "car", "score": 0.45,
             "box": {"xmin": 0.44, "ymin": 0.61, "xmax": 0.61, "ymax": 0.77}},
        ],
    }  # fmt: skip
    with Image.open(plot) as image:
        assert (image.format, image.size) == ("PNG", (1200, 1000))


def test_chosen_thresholds(cli):
    status, out, _ = run_example(cli, "--thresholds", "0.2,0.5")

    report = json.loads(out)
    assert status == 0
    assert [row["threshold"] for row in report["per_threshold"]] == [0.2, 0.5]
    # 0.2 (mae 3/4) and 0.5 (mae 2/4): 0.5 wins.
    assert (report["best_threshold"], report["mae"]) == (0.5, 0.5)


def test_a_missing_response_is_an_error_naming_the_image(cli, tmp_path):
    responses = tmp_path / "responses"
    shutil.copytree(RESPONSES, responses)
    (responses / "street-2.jpg.out").unlink()

    status, out, err = cli("evaluate", "--manifest", MANIFEST, "--predictions-dir", responses)

    assert (status, out) == (2, "")
    assert err == (
        "counting: error: no response for image "
        "s3://my-counting-data/labeling/images/street/street-2.jpg: "
        "expected street-2.jpg.out or street-2.jpg.json\n"
    )


def test_a_response_for_no_image_is_ignored_with_a_warning(cli, tmp_path):
    responses = tmp_path / "responses"
    shutil.copytree(RESPONSES, responses)
    (responses / "parking-9.jpg.json").write_text('{"prediction": []}')

    status, out, err = cli("evaluate", "--manifest", MANIFEST, "--predictions-dir", responses)

    assert status == 0
    assert json.loads(out)["images"] == 4
    assert err == (
        "counting: warning: parking-9.jpg.json: no image of the manifest has this name; "
        "not scored\n"
    )


def test_a_predicted_class_the_manifest_does_not_name_is_flagged(cli, tmp_path):
    # The manifest names car 0 and truck 1. Class 2 at 0.30 is counted at thresholds up to
    # 0.30 under its id; class 7 at 0.01 is below every threshold tried (the lowest is 0.05)
    # and so never counted, nor flagged.
    responses = tmp_path / "responses"
    shutil.copytree(RESPONSES, responses)
    response = json.loads((responses / "street-2.jpg.out").read_bytes())
    response["prediction"] += [[2, 0.3, 0.1, 0.1, 0.2, 0.2], [7, 0.01, 0.3, 0.3, 0.4, 0.4]]
    (responses / "street-2.jpg.out").write_text(json.dumps(response))

    status, out, err = cli("evaluate", "--manifest", MANIFEST, "--predictions-dir", responses)

    assert status == 0
    assert json.loads(out)["unnamed_class_ids"] == [2]
    assert err == (
        f"counting: warning: the class map of {MANIFEST} does not name class id 2 (it names 2 "
        "classes): counted under its number; is it this model's class map?\n"
    )


def with_cap(responses: Path, name: str, cap: object) -> None:
    """Add ``"max_detections": cap`` to the response ``name``, as the torchvision detector does."""
    response = json.loads((responses / name).read_bytes())
    (responses / name).write_text(json.dumps({**response, "max_detections": cap}))


def test_images_whose_responses_hit_the_cap_are_counted(cli, tmp_path):
    responses = tmp_path / "responses"
    shutil.copytree(RESPONSES, responses)
    # street-1 has 5 detections and street-3 has 1: caps of 5 and 1 are reached; street-2
    # has 2, one below a cap of 3.
    for name, cap in (("street-1.jpg.out", 5), ("street-3.jpg.out", 1), ("street-2.jpg.out", 3)):
        with_cap(responses, name, cap)

    status, out, err = cli("evaluate", "--manifest", MANIFEST, "--predictions-dir", responses)

    assert (status, err) == (0, "")
    assert json.loads(out)["capped_images"] == 2


def test_a_cap_that_is_not_a_positive_integer_is_one_line_naming_the_file(cli, tmp_path):
    responses = tmp_path / "responses"
    shutil.copytree(RESPONSES, responses)
    with_cap(responses, "street-2.jpg.out", "1000")

    status, out, err = cli("evaluate", "--manifest", MANIFEST, "--predictions-dir", responses)

    assert (status, out) == (2, "")
    assert err == (
        f"counting: error: {responses / 'street-2.jpg.out'}: "
        "max_detections: expected a positive integer, got a string\n"
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--thresholds", "0.2,high"], "threshold 'high' is not a number"),
        (["--thresholds", "0.2,2"], r"threshold must be in \[0, 1\], got 2.0"),
    ],
)
def test_bad_thresholds_are_one_line(cli, options, message):
    status, _, err = run_example(cli, *options)
    assert status == 2
    assert len(err.splitlines()) == 1
    assert err.startswith("counting: error: ")
    assert re.search(message, err)


def test_a_manifest_saved_with_a_byte_order_mark_reads_like_the_one_without(cli, tmp_path):
    # Windows editors start UTF-8 files with a BOM; manifest stats and Prepare skip it too.
    marked = tmp_path / "validation.manifest"
    marked.write_bytes(b"\xef\xbb\xbf" + MANIFEST.read_bytes())

    status, out, err = cli("evaluate", "--manifest", marked, "--predictions-dir", RESPONSES)

    assert (status, err) == (0, "")
    assert (json.loads(out)["best_threshold"], json.loads(out)["mae"]) == (0.35, 0.25)


def test_a_manifest_that_is_not_utf8_is_one_line(cli, tmp_path):
    latin = tmp_path / "validation.manifest"
    latin.write_bytes('{"source-ref": "s3://b/caf\xe9.jpg"}\n'.encode("latin-1"))

    status, _, err = cli("evaluate", "--manifest", latin, "--predictions-dir", RESPONSES)

    assert status == 2
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(f"counting: error: {latin}: line 1")


def test_the_plot_draws_the_count_gate_given(cli, tmp_path):
    from PIL import Image

    from counting_core.models import evaluation_plot as drawing

    plot = tmp_path / "gated.png"
    status, out, _ = run_example(cli, "--plot", plot, "--max-wape", "0.5")

    report = json.loads(out)
    top = 1.05 * max(0.1, 0.5, *(row["wape"] for row in report["per_threshold"]))
    gate_y = round(480 - 0.5 / top * 390)
    with Image.open(plot) as image:
        row = [image.convert("RGB").getpixel((x, gate_y)) for x in range(90, 500)]
    assert status == 0
    assert row.count(drawing.GATE_COLOUR) > 150


def test_a_gate_that_is_no_fraction_is_refused_in_one_line(cli, tmp_path):
    status, out, err = run_example(cli, "--plot", tmp_path / "p.png", "--max-wape", "0")

    assert (status, out) == (2, "")
    assert err == "counting: error: --max-wape: 0 is not a fraction above 0\n"
