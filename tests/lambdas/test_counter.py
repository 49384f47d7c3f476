"""The counter Lambda end to end against moto, the endpoint through botocore's Stubber.

Every row of counting_core.uploads.failures.RULES is played here through the handler (table-driven),
beside the end-to-end paths: counted once, retried as a new message, dead-lettered, handed
back, suspects counted alone, and writes that a failure cannot leave half done.
"""

from __future__ import annotations

import ast
import io
import json
from decimal import Decimal

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)
from aws_lambda_powertools.utilities.idempotency.persistence import dynamodb as persistence
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.stub import ANY, Stubber
from PIL import Image
from pydantic import ValidationError

from counting_core.constants import IMAGE_WORST_CASE_SECONDS
from counting_core.contracts.published import CountedDocument
from counting_core.imaging import images
from counting_core.uploads import cold_start, delivery, failures
from counting_core.uploads.failures import Verdict
from lambdas.counter import service as counter_service
from stacks.config import CounterSettings
from tests.conftest import ROOT
from tests.lambdas.conftest import REGION, emitted, image_bytes
from tests.lambdas.counter_harness import (
    ACTIVE_MODEL,
    BUCKET,
    DEFAULT_TIMEOUT_MS,
    EVENT_SOURCE,
    PARAMETER,
    RESPONSE,
    FakeTime,
    TimedContext,
    answers,
    idempotency_items,
    keys_under,
    read_json,
    record,
    sqs_event,
    table_items,
    upload,
)
from tests.schema_checks import assert_valid, capture_result_events, sqs_events


@pytest.fixture(autouse=True)
def fake_time(monkeypatch) -> FakeTime:
    """Cold-start waits pass at once (and are recorded) in every test here."""
    fake = FakeTime()
    monkeypatch.setattr(cold_start, "time", fake)
    return fake


@pytest.fixture
def lambda_context() -> TimedContext:
    """Overrides conftest's: a fresh invocation of the counter has its whole timeout left."""
    return TimedContext()


@pytest.fixture
def handler(counter):
    return counter[0]


@pytest.fixture
def sent(counter):
    return counter[1]


@pytest.fixture
def endpoint(handler):
    """The endpoint's answers, queued in order.

    moto 5.2.5's sagemaker-runtime cannot take a binary (image) request body, so the
    endpoint is botocore's Stubber, which also checks each request against the API model.
    """
    with Stubber(handler.counting_service()._runtime) as stub:
        yield stub
        stub.assert_no_pending_responses()


def test_an_image_delivered_twice_is_counted_once(handler, endpoint, lambda_context):
    event = json.dumps(upload("incoming/street/cam1.png", image_bytes()))
    answers(endpoint, RESPONSE)
    counter = handler.counting_service()
    calls = []
    original = counter.count
    counter.count = lambda image: calls.append(image) or original(image)

    first = handler.main(sqs_event(event), lambda_context)
    second = handler.main(sqs_event(event), lambda_context)

    assert first == {"batchItemFailures": []}
    assert second == {"batchItemFailures": []}
    assert len(calls) == 1
    result = read_json("results/street/cam1.png.json")
    assert result["status"] == "counted"
    assert result["count"] == 3
    assert result["by_class"] == {"car": 2, "person": 1}
    assert result["threshold"] == 0.2
    assert result["threshold_origin"] == "configured"
    assert result["image_size"] == {"width": 200, "height": 100}
    assert result["model"]["endpoint_config_name"] == "object-counting-dev-config-1"
    assert [d["number"] for d in result["detections"]] == [1, 2, 3]
    assert result["detections"][0]["class_name"] == "car"
    items = table_items()
    assert len(items) == 1
    assert items[0]["image"] == f"s3://{BUCKET}/incoming/street/cam1.png"
    assert items[0]["count"] == 3
    assert items[0]["by_class"] == {"car": 2, "person": 1}
    annotated = boto3.client("s3", region_name=REGION).get_object(
        Bucket=BUCKET, Key="annotated/street/cam1.png.png"
    )
    assert annotated["Body"].read().startswith(b"\x89PNG")


