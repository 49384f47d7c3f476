"""The bulk-counting Lambda step by step against moto: select, manifest, count, summarize.

The transform's outputs are written by the test as Batch Transform writes them (the
endpoint's JSON answer, at ``<output prefix>/<key>.out``); everything else is the Lambda's.
"""

from __future__ import annotations

import importlib
import io
import json
import sys
from decimal import Decimal

import boto3
import pytest
from PIL import Image

from counting_core.counts.announcements import EventsNotDelivered
from tests.lambdas.conftest import (
    HAND_CHECKED_RESPONSE,
    REGION,
    emitted,
    image_bytes,
    make_bucket,
    make_results_table,
)
from tests.schema_checks import assert_valid, capture_result_events, sqs_events

BUCKET = "object-counting-dev-data-123456789012-us-east-1"
RESULTS_TABLE = "results"
SOURCE = "object-counting-dev.counting"
RUN = "object-counting-dev-bulk-1a2b3c4d"
MODEL = {
    "endpoint_name": "object-counting-dev-counter",
    "endpoint_config_name": "object-counting-dev-20261101-090000-0f0f0f",
    "model_name": "object-counting-dev-20261101-090000-0f0f0f",
    "class_map": {"0": "car", "1": "person"},
}
ANSWER = HAND_CHECKED_RESPONSE


def jpeg_with_exif() -> bytes:
    """A phone-style JPEG: EXIF (camera make, orientation) before the image data."""
    exif = Image.Exif()
    exif[0x010F] = "Pixel"  # Make
    exif[0x0112] = 1  # Orientation: upright
    buffer = io.BytesIO()
    Image.new("RGB", (640, 480), (30, 90, 40)).save(buffer, format="JPEG", exif=exif, quality=90)
    return buffer.getvalue()


@pytest.fixture
def handler(aws, monkeypatch):
    monkeypatch.setenv("DATA_BUCKET", BUCKET)
    monkeypatch.setenv("RESULTS_TABLE", RESULTS_TABLE)
    monkeypatch.setenv("SCORE_THRESHOLD", "0.2")
    monkeypatch.setenv("ANNOTATE", "true")
    monkeypatch.setenv("MAX_PAYLOAD_BYTES", str(6 * 1024 * 1024))
    monkeypatch.setenv("EVENT_SOURCE", SOURCE)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "bulk-counting")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ObjectCounting")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    make_bucket(BUCKET)
    make_results_table(RESULTS_TABLE)
    sys.modules.pop("lambdas.bulk_counter.handler", None)
    module = importlib.import_module("lambdas.bulk_counter.handler")
    yield module
    module.bulk_counter.cache_clear()


@pytest.fixture
def results_bus(handler):
    sqs = boto3.client("sqs", region_name=REGION)
    url = capture_result_events(boto3.client("events", region_name=REGION), sqs, SOURCE)
    return lambda: sqs_events(sqs, url)


s3 = lambda: boto3.client("s3", region_name=REGION)  # noqa: E731
table = lambda: boto3.resource("dynamodb", region_name=REGION).Table(RESULTS_TABLE)  # noqa: E731


def put(key: str, body: bytes) -> dict:
    return s3().put_object(Bucket=BUCKET, Key=key, Body=body)


def listing(prefix: str) -> list[dict]:
    """What the Distributed Map's S3 reader hands each batch: ListObjectsV2 Contents."""
    contents = s3().list_objects_v2(Bucket=BUCKET, Prefix=prefix)["Contents"]
    return json.loads(json.dumps(contents, default=str))


def read_json(key: str) -> dict:
    return json.loads(s3().get_object(Bucket=BUCKET, Key=key)["Body"].read())


def invoke(handler, lambda_context, **request):
    return handler.main({"run": RUN, **request}, lambda_context)


def backlog() -> dict[str, dict]:
    return {
        "archive/2026/street/cam1.png": put("archive/2026/street/cam1.png", image_bytes()),
        "archive/2026/street/cam2.jpg": put("archive/2026/street/cam2.jpg", jpeg_with_exif()),
        "archive/2026/street/readme.txt": put("archive/2026/street/readme.txt", b"cameras"),
        "archive/2026/street/broken.jpg": put("archive/2026/street/broken.jpg", b"%PDF-1.7\n"),
    }


