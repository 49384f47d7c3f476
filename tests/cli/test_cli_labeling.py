"""``counting labeling start`` against moto's S3."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

REGION = "eu-west-1"
BUCKET = "object-counting-dev-data-123456789012-eu-west-1"
REQUEST = {
    "batch_name": "street",
    "image_prefix": f"s3://{BUCKET}/labeling/images/street",
    "labels": ["car", "person"],
    "label_attribute": "vehicles",
    "instructions": {"short": "Draw a box around every car and every person."},
    "workers_per_object": 2,
}


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(
            Bucket=BUCKET, CreateBucketConfiguration={"LocationConstraint": REGION}
        )
        yield client


def objects(s3) -> list[str]:
    return [item["Key"] for item in s3.list_objects_v2(Bucket=BUCKET).get("Contents", [])]


@pytest.mark.parametrize("bucket", [BUCKET, f"s3://{BUCKET}", f"s3://{BUCKET}/"])
def test_a_valid_request_is_uploaded_under_requests(cli, s3, tmp_path, bucket):
    path = tmp_path / "request.json"
    path.write_text(json.dumps(REQUEST))

    status, out, err = cli(
        "labeling", "start", "--bucket", bucket, "--request", path, "--region", REGION
    )

    assert (status, err) == (0, "")
    assert json.loads(out) == {"request": f"s3://{BUCKET}/labeling/requests/street.json"}
    uploaded = json.loads(
        s3.get_object(Bucket=BUCKET, Key="labeling/requests/street.json")["Body"].read()
    )
    # What the launcher reads is the checked request, its prefix made a key in the bucket.
    assert uploaded == {**REQUEST, "image_prefix": "labeling/images/street/"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"labels": [f"class{i}" for i in range(11)]}, "labels: List should have at most 10"),
        ({"unexpected": True}, "unexpected: unknown key"),
        ({"image_prefix": "s3://another-bucket/labeling/images/x/"}, "not in the data bucket"),
    ],
)
def test_a_bad_request_exits_2_with_one_line_and_uploads_nothing(
    cli, s3, tmp_path, changes, message
):
    path = tmp_path / "request.json"
    path.write_text(json.dumps({**REQUEST, **changes}))

    status, out, err = cli("labeling", "start", "--bucket", BUCKET, "--request", path)

    assert (status, out) == (2, "")
    assert err.startswith(f"counting: error: {path}: ")
    assert message in err
    assert err.count("\n") == 1
    assert objects(s3) == []


def test_a_missing_bucket_is_reported_without_a_traceback(cli, s3, tmp_path):
    path = tmp_path / "request.json"
    path.write_text(json.dumps({**REQUEST, "image_prefix": "labeling/images/street/"}))

    status, _, err = cli(
        "labeling", "start", "--bucket", "no-such-bucket", "--request", path, "--region", REGION
    )

    assert status == 3  # an AWS failure, not bad input
    assert "NoSuchBucket" in err


def evaluation_report(*source_refs: str) -> dict:
    """The parts of evaluation.json the command reads: the review queue."""
    return {
        "best_threshold": 0.35,
        "review_queue": [
            {"source_ref": ref, "true_count": 4, "predicted_count": 3, "error": -1}
            for ref in source_refs
        ],
    }


def test_from_evaluation_copies_the_hardest_images_before_starting_the_job(cli, s3, tmp_path):
    for key in ("labeling/images/street/a.jpg", "labeling/images/park/a.jpg"):
        s3.put_object(Bucket=BUCKET, Key=key, Body=key.encode())
    report = tmp_path / "evaluation.json"
    report.write_text(
        json.dumps(
            evaluation_report(
                f"s3://{BUCKET}/labeling/images/street/a.jpg",
                f"s3://{BUCKET}/labeling/images/park/a.jpg",
            )
        )
    )
    request = tmp_path / "request.json"
    request.write_text(
        json.dumps(
            {**REQUEST, "batch_name": "review-1", "image_prefix": "labeling/images/review-1"}
        )
    )

    status, out, err = cli(
        "labeling", "start", "--bucket", BUCKET, "--request", request,
        "--from-evaluation", report, "--region", REGION,
    )  # fmt: skip

    assert (status, err) == (0, "")
    assert json.loads(out) == {
        "request": f"s3://{BUCKET}/labeling/requests/review-1.json",
        "images_copied": 2,
    }
    # Same file name, different folders: both kept, each under its own folder.
    for folder in ("street", "park"):
        copied = s3.get_object(Bucket=BUCKET, Key=f"labeling/images/review-1/{folder}/a.jpg")
        assert copied["Body"].read() == f"labeling/images/{folder}/a.jpg".encode()
    assert "labeling/requests/review-1.json" in objects(s3)


@pytest.mark.parametrize(
    ("report", "message"),
    [
        (evaluation_report(), "the evaluation's review queue is empty"),
        ({"images": 3}, "not an evaluation report: no 'review_queue' list"),
        (evaluation_report("labeling/images/a.jpg"), "is not an s3://bucket/key URI"),
    ],
)
def test_from_evaluation_refuses_a_report_without_images_and_uploads_nothing(
    cli, s3, tmp_path, report, message
):
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps(report))
    request = tmp_path / "request.json"
    request.write_text(json.dumps(REQUEST))

    status, out, err = cli(
        "labeling", "start", "--bucket", BUCKET, "--request", request, "--from-evaluation", path
    )

    assert (status, out) == (2, "")
    assert err.startswith(f"counting: error: {path}: ")
    assert message in err
    assert objects(s3) == []


RUN = "counting-20261201-101500-a1b2c3"


def studio_report(run: str | None = RUN) -> dict:
    """evaluation.json with one image in the review queue, the model's two cars on it."""
    cars = [
        {"number": 1, "class_id": 0, "class_name": "car", "score": 0.9,
         "box": {"xmin": 0.1, "ymin": 0.2, "xmax": 0.3, "ymax": 0.6}},
        {"number": 2, "class_id": 0, "class_name": "car", "score": 0.5,
         "box": {"xmin": 0.5, "ymin": 0.5, "xmax": 0.75, "ymax": 1.0}},
    ]  # fmt: skip
    entry = {
        "source_ref": f"s3://{BUCKET}/labeling/images/street/a.jpg",
        "true_count": 3,
        "predicted_count": 2,
        "error": -1,
        "detections": cars,
    }
    return {"run": run, "review_queue": [entry]} if run else {"review_queue": [entry]}