CALIBRATED = {**ACTIVE_MODEL, "best_threshold": 0.6}


@pytest.mark.parametrize(
    ("counter", "expected"),
    [
        # RESPONSE's scores: 0.91, 0.55, 0.20, 0.19. Expected: threshold, origin, count.
        ((None, CALIBRATED), (0.6, "calibrated", 1)),
        ((None, ACTIVE_MODEL), (0.2, "default", 3)),  # a model deployed before calibration
        (("0.5", CALIBRATED), (0.5, "configured", 2)),  # counter.score_threshold pins it
    ],
    indirect=["counter"],
    ids=["calibrated", "default", "configured"],
)
def test_the_threshold_and_its_origin_are_recorded(handler, endpoint, lambda_context, expected):
    event = json.dumps(upload("incoming/street/cam2.png", image_bytes()))
    answers(endpoint, RESPONSE)

    assert handler.main(sqs_event(event), lambda_context) == {"batchItemFailures": []}

    result = read_json("results/street/cam2.png.json")
    assert (result["threshold"], result["threshold_origin"], result["count"]) == expected
    threshold, origin, _ = expected
    (item,) = table_items()
    assert (item["threshold"], item["threshold_origin"]) == (Decimal(str(threshold)), origin)


def test_images_are_counted_concurrently_and_each_once(handler, endpoint, lambda_context):
    keys = [f"incoming/batch/{number}.png" for number in range(6)]
    bodies = [json.dumps(upload(key, image_bytes())) for key in keys]
    for _ in keys:
        answers(endpoint, RESPONSE)

    response = handler.main(sqs_event(*bodies, *bodies), lambda_context)

    assert response == {"batchItemFailures": []}
    assert {item["image"] for item in table_items()} == {f"s3://{BUCKET}/{key}" for key in keys}


# --- The failure table, row by row through the handler. -------------------------------------


# What the counter sends for every image (the image bytes themselves vary).
INVOKE_REQUEST = {
    "EndpointName": ACTIVE_MODEL["endpoint_name"],
    "ContentType": "application/x-image",
    "Accept": "application/json",
    "Body": ANY,
}


def rule_for(start: str) -> failures.Rule:
    """The one row of the failure table whose text starts with ``start``."""
    (rule,) = [rule for rule in failures.RULES if rule.failure.startswith(start)]
    return rule


def jpeg(size=(200, 100)) -> bytes:
    return image_bytes("JPEG", size)


def client_error(code: str, status: int, **modeled) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} message"},
            "ResponseMetadata": {"HTTPStatusCode": status},
            **modeled,
        },
        "InvokeEndpoint",
    )


class FailingEndpoint:
    """Stands in for the SageMaker Runtime client: fails every call the same way."""

    def __init__(self, error: Exception) -> None:
        self.error = error
        self.calls = 0

    def invoke_endpoint(self, **request):
        self.calls += 1
        raise self.error


class AnsweringEndpoint:
    def __init__(self, body: bytes) -> None:
        self.body = body

    def invoke_endpoint(self, **request):
        return {"Body": io.BytesIO(self.body)}


def uncountable_key() -> str:
    return "incoming/" + "k" * (1024 - len("incoming/") - len(".jpg") - 4) + ".jpg"


