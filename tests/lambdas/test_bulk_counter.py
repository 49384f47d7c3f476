"""The bulk-counting Lambda step by step against moto: select, manifest, count, summarize.

The transform's outputs are written by the test as Batch Transform writes them (the
endpoint's JSON answer, at ``<output prefix>/<key>.out``); everything else is the Lambda's.
"""

from __future__ import annotations

import io
import json
import random
import threading
from decimal import Decimal

import boto3
import pytest
from botocore.exceptions import ClientError
from PIL import Image

from counting_core.counts import bulk
from lambdas.bulk_counter import handler as bulk_module
from lambdas.bulk_counter.handler import run_step
from tests.lambdas.bulk_harness import (
    ANSWER,
    BUCKET,
    ENVIRONMENT,
    MODEL,
    RESULTS_TABLE,
    RUN,
    SOURCE,
    build_bulk,
    prepare_aws,
)
from tests.lambdas.conftest import (
    REGION,
    emitted,
    image_bytes,
)
from tests.schema_checks import assert_valid, capture_result_events, sqs_events


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
    prepare_aws(monkeypatch)
    return build_bulk()


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


def keys_under(prefix: str) -> set[str]:
    return {
        item["Key"]
        for item in s3().list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", [])
    }


def read_json(key: str) -> dict:
    return json.loads(s3().get_object(Bucket=BUCKET, Key=key)["Body"].read())


def invoke(handler, lambda_context, **request):
    return run_step(handler, {"run": RUN, **request})


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
        "counted": 0, "capped": 0, "rejected": 1, "overwritten": 0, "failed": 0,
        "objects_by_class": {},
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
        "overwritten": 0,
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
    send_to_transform()
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
    handler, lambda_context
):
    put("archive/big.png", image_bytes(size=(400, 400)))

    report = invoke(
        build_bulk(MAX_PAYLOAD_BYTES="100"),
        lambda_context,
        action="select",
        model=MODEL,
        items=listing("archive/"),
    )

    assert (report["rejected"], report["selected"]) == (1, 0)
    reason = read_json("results/archive/big.png.json")["reason"]
    assert reason.startswith("image is ")
    assert "upload it under incoming/" in reason


def test_a_key_too_long_for_its_results_is_rejected_before_the_transform(handler, lambda_context):
    # results/ + key + .json: 1,025 bytes, one more than S3 takes.
    key = "archive/" + "k" * (1024 - len("results/") - len(".json") - len("archive/") - 3) + ".png"
    put(key, image_bytes())

    report = invoke(
        handler, lambda_context, action="select", model=MODEL, items=listing("archive/")
    )

    assert (report["rejected"], report["selected"]) == (1, 0)
    (item,) = table().scan()["Items"]
    assert item["reason"].startswith("key too long to count: results/ key would be 1025 bytes")
    assert keys_under("results/") == set()


class RefusingBus:
    """EventBridge refusing every entry for one image, accepting the others."""

    def __init__(self, refused_image: str) -> None:
        self.client = boto3.client("events", region_name=REGION)
        self.refused_image = refused_image

    def put_events(self, Entries):
        answers = []
        for entry in Entries:
            if json.loads(entry["Detail"])["image"] == self.refused_image:
                answers.append({"ErrorCode": "InternalFailure", "ErrorMessage": "no"})
            else:
                answers.extend(self.client.put_events(Entries=[entry])["Entries"])
        failed = sum("ErrorCode" in answer for answer in answers)
        return {"FailedEntryCount": failed, "Entries": answers}


def summarize_completed(counter) -> dict:
    """The run's summary after a transform job that completed, prefix archive/."""
    return run_step(
        counter,
        {
            "run": RUN,
            "action": "summarize",
            "prefix": "archive/",
            "model_name": MODEL["model_name"],
            "transform": {"TransformJobStatus": "Completed"},
        },
    )


def send_to_transform() -> None:
    """What the run's select and manifest steps leave for the count step, for every image
    under archive/: the keys and ETags the listing saw."""
    counter = build_bulk()
    run_step(
        counter, {"run": RUN, "action": "select", "model": MODEL, "items": listing("archive/")}
    )
    run_step(counter, {"run": RUN, "action": "manifest"})


def outputs(*names: str) -> list[dict]:
    for name in names:
        put(f"archive/{name}.png", image_bytes())
        put(f"bulk/{RUN}/outputs/archive/{name}.png.out", json.dumps(ANSWER).encode())
    send_to_transform()
    return listing(f"bulk/{RUN}/outputs/")


