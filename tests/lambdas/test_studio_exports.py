"""The studio exports Lambda under moto: task objects and whole exports become the manifest."""

from __future__ import annotations

import json

import boto3
import pytest

from counting_core.contracts.environment import MisconfiguredFunction
from counting_core.contracts.studio_exports import Environment
from lambdas.studio_exports import handler
from lambdas.studio_exports.service import StudioExports
from tests.lambdas.conftest import REGION, deployed, make_bucket, object_created

BUCKET = "object-counting-dev-data-123456789012-us-east-1"
IMAGES = f"s3://{BUCKET}/labeling/images/street/"


ENVIRONMENT = {
    "BUCKET": BUCKET,
    "LABEL_ATTRIBUTE": "vehicles",
    "CLASS_NAMES": '["car", "truck"]',
    "ROTATED_BOXES": "refuse",
    "POWERTOOLS_SERVICE_NAME": "studio-exports",
    "POWERTOOLS_METRICS_NAMESPACE": "ObjectCounting",
}


@pytest.fixture
def convert(aws, request):
    """The handler's work for one event, on a converter built as the handler builds it."""
    start_training = getattr(request, "param", "false")
    make_bucket(BUCKET)
    environment = Environment.read({**ENVIRONMENT, "START_TRAINING": start_training})
    studio = StudioExports(environment, s3=boto3.client("s3", region_name=REGION))
    return lambda event: handler.convert(event, studio)


def test_the_handler_reads_its_environment_on_first_use(aws, monkeypatch, lambda_context):
    make_bucket(BUCKET)
    with deployed(monkeypatch, {**ENVIRONMENT, "START_TRAINING": "false"}, handler.exports):
        monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
        outcome = handler.main(
            upload("labeling/studio/exports/1.json", task(1, "car", 10)), lambda_context
        )

    assert outcome["images"] == 1


def test_a_misconfigured_function_says_which_variable_in_one_line(monkeypatch):
    with (
        deployed(monkeypatch, {**ENVIRONMENT, "START_TRAINING": "sometimes"}, handler.exports),
        pytest.raises(MisconfiguredFunction) as raised,
    ):
        handler.exports()

    assert str(raised.value).startswith("counting_core.contracts.studio_exports: START_TRAINING")


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
    return object_created(BUCKET, key, put)


def read(key: str) -> str:
    s3 = boto3.client("s3", region_name=REGION)
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode()


def boxes(manifest_text: str) -> dict[str, list[dict]]:
    lines = [json.loads(line) for line in manifest_text.splitlines()]
    return {line["source-ref"]: line["vehicles"]["annotations"] for line in lines}


def test_each_task_object_rebuilds_the_manifest_of_all_tasks(convert):
    # car x 10 -> left 100, width 20 % -> 200; y 10 -> top 50, height 40 % -> 200.
    # truck x 50 -> left 500. Task 1 written again later with a truck: the later one counts.
    upload("labeling/studio/exports/1.json", task(1, "car", 10))
    upload("labeling/studio/exports/2.json", task(2, "car", 50))
    event = upload("labeling/studio/exports/1.json", task(1, "truck", 50))

    outcome = convert(event)

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


@pytest.mark.parametrize("convert", ["true"], indirect=True)
def test_a_whole_export_starts_training_when_asked(convert):
    upload("labeling/studio/exports/3.json", task(3, "car", 10))
    event = upload("labeling/studio/exports/project-1.json", [task(4, "truck", 10)])

    outcome = convert(event)

    request = outcome["training_request"].removeprefix(f"s3://{BUCKET}/")
    assert request.startswith("training/requests/studio-")
    assert request.endswith(".manifest")
    assert set(boxes(read(request))) == {f"{IMAGES}3.jpg", f"{IMAGES}4.jpg"}


@pytest.mark.parametrize("convert", ["true"], indirect=True)
def test_a_task_object_does_not_start_training(convert):
    event = upload("labeling/studio/exports/3.json", task(3, "car", 10))

    assert "training_request" not in convert(event)


def test_an_export_that_cannot_convert_is_rejected_with_its_reason(convert):
    upload("labeling/studio/exports/1.json", task(1, "car", 10))
    event = upload("labeling/studio/exports/2.json", task(2, "bus", 10))

    outcome = convert(event)

    reason = "task 2: label 'bus' is not one of the classes ('car', 'truck')"
    assert outcome == {"rejected": reason, "trigger": "labeling/studio/exports/2.json"}
    assert json.loads(read("labeling/studio/manifests/studio.rejected.json")) == {
        "trigger": "labeling/studio/exports/2.json",
        "error": reason,
    }


def test_a_broken_object_is_named_in_the_rejection(convert):
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=BUCKET, Key="labeling/studio/exports/9.json", Body=b'{"id": 9,')
    event = upload("labeling/studio/exports/1.json", task(1, "car", 10))

    outcome = convert(event)

    assert outcome["rejected"].startswith("labeling/studio/exports/9.json: ")