REJECTIONS = {
    "Name not ending in .jpg, .jpeg, .jpe, .jfif or .png": (
        "incoming/report.pdf",
        b"%PDF-1.7",
        None,
        "not an image name",
    ),
    "Key too long for its `results/` or `annotated/` key (S3 keys: 1,024 bytes)": (
        uncountable_key(),
        jpeg(),
        None,
        "key too long to count: annotated/ key would be 1025",
    ),
    "Empty object, or larger than the upload limit": (
        "incoming/empty.jpg",
        b"",
        None,
        "image is empty",
    ),
    "First bytes neither JPEG nor PNG": (
        "incoming/fake.jpg",
        b"%PDF-1.7 not an image",
        None,
        "not a JPEG or PNG image",
    ),
    "More pixels than the limit for its format": (
        "incoming/huge.png",
        image_bytes("PNG", (300, 200)),
        "pixels",
        "may have at most",
    ),
    "Corrupt or truncated image": (
        "incoming/cut.jpg",
        jpeg((400, 300))[:300],
        None,
        "corrupt JPEG image",
    ),
    "Too narrow to keep 32 pixels on its short side at the model's size": (
        "incoming/strip.png",
        image_bytes("PNG", (65_600, 40)),
        None,
        "too narrow to count",
    ),
    "`ModelError` whose container answered 4xx": (
        "incoming/odd.jpg",
        jpeg(),
        FailingEndpoint(
            client_error(
                "ModelError", 424, OriginalStatusCode=415, OriginalMessage="unsupported image"
            )
        ),
        "the model refused the image (ModelError 415): unsupported image",
    ),
}


@pytest.mark.parametrize("rule", list(REJECTIONS))
def test_rejections_are_recorded_once_and_not_retried(
    handler, sent, lambda_context, monkeypatch, rule
):
    key, data, fault, reason = REJECTIONS[rule]
    service = handler.counting_service()
    if fault == "pixels":
        monkeypatch.setitem(images._MAX_PIXELS, "png", 1000)
    elif fault is not None:
        service._runtime = fault
    event = sqs_event(json.dumps(upload(key, data)))

    assert handler.main(event, lambda_context) == {"batchItemFailures": []}

    assert sent.sent == []
    (item,) = table_items()
    assert item["status"] == "rejected"
    assert reason in item["reason"]
    json_written = (
        rule != "Key too long for its `results/` or `annotated/` key (S3 keys: 1,024 bytes)"
    )
    assert (keys_under("results/") != set()) == json_written
    assert keys_under("annotated/") == set()
    assert rule_for(rule).verdict is Verdict.REJECTED


def test_a_deleted_object_is_rejected(handler, sent, lambda_context):
    event = upload("incoming/gone.jpg", jpeg())
    boto3.client("s3", region_name=REGION).delete_object(
        Bucket=BUCKET, Key="incoming/gone.jpg", VersionId=event["detail"]["object"]["version-id"]
    )

    assert handler.main(sqs_event(json.dumps(event)), lambda_context) == {"batchItemFailures": []}

    assert "deleted before it was counted (NoSuchVersion)" in table_items()[0]["reason"]
    assert sent.sent == []


def test_an_upload_over_the_size_limit_is_refused_unread(handler, lambda_context, monkeypatch):
    monkeypatch.setattr(images, "MAX_UPLOAD_BYTES", 100)
    event = sqs_event(json.dumps(upload("incoming/big.jpg", jpeg())))

    handler.main(event, lambda_context)

    assert "at most 100 bytes are counted" in table_items()[0]["reason"]


def throttled(handler):
    handler.counting_service()._runtime = FailingEndpoint(client_error("ThrottlingException", 400))


RETRIED = {
    "`ThrottlingException`, `ModelNotReadyException` (cold start)": [
        client_error("ThrottlingException", 400),
        client_error("ModelNotReadyException", 429),
    ],
    "`InternalFailure`, `ServiceUnavailable`": [
        client_error("InternalFailure", 500),
        client_error("ServiceUnavailable", 503),
        client_error("InternalDependencyException", 530),
        client_error("ModelError", 424, OriginalStatusCode=500),
        client_error("ModelError", 424, OriginalStatusCode=429),
        client_error("ModelError", 424),
    ],
    "`ValidationError` (for example, the endpoint missing during a deployment)": [
        client_error("ValidationError", 400)
    ],
    "Endpoint timeout or connection error": [ReadTimeoutError(endpoint_url="https://runtime")],
}
RETRIED_CASES = [(rule, error) for rule, errors in RETRIED.items() for error in errors]


def assert_retried_once(sent, body: str) -> None:
    (copy,) = sent.sent
    assert copy.queue == "intake"
    assert copy.body == body
    assert copy.delay_seconds == delivery.RETRY_DELAY_SECONDS
    assert copy.attributes[delivery.FAILURES_ATTRIBUTE] == "1"
    assert table_items() == []
    assert idempotency_items() == []  # released: the copy counts the image


