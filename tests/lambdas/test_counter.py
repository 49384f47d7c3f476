"""The counter Lambda end to end against moto, its faults with Stubber, and a fuzz."""

from __future__ import annotations

import importlib
import io
import json
import sys
import uuid
from dataclasses import dataclass
from decimal import Decimal

import boto3
import hypothesis
import pytest
from aws_lambda_powertools.utilities import parameters
from botocore.exceptions import ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from counting_core.constants import IMAGE_WORST_CASE_SECONDS
from lambdas.counter import endpoint as counter_endpoint
from stacks.config import CounterSettings
from tests.lambdas.conftest import (
    HAND_CHECKED_RESPONSE,
    REGION,
    FakeLambdaContext,
    image_bytes,
    make_bucket,
    make_results_table,
)
from tests.schema_checks import assert_valid, capture_result_events, sqs_events

BUCKET = "counting-data"
RESULTS_TABLE = "results"
IDEMPOTENCY_TABLE = "idempotency"
PARAMETER = "/object-counting-dev/active-model"
EVENT_SOURCE = "object-counting-dev.counting"
ACTIVE_MODEL = {
    "endpoint_name": "object-counting-dev-counter",
    "endpoint_config_name": "object-counting-dev-config-1",
    "model_name": "object-counting-dev-model-1",
    "class_map": {"0": "car", "1": "person"},
}
RESPONSE = HAND_CHECKED_RESPONSE

# The function timeout's default (stacks/config.py CounterSettings.timeout_seconds).
DEFAULT_TIMEOUT_MS = 600_000


@dataclass
class TimedContext(FakeLambdaContext):
    """A Lambda context whose remaining time the test sets and moves on."""

    remaining_ms: int = DEFAULT_TIMEOUT_MS

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@pytest.fixture
def lambda_context() -> TimedContext:
    """Overrides conftest's: a fresh invocation of the counter has its whole timeout left."""
    return TimedContext()


@pytest.fixture
def handler(aws, monkeypatch, request):
    """The handler, imported with a configured threshold ("0.2" unless a test gives
    ``(configured threshold or None, active-model record)`` as the fixture's parameter)."""
    configured, active_model = getattr(request, "param", ("0.2", ACTIVE_MODEL))
    monkeypatch.setenv("RESULTS_TABLE", RESULTS_TABLE)
    monkeypatch.setenv("IDEMPOTENCY_TABLE", IDEMPOTENCY_TABLE)
    monkeypatch.setenv("ACTIVE_MODEL_PARAMETER", PARAMETER)
    if configured is None:
        monkeypatch.delenv("SCORE_THRESHOLD", raising=False)
    else:
        monkeypatch.setenv("SCORE_THRESHOLD", configured)
    monkeypatch.setenv("ANNOTATE", "true")
    monkeypatch.setenv("EVENT_SOURCE", EVENT_SOURCE)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "counter")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ObjectCounting")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    make_bucket(BUCKET)
    make_results_table(RESULTS_TABLE)
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName=IDEMPOTENCY_TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=PARAMETER, Value=json.dumps(active_model), Type="String"
    )
    sys.modules.pop("lambdas.counter.handler", None)
    parameters.clear_caches()  # the active-model record of an earlier test
    module = importlib.import_module("lambdas.counter.handler")
    yield module
    module.counting_service.cache_clear()


@pytest.fixture
def endpoint(handler):
    """The endpoint's answers, queued in order.

    moto 5.2.5's sagemaker-runtime cannot take a binary (image) request body, so the
    endpoint is botocore's Stubber, which also checks each request against the API model.
    """
    with Stubber(handler.counting_service()._runtime) as stub:
        yield stub
        stub.assert_no_pending_responses()


# What the counter sends for every image (the image bytes themselves vary).
INVOKE_REQUEST = {
    "EndpointName": ACTIVE_MODEL["endpoint_name"],
    "ContentType": "application/x-image",
    "Accept": "application/json",
    "Body": ANY,
}


def answers(stub: Stubber, response: object) -> None:
    body = json.dumps(response).encode()
    stub.add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "application/json"},
        INVOKE_REQUEST,
    )


