"""The counter Lambda end to end against moto, the endpoint through botocore's Stubber.

Every row of counting_core.uploads.failures.RULES is played here through the handler (table-driven),
beside the end-to-end paths: counted once, retried as a new message, dead-lettered, handed
back, suspects counted alone, and writes that a failure cannot leave half done.
"""

from __future__ import annotations

import ast
import io
import json
import threading
from decimal import Decimal

import boto3
import pytest
from botocore.exceptions import ClientError, ReadTimeoutError
from botocore.stub import ANY, Stubber
from PIL import Image
from pydantic import ValidationError

from adapters import clients
from counting_core.constants import IMAGE_WORST_CASE_SECONDS
from counting_core.contracts.counter import Environment
from counting_core.imaging import images
from counting_core.uploads import cold_start, delivery, failures
from counting_core.uploads.failures import Fate
from lambdas.counter import handler as counter_module
from stacks.config import CounterSettings
from tests.conftest import ROOT
from tests.lambdas.conftest import REGION, emitted, image_bytes
from tests.lambdas.counter_harness import (
    ACTIVE_MODEL,
    BUCKET,
    DEFAULT_TIMEOUT_MS,
    EVENT_SOURCE,
    IDEMPOTENCY_TABLE,
    PARAMETER,
    RESPONSE,
    RESULTS_TABLE,
    FakeTime,
    TimedContext,
    answer,
    answers,
    build_counter,
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
def runtime():
    """The SageMaker Runtime client the counter calls, its answers queued in order.

    moto 5.2.5's sagemaker-runtime cannot take a binary (image) request body, so the
    endpoint is botocore's Stubber, which also checks each request against the API model.
    """
    client = boto3.client("sagemaker-runtime", region_name=REGION)
    with Stubber(client) as stub:
        yield client, stub
        stub.assert_no_pending_responses()


@pytest.fixture
def endpoint(runtime):
    return runtime[1]


@pytest.fixture
def built(counter, runtime):
    """The counter calling the stubbed endpoint, and its recorded sends."""
    threshold = counter[0].environment.score_threshold
    return build_counter(SCORE_THRESHOLD=threshold, sagemaker_runtime=runtime[0])


@pytest.fixture
def handler(built):
    return built[0]


@pytest.fixture
def sent(built):
    return built[1]


def test_an_image_delivered_twice_is_counted_once(handler, endpoint, lambda_context, capsys):
    event = json.dumps(upload("incoming/street/cam1.png", image_bytes()))
    answers(endpoint, RESPONSE)
    calls = []
    original = handler.service.count
    handler.service.count = lambda image: calls.append(image) or original(image)

    first = handler.process(sqs_event(event), lambda_context)
    second = handler.process(sqs_event(event), lambda_context)

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
    assert "unfinished" not in items[0]
    annotated = boto3.client("s3", region_name=REGION).get_object(
        Bucket=BUCKET, Key="annotated/street/cam1.png.png"
    )
    assert annotated["Body"].read().startswith(b"\x89PNG")
    assert emitted(capsys, "ImagesCounted") == 1


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

    assert handler.process(sqs_event(event), lambda_context) == {"batchItemFailures": []}

    result = read_json("results/street/cam2.png.json")
    assert (result["threshold"], result["threshold_origin"], result["count"]) == expected
    threshold, origin, _ = expected
    (item,) = table_items()
    assert (item["threshold"], item["threshold_origin"]) == (Decimal(str(threshold)), origin)


ONE_CLASS = {**ACTIVE_MODEL, "class_map": {"0": "car"}}


@pytest.mark.parametrize("counter", [("0.2", ONE_CLASS)], indirect=True)
def test_a_class_the_model_record_does_not_name_is_flagged(
    handler, endpoint, lambda_context, caplog
):
    # RESPONSE at 0.2: two detections of class 0, one of class 1, which a one-class map
    # does not name: counted under its number, flagged in the result and logged.
    event = json.dumps(upload("incoming/street/cam3.png", image_bytes()))
    answers(endpoint, RESPONSE)

    assert handler.process(sqs_event(event), lambda_context) == {"batchItemFailures": []}

    result = read_json("results/street/cam3.png.json")
    assert result["by_class"] == {"1": 1, "car": 2}
    assert result["unnamed_class_ids"] == [1]
    assert_valid("result-document.json", result)
    (warning,) = [
        record for record in caplog.records if record.getMessage().startswith("counted class ids")
    ]
    assert (warning.levelname, warning.unnamed_class_ids) == ("WARNING", [1])


def test_every_named_class_leaves_the_flag_out(handler, endpoint, lambda_context):
    event = json.dumps(upload("incoming/street/cam4.png", image_bytes()))
    answers(endpoint, RESPONSE)
    handler.process(sqs_event(event), lambda_context)
    assert "unnamed_class_ids" not in read_json("results/street/cam4.png.json")


def test_images_are_counted_concurrently_and_each_once(handler, endpoint, lambda_context):
    keys = [f"incoming/batch/{number}.png" for number in range(6)]
    bodies = [json.dumps(upload(key, image_bytes())) for key in keys]
    for _ in keys:
        answers(endpoint, RESPONSE)

    response = handler.process(sqs_event(*bodies, *bodies), lambda_context)

    assert response == {"batchItemFailures": []}
    assert {item["image"] for item in table_items()} == {f"s3://{BUCKET}/{key}" for key in keys}


def test_the_function_builds_its_counter_from_its_environment_on_first_use(
    counter, monkeypatch, lambda_context
):
    # What Lambda runs: nothing read at import; the environment read once, at the first call.
    from tests.lambdas.counter_harness import ENVIRONMENT

    for name, value in ENVIRONMENT.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    counter_module.counter.cache_clear()
    try:
        body = json.dumps(upload("incoming/site-7/", b""))  # a folder marker: ignored
        assert counter_module.main(sqs_event(body), lambda_context) == {"batchItemFailures": []}
        assert counter_module.counter() is counter_module.counter()
        assert counter_module.counter().environment.queue_url == ENVIRONMENT["QUEUE_URL"]
    finally:
        counter_module.counter.cache_clear()


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


def png_of_pixels(pixels: int) -> bytes:
    """A PNG with a little more than ``pixels`` pixels: one bit each, so it stays small."""
    side = int(pixels**0.5) + 1
    buffer = io.BytesIO()
    Image.new("1", (side, side)).save(buffer, format="PNG")
    return buffer.getvalue()


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
        # The PNG limit is 50 MP (counting_core.imaging.images.MAX_PNG_PIXELS).
        png_of_pixels(50_000_000),
        None,
        "a PNG image may have at most 50 megapixels",
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
def test_rejections_are_recorded_once_and_not_retried(counter, lambda_context, rule):
    key, data, fault, reason = REJECTIONS[rule]
    handler, sent = build_counter(**({"sagemaker_runtime": fault} if fault else {}))
    event = sqs_event(json.dumps(upload(key, data)))

    assert handler.process(event, lambda_context) == {"batchItemFailures": []}

    assert sent.sent == []
    (item,) = table_items()
    assert item["status"] == "rejected"
    assert reason in item["reason"]
    json_written = (
        rule != "Key too long for its `results/` or `annotated/` key (S3 keys: 1,024 bytes)"
    )
    assert (keys_under("results/") != set()) == json_written
    assert keys_under("annotated/") == set()
    assert rule_for(rule).fate is Fate.REJECTED


def test_a_deleted_object_is_rejected(handler, sent, lambda_context):
    event = upload("incoming/gone.jpg", jpeg())
    boto3.client("s3", region_name=REGION).delete_object(
        Bucket=BUCKET, Key="incoming/gone.jpg", VersionId=event["detail"]["object"]["version-id"]
    )

    assert handler.process(sqs_event(json.dumps(event)), lambda_context) == {
        "batchItemFailures": []
    }

    assert "deleted before it was counted (NoSuchVersion)" in table_items()[0]["reason"]
    # The key has no version left: its result is written, as nothing newer holds the key.
    assert read_json("results/gone.jpg.json")["status"] == "rejected"
    assert sent.sent == []


def test_an_upload_over_the_size_limit_is_refused_unread(handler, lambda_context, monkeypatch):
    monkeypatch.setattr(images, "MAX_UPLOAD_BYTES", 100)
    event = sqs_event(json.dumps(upload("incoming/big.jpg", jpeg())))

    handler.process(event, lambda_context)

    assert "at most 100 bytes are counted" in table_items()[0]["reason"]


def throttled() -> FailingEndpoint:
    return FailingEndpoint(client_error("ThrottlingException", 400))


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
    # The first retry waits 30 s (then 60, 120, 240: a cold start's 3 minutes pass).
    assert copy.delay_seconds == 30
    assert copy.attributes[delivery.FAILURES_ATTRIBUTE] == "1"
    assert [item for item in table_items() if "unfinished" not in item] == []
    assert idempotency_items() == []  # released: the copy counts the image


@pytest.mark.parametrize(("rule", "error"), RETRIED_CASES, ids=lambda value: str(value)[:40])
def test_endpoint_failures_are_retried_as_a_new_message(counter, lambda_context, rule, error):
    handler, sent = build_counter(sagemaker_runtime=FailingEndpoint(error))
    body = json.dumps(upload("incoming/a.jpg", jpeg()))

    # The original is settled (deleted by Lambda); its copy carries the failure.
    assert handler.process(sqs_event(body), lambda_context) == {"batchItemFailures": []}

    assert_retried_once(sent, body)
    assert rule_for(rule).fate is Fate.RETRIED


def break_model_record(value: str = "{not json") -> None:
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=PARAMETER, Value=value, Type="String", Overwrite=True
    )


