"""The counter Lambda under moto: its environment, uploads, events and what it left behind."""

from __future__ import annotations

import importlib
import io
import json
import sys
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3
from aws_lambda_powertools.utilities import parameters
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from counting_core.contracts import published
from tests.lambdas.conftest import (
    HAND_CHECKED_RESPONSE,
    REGION,
    FakeLambdaContext,
    make_bucket,
    make_results_table,
)

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
    "image_shape": 512,
}
RESPONSE = HAND_CHECKED_RESPONSE
# The function timeout's default (stacks/config.py CounterSettings.timeout_seconds).
DEFAULT_TIMEOUT_MS = 600_000


class FakeTime:
    """``time`` for counting_core.uploads.cold_start: waits are recorded and pass at once."""

    def __init__(self) -> None:
        self.now = 0.0
        self.waits: list[float] = []
        self.lock = threading.Lock()

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        with self.lock:
            self.waits.append(seconds)
            self.now += seconds


@dataclass
class TimedContext(FakeLambdaContext):
    """A Lambda context whose remaining time the test sets and moves on."""

    remaining_ms: int = DEFAULT_TIMEOUT_MS

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


@dataclass
class Sent:
    queue: str  # "intake" or "dead letters"
    body: str
    delay_seconds: int
    attributes: dict[str, str]


@dataclass
class SendRecorder:
    """Stands in for the counter's SQS client: records each SendMessage, checked by Stubber."""

    queues: dict[str, str]
    sent: list[Sent] = field(default_factory=list)
    deleted: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def send_message(self, **request: Any) -> dict[str, str]:
        attributes = {
            name: value["StringValue"] for name, value in request["MessageAttributes"].items()
        }
        with self.lock:
            validate_send(request)
            self.sent.append(
                Sent(
                    self.queues[request["QueueUrl"]],
                    request["MessageBody"],
                    request.get("DelaySeconds", 0),
                    attributes,
                )
            )
        return {"MessageId": str(uuid.uuid4())}

    def delete_message(self, **request: Any) -> dict:
        with self.lock:
            with Stubber(_SQS) as stub:
                stub.add_response("delete_message", {}, request)
                _SQS.delete_message(**request)
            self.deleted.append(request["ReceiptHandle"])
        return {}

    def to(self, queue: str) -> list[Sent]:
        return [sent for sent in self.sent if sent.queue == queue]


_SQS = boto3.client("sqs", region_name=REGION)


def validate_send(request: dict[str, Any]) -> None:
    """Check a SendMessage request against the SQS service model (Stubber's validation)."""
    with Stubber(_SQS) as stub:
        stub.add_response("send_message", {"MessageId": "m"}, request)
        _SQS.send_message(**request)


def environment(monkeypatch, *, images_in_flight: int = 3) -> None:
    monkeypatch.setenv("DATA_BUCKET", BUCKET)
    monkeypatch.setenv("QUEUE_URL", f"https://sqs.{REGION}.amazonaws.com/123456789012/intake")
    monkeypatch.setenv(
        "DEAD_LETTER_QUEUE_URL", f"https://sqs.{REGION}.amazonaws.com/123456789012/dead-letters"
    )
    monkeypatch.setenv("IMAGES_IN_FLIGHT", str(images_in_flight))
    monkeypatch.setenv("PAYLOAD_SCALE", "2")
    monkeypatch.setenv("RESULTS_TABLE", RESULTS_TABLE)
    monkeypatch.setenv("IDEMPOTENCY_TABLE", IDEMPOTENCY_TABLE)
    monkeypatch.setenv("ACTIVE_MODEL_PARAMETER", PARAMETER)
    monkeypatch.setenv("SCORE_THRESHOLD", "0.2")
    monkeypatch.setenv("ANNOTATE", "true")
    monkeypatch.setenv("EVENT_SOURCE", EVENT_SOURCE)
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "counter")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ObjectCounting")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")


def create_resources(active_model: dict | None = None) -> None:
    make_bucket(BUCKET)
    make_results_table(RESULTS_TABLE)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(
        TableName=IDEMPOTENCY_TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=PARAMETER, Value=json.dumps(active_model or ACTIVE_MODEL), Type="String"
    )


def load_handler():
    """Import the handler afresh (it reads its environment at import) with recorded sends."""
    parameters.clear_caches()  # the active-model record of an earlier test
    sys.modules.pop("lambdas.counter.handler", None)
    module = importlib.import_module("lambdas.counter.handler")
    recorder = SendRecorder(
        {module.ENV.queue_url: "intake", module.ENV.dead_letter_queue_url: "dead letters"}
    )
    module.message_handler()._redelivery._sqs = recorder
    return module, recorder


def answer(response: object) -> dict[str, Any]:
    body = json.dumps(response).encode()
    return {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "application/json"}


def answers(stub: Stubber, response: object) -> None:
    stub.add_response(
        "invoke_endpoint",
        answer(response),
        {
            "EndpointName": ACTIVE_MODEL["endpoint_name"],
            "ContentType": "application/x-image",
            "Accept": "application/json",
            "Body": ANY,
        },
    )


def upload(key: str, data: bytes, bucket: str = BUCKET) -> dict:
    """Put an object and return the EventBridge event S3 would send for it."""
    put = boto3.client("s3", region_name=REGION).put_object(Bucket=BUCKET, Key=key, Body=data)
    return {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "detail": {
            "bucket": {"name": bucket},
            "object": {
                "key": key,
                "size": len(data),
                "etag": put["ETag"].strip('"'),
                "version-id": put["VersionId"],
            },
        },
    }


def record(body: str, receive_count: int = 1, attributes: dict[str, str] | None = None) -> dict:
    return {
        "messageId": str(uuid.uuid4()),
        "receiptHandle": f"handle-{uuid.uuid4()}",
        "body": body,
        "attributes": {"ApproximateReceiveCount": str(receive_count)},
        "messageAttributes": {
            name: {"stringValue": value, "dataType": "Number"}
            for name, value in (attributes or {}).items()
        },
        "md5OfBody": "",
        "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:123456789012:intake",
        "awsRegion": REGION,
    }


def sqs_event(*bodies: str) -> dict:
    return {"Records": [record(body) for body in bodies]}


def keys_under(prefix: str) -> set[str]:
    listing = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=BUCKET, Prefix=prefix)
    return {item["Key"] for item in listing.get("Contents", [])}


def idempotency_items() -> list[dict]:
    return boto3.resource("dynamodb", region_name=REGION).Table(IDEMPOTENCY_TABLE).scan()["Items"]


def read_json(key: str) -> dict:
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=BUCKET, Key=key)["Body"]
    return json.loads(body.read())


def result_or_none(key: str) -> dict | None:
    """The image's result document, read through its contract (which refuses any other)."""
    result_key = f"results/{key.removeprefix('incoming/')}.json"
    if result_key not in keys_under(result_key):
        return None
    document = read_json(result_key)
    published.RESULT_DOCUMENT.validate_python(document)
    return document


def table_items() -> list[dict]:
    """Every results-table item, each read through its contract (which refuses any other)."""
    table = boto3.resource("dynamodb", region_name=REGION).Table(RESULTS_TABLE)
    items = table.scan()["Items"]
    for item in items:
        published.TableItem.model_validate(item)
    return items
