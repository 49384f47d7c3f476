"""The studio exports Lambda under moto: task objects and whole exports become the manifest."""

from __future__ import annotations

import importlib
import json
import sys

import boto3
import pytest

from tests.lambdas.conftest import REGION, make_bucket

BUCKET = "object-counting-dev-data-123456789012-us-east-1"
IMAGES = f"s3://{BUCKET}/labeling/images/street/"


@pytest.fixture
def handler(aws, monkeypatch, request):
    start_training = getattr(request, "param", "false")
    environment = {
        "BUCKET": BUCKET,
        "LABEL_ATTRIBUTE": "vehicles",
        "CLASS_NAMES": '["car", "truck"]',
        "ROTATED_BOXES": "refuse",
        "START_TRAINING": start_training,
        "AWS_DEFAULT_REGION": REGION,
        "POWERTOOLS_SERVICE_NAME": "studio-exports",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    make_bucket(BUCKET)
    sys.modules.pop("lambdas.studio_exports.handler", None)
    module = importlib.import_module("lambdas.studio_exports.handler")
    yield module
    module.s3.cache_clear()


def task(number: int, label: str, x: float, *, updated: str = "2026-12-01T10:00:00Z") -> dict:
    # 1000 x 500 image: percent x 10 across, x 5 down.
    box = {
        "original_width": 1000,
        "original_height": 500,
        "value": {"x": x, "y": 10, "width": 20, "height": 40, "rotation": 0,
                  "rectanglelabels": [label]},
        "type": "rectanglelabels",
    }  # fmt: skip
    return {
        "id": number,
        "data": {"image": f"{IMAGES}{number}.jpg"},
        "annotations": [{"id": number, "result": [box], "updated_at": updated}],
    }


def upload(key: str, content: object) -> dict:
    s3 = boto3.client("s3", region_name=REGION)
    put = s3.put_object(Bucket=BUCKET, Key=key, Body=json.dumps(content).encode())
    return {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "detail": {
            "bucket": {"name": BUCKET},
            "object": {"key": key, "etag": put["ETag"].strip('"'), "version-id": put["VersionId"]},
        },
    }


def read(key: str) -> str:
    s3 = boto3.client("s3", region_name=REGION)
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()


def boxes(manifest_text: str) -> dict[str, list[dict]]:
    lines = [json.loads(line) for line in manifest_text.splitlines()]
    return {line["source-ref"]: line["vehicles"]["annotations"] for line in lines}


def test_each_task_object_rebuilds_the_manifest_of_all_tasks(handler, lambda_context):
    # car x 10 -> left 100, width 20 % -> 200; y 10 -> top 50, height 40 % -> 200.
    # truck x 50 -> left 500. Task 1 written again later with a truck: the later one counts.
    upload("labeling/studio/exports/1.json", task(1, "car", 10))
    upload("labeling/studio/exports/2.json", task(2, "car", 50))
    event = upload("labeling/studio/exports/1.json", task(1, "truck", 50))

    outcome = handler.main(event, lambda_context)

    assert boxes(read("labeling/studio/manifests/studio.manifest")) == {
        f"{IMAGES}1.jpg": [{"class_id": 1, "left": 500, "top": 50, "width": 200, "height": 200}],
        f"{IMAGES}2.jpg": [{"class_id": 0, "left": 500, "top": 50, "width": 200, "height": 200}],
    }
    assert (outcome["tasks"], outcome["objects"], outcome["classes"]) == (
        2,
        2,
        {"0": "car", "1": "truck"},
    )
    assert "training_request" not in outcome
    assert json.loads(read("labeling/studio/manifests/studio.json"))["images"] == 2


@pytest.mark.parametrize("handler", ["true"], indirect=True)
def test_a_whole_export_starts_training_when_asked(handler, lambda_context):
    upload("labeling/studio/exports/3.json", task(3, "car", 10))
    event = upload("labeling/studio/exports/project-1.json", [task(4, "truck", 10)])

    outcome = handler.main(event, lambda_context)

    request = outcome["training_request"].removeprefix(f"s3://{BUCKET}/")
    assert request.startswith("training/requests/studio-")
    assert request.endswith(".manifest")
    assert set(boxes(read(request))) == {f"{IMAGES}3.jpg", f"{IMAGES}4.jpg"}


@pytest.mark.parametrize("handler", ["true"], indirect=True)
def test_a_task_object_does_not_start_training(handler, lambda_context):
    event = upload("labeling/studio/exports/3.json", task(3, "car", 10))

    assert "training_request" not in handler.main(event, lambda_context)


def test_an_export_that_cannot_convert_is_rejected_with_its_reason(handler, lambda_context):
    upload("labeling/studio/exports/1.json", task(1, "car", 10))
    event = upload("labeling/studio/exports/2.json", task(2, "bus", 10))

    outcome = handler.main(event, lambda_context)

    reason = "task 2: label 'bus' is not one of the classes ('car', 'truck')"
    assert outcome == {"rejected": reason}
    assert json.loads(read("labeling/studio/manifests/studio.rejected.json")) == {
        "trigger": "labeling/studio/exports/2.json",
        "error": reason,
    }


def test_a_broken_object_is_named_in_the_rejection(handler, lambda_context):
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=BUCKET, Key="labeling/studio/exports/9.json", Body=b'{"id": 9,')
    event = upload("labeling/studio/exports/1.json", task(1, "car", 10))

    outcome = handler.main(event, lambda_context)

    assert outcome["rejected"].startswith("labeling/studio/exports/9.json: ")