def s3_denying_reads():
    s3 = boto3.client("s3", region_name=REGION)
    stub = Stubber(s3)
    stub.add_client_error(
        "get_object",
        "AccessDenied",
        http_status_code=403,
        expected_params={"Bucket": BUCKET, "Key": "incoming/a.jpg", "VersionId": ANY},
    )
    stub.activate()
    return s3


class FailingWrites:
    """A client whose ``operation`` fails on ``target`` (a table, or a key prefix) every time,
    or its first ``times`` times, for requests ``when`` picks; all else goes to the real one."""

    def __init__(
        self, client, operation: str, target: str, times: int | None = None, when=None
    ) -> None:
        self.client = client
        self.operation = operation
        self.target = target
        self.times = times
        self.when = when or (lambda request: True)
        self.failed = 0

    def __getattr__(self, name):
        call = getattr(self.client, name)
        if name != self.operation:
            return call

        def failing(**request):
            aimed = request.get("TableName", "") == self.target or request.get(
                "Key", ""
            ).startswith(self.target)
            if aimed and self.when(request) and (self.times is None or self.failed < self.times):
                self.failed += 1
                raise ClientError(
                    {"Error": {"Code": "InternalServerError", "Message": "injected"}}, name
                )
            return call(**request)

        return failing


def dynamodb_failing(
    operation: str, table: str, times: int | None = None, when=None
) -> FailingWrites:
    return FailingWrites(
        boto3.client("dynamodb", region_name=REGION), operation, table, times, when
    )