@pytest.mark.parametrize(("rule", "error"), RETRIED_CASES, ids=lambda value: str(value)[:40])
def test_endpoint_failures_are_retried_as_a_new_message(handler, sent, lambda_context, rule, error):
    handler.counting_service()._runtime = FailingEndpoint(error)
    body = json.dumps(upload("incoming/a.jpg", jpeg()))

    # The original is settled (deleted by Lambda); its copy carries the failure.
    assert handler.main(sqs_event(body), lambda_context) == {"batchItemFailures": []}

    assert_retried_once(sent, body)
    assert rule_for(rule).verdict is Verdict.RETRIED


def break_answer(handler):
    handler.counting_service()._runtime = AnsweringEndpoint(b'{"error": "model not loaded"}')


def break_model_record(handler):
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=PARAMETER, Value="{not json", Type="String", Overwrite=True
    )


def deny_reads(handler):
    s3 = handler.counting_service()._s3
    stub = Stubber(s3)
    stub.add_client_error(
        "get_object",
        "AccessDenied",
        http_status_code=403,
        expected_params={"Bucket": BUCKET, "Key": "incoming/a.jpg", "VersionId": ANY},
    )
    stub.activate()


def fail_table_writes(handler):
    dynamodb = handler.counting_service()._dynamodb
    stub = Stubber(dynamodb)
    stub.add_client_error(
        "put_item",
        "ProvisionedThroughputExceededException",
        http_status_code=400,
        expected_params={"TableName": "results", "Item": ANY},
    )
    stub.activate()


OTHER_RETRIED = {
    "Endpoint answer not in the documented `prediction` shape": break_answer,
    "No active model yet, or its record unreadable": break_model_record,
    "Reading the image fails otherwise (access denied, KMS, 5xx)": deny_reads,
    "Writing the result JSON": fail_table_writes,
}


@pytest.mark.parametrize("rule", list(OTHER_RETRIED))
def test_other_failures_are_retried_as_a_new_message(handler, endpoint, sent, lambda_context, rule):
    if rule == "Writing the result JSON":
        answers(endpoint, RESPONSE)
    OTHER_RETRIED[rule](handler)
    body = json.dumps(upload("incoming/a.jpg", jpeg()))

    assert handler.main(sqs_event(body), lambda_context) == {"batchItemFailures": []}

    assert_retried_once(sent, body)
    assert rule_for(rule).verdict is Verdict.RETRIED


NOT_UPLOADS = {
    "not JSON": lambda: "not json",
    "not Object Created": lambda: json.dumps({"detail-type": "Object Deleted"}),
    "another bucket": lambda: json.dumps(upload("incoming/a.jpg", b"x", bucket="someone-elses")),
    "outside incoming/": lambda: json.dumps(upload("results/a.jpg.json", b"{}")),
}
NOT_UPLOAD_RULES = {
    "not JSON": "Message body not JSON, or not an S3 `Object Created` event",
    "not Object Created": "Message body not JSON, or not an S3 `Object Created` event",
    "another bucket": "Event for another bucket, or a key outside `incoming/`",
    "outside incoming/": "Event for another bucket, or a key outside `incoming/`",
}


@pytest.mark.parametrize("case", list(NOT_UPLOADS))
def test_messages_that_are_not_uploads_are_dead_lettered_at_once(
    handler, sent, lambda_context, case
):
    body = NOT_UPLOADS[case]()

    assert handler.main(sqs_event(body), lambda_context) == {"batchItemFailures": []}

    (letter,) = sent.sent
    assert letter.queue == "dead letters"
    assert letter.body == body
    assert letter.attributes[delivery.REASON_ATTRIBUTE].startswith("not an upload event")
    assert table_items() == []
    rule = rule_for(NOT_UPLOAD_RULES[case])
    assert rule.verdict is Verdict.DEAD_LETTERED