def test_studio_uploads_the_review_queue_with_the_models_boxes(cli, s3, tmp_path):
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps(studio_report()))

    status, out, err = cli(
        "labeling", "start", "--bucket", BUCKET, "--studio", "--from-evaluation", path,
        "--region", REGION,
    )  # fmt: skip

    key = f"labeling/studio/reviews/{RUN}.request.json"
    assert (status, err) == (0, "")
    assert json.loads(out) == {
        "review": f"s3://{BUCKET}/{key}",
        "model_version": RUN,
        "images": 1,
        "outcome": f"s3://{BUCKET}/labeling/studio/reviews/{RUN}.imported.json, or "
        ".rejected.json with the reason",
    }
    uploaded = json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())
    (prediction,) = uploaded["predictions"]
    # (0.9 + 0.5) / 2; boxes in percent: x = 100 xmin, width = 100 (xmax - xmin), ...
    assert (prediction["image"], prediction["score"]) == (
        f"s3://{BUCKET}/labeling/images/street/a.jpg",
        0.7,
    )
    assert [region["value"] for region in prediction["result"]] == [
        {"x": 10.0, "y": 20.0, "width": 20.0, "height": 40.0, "rotation": 0,
         "rectanglelabels": ["car"]},
        {"x": 50.0, "y": 50.0, "width": 25.0, "height": 50.0, "rotation": 0,
         "rectanglelabels": ["car"]},
    ]  # fmt: skip
    assert [region["score"] for region in prediction["result"]] == [0.9, 0.5]


def test_studio_names_the_predictions_as_told(cli, s3, tmp_path):
    path = tmp_path / "evaluation.json"
    path.write_text(json.dumps(studio_report(run=None)))

    status, out, _ = cli(
        "labeling", "start", "--bucket", BUCKET, "--studio", "--from-evaluation", path,
        "--model-version", "local-model-1",
    )  # fmt: skip

    assert status == 0
    assert json.loads(out)["model_version"] == "local-model-1"
    assert objects(s3) == ["labeling/studio/reviews/local-model-1.request.json"]


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--studio"], "--studio sends an evaluation's review queue: give --from-evaluation"),
        (
            ["--studio", "--from-evaluation", "EVALUATION"],
            "EVALUATION: the evaluation names no run (counting evaluate writes none): give "
            "--model-version",
        ),
        (
            ["--request", "REQUEST", "--model-version", "m1"],
            "--model-version names the predictions of --studio",
        ),
    ],
)
def test_studio_without_what_it_needs_exits_2_with_one_line(cli, s3, tmp_path, arguments, message):
    evaluation = tmp_path / "evaluation.json"
    evaluation.write_text(json.dumps(studio_report(run=None)))
    request = tmp_path / "request.json"
    request.write_text(json.dumps(REQUEST))
    given = [
        {"EVALUATION": str(evaluation), "REQUEST": str(request)}.get(item, item)
        for item in arguments
    ]

    status, out, err = cli("labeling", "start", "--bucket", BUCKET, *given)

    assert (status, out) == (2, "")
    expected = message.replace("EVALUATION", str(evaluation))
    assert err == f"counting: error: {expected}\n"
    assert objects(s3) == []


def test_studio_and_a_ground_truth_request_are_one_or_the_other(cli, s3, tmp_path):
    request = tmp_path / "request.json"
    request.write_text(json.dumps(REQUEST))

    with pytest.raises(SystemExit) as stopped:
        cli("labeling", "start", "--bucket", BUCKET, "--studio", "--request", request)

    assert stopped.value.code == 2  # argparse's usage error
    assert objects(s3) == []