def s3_failing_puts(prefix: str) -> FailingWrites:
    return FailingWrites(boto3.client("s3", region_name=REGION), "put_object", prefix)


OTHER_RETRIED = {
    "Endpoint answer not in the documented `prediction` shape": lambda: {
        "sagemaker_runtime": AnsweringEndpoint(b'{"error": "model not loaded"}')
    },
    "No active model yet, or its record unreadable": lambda: break_model_record() or {},
    "Reading the image fails otherwise (access denied, KMS, 5xx)": lambda: {
        "s3": s3_denying_reads()
    },
    "Writing the result JSON": lambda: {
        "sagemaker_runtime": AnsweringEndpoint(json.dumps(RESPONSE).encode()),
        "dynamodb": dynamodb_failing("put_item", RESULTS_TABLE),
    },
}


@pytest.mark.parametrize("rule", list(OTHER_RETRIED))
def test_other_failures_are_retried_as_a_new_message(counter, lambda_context, rule):
    handler, sent = build_counter(**OTHER_RETRIED[rule]())
    body = json.dumps(upload("incoming/a.jpg", jpeg()))

    assert handler.process(sqs_event(body), lambda_context) == {"batchItemFailures": []}

    assert_retried_once(sent, body)
    assert rule_for(rule).fate is Fate.RETRIED


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

    assert handler.process(sqs_event(body), lambda_context) == {"batchItemFailures": []}

    (letter,) = sent.sent
    assert letter.queue == "dead letters"
    assert letter.body == body
    assert letter.attributes[delivery.REASON_ATTRIBUTE].startswith("not an upload event")
    assert table_items() == []
    rule = rule_for(NOT_UPLOAD_RULES[case])
    assert rule.fate is Fate.DEAD_LETTERED


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (
            {"detail-type": "Object Created", "detail": {"bucket": {"name": BUCKET}}},
            "not an upload event: ObjectCreated: detail.object: missing",
        ),
        (
            {
                "detail-type": "Object Created",
                "detail": {"bucket": {"name": BUCKET}, "object": {"key": ""}},
            },
            "not an upload event: ObjectCreated: detail.object.key: String should have at "
            "least 1 character (got '')",
        ),
    ],
    ids=["no object", "empty key"],
)
def test_a_malformed_message_is_dead_lettered_naming_its_field(
    handler, sent, lambda_context, event, reason
):
    handler.process(sqs_event(json.dumps(event)), lambda_context)

    (letter,) = sent.sent
    assert letter.attributes[delivery.REASON_ATTRIBUTE] == reason


def test_folder_markers_are_ignored(handler, sent, lambda_context):
    body = json.dumps(upload("incoming/site-7/", b""))

    assert handler.process(sqs_event(body), lambda_context) == {"batchItemFailures": []}

    assert sent.sent == []
    assert table_items() == []
    assert keys_under("results/") == set()
    rule = rule_for("Folder marker")
    assert rule.fate is Fate.IGNORED