def test_folder_markers_are_ignored(handler, sent, lambda_context):
    body = json.dumps(upload("incoming/site-7/", b""))

    assert handler.main(sqs_event(body), lambda_context) == {"batchItemFailures": []}

    assert sent.sent == []
    assert table_items() == []
    assert keys_under("results/") == set()
    rule = rule_for("Folder marker")
    assert rule.verdict is Verdict.IGNORED


def test_an_image_being_counted_elsewhere_is_handed_back_later(handler, sent, lambda_context):
    def in_progress(image, attempt):
        raise IdempotencyAlreadyInProgressError("in progress")

    handler.message_handler()._count_once = in_progress
    body = json.dumps(upload("incoming/a.jpg", jpeg()))

    assert handler.main(sqs_event(body), lambda_context) == {"batchItemFailures": []}

    (copy,) = sent.sent
    assert copy.delay_seconds == delivery.IN_PROGRESS_DELAY_SECONDS
    assert copy.attributes[delivery.FAILURES_ATTRIBUTE] == "0"


def test_the_fifth_failure_goes_to_the_dead_letter_queue_with_its_reason(
    handler, sent, lambda_context
):
    throttled(handler)
    body = json.dumps(upload("incoming/a.jpg", jpeg()))
    event = {"Records": [record(body, attributes={delivery.FAILURES_ATTRIBUTE: "4"})]}

    assert handler.main(event, lambda_context) == {"batchItemFailures": []}

    (letter,) = sent.sent
    assert letter.queue == "dead letters"
    assert letter.attributes[delivery.FAILURES_ATTRIBUTE] == "5"
    assert "ThrottlingException" in letter.attributes[delivery.REASON_ATTRIBUTE]


def test_a_copy_sqs_refuses_is_reported_as_a_batch_item_failure(handler, sent, lambda_context):
    throttled(handler)

    def refuse(**request):
        raise client_error("KMS.ThrottlingException", 400)

    sent.send_message = refuse
    event = sqs_event(json.dumps(upload("incoming/a.jpg", jpeg())))

    response = handler.main(event, lambda_context)

    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}


def test_a_suspect_is_counted_alone_and_its_batch_sent_again(
    handler, endpoint, sent, lambda_context
):
    bodies = [json.dumps(upload(f"incoming/{n}.jpg", jpeg())) for n in range(3)]
    # The second message was in an invocation that died: it may be the one that killed it.
    event = {"Records": [record(bodies[0]), record(bodies[1], receive_count=2), record(bodies[2])]}
    answers(endpoint, RESPONSE)

    assert handler.main(event, lambda_context) == {"batchItemFailures": []}

    assert [item["image"] for item in table_items()] == [f"s3://{BUCKET}/incoming/1.jpg"]
    assert sorted(copy.body for copy in sent.sent) == sorted([bodies[0], bodies[2]])
    assert all(copy.attributes[delivery.CRASHES_ATTRIBUTE] == "0" for copy in sent.sent)
    # Deleted before the suspect was counted: a crash now would not bring them back.
    records = event["Records"]
    assert sorted(sent.deleted) == sorted(
        [records[0]["receiptHandle"], records[2]["receiptHandle"]]
    )


def test_a_suspect_keeps_its_crashes_when_sent_again(handler, endpoint, sent, lambda_context):
    bodies = [json.dumps(upload(f"incoming/{n}.jpg", jpeg())) for n in range(2)]
    event = {"Records": [record(bodies[0], receive_count=2), record(bodies[1], receive_count=3)]}
    answers(endpoint, RESPONSE)

    handler.main(event, lambda_context)

    (copy,) = sent.sent
    assert copy.body == bodies[1]
    assert copy.attributes[delivery.CRASHES_ATTRIBUTE] == "2"


# --- Writes, metrics and idempotency. --------------------------------------------------------


