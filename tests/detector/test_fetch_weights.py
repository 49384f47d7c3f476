"""``counting detector fetch-weights`` against moto's S3, with weights files made here."""

from __future__ import annotations

import hashlib
import io

import boto3
import pytest
from moto import mock_aws

from detector import weights
from detector.weights import PublishedWeights

BUCKET = "counting-data"
REGION = "us-east-1"


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name=REGION)
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def made_weights(tmp_path, monkeypatch):
    """A file, and the detector's table entry pointing at a name carrying its hash prefix."""
    content = b"not really a state dict, but bytes with a known SHA-256"
    prefix = hashlib.sha256(content).hexdigest()[:8]
    path = tmp_path / f"made-{prefix}.pth"
    path.write_bytes(content)
    published = PublishedWeights(f"https://download.example/models/made-{prefix}.pth")
    monkeypatch.setitem(weights.COCO_WEIGHTS, "ssdlite320_mobilenet_v3_large", published)
    return path, content


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("counting: error: ")
    return lines[0].removeprefix("counting: error: ")


def test_a_checked_file_is_uploaded_under_training_weights(cli, s3, made_weights):
    path, content = made_weights

    status, out, err = cli(
        "detector", "fetch-weights", "--detector", "ssdlite320_mobilenet_v3_large",
        "--bucket", BUCKET, "--file", path, "--region", REGION,
    )  # fmt: skip

    assert (status, err) == (0, "")
    key = f"training/weights/{path.name}"
    assert f'"s3://{BUCKET}/{key}"' in out
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == content


def test_a_file_whose_hash_does_not_match_is_refused_and_nothing_uploaded(
    cli, s3, made_weights, tmp_path
):
    path, _ = made_weights
    other = tmp_path / path.name
    other = other.with_name("other.pth")
    other.write_bytes(b"some other file")
    digest = hashlib.sha256(b"some other file").hexdigest()

    status, _, err = cli(
        "detector", "fetch-weights", "--detector", "ssdlite320_mobilenet_v3_large",
        "--bucket", BUCKET, "--file", other, "--region", REGION,
    )  # fmt: skip

    assert status == 2
    assert one_error_line(err) == (
        f"{other}: SHA-256 {digest[:12]}... does not start with {path.name[5:13]}, the prefix "
        f"torchvision publishes for {path.name}: not that file"
    )
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount") == 0


def test_without_a_file_the_published_url_is_downloaded(cli, s3, made_weights, monkeypatch):
    path, content = made_weights
    asked = []

    def urlopen(url, timeout):
        asked.append(url)
        return io.BytesIO(content)

    monkeypatch.setattr("urllib.request.urlopen", urlopen)

    status, _, err = cli(
        "detector", "fetch-weights", "--detector", "ssdlite320_mobilenet_v3_large",
        "--bucket", BUCKET, "--region", REGION,
    )  # fmt: skip

    assert (status, err) == (0, "")
    assert asked == [f"https://download.example/models/{path.name}"]
    key = f"training/weights/{path.name}"
    assert s3.get_object(Bucket=BUCKET, Key=key)["Body"].read() == content


def test_a_missing_bucket_is_one_line(cli, made_weights):
    path, _ = made_weights
    with mock_aws():
        status, _, err = cli(
            "detector", "fetch-weights", "--detector", "ssdlite320_mobilenet_v3_large",
            "--bucket", "no-such-bucket", "--file", path, "--region", REGION,
        )  # fmt: skip

    assert status == 3  # an AWS failure, not bad input
    assert one_error_line(err).startswith(f"s3://no-such-bucket/training/weights/{path.name}: ")


def test_the_published_names_carry_torchvisions_hash_prefixes():
    # Copied by hand from torchvision 0.29.1's weights enums (models/detection/*.py).
    assert {name: entry.hash_prefix for name, entry in weights.COCO_WEIGHTS.items()} == {
        "fasterrcnn_mobilenet_v3_large_fpn": "fb6a3cc7",
        "fasterrcnn_mobilenet_v3_large_320_fpn": "907ea3f9",
        "ssdlite320_mobilenet_v3_large": "a79551df",
    }
    assert weights.COCO_WEIGHTS["ssdlite320_mobilenet_v3_large"].file_name == (
        "ssdlite320_mobilenet_v3_large_coco-a79551df.pth"
    )