class HeldEndpoint:
    """Answers once ``release`` is set; ``called`` is set when a call arrives."""

    def __init__(self) -> None:
        self.called, self.release = threading.Event(), threading.Event()

    def invoke_endpoint(self, **request):
        self.called.set()
        assert self.release.wait(10)
        return answer(RESPONSE)


def test_an_image_being_counted_elsewhere_is_handed_back_later(counter, lambda_context):
    # Two execution environments get the same upload: the second finds it in progress.
    held = HeldEndpoint()
    first, _ = build_counter(sagemaker_runtime=held)
    second, sent = build_counter()
    body = json.dumps(upload("incoming/a.jpg", jpeg()))
    counting = threading.Thread(target=first.process, args=(sqs_event(body), TimedContext()))
    counting.start()
    assert held.called.wait(10)

    try:
        assert second.process(sqs_event(body), lambda_context) == {"batchItemFailures": []}
    finally:
        held.release.set()
        counting.join()

    (copy,) = sent.sent
    # A duplicate of an image being counted elsewhere comes back after a minute.
    assert copy.delay_seconds == 60
    assert copy.attributes[delivery.FAILURES_ATTRIBUTE] == "0"
    assert rule_for("Another delivery of the same image").fate is Fate.HANDED_BACK


def test_the_fifth_failure_goes_to_the_dead_letter_queue_with_its_reason(counter, lambda_context):
    handler, sent = build_counter(sagemaker_runtime=throttled())
    body = json.dumps(upload("incoming/a.jpg", jpeg()))
    event = {"Records": [record(body, attributes={delivery.FAILURES_ATTRIBUTE: "4"})]}

    assert handler.process(event, lambda_context) == {"batchItemFailures": []}

    (letter,) = sent.sent
    assert letter.queue == "dead letters"
    assert letter.attributes[delivery.FAILURES_ATTRIBUTE] == "5"
    assert "ThrottlingException" in letter.attributes[delivery.REASON_ATTRIBUTE]


def test_an_unreadable_model_record_is_named_by_its_field(counter, lambda_context):
    # Pydantic's first line only counts the problems; a one-line reason names the field.
    break_model_record(json.dumps({**ACTIVE_MODEL, "endpoint_name": ""}))
    handler, sent = build_counter()
    body = json.dumps(upload("incoming/a.jpg", jpeg()))
    event = {"Records": [record(body, attributes={delivery.FAILURES_ATTRIBUTE: "4"})]}

    handler.process(event, lambda_context)

    (letter,) = sent.sent
    assert letter.attributes[delivery.REASON_ATTRIBUTE] == (
        "no usable active-model record: ActiveModel: endpoint_name: String should have at "
        "least 1 character (got '')"
    )


def test_a_copy_sqs_refuses_is_reported_as_a_batch_item_failure(counter, lambda_context):
    class RefusingQueue:
        def send_message(self, **request):
            raise client_error("KMS.ThrottlingException", 400)

    handler, _ = build_counter(sagemaker_runtime=throttled(), sqs=RefusingQueue())
    event = sqs_event(json.dumps(upload("incoming/a.jpg", jpeg())))

    response = handler.process(event, lambda_context)

    assert response == {"batchItemFailures": [{"itemIdentifier": event["Records"][0]["messageId"]}]}


def test_a_suspect_is_counted_alone_and_its_batch_sent_again(
    handler, endpoint, sent, lambda_context
):
    bodies = [json.dumps(upload(f"incoming/{n}.jpg", jpeg())) for n in range(3)]
    # The second message was in an invocation that died: it may be the one that killed it.
    event = {"Records": [record(bodies[0]), record(bodies[1], receive_count=2), record(bodies[2])]}
    answers(endpoint, RESPONSE)

    assert handler.process(event, lambda_context) == {"batchItemFailures": []}

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

    handler.process(event, lambda_context)

    (copy,) = sent.sent
    assert copy.body == bodies[1]
    assert copy.attributes[delivery.CRASHES_ATTRIBUTE] == "2"


# --- Writes, metrics and idempotency. --------------------------------------------------------


@pytest.fixture
def result_events(counter):
    sqs = boto3.client("sqs", region_name=REGION)
    url = capture_result_events(boto3.client("events", region_name=REGION), sqs, EVENT_SOURCE)
    return lambda: sqs_events(sqs, url)


def answering() -> AnsweringEndpoint:
    return AnsweringEndpoint(json.dumps(RESPONSE).encode())