def test_an_image_whose_event_is_refused_fails_alone(
    handler, results_bus, monkeypatch, lambda_context
):
    monkeypatch.setattr("counting_core.counts.announcements.time.sleep", lambda _: None)
    items = outputs("a", "b", "c")
    refusing = build_bulk(events=RefusingBus(f"s3://{BUCKET}/archive/b.png"))

    report = invoke(refusing, lambda_context, action="count", model=MODEL, items=items)

    assert (report["counted"], report["failed"]) == (2, 1)
    finished = {i["image"] for i in table().scan()["Items"] if "unfinished" not in i}
    assert finished == {f"s3://{BUCKET}/archive/a.png", f"s3://{BUCKET}/archive/c.png"}
    assert {event["detail"]["image"] for event in results_bus()} == finished


class FailingResultPuts:
    """S3 failing every put of one image's result document."""

    def __init__(self, key: str) -> None:
        self.client = boto3.client("s3", region_name=REGION)
        self.key = key
        self.failed = 0

    def __getattr__(self, name):
        call = getattr(self.client, name)
        if name != "put_object":
            return call

        def put_object(**request):
            if request["Key"] == self.key:
                self.failed += 1
                raise ClientError({"Error": {"Code": "SlowDown", "Message": "no"}}, name)
            return call(**request)

        return put_object


def test_an_image_whose_writes_keep_failing_is_tried_again_then_failed_alone(
    handler, results_bus, lambda_context, capsys
):
    items = outputs("a", "b")
    s3 = FailingResultPuts("results/archive/b.png.json")
    failing = build_bulk(s3=s3)

    report = invoke(failing, lambda_context, action="count", model=MODEL, items=items)
    summary = summarize_completed(failing)

    assert (report["counted"], report["failed"]) == (1, 1)
    assert s3.failed == 3  # lambdas.bulk_counter.service.WRITE_ATTEMPTS
    # The summary counts what the table holds finished, and what was announced.
    finished = [i for i in table().scan()["Items"] if "unfinished" not in i]
    assert summary["counted"] == len(finished) == 1
    assert [event["detail"]["image"] for event in results_bus()] == [f"s3://{BUCKET}/archive/a.png"]
    assert emitted(capsys, "ImagesCounted") == 1


def test_a_batch_run_again_neither_announces_nor_measures_twice(
    handler, results_bus, lambda_context, capsys
):
    # The Distributed Map retries a batch whose Lambda finished but whose answer was lost.
    items = outputs("a", "b")

    first = invoke(handler, lambda_context, action="count", model=MODEL, items=items)
    again = invoke(handler, lambda_context, action="count", model=MODEL, items=items)

    assert first == again
    assert (again["counted"], again["objects_by_class"]) == (2, {"car": 4, "person": 2})
    assert len(results_bus()) == 2
    assert emitted(capsys, "ImagesCounted") == 2