def test_a_failed_table_write_is_finished_by_the_retry_with_one_metric(
    handler, endpoint, sent, lambda_context, capsys
):
    body = json.dumps(upload("incoming/a.jpg", jpeg()))
    answers(endpoint, RESPONSE)
    answers(endpoint, RESPONSE)
    fail_table_writes(handler)

    handler.main(sqs_event(body), lambda_context)

    # The JSON may stand without its item; the item, written last, marks a finished count.
    assert table_items() == []
    assert emitted(capsys, "ImagesCounted") == 0
    Stubber(handler.counting_service()._dynamodb).deactivate()
    handler.counting_service()._dynamodb = boto3.client("dynamodb", region_name=REGION)

    handler.main({"Records": [record(body, attributes=sent.sent[0].attributes)]}, lambda_context)

    assert len(table_items()) == 1
    assert read_json("results/a.jpg.json")["count"] == 3
    assert emitted(capsys, "ImagesCounted") == 1


def test_a_failed_idempotency_save_neither_counts_nor_reports_twice(
    handler, endpoint, sent, lambda_context, capsys
):
    body = json.dumps(upload("incoming/a.jpg", jpeg()))
    answers(endpoint, RESPONSE)
    answers(endpoint, RESPONSE)
    original = persistence.DynamoDBPersistenceLayer._update_record
    calls = []

    def fail_once(self, data_record):
        calls.append(data_record.status)
        if len(calls) == 1:
            raise client_error("InternalServerError", 500)
        return original(self, data_record)

    persistence.DynamoDBPersistenceLayer._update_record = fail_once

    handler.main(sqs_event(body), lambda_context)

    assert emitted(capsys, "ImagesCounted") == 0
    # The in-progress record of the failed save lasts until the invocation's end; the copy
    # arrives after it.
    boto3.resource("dynamodb", region_name=REGION).Table("idempotency").delete_item(
        Key={"id": idempotency_items()[0]["id"]}
    )
    handler.main({"Records": [record(body, attributes=sent.sent[0].attributes)]}, lambda_context)
    handler.main(sqs_event(body), lambda_context)  # and a late duplicate

    persistence.DynamoDBPersistenceLayer._update_record = original
    assert len(table_items()) == 1
    assert emitted(capsys, "ImagesCounted") == 1


def test_images_without_time_left_are_sent_again_untouched(handler, sent, lambda_context):
    keys = [f"incoming/batch/{number}.png" for number in range(6)]
    bodies = [json.dumps(upload(key, image_bytes())) for key in keys]
    event = sqs_event(*bodies)
    # The invocation starts with one worst case and 30 s to spare; each image takes 20 s.
    lambda_context.remaining_ms = IMAGE_WORST_CASE_SECONDS * 1000 + 30_000
    counter = handler.counting_service()
    counter._runtime = AnsweringEndpoint(json.dumps(RESPONSE).encode())
    original = counter.count

    def count_taking_20_seconds(image):
        outcome = original(image)
        lambda_context.remaining_ms -= 20_000
        return outcome

    counter.count = count_taking_20_seconds

    response = handler.main(event, lambda_context)

    assert response == {"batchItemFailures": []}
    counted = {item["image"].removeprefix(f"s3://{BUCKET}/") for item in table_items()}
    handed_back = {json.loads(copy.body)["detail"]["object"]["key"] for copy in sent.sent}
    # Whatever order the threads took them in: each image counted or sent again, never both.
    # Up to images_in_flight + 1 start at once; one more may start after the first finishes
    # (worst case + 10 s left); after the second, 10 s short of a worst case, none does.
    assert counted | handed_back == set(keys)
    assert not counted & handed_back
    assert 1 <= len(counted) <= handler.ENV.images_in_flight + 2
    assert handed_back
    assert all(copy.delay_seconds == 0 for copy in sent.sent)
    assert all(copy.attributes[delivery.FAILURES_ATTRIBUTE] == "0" for copy in sent.sent)
    # No idempotency record for the unstarted images: their copies count them.
    assert len(idempotency_items()) == len(counted)
    lambda_context.remaining_ms = DEFAULT_TIMEOUT_MS
    copies = {"Records": [record(copy.body) for copy in sent.sent]}
    assert handler.main(copies, lambda_context) == {"batchItemFailures": []}
    assert len(table_items()) == len(keys)