def test_a_table_failing_every_write_announces_nothing(result_events, lambda_context, capsys):
    # The item is claimed before anything else is written: a table that refuses every write
    # leaves no result, no event and no metric, however often the image is tried.
    body = json.dumps(upload("incoming/a.jpg", jpeg()))
    handler, sent = build_counter(
        sagemaker_runtime=answering(), dynamodb=dynamodb_failing("put_item", RESULTS_TABLE)
    )
    tally: dict[str, str] = {}
    for _ in range(delivery.MAX_FAILURES):
        handler.process({"Records": [record(body, attributes=tally)]}, lambda_context)
        tally = sent.sent[-1].attributes

    assert sent.sent[-1].queue == "dead letters"
    assert result_events() == []
    assert keys_under("results/") == keys_under("annotated/") == set()
    assert emitted(capsys, "ImagesCounted") == 0


def test_a_failed_result_document_leaves_no_annotated_copy(result_events, lambda_context):
    handler, sent = build_counter(sagemaker_runtime=answering(), s3=s3_failing_puts("results/"))
    body = json.dumps(upload("incoming/a.jpg", jpeg()))

    handler.process(sqs_event(body), lambda_context)

    assert keys_under("annotated/") == set()
    assert result_events() == []
    (item,) = table_items()
    assert item["unfinished"] is True
    assert sent.sent[0].attributes[delivery.FAILURES_ATTRIBUTE] == "1"


def finishing(request) -> bool:
    """The result store's last write of an item: the one without a condition."""
    return "ConditionExpression" not in request


def test_a_failed_finishing_write_is_tried_again_without_announcing_twice(
    result_events, lambda_context, capsys
):
    body = json.dumps(upload("incoming/a.jpg", jpeg()))
    handler, sent = build_counter(
        sagemaker_runtime=answering(),
        dynamodb=dynamodb_failing("put_item", RESULTS_TABLE, times=1, when=finishing),
    )

    handler.process(sqs_event(body), lambda_context)

    assert sent.sent == []
    (item,) = table_items()
    assert "unfinished" not in item
    assert len(result_events()) == 1
    assert emitted(capsys, "ImagesCounted") == 1


class FailingSaves:
    """The idempotency table's client: every save of a finished count fails."""

    def __init__(self) -> None:
        self.client = boto3.client("dynamodb", region_name=REGION)

    def __getattr__(self, name):
        call = getattr(self.client, name)
        if name != "update_item":
            return call

        def failing(**request):
            if request["TableName"] == IDEMPOTENCY_TABLE:
                raise ClientError({"Error": {"Code": "InternalServerError", "Message": "no"}}, name)
            return call(**request)

        return failing


def test_a_count_whose_idempotency_save_fails_is_counted_once_and_not_retried(
    result_events, lambda_context, capsys
):
    # The image is recorded, announced and measured before Powertools saves its outcome: a
    # failed save costs only the replay of a later duplicate, never a second count.
    body = json.dumps(upload("incoming/a.jpg", jpeg()))
    handler, sent = build_counter(sagemaker_runtime=answering(), dynamodb=FailingSaves())

    assert handler.process(sqs_event(body), lambda_context) == {"batchItemFailures": []}

    assert sent.sent == []
    assert len(table_items()) == 1
    assert len(result_events()) == 1
    assert emitted(capsys, "ImagesCounted") == 1


def test_a_duplicate_after_a_lost_idempotency_record_is_not_counted_again(
    result_events, lambda_context, capsys
):
    body = json.dumps(upload("incoming/a.jpg", jpeg()))
    handler, _ = build_counter(sagemaker_runtime=answering())
    handler.process(sqs_event(body), lambda_context)
    for item in idempotency_items():  # expired, or never saved
        boto3.client("dynamodb", region_name=REGION).delete_item(
            TableName=IDEMPOTENCY_TABLE, Key={"id": {"S": item["id"]}}
        )

    handler.process(sqs_event(body), lambda_context)

    assert len(result_events()) == 1
    assert emitted(capsys, "ImagesCounted") == 1


class Crash(BaseException):
    """The function dies: nothing it had not finished happens."""


def test_an_image_counted_by_an_invocation_that_then_died_has_its_metrics(
    counter, lambda_context, capsys
):
    # The invocation dies after the image's count was saved: its redelivery is a replay,
    # which measures nothing, so the metrics must be out by then.
    body = json.dumps(upload("incoming/a.jpg", jpeg()))
    handler, _ = build_counter(sagemaker_runtime=answering())
    original = handler.messages.handle

    def handle_then_die(*args):
        original(*args)
        raise Crash

    handler.messages.handle = handle_then_die
    with pytest.raises(Crash):
        handler.process(sqs_event(body), lambda_context)
    replaying, _ = build_counter(sagemaker_runtime=answering())
    replaying.process(sqs_event(body), lambda_context)

    assert emitted(capsys, "ImagesCounted") == 1