def fails(stub: Stubber, code: str, status: int = 400) -> None:
    stub.add_client_error(
        "invoke_endpoint",
        service_error_code=code,
        http_status_code=status,
        expected_params=INVOKE_REQUEST,
    )


def upload(key: str, data: bytes) -> dict:
    """Put an object and return the EventBridge event S3 would send for it."""
    put = boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key=key, Body=data)
    return {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "detail": {
            "bucket": {"name": BUCKET},
            "object": {
                "key": key,
                "size": len(data),
                "etag": put["ETag"].strip('"'),
                "version-id": put["VersionId"],
            },
        },
    }


def sqs_event(*bodies: str) -> dict:
    return {
        "Records": [
            {
                "messageId": str(uuid.uuid4()),
                "receiptHandle": "handle",
                "body": body,
                "attributes": {"ApproximateReceiveCount": "1"},
                "messageAttributes": {},
                "md5OfBody": "",
                "eventSource": "aws:sqs",
                "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:counting",
                "awsRegion": REGION,
            }
            for body in bodies
        ]
    }


def keys_under(prefix: str) -> set[str]:
    listing = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return {item["Key"] for item in listing.get("Contents", [])}


def idempotency_items() -> list[dict]:
    return boto3.resource("dynamodb", region_name=REGION).Table(IDEMPOTENCY_TABLE).scan()["Items"]


def read_json(key: str) -> dict:
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=BUCKET, Key=key)["Body"]
    return json.loads(body.read())


def table_items() -> list[dict]:
    table = boto3.resource("dynamodb", region_name=REGION).Table(RESULTS_TABLE)
    return table.scan()["Items"]


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
    ("handler", "expected"),
    [
        # RESPONSE's scores: 0.91, 0.55, 0.20, 0.19. Expected: threshold, origin, count.
        ((None, CALIBRATED), (0.6, "calibrated", 1)),
        ((None, ACTIVE_MODEL), (0.2, "default", 3)),  # a model deployed before calibration
        (("0.5", CALIBRATED), (0.5, "configured", 2)),  # counter.score_threshold pins it
    ],
    indirect=["handler"],
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


def test_a_pdf_is_recorded_as_rejected_and_not_retried(handler, lambda_context):
    event = json.dumps(upload("incoming/report.pdf", b"%PDF-1.7 not an image"))

    response = handler.main(sqs_event(event), lambda_context)

    assert response == {"batchItemFailures": []}
    result = read_json("results/report.pdf.json")
    assert result["status"] == "rejected"
    assert result["reason"].startswith("not a JPEG or PNG image")
    assert table_items()[0]["status"] == "rejected"


def test_a_malformed_message_is_a_batch_item_failure(handler, endpoint, lambda_context):
    good = json.dumps(upload("incoming/ok.png", image_bytes()))
    answers(endpoint, RESPONSE)
    event = sqs_event("not json", good, json.dumps({"detail-type": "Object Deleted"}))

    response = handler.main(event, lambda_context)

    failed = {failure["itemIdentifier"] for failure in response["batchItemFailures"]}
    records = event["Records"]
    assert failed == {records[0]["messageId"], records[2]["messageId"]}
    assert read_json("results/ok.png.json")["count"] == 3