def test_a_backlog_is_selected_counted_announced_and_summarized(
    handler, results_bus, lambda_context
):
    puts = backlog()

    selected = invoke(
        handler, lambda_context, action="select", model=MODEL, items=listing("archive/2026/")
    )
    manifest = invoke(handler, lambda_context, action="manifest")

    assert selected == {
        "listed": 4, "ignored": 1, "skipped": 0, "selected": 2,
        "counted": 0, "capped": 0, "rejected": 1, "failed": 0, "objects_by_class": {},
    }  # fmt: skip
    assert manifest == {"selected": 2, "uri": f"s3://{BUCKET}/bulk/{RUN}/transform.manifest"}
    assert read_json(f"bulk/{RUN}/transform.manifest") == [
        {"prefix": f"s3://{BUCKET}/"},
        "archive/2026/street/cam1.png",
        "archive/2026/street/cam2.jpg",
    ]

    # The transform answers for cam1.png; cam2.jpg fails in it and has no output.
    put(f"bulk/{RUN}/outputs/archive/2026/street/cam1.png.out", json.dumps(ANSWER).encode())
    counted = invoke(
        handler, lambda_context, action="count", model=MODEL, items=listing(f"bulk/{RUN}/outputs/")
    )
    failed_job = {
        "TransformJobStatus": "Failed",
        "FailureReason": "ClientError: See job logs for more information",
        "TransformStartTime": 1_795_000_000_000,
        "TransformEndTime": 1_795_001_800_000,
        "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
    }
    summary = invoke(
        handler,
        lambda_context,
        action="summarize",
        prefix="archive/2026/",
        model_name=MODEL["model_name"],
        transform={"Error": "States.TaskFailed", "Cause": json.dumps(failed_job)},
    )

    assert counted["counted"] == 1
    assert counted["objects_by_class"] == {"car": 2, "person": 1}
    assert summary == {
        "run": RUN,
        "prefix": "archive/2026/",
        "model_name": MODEL["model_name"],
        "outcome": "partial",
        "images_listed": 4,
        "counted": 1,
        "capped": 0,
        "rejected": 1,
        "skipped": 0,
        "ignored": 1,
        "failed": 1,
        "objects_by_class": {"car": 2, "person": 1},
        "transform_status": "Failed",
        "transform_failure": "ClientError: See job logs for more information",
        "instance_hours": 0.5,
        "summary_uri": f"s3://{BUCKET}/bulk/{RUN}/summary.json",
    }
    assert read_json(f"bulk/{RUN}/summary.json") == summary

    cam1 = read_json("results/archive/2026/street/cam1.png.json")
    assert (cam1["status"], cam1["pipeline"], cam1["count"]) == ("counted", "bulk", 3)
    assert cam1["source"]["version_id"] == puts["archive/2026/street/cam1.png"]["VersionId"]
    assert cam1["image_size"] == {"width": 200, "height": 100}
    broken = read_json("results/archive/2026/street/broken.jpg.json")
    assert broken["reason"] == "not a JPEG or PNG image (starts with b'%PDF-1.7')"
    assert_valid("result-document.json", cam1)
    assert_valid("result-document.json", broken)

    items = {item["image"]: item for item in table().scan()["Items"]}
    assert set(items) == {
        f"s3://{BUCKET}/archive/2026/street/cam1.png",
        f"s3://{BUCKET}/archive/2026/street/broken.jpg",
    }
    item = items[f"s3://{BUCKET}/archive/2026/street/cam1.png"]
    assert (item["pipeline"], item["count"], item["threshold"]) == ("bulk", 3, Decimal("0.2"))
    for found in items.values():
        assert_valid("result-table-item.json", found)

    events = {event["detail"]["image"]: event for event in results_bus()}
    assert set(events) == set(items)
    counted_event = events[f"s3://{BUCKET}/archive/2026/street/cam1.png"]
    assert counted_event["detail-type"] == "Image Counted"
    assert counted_event["detail"]["annotated"] == (
        f"s3://{BUCKET}/annotated/archive/2026/street/cam1.png.png"
    )
    assert events[f"s3://{BUCKET}/archive/2026/street/broken.jpg"]["detail-type"] == (
        "Image Rejected"
    )
    assert_valid("image-counted-event.json", counted_event)
    assert_valid(
        "image-rejected-event.json", events[f"s3://{BUCKET}/archive/2026/street/broken.jpg"]
    )