def test_one_corrupt_image_loses_its_annotated_copy_not_its_batch(handler, lambda_context):
    # The header says 640 x 480, the second half is cut off: sized, counted, not drawable.
    noise = Image.frombytes("RGB", (640, 480), random.Random(7).randbytes(640 * 480 * 3))
    buffer = io.BytesIO()
    noise.save(buffer, format="JPEG")
    put("archive/cut.jpg", buffer.getvalue()[: buffer.tell() // 2])
    put(f"bulk/{RUN}/outputs/archive/cut.jpg.out", json.dumps(ANSWER).encode())
    items = outputs("a")

    report = invoke(handler, lambda_context, action="count", model=MODEL, items=items)

    assert (report["counted"], report["failed"]) == (2, 0)
    assert keys_under("annotated/") == {"annotated/archive/a.png.png"}
    assert read_json("results/archive/cut.jpg.json")["count"] == 3


def test_the_annotated_copy_is_drawn_at_bounded_resolution(handler, lambda_context):
    buffer = io.BytesIO()
    Image.new("RGB", (6000, 1500), (30, 90, 40)).save(buffer, format="JPEG")
    put("archive/wide.jpg", buffer.getvalue())
    put(f"bulk/{RUN}/outputs/archive/wide.jpg.out", json.dumps(ANSWER).encode())
    send_to_transform()

    invoke(
        handler, lambda_context, action="count", model=MODEL, items=listing(f"bulk/{RUN}/outputs/")
    )

    annotated = s3().get_object(Bucket=BUCKET, Key="annotated/archive/wide.jpg.png")["Body"]
    # At most 4,096 px on the longest side (results.ANNOTATED_MAX_SIDE): the 6,000 px wide
    # picture drawn on 4,096 px wide (its legend may add a strip below it).
    assert Image.open(annotated).width == 4096
    assert read_json("results/archive/wide.jpg.json")["image_size"] == {
        "width": 6000,
        "height": 1500,
    }


def test_an_output_larger_than_an_endpoint_may_answer_is_failed_unread(handler, lambda_context):
    put("archive/dense.png", image_bytes())
    key = f"bulk/{RUN}/outputs/archive/dense.png.out"
    put(key, b" " * (bulk.MAX_OUTPUT_BYTES + 1))
    reads = []

    class Watching:
        client = boto3.client("s3", region_name=REGION)

        def __getattr__(self, name):
            call = getattr(self.client, name)
            if name != "get_object":
                return call
            return lambda **request: reads.append(request["Key"]) or call(**request)

    send_to_transform()
    report = invoke(
        build_bulk(s3=Watching()), lambda_context, action="count", model=MODEL, items=listing(key)
    )

    assert (report["counted"], report["failed"]) == (0, 1)
    assert key not in reads


class OverlapWatch:
    """S3 that tracks outputs read whose result document is not written yet."""

    def __init__(self) -> None:
        self.client = boto3.client("s3", region_name=REGION)
        self.lock = threading.Lock()
        self.open = 0
        self.most = 0

    def __getattr__(self, name):
        call = getattr(self.client, name)
        if name not in ("get_object", "put_object"):
            return call

        def watched(**request):
            with self.lock:
                if name == "get_object" and request["Key"].endswith(".out"):
                    self.open += 1
                    self.most = max(self.most, self.open)
                elif name == "put_object" and request["Key"].startswith("results/"):
                    self.open -= 1
            return call(**request)

        return watched


def test_large_outputs_are_post_processed_one_at_a_time(handler, lambda_context):
    # Outputs of 60 % of the bytes a function post-processes at once: no two fit together.
    size = bulk.OUTPUT_BYTES_IN_FLIGHT * 6 // 10
    for name in "abcd":
        put(f"archive/{name}.png", image_bytes())
        body = json.dumps(ANSWER).encode()
        put(f"bulk/{RUN}/outputs/archive/{name}.png.out", body + b" " * (size - len(body)))
    send_to_transform()
    watch = OverlapWatch()

    report = invoke(
        build_bulk(s3=watch, ANNOTATE="false"),
        lambda_context,
        action="count",
        model=MODEL,
        items=listing(f"bulk/{RUN}/outputs/"),
    )

    assert report["counted"] == 4
    assert watch.most == 1


def test_the_function_builds_its_counter_from_its_environment_on_first_use(
    handler, monkeypatch, lambda_context
):
    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    bulk_module.bulk_counter.cache_clear()
    try:
        answer = bulk_module.main({"run": RUN, "action": "manifest"}, lambda_context)
        assert answer == {"selected": 0, "uri": f"s3://{BUCKET}/bulk/{RUN}/transform.manifest"}
        assert bulk_module.bulk_counter() is bulk_module.bulk_counter()
    finally:
        bulk_module.bulk_counter.cache_clear()


def test_outputs_at_the_models_cap_are_flagged_reported_and_measured(
    handler, results_bus, lambda_context, capsys
):
    # ANSWER holds 4 detections (3 at or above 0.2): a cap of 4 was reached, 5 was not.
    for name, cap in (("dense", 4), ("sparse", 5)):
        put(f"archive/{name}.png", image_bytes())
        answer = json.dumps({**ANSWER, "max_detections": cap}).encode()
        put(f"bulk/{RUN}/outputs/archive/{name}.png.out", answer)

    send_to_transform()
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

    send_to_transform()
    report = invoke(
        handler, lambda_context, action="count", model=MODEL, items=listing(f"bulk/{RUN}/outputs/")
    )

    assert (report["counted"], report["failed"]) == (0, 1)
    assert table().scan()["Items"] == []


def test_a_request_of_unknown_shape_is_refused_by_name(handler, lambda_context):
    with pytest.raises(ValueError, match="action"):
        run_step(handler, {"run": RUN, "action": "delete"})


def test_an_event_of_thousands_of_classes_is_trimmed_not_failing_its_batch(
    handler, results_bus, lambda_context
):
    # 4,000 classes of 70-character names, one box each: the full counts are about 300 KB,
    # more than PutEvents takes; the event keeps the biggest classes within 64 KB.
    classes = 4000
    model = {**MODEL, "class_map": {str(n): f"{n:04d}-" + "x" * 65 for n in range(classes)}}
    put("archive/crowd.png", image_bytes())
    answer = {"prediction": [[n, 0.9, 0.1, 0.1, 0.2, 0.2] for n in range(classes)]}
    put(f"bulk/{RUN}/outputs/archive/crowd.png.out", json.dumps(answer).encode())

    send_to_transform()
    report = invoke(
        handler, lambda_context, action="count", model=model, items=listing(f"bulk/{RUN}/outputs/")
    )

    assert (report["counted"], report["failed"]) == (1, 0)
    (event,) = results_bus()
    # "<70 characters>":1 plus a comma: 75 bytes each; 64 KB hold 873 of them.
    assert len(event["detail"]["by_class"]) == 65_536 // 75
    assert event["detail"]["classes_in_result_only"] == classes - 65_536 // 75


def test_an_image_overwritten_after_the_listing_is_reported_overwritten_not_counted(
    handler, results_bus, lambda_context
):
    put("archive/a.png", image_bytes())
    send_to_transform()
    # A new version lands while the transform runs: the output may be either version's.
    put("archive/a.png", jpeg_with_exif())
    put(f"bulk/{RUN}/outputs/archive/a.png.out", json.dumps(ANSWER).encode())

    report = invoke(
        handler, lambda_context, action="count", model=MODEL, items=listing(f"bulk/{RUN}/outputs/")
    )
    summary = summarize_completed(handler)

    assert (report["counted"], report["overwritten"], report["failed"]) == (0, 1, 0)
    assert (summary["overwritten"], summary["failed"], summary["outcome"]) == (1, 0, "failed")
    assert table().scan()["Items"] == []
    assert keys_under("results/") == set()
    assert results_bus() == []


def test_an_image_is_counted_as_the_version_the_listing_saw(handler, lambda_context):
    listed = put("archive/a.png", image_bytes())
    send_to_transform()
    put(f"bulk/{RUN}/outputs/archive/a.png.out", json.dumps(ANSWER).encode())

    invoke(
        handler, lambda_context, action="count", model=MODEL, items=listing(f"bulk/{RUN}/outputs/")
    )

    source = read_json("results/archive/a.png.json")["source"]
    assert (source["version_id"], source["etag"]) == (
        listed["VersionId"],
        listed["ETag"].strip('"'),
    )


@pytest.mark.parametrize(
    "output",
    [
        "archive/2026/street/cam1.png.out",  # the input's folders kept
        "cam1.png.out",  # the file name alone
    ],
)
def test_an_output_is_matched_to_its_image_in_either_layout(handler, lambda_context, output):
    put("archive/2026/street/cam1.png", image_bytes())
    send_to_transform()
    put(f"bulk/{RUN}/outputs/{output}", json.dumps(ANSWER).encode())

    report = invoke(
        handler, lambda_context, action="count", model=MODEL, items=listing(f"bulk/{RUN}/outputs/")
    )

    assert (report["counted"], report["failed"]) == (1, 0)
    assert read_json("results/archive/2026/street/cam1.png.json")["count"] == 3


def test_images_sharing_a_file_name_are_told_apart_by_their_folders(handler, lambda_context):
    for key in ("archive/east/a.png", "archive/west/a.png"):
        put(key, image_bytes())
    send_to_transform()
    for key in ("archive/east/a.png", "archive/west/a.png"):
        put(f"bulk/{RUN}/outputs/{key}.out", json.dumps(ANSWER).encode())

    report = invoke(
        handler, lambda_context, action="count", model=MODEL, items=listing(f"bulk/{RUN}/outputs/")
    )

    assert (report["counted"], report["failed"]) == (2, 0)
    assert keys_under("results/") == {
        "results/archive/east/a.png.json",
        "results/archive/west/a.png.json",
    }


def test_an_output_two_images_could_own_is_refused_naming_both(handler, lambda_context, caplog):
    for key in ("archive/east/a.png", "archive/west/a.png"):
        put(key, image_bytes())
    send_to_transform()
    # Without folders, one output for two images named alike: whose it is cannot be told.
    put(f"bulk/{RUN}/outputs/a.png.out", json.dumps(ANSWER).encode())

    report = invoke(
        handler, lambda_context, action="count", model=MODEL, items=listing(f"bulk/{RUN}/outputs/")
    )

    assert (report["counted"], report["failed"]) == (0, 1)
    assert keys_under("results/") == set()
    (failure,) = [record.error for record in caplog.records if hasattr(record, "error")]
    assert failure == (
        "InputError: images archive/east/a.png and archive/west/a.png share the file name "
        "a.png: keep their responses in folders named like theirs"
    )