@pytest.mark.parametrize(
    ("code", "status"),
    [
        ("ThrottlingException", 400),
        ("ServiceUnavailable", 503),
        ("InternalFailure", 500),
    ],
)
def test_endpoint_faults_are_retried_then_counted(handler, endpoint, lambda_context, code, status):
    event = sqs_event(json.dumps(upload("incoming/cold.png", image_bytes())))
    fails(endpoint, code, status)

    response = handler.main(event, lambda_context)

    assert response["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    assert table_items() == []

    # SQS delivers it again once visible: the idempotency record of the failure was
    # released, so this time it is counted.
    answers(endpoint, RESPONSE)
    assert handler.main(event, lambda_context) == {"batchItemFailures": []}
    assert table_items()[0]["count"] == 3


class FakeTime:
    """``time`` for lambdas.counter.endpoint: waits are recorded and pass at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.waits.append(seconds)
        self.now += seconds


@pytest.fixture
def fake_time(monkeypatch) -> FakeTime:
    fake = FakeTime()
    monkeypatch.setattr(counter_endpoint, "time", fake)
    return fake


def not_ready(endpoint: Stubber, times: int) -> None:
    for _ in range(times):
        fails(endpoint, "ModelNotReadyException", 429)


def test_a_cold_endpoint_is_waited_for_and_the_image_counted(
    handler, endpoint, lambda_context, fake_time
):
    # botocore does not retry ModelNotReadyException; the counter waits and asks again.
    event = sqs_event(json.dumps(upload("incoming/cold.png", image_bytes())))
    not_ready(endpoint, 3)
    answers(endpoint, RESPONSE)

    assert handler.main(event, lambda_context) == {"batchItemFailures": []}
    assert fake_time.waits == [5, 10, 20]
    assert table_items()[0]["count"] == 3


def test_an_endpoint_cold_for_longer_than_a_cold_start_hands_the_image_back(
    handler, endpoint, lambda_context, fake_time
):
    # A cold start has 3 minutes (AWS): after that the image goes back to the queue.
    event = sqs_event(json.dumps(upload("incoming/cold.png", image_bytes())))
    not_ready(endpoint, 7)

    response = handler.main(event, lambda_context)

    assert response["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    assert fake_time.waits == [5, 10, 20, 40, 40, 40]
    assert sum(fake_time.waits) <= 180
    assert table_items() == []


def test_an_endpoint_that_times_out_is_retried_then_counted(
    handler, endpoint, lambda_context, monkeypatch
):
    event = sqs_event(json.dumps(upload("incoming/slow.png", image_bytes())))
    runtime = handler.counting_service()._runtime
    # The worst case the time budget assumes is this client's: 2 calls of 5 s to connect and
    # 70 s to read, after up to 180 s of cold start: 180 + 2 * (5 + 70) + 6 + 30 = 366 s
    # (counting_core/constants.py).
    assert runtime.meta.config.retries == {"mode": "standard", "total_max_attempts": 2}
    assert (runtime.meta.config.connect_timeout, runtime.meta.config.read_timeout) == (5, 70)
    assert IMAGE_WORST_CASE_SECONDS == 366

    def read_times_out(**request):
        raise ReadTimeoutError(endpoint_url=f"https://runtime.sagemaker.{REGION}.amazonaws.com")

    with monkeypatch.context() as patch:
        # After botocore's own retries, the last attempt's error reaches the counter.
        patch.setattr(runtime, "invoke_endpoint", read_times_out)
        response = handler.main(event, lambda_context)

    assert response["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    assert table_items() == []
    assert keys_under("results/") == set()
    assert idempotency_items() == []  # released: the next delivery is counted
    answers(endpoint, RESPONSE)
    assert handler.main(event, lambda_context) == {"batchItemFailures": []}
    assert table_items()[0]["count"] == 3


def test_every_message_ends_processed_or_dead_lettered(handler, endpoint, lambda_context):
    """Real SQS semantics from moto: redrive after 5 receives, as the stack configures."""
    sqs = boto3.client("sqs", region_name=REGION)
    dlq_url = sqs.create_queue(QueueName="counting-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    queue_url = sqs.create_queue(
        QueueName="counting",
        Attributes={
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
        },
    )["QueueUrl"]
    sqs.send_message(
        QueueUrl=queue_url, MessageBody=json.dumps(upload("incoming/a.png", image_bytes()))
    )
    sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(upload("incoming/b.pdf", b"%PDF")))
    sqs.send_message(QueueUrl=queue_url, MessageBody="{broken")
    # The endpoint is throttled on the first try of a.png, then answers.
    fails(endpoint, "ThrottlingException")
    answers(endpoint, RESPONSE)
    for _ in range(8):
        messages = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, VisibilityTimeout=0
        ).get("Messages", [])
        if not messages:
            break
        event = sqs_event(*(m["Body"] for m in messages))
        for record, message in zip(event["Records"], messages, strict=True):
            record["messageId"] = message["MessageId"]
        failed = {
            f["itemIdentifier"] for f in handler.main(event, lambda_context)["batchItemFailures"]
        }
        for message in messages:
            if message["MessageId"] not in failed:
                sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])

    dead = sqs.receive_message(QueueUrl=dlq_url, MaxNumberOfMessages=10)["Messages"]
    assert [m["Body"] for m in dead] == ["{broken"]
    statuses = {item["image"].rsplit("/", 1)[1]: item["status"] for item in table_items()}
    assert statuses == {"a.png": "counted", "b.pdf": "rejected"}


def test_images_without_time_left_go_back_to_the_queue_untouched(
    handler, endpoint, lambda_context, caplog
):
    keys = [f"incoming/batch/{number}.png" for number in range(4)]
    bodies = [json.dumps(upload(key, image_bytes())) for key in keys]
    event = sqs_event(*bodies)
    # The invocation starts with one worst case and 30 s to spare; each image takes 20 s.
    lambda_context.remaining_ms = IMAGE_WORST_CASE_SECONDS * 1000 + 30_000
    counter = handler.counting_service()
    original = counter.count

    def count_taking_20_seconds(image):
        outcome = original(image)
        lambda_context.remaining_ms -= 20_000
        return outcome

    counter.count = count_taking_20_seconds
    answers(endpoint, RESPONSE)
    answers(endpoint, RESPONSE)

    response = handler.main(event, lambda_context)

    # Images 0 and 1 start with one worst case or more left and are counted; images 2 and 3
    # would start with 10 s less than that, so they are handed back to SQS.
    ids = [record["messageId"] for record in event["Records"]]
    assert response == {
        "batchItemFailures": [{"itemIdentifier": ids[2]}, {"itemIdentifier": ids[3]}]
    }
    assert {item["image"] for item in table_items()} == {f"s3://{BUCKET}/{k}" for k in keys[:2]}
    assert all(item["status"] == "counted" for item in table_items())
    assert keys_under("results/") == {"results/batch/0.png.json", "results/batch/1.png.json"}
    assert keys_under("annotated/") == {"annotated/batch/0.png.png", "annotated/batch/1.png.png"}
    # No idempotency record for the unstarted images: their next delivery counts them.
    assert len(idempotency_items()) == 2
    left = [r for r in caplog.records if r.getMessage() == "image left for a later invocation"]
    assert len(left) == 2

    # SQS delivers them again to an invocation with its whole timeout: they are counted.
    lambda_context.remaining_ms = DEFAULT_TIMEOUT_MS
    answers(endpoint, RESPONSE)
    answers(endpoint, RESPONSE)
    assert handler.main(sqs_event(*bodies[2:]), lambda_context) == {"batchItemFailures": []}
    assert len(table_items()) == 4
    assert len(keys_under("results/")) == 4


def test_at_the_minimum_timeout_the_first_image_still_starts(handler, endpoint, lambda_context):
    """A timeout of exactly one worst case has a few ms less left when the first image starts."""
    keys = ["incoming/first.png", "incoming/second.png"]
    event = sqs_event(*(json.dumps(upload(key, image_bytes())) for key in keys))
    lambda_context.remaining_ms = IMAGE_WORST_CASE_SECONDS * 1000 - 50
    answers(endpoint, RESPONSE)

    response = handler.main(event, lambda_context)

    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][1]["messageId"]}]}
    assert keys_under("results/") == {"results/first.png.json"}


def test_the_function_timeout_always_leaves_time_for_one_image():
    bounds = CounterSettings.model_json_schema()["properties"]["timeout_seconds"]
    assert bounds["minimum"] == IMAGE_WORST_CASE_SECONDS
    assert bounds["default"] * 1000 == DEFAULT_TIMEOUT_MS
    with pytest.raises(ValidationError, match="greater than or equal to 366"):
        CounterSettings(timeout_seconds=IMAGE_WORST_CASE_SECONDS - 1)


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=30,
)
# Endpoint answers: any JSON, any JSON under "prediction", and lists of well-formed and
# nearly well-formed boxes (class, score, xmin, ymin, xmax, ymax), so valid answers are
# drawn as often as broken ones.
unit = st.floats(0, 1)
box = st.tuples(st.integers(0, 2), unit, unit, unit, unit, unit).map(
    lambda b: [b[0], b[1], min(b[2], b[4]), min(b[3], b[5]), max(b[2], b[4]), max(b[3], b[5])]
)
box_numbers = (
    st.integers(-1, 2)
    | st.floats(-0.05, 1.05)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.none()
)
nearly_box = st.lists(box_numbers, min_size=5, max_size=7)
# (well formed, answer): well-formed answers are valid by construction, the others may be.
endpoint_responses = st.lists(box, max_size=4).map(lambda rows: (True, {"prediction": rows})) | (
    json_values
    | json_values.map(lambda value: {"prediction": value})
    | st.lists(box | nearly_box, min_size=1, max_size=4).map(lambda rows: {"prediction": rows})
).map(lambda response: (False, response))


def result_or_none(key: str) -> dict | None:
    result_key = f"results/{key.removeprefix('incoming/')}.json"
    return read_json(result_key) if result_key in keys_under(result_key) else None


@settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.text(max_size=200) | json_values.map(json.dumps), answer=endpoint_responses)
def test_fuzz_malformed_events_and_responses_never_escape(handler, lambda_context, body, answer):
    well_formed, response = answer
    good_key, probed_key = (f"incoming/{uuid.uuid4()}.png" for _ in range(2))
    good = json.dumps(upload(good_key, image_bytes()))
    probed = json.dumps(upload(probed_key, image_bytes()))
    event = sqs_event(body, good, probed)
    fuzzed_id, good_id, probed_id = (record["messageId"] for record in event["Records"])
    with Stubber(handler.counting_service()._runtime) as stub:
        answers(stub, RESPONSE)  # for the good image
        answers(stub, response)  # for the probed image
        result = handler.main(event, lambda_context)
        # Both images reached the endpoint: the fuzzed message did not stop the batch.
        stub.assert_no_pending_responses()

    assert set(result) == {"batchItemFailures"}
    failed = {failure["itemIdentifier"] for failure in result["batchItemFailures"]}
    # The fuzzed message names no uploaded object (its keys are fresh UUIDs): it can only fail.
    assert fuzzed_id in failed
    # The valid message is counted and its result written, whatever its neighbours do.
    assert good_id not in failed
    assert result_or_none(good_key)["count"] == 3
    # A well-formed answer is always counted, with the rows scoring at least the 0.2
    # threshold (counted here from the answer itself); any other answer is retried with
    # nothing written, recorded as a rejection, or, when it happens to be valid, counted.
    document = result_or_none(probed_key)
    counted = document is not None and document["status"] == "counted"
    hypothesis.event(f"well formed: {well_formed}, counted: {counted}")
    if counted:
        assert probed_id not in failed
        assert document["count"] == sum(1 for row in response["prediction"] if row[1] >= 0.2)
    else:
        assert not well_formed, document
        retried = probed_id in failed and document is None
        rejected = probed_id not in failed and document is not None
        assert retried or (rejected and document["status"] == "rejected"), (failed, document)


@pytest.fixture
def result_events(handler):
    sqs = boto3.client("sqs", region_name=REGION)
    url = capture_result_events(boto3.client("events", region_name=REGION), sqs, EVENT_SOURCE)
    return lambda: sqs_events(sqs, url)


def test_every_result_is_announced_and_matches_the_published_schemas(
    handler, endpoint, result_events, lambda_context
):
    counted = upload("incoming/street/cam1.png", image_bytes())
    rejected = upload("incoming/report.pdf", b"%PDF-1.7 not an image")
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
    for key in ("results/street/cam1.png.json", "results/report.pdf.json"):
        assert_valid("result-document.json", read_json(key))
    for item in table_items():
        assert_valid("result-table-item.json", item)


def test_an_event_that_cannot_be_published_retries_the_image_and_keeps_its_result(
    handler, endpoint, monkeypatch, lambda_context
):
    event = json.dumps(upload("incoming/street/cam1.png", image_bytes()))
    answers(endpoint, RESPONSE)
    refused = {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure"}]}
    monkeypatch.setattr(handler.counting_service(), "_put_events", lambda **_: refused)
    monkeypatch.setattr("counting_core.announcements.time.sleep", lambda _: None)

    response = handler.main(sqs_event(event), lambda_context)

    assert len(response["batchItemFailures"]) == 1
    assert read_json("results/street/cam1.png.json")["count"] == 3
    assert table_items() == []
    # Nothing marks the image as done: SQS delivers it again and it is counted then.
    assert idempotency_items() == []