def test_images_this_model_counted_are_skipped_and_a_new_model_counts_them(handler, lambda_context):
    put("archive/a.png", image_bytes())
    invoke(handler, lambda_context, action="select", model=MODEL, items=listing("archive/"))
    put(f"bulk/{RUN}/outputs/archive/a.png.out", json.dumps(ANSWER).encode())
    invoke(
        handler, lambda_context, action="count", model=MODEL, items=listing(f"bulk/{RUN}/outputs/")
    )

    again = invoke(handler, lambda_context, action="select", model=MODEL, items=listing("archive/"))
    newer = {**MODEL, "model_name": "object-counting-dev-20261201-090000-abcdef"}
    retrained = invoke(
        handler, lambda_context, action="select", model=newer, items=listing("archive/")
    )

    assert (again["skipped"], again["selected"]) == (1, 0)
    assert (retrained["skipped"], retrained["selected"]) == (0, 1)


def test_an_image_too_large_for_the_transform_is_rejected_without_reading_it_whole(
    handler, monkeypatch, lambda_context
):
    monkeypatch.setattr(handler.bulk_counter(), "_max_payload", 100)
    put("archive/big.png", image_bytes(size=(400, 400)))

    report = invoke(
        handler, lambda_context, action="select", model=MODEL, items=listing("archive/")
    )

    assert (report["rejected"], report["selected"]) == (1, 0)
    reason = read_json("results/archive/big.png.json")["reason"]
    assert reason.startswith("image is ")
    assert "upload it under incoming/" in reason


def test_events_that_cannot_be_published_fail_the_batch_before_its_table_items(
    handler, monkeypatch, lambda_context
):
    put("archive/a.png", image_bytes())
    put(f"bulk/{RUN}/outputs/archive/a.png.out", json.dumps(ANSWER).encode())
    refused = {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure"}]}
    monkeypatch.setattr(handler.bulk_counter(), "_put_events", lambda **_: refused)
    monkeypatch.setattr("counting_core.counts.announcements.time.sleep", lambda _: None)

    with pytest.raises(EventsNotDelivered, match="1 result events not delivered"):
        invoke(handler, lambda_context, action="count", model=MODEL, items=listing(f"bulk/{RUN}/"))

    # The result is written (and rewritten by the retry); the table does not claim it yet.
    assert read_json("results/archive/a.png.json")["count"] == 3
    assert table().scan()["Items"] == []


def test_outputs_at_the_models_cap_are_flagged_reported_and_measured(
    handler, results_bus, lambda_context, capsys
):
    # ANSWER holds 4 detections (3 at or above 0.2): a cap of 4 was reached, 5 was not.
    for name, cap in (("dense", 4), ("sparse", 5)):
        put(f"archive/{name}.png", image_bytes())
        answer = json.dumps({**ANSWER, "max_detections": cap}).encode()
        put(f"bulk/{RUN}/outputs/archive/{name}.png.out", answer)

    report = invoke(
        handler, lambda_context, action="count", model=MODEL, items=listing(f"bulk/{RUN}/outputs/")
    )

    assert (report["counted"], report["capped"]) == (2, 1)
    flags = {
        name: read_json(f"results/archive/{name}.png.json")["capped"]
        for name in ("dense", "sparse")
    }
    assert flags == {"dense": True, "sparse": False}
    items = {item["image"]: item["capped"] for item in table().scan()["Items"]}
    assert items == {
        f"s3://{BUCKET}/archive/dense.png": True,
        f"s3://{BUCKET}/archive/sparse.png": False,
    }
    events = {event["detail"]["image"]: event["detail"]["capped"] for event in results_bus()}
    assert events == items
    assert emitted(capsys, "ImagesCapped") == 1


def test_an_output_the_model_garbled_is_failed_not_counted(handler, lambda_context):
    put("archive/a.png", image_bytes())
    put(f"bulk/{RUN}/outputs/archive/a.png.out", b'{"predictions": []}')

    report = invoke(
        handler, lambda_context, action="count", model=MODEL, items=listing(f"bulk/{RUN}/outputs/")
    )

    assert (report["counted"], report["failed"]) == (0, 1)
    assert table().scan()["Items"] == []


def test_a_request_of_unknown_shape_is_refused_by_name(handler, lambda_context):
    with pytest.raises(ValueError, match="action"):
        handler.main({"run": RUN, "action": "delete"}, lambda_context)
