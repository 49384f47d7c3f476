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


def test_a_valid_request_is_uploaded_under_requests(cli, s3, tmp_path):
    path = tmp_path / "request.json"
    path.write_text(json.dumps(REQUEST))

    status, out, err = cli(
        "labeling", "start", "--bucket", BUCKET, "--request", path, "--region", REGION
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

    assert status == 2
    assert "NoSuchBucket" in err