def test_the_model_record_sets_the_size_sent(handler, endpoint, lambda_context):
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=PARAMETER,
        Value=json.dumps({**ACTIVE_MODEL, "image_shape": 300}),
        Type="String",
        Overwrite=True,
    )
    sizes = []
    original = handler.counting_service()._runtime.invoke_endpoint

    def invoke(**request):
        sizes.append(Image.open(io.BytesIO(request["Body"])).size)
        return original(**request)

    handler.counting_service()._runtime.invoke_endpoint = invoke
    answers(endpoint, RESPONSE)
    body = json.dumps(upload("incoming/big.jpg", jpeg((3000, 1500))))

    handler.main(sqs_event(body), lambda_context)

    assert sizes == [(600, 300)]
    assert read_json("results/big.jpg.json")["image_size"] == {"width": 3000, "height": 1500}


def test_the_function_timeout_always_leaves_time_for_one_image():
    bounds = CounterSettings.model_json_schema()["properties"]["timeout_seconds"]
    assert bounds["minimum"] == IMAGE_WORST_CASE_SECONDS
    assert bounds["default"] * 1000 == DEFAULT_TIMEOUT_MS
    with pytest.raises(ValidationError, match="greater than or equal to 366"):
        CounterSettings(timeout_seconds=IMAGE_WORST_CASE_SECONDS - 1)


def test_a_cold_endpoint_is_waited_for_and_the_image_counted(
    handler, endpoint, lambda_context, fake_time
):
    # botocore does not retry ModelNotReadyException; the counter waits and asks again.
    event = sqs_event(json.dumps(upload("incoming/cold.png", image_bytes())))
    for _ in range(3):
        endpoint.add_client_error(
            "invoke_endpoint",
            "ModelNotReadyException",
            http_status_code=429,
            expected_params=INVOKE_REQUEST,
        )
    answers(endpoint, RESPONSE)

    assert handler.main(event, lambda_context) == {"batchItemFailures": []}
    assert fake_time.waits == [5, 10, 20]
    assert table_items()[0]["count"] == 3


def test_an_endpoint_cold_for_longer_than_a_cold_start_is_retried_later(
    handler, endpoint, sent, lambda_context, fake_time
):
    # A cold start has 3 minutes (AWS): after that the image is sent again, one failure on it.
    body = json.dumps(upload("incoming/cold.png", image_bytes()))
    for _ in range(7):
        endpoint.add_client_error(
            "invoke_endpoint",
            "ModelNotReadyException",
            http_status_code=429,
            expected_params=INVOKE_REQUEST,
        )

    assert handler.main(sqs_event(body), lambda_context) == {"batchItemFailures": []}

    assert fake_time.waits == [5, 10, 20, 40, 40, 40]
    assert_retried_once(sent, body)


def test_the_client_gives_the_time_budget_its_worst_case(handler):
    runtime = handler.counting_service()._runtime
    # 2 calls of 5 s to connect and 70 s to read, after up to 180 s of cold start:
    # 180 + 2 * (5 + 70) + 6 + 30 = 366 s (counting_core/constants.py).
    assert runtime.meta.config.retries == {"mode": "standard", "total_max_attempts": 2}
    assert (runtime.meta.config.connect_timeout, runtime.meta.config.read_timeout) == (5, 70)
    assert IMAGE_WORST_CASE_SECONDS == 366


@pytest.fixture
def result_events(handler):
    sqs = boto3.client("sqs", region_name=REGION)
    url = capture_result_events(boto3.client("events", region_name=REGION), sqs, EVENT_SOURCE)
    return lambda: sqs_events(sqs, url)