def test_a_result_is_announced_once_even_with_a_refused_first_publish(
    result_events, lambda_context, monkeypatch
):
    class RefusingOnce:
        def __init__(self) -> None:
            self.client = boto3.client("events", region_name=REGION)
            self.refused = 0

        def put_events(self, **request):
            if self.refused < 4:  # announcements.PUBLISH_ATTEMPTS: the image's first try
                self.refused += 1
                return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "InternalFailure"}]}
            return self.client.put_events(**request)

    monkeypatch.setattr("counting_core.counts.announcements.time.sleep", lambda _: None)
    body = json.dumps(upload("incoming/street/cam1.png", image_bytes()))
    handler, sent = build_counter(sagemaker_runtime=answering(), events=RefusingOnce())

    handler.process(sqs_event(body), lambda_context)

    # Recorded but not announced: the item is unfinished, the message tried again.
    assert read_json("results/street/cam1.png.json")["count"] == 3
    (item,) = table_items()
    assert item["unfinished"] is True
    assert result_events() == []
    (copy,) = sent.sent
    handler.process({"Records": [record(body, attributes=copy.attributes)]}, lambda_context)

    assert len(result_events()) == 1
    (item,) = table_items()
    assert "unfinished" not in item


def test_images_without_time_left_are_sent_again_untouched(counter, lambda_context):
    keys = [f"incoming/batch/{number}.png" for number in range(6)]
    bodies = [json.dumps(upload(key, image_bytes())) for key in keys]
    event = sqs_event(*bodies)
    # The invocation starts with one worst case and 30 s to spare; each image takes 20 s.
    lambda_context.remaining_ms = IMAGE_WORST_CASE_SECONDS * 1000 + 30_000
    handler, sent = build_counter(sagemaker_runtime=answering())
    original = handler.service.count

    def count_taking_20_seconds(image):
        outcome = original(image)
        lambda_context.remaining_ms -= 20_000
        return outcome

    handler.service.count = count_taking_20_seconds

    response = handler.process(event, lambda_context)

    assert response == {"batchItemFailures": []}
    counted = {item["image"].removeprefix(f"s3://{BUCKET}/") for item in table_items()}
    handed_back = {json.loads(copy.body)["detail"]["object"]["key"] for copy in sent.sent}
    # Whatever order the threads took them in: each image counted or sent again, never both.
    # Up to images_in_flight + 1 start at once; one more may start after the first finishes
    # (worst case + 10 s left); after the second, 10 s short of a worst case, none does.
    assert counted | handed_back == set(keys)
    assert not counted & handed_back
    assert 1 <= len(counted) <= handler.environment.images_in_flight + 2
    assert handed_back
    assert all(copy.delay_seconds == 0 for copy in sent.sent)
    assert all(copy.attributes[delivery.FAILURES_ATTRIBUTE] == "0" for copy in sent.sent)
    # No idempotency record for the unstarted images: their copies count them.
    assert len(idempotency_items()) == len(counted)
    lambda_context.remaining_ms = DEFAULT_TIMEOUT_MS
    copies = {"Records": [record(copy.body) for copy in sent.sent]}
    assert handler.process(copies, lambda_context) == {"batchItemFailures": []}
    assert len(table_items()) == len(keys)


class SlotTakingEndpoint:
    """Each call takes ``seconds`` off the invocation's remaining time."""

    def __init__(self, context: TimedContext, seconds: int) -> None:
        self.context, self.seconds = context, seconds
        self.lock = threading.Lock()
        self.calls = 0

    def invoke_endpoint(self, **request):
        with self.lock:
            self.calls += 1
            self.context.remaining_ms -= self.seconds * 1000
        return answer(RESPONSE)


def test_an_image_that_waited_for_an_endpoint_slot_too_long_is_handed_back(counter):
    # One slot, two images: both start with a worst case and a minute to spare; the first
    # call then takes 2 minutes, so the second image gets the slot with less than a worst
    # case left. Admitted at its start, it must not call: it could outrun the function.
    context = TimedContext(remaining_ms=IMAGE_WORST_CASE_SECONDS * 1000 + 60_000)
    endpoint = SlotTakingEndpoint(context, 120)
    handler, sent = build_counter(IMAGES_IN_FLIGHT="1", sagemaker_runtime=endpoint)
    bodies = [json.dumps(upload(f"incoming/{n}.png", image_bytes())) for n in range(2)]

    assert handler.process(sqs_event(*bodies), context) == {"batchItemFailures": []}

    assert endpoint.calls == 1
    assert len(table_items()) == 1
    (copy,) = sent.sent
    assert copy.queue == "intake"
    assert copy.attributes[delivery.FAILURES_ATTRIBUTE] == "0"
    assert rule_for("Too little time left").fate is Fate.HANDED_BACK


