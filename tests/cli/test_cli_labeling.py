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