def test_every_result_is_announced_and_matches_the_published_schemas(
    handler, endpoint, result_events, lambda_context
):
    counted = upload("incoming/street/cam1.png", image_bytes())
    # A PDF under an image's name: read, then refused for its content.
    rejected = upload("incoming/report.jpg", b"%PDF-1.7 not an image")
    answers(endpoint, RESPONSE)

    handler.main(sqs_event(json.dumps(counted), json.dumps(rejected)), lambda_context)

    events = {event["detail-type"]: event for event in result_events()}
    assert sorted(events) == ["Image Counted", "Image Rejected"]
    detail = events["Image Counted"]["detail"]
    assert events["Image Counted"]["source"] == EVENT_SOURCE
    assert detail["image"] == f"s3://{BUCKET}/incoming/street/cam1.png"
    assert detail["version"] == counted["detail"]["object"]["version-id"]
    assert (detail["count"], detail["by_class"]) == (3, {"car": 2, "person": 1})
    assert (detail["threshold"], detail["threshold_origin"]) == (0.2, "configured")
    assert (detail["pipeline"], detail["model"]["model_name"]) == (
        "upload",
        ACTIVE_MODEL["model_name"],
    )
    assert detail["result"] == f"s3://{BUCKET}/results/street/cam1.png.json"
    assert detail["annotated"] == f"s3://{BUCKET}/annotated/street/cam1.png.png"
    assert events["Image Rejected"]["detail"]["reason"].startswith("not a JPEG or PNG image")
    assert_valid("image-counted-event.json", events["Image Counted"])
    assert_valid("image-rejected-event.json", events["Image Rejected"])
    for key in ("results/street/cam1.png.json", "results/report.jpg.json"):
        assert_valid("result-document.json", read_json(key))
    for item in table_items():
        assert_valid("result-table-item.json", item)


@pytest.mark.parametrize("cap", [4, 5], ids=["at cap", "one below"])
def test_a_count_at_the_models_cap_is_flagged_everywhere(
    handler, endpoint, result_events, capsys, cap
):
    # RESPONSE holds 4 detections (3 at or above 0.2): a cap of 4 was reached, 5 was not.
    capped = {4: True, 5: False}[cap]
    answers(endpoint, {**RESPONSE, "max_detections": cap})
    body = json.dumps(upload("incoming/street/dense.png", image_bytes()))

    assert handler.main(sqs_event(body), TimedContext()) == {"batchItemFailures": []}

    document = read_json("results/street/dense.png.json")
    assert (document["count"], document["capped"]) == (3, capped)
    (item,) = table_items()
    assert (item["count"], item["capped"]) == (3, capped)
    (event,) = result_events()
    assert (event["detail"]["count"], event["detail"]["capped"]) == (3, capped)
    # One counted image: the capped metric is 1 or 0 for it.
    assert emitted(capsys, "ImagesCapped") == int(capped)
    assert_valid("result-document.json", document)
    assert_valid("result-table-item.json", item)
    assert_valid("image-counted-event.json", event)


def test_an_event_that_cannot_be_published_retries_the_image_and_keeps_its_result(
    handler, endpoint, sent, monkeypatch, lambda_context
):
    body = json.dumps(upload("incoming/street/cam1.png", image_bytes()))
    answers(endpoint, RESPONSE)
    refused = {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure"}]}
    monkeypatch.setattr(handler.counting_service(), "_put_events", lambda **_: refused)
    monkeypatch.setattr("counting_core.counts.announcements.time.sleep", lambda _: None)

    handler.main(sqs_event(body), lambda_context)

    assert read_json("results/street/cam1.png.json")["count"] == 3
    # Nothing marks the image as done: it is sent again as a new message and counted then.
    assert_retried_once(sent, body)


def test_a_result_outside_its_contract_is_reported_by_field_not_by_count():
    # Pydantic's first line is "1 validation error for CountedDocument"; a dead-letter reason
    # has one line, so it names the field instead.
    with pytest.raises(ValidationError) as refused:
        CountedDocument.model_validate({"status": "counted"})

    reason = counter_service._reason(refused.value)

    assert reason == "CountedDocument: pipeline: missing"


def test_the_benchmarks_counter_environment_is_one_the_handler_accepts(handler):
    # make bench imports the handler in a fresh interpreter with this environment; a setting
    # the handler gains must be added there too, or make bench stops at that figure.
    source = (ROOT / "bench" / "bench_counting.py").read_text()
    (assignment,) = [
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "COUNTER_ENVIRONMENT"
    ]

    handler.Environment.model_validate(ast.literal_eval(assignment.value))