def test_the_model_record_sets_the_size_sent(counter, lambda_context):
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=PARAMETER,
        Value=json.dumps({**ACTIVE_MODEL, "image_shape": 300}),
        Type="String",
        Overwrite=True,
    )
    sizes = []

    class Measuring(AnsweringEndpoint):
        def invoke_endpoint(self, **request):
            sizes.append(Image.open(io.BytesIO(request["Body"])).size)
            return super().invoke_endpoint(**request)

    handler, _ = build_counter(sagemaker_runtime=Measuring(json.dumps(RESPONSE).encode()))
    body = json.dumps(upload("incoming/big.jpg", jpeg((3000, 1500))))

    handler.process(sqs_event(body), lambda_context)

    assert sizes == [(600, 300)]
    assert read_json("results/big.jpg.json")["image_size"] == {"width": 3000, "height": 1500}


def test_the_function_timeout_always_leaves_time_for_one_image():
    bounds = CounterSettings.model_json_schema()["properties"]["timeout_seconds"]
    # One image's worst case: a cold start's 180 s, a last call's 156 s, 30 s of storage.
    assert bounds["minimum"] == 180 + 156 + 30
    assert bounds["default"] * 1000 == DEFAULT_TIMEOUT_MS
    with pytest.raises(ValidationError, match="greater than or equal to 366"):
        CounterSettings(timeout_seconds=365)


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

    assert handler.process(event, lambda_context) == {"batchItemFailures": []}
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

    assert handler.process(sqs_event(body), lambda_context) == {"batchItemFailures": []}

    assert fake_time.waits == [5, 10, 20, 40, 40, 40]
    assert_retried_once(sent, body)


def test_the_endpoint_client_gives_the_time_budget_its_worst_case():
    runtime = boto3.client("sagemaker-runtime", region_name=REGION, config=clients.ENDPOINT)
    # 2 calls of 5 s to connect and 70 s to read, after up to 180 s of cold start:
    # 180 + 2 * (5 + 70) + 6 + 30 = 366 s (counting_core/constants.py).
    assert runtime.meta.config.retries == {"mode": "standard", "total_max_attempts": 2}
    assert (runtime.meta.config.connect_timeout, runtime.meta.config.read_timeout) == (5, 70)
    assert IMAGE_WORST_CASE_SECONDS == 366


def test_every_result_is_announced_and_matches_the_published_schemas(
    handler, endpoint, result_events, lambda_context
):
    counted = upload("incoming/street/cam1.png", image_bytes())
    # A PDF under an image's name: read, then refused for its content.
    rejected = upload("incoming/report.jpg", b"%PDF-1.7 not an image")
    answers(endpoint, RESPONSE)

    handler.process(sqs_event(json.dumps(counted), json.dumps(rejected)), lambda_context)

    events = {event["detail-type"]: event for event in result_events()}
    assert sorted(events) == ["Image Counted", "Image Rejected"]
    detail = events["Image Counted"]["detail"]
    assert events["Image Counted"]["source"] == EVENT_SOURCE
    assert detail["image"] == f"s3://{BUCKET}/incoming/street/cam1.png"
    assert detail["version"] == counted["detail"]["object"]["version-id"]
    assert (detail["count"], detail["by_class"]) == (3, {"car": 2, "person": 1})
    assert "classes_in_result_only" not in detail
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


def test_an_event_of_thousands_of_long_class_names_is_trimmed_not_retried(
    result_events, lambda_context
):
    # 4,000 classes of 70-character names, one box each: the full counts are about 300 KB of
    # JSON, more than PutEvents takes. The event keeps the biggest classes that fit 64 KB
    # and says how many more the result document holds, as the table item does.
    classes = 4000
    names = {str(n): f"{n:04d}-" + "x" * 65 for n in range(classes)}
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=PARAMETER,
        Value=json.dumps({**ACTIVE_MODEL, "class_map": names}),
        Type="String",
        Overwrite=True,
    )
    answer_body = {"prediction": [[n, 0.9, 0.1, 0.1, 0.2, 0.2] for n in range(classes)]}
    handler, sent = build_counter(
        sagemaker_runtime=AnsweringEndpoint(json.dumps(answer_body).encode())
    )
    body = json.dumps(upload("incoming/crowd.png", image_bytes()))

    handler.process(sqs_event(body), lambda_context)

    assert sent.sent == []
    (event,) = result_events()
    kept = event["detail"]["by_class"]
    # Each entry is "<70 characters>":1 plus a comma: 75 bytes; 64 KB hold 873 of them.
    assert len(kept) == 65_536 // 75
    assert event["detail"]["classes_in_result_only"] == classes - len(kept)
    assert len(read_json("results/crowd.png.json")["by_class"]) == classes
    assert_valid("image-counted-event.json", event)


def versions_of(key: str, count: int) -> list[dict]:
    return [upload(key, image_bytes("PNG", (100 + number, 60))) for number in range(count)]


def test_the_result_document_of_a_key_holds_its_newest_version(counter, lambda_context):
    # Three versions of one key, counted newest first: the older ones, finishing later,
    # leave the newest's document and annotated copy; the table keeps all three.
    uploads = versions_of("incoming/cam.png", 3)
    handler, _ = build_counter(sagemaker_runtime=answering())

    for event in reversed(uploads):
        handler.process(sqs_event(json.dumps(event)), lambda_context)

    newest = uploads[-1]["detail"]["object"]["version-id"]
    document = read_json("results/cam.png.json")
    assert document["source"]["version_id"] == newest
    assert document["image_size"] == {"width": 102, "height": 60}
    annotated = boto3.client("s3", region_name=REGION).get_object(
        Bucket=BUCKET, Key="annotated/cam.png.png"
    )["Body"]
    assert Image.open(annotated).width == 102  # the newest, 102 px wide (a legend may add height)
    assert {item["version"] for item in table_items()} == {
        event["detail"]["object"]["version-id"] for event in uploads
    }


class Interleaving:
    """S3 for an older version's count: before its document put, a newer version is uploaded
    and counted by another function, whose puts land first."""

    def __init__(self, newer) -> None:
        self.client = boto3.client("s3", region_name=REGION)
        self.newer = newer
        self.done = False

    def __getattr__(self, name):
        call = getattr(self.client, name)
        if name != "put_object":
            return call

        def put_object(**request):
            if not self.done and request["Key"].startswith("results/"):
                self.done = True
                self.newer()
            return call(**request)

        return put_object


def test_an_older_version_that_loses_the_race_leaves_the_newer_document(counter, lambda_context):
    older = upload("incoming/cam.png", image_bytes("PNG", (100, 60)))
    newer = {}

    def newer_version_counted():
        newer.update(upload("incoming/cam.png", image_bytes("PNG", (101, 60))))
        other, _ = build_counter(sagemaker_runtime=answering())
        other.process(sqs_event(json.dumps(newer)), TimedContext())

    handler, _ = build_counter(
        sagemaker_runtime=answering(), s3=Interleaving(newer_version_counted)
    )

    handler.process(sqs_event(json.dumps(older)), lambda_context)

    document = read_json("results/cam.png.json")
    assert document["source"]["version_id"] == newer["detail"]["object"]["version-id"]
    assert len(table_items()) == 2


def test_the_benchmarks_counter_environment_is_one_the_handler_accepts():
    # make bench builds the counter in a fresh interpreter with this environment; a setting
    # the handler gains must be added there too, or make bench stops at that figure.
    source = (ROOT / "bench" / "bench_counting.py").read_text()
    (assignment,) = [
        node
        for node in ast.parse(source).body
        if isinstance(node, ast.Assign) and ast.unparse(node.targets[0]) == "COUNTER_ENVIRONMENT"
    ]

    Environment.model_validate(ast.literal_eval(assignment.value))


class UnreadableResults:
    """S3 for a role that may put results/ and annotated/ files but not read them."""

    def __init__(self) -> None:
        self.client = boto3.client("s3", region_name=REGION)

    def __getattr__(self, name):
        call = getattr(self.client, name)
        if name != "head_object":
            return call

        def head_object(**request):
            if request["Key"].startswith(("results/", "annotated/")):
                raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, name)
            return call(**request)

        return head_object


def test_a_new_version_replaces_the_result_of_a_role_that_cannot_read_results(
    counter, lambda_context
):
    # Without s3:GetObject on results/, a file's ETag cannot be read for a conditional put:
    # the newest version's files are put as they are, the older's are still left alone.
    older, newer = versions_of("incoming/cam.png", 2)
    handler, sent = build_counter(sagemaker_runtime=answering(), s3=UnreadableResults())

    handler.process(sqs_event(json.dumps(older)), lambda_context)
    handler.process(sqs_event(json.dumps(newer)), lambda_context)

    assert sent.sent == []
    document = read_json("results/cam.png.json")
    assert document["source"]["version_id"] == newer["detail"]["object"]["version-id"]


@pytest.mark.parametrize("cap", [4, 5], ids=["at cap", "one below"])
def test_a_count_at_the_models_cap_is_flagged_everywhere(
    handler, endpoint, result_events, capsys, cap
):
    # RESPONSE holds 4 detections (3 at or above 0.2): a cap of 4 was reached, 5 was not.
    capped = {4: True, 5: False}[cap]
    answers(endpoint, {**RESPONSE, "max_detections": cap})
    body = json.dumps(upload("incoming/street/dense.png", image_bytes()))

    assert handler.process(sqs_event(body), TimedContext()) == {"batchItemFailures": []}

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
