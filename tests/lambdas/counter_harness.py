"""The counter Lambda under moto: its environment, uploads, events and what it left behind."""

from __future__ import annotations

import io
import json
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import boto3
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber

from counting_core.contracts import published
from counting_core.contracts.counter import Environment
from lambdas.counter.handler import Clients, Counter
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


QUEUE_URL = f"https://sqs.{REGION}.amazonaws.com/123456789012/intake"
DEAD_LETTER_QUEUE_URL = f"https://sqs.{REGION}.amazonaws.com/123456789012/dead-letters"
# What the counting stack gives the counter (stacks/components/counter.py), by name.
ENVIRONMENT = {
    "DATA_BUCKET": BUCKET,
    "QUEUE_URL": QUEUE_URL,
    "DEAD_LETTER_QUEUE_URL": DEAD_LETTER_QUEUE_URL,
    "IMAGES_IN_FLIGHT": "3",
    "PAYLOAD_SCALE": "2",
    "RESULTS_TABLE": RESULTS_TABLE,
    "IDEMPOTENCY_TABLE": IDEMPOTENCY_TABLE,
    "ACTIVE_MODEL_PARAMETER": PARAMETER,
    "SCORE_THRESHOLD": "0.2",
    "ANNOTATE": "true",
    "EVENT_SOURCE": EVENT_SOURCE,
    "TILING": "off",
    "TILE_OVERLAP": "0.2",
    "TILING_AUTO_MULTIPLE": "3",
    "TILE_MERGE": "merge",
    "WHOLE_IMAGE_PASS": "true",
    "MARK_TILES": "false",
    "POWERTOOLS_SERVICE_NAME": "counter",
    "POWERTOOLS_METRICS_NAMESPACE": "ObjectCounting",
}


def powertools_environment(monkeypatch) -> None:
    """What Powertools reads (the service dimension of metrics, tracing off)."""
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "counter")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")


def build_counter(*, sqs: Any = None, **overrides: Any) -> tuple[Counter, SendRecorder]:
    """A counter over moto's clients, with recorded sends unless ``sqs`` is given.

    ``overrides``: environment variables by name (None leaves one out), or clients by their
    ``Clients`` field (``sagemaker_runtime=...``).
    """
    fields = set(Clients.__dataclass_fields__)
    variables = {**ENVIRONMENT, **{k: v for k, v in overrides.items() if k not in fields}}
    environment = Environment.model_validate(
        {name: value for name, value in variables.items() if value is not None}
    )
    recorder = SendRecorder({QUEUE_URL: "intake", DEAD_LETTER_QUEUE_URL: "dead letters"})
    aws = {
        "s3": boto3.client("s3", region_name=REGION),
        "dynamodb": boto3.client("dynamodb", region_name=REGION),
        "sqs": sqs or recorder,
        "events": boto3.client("events", region_name=REGION),
        "ssm": boto3.client("ssm", region_name=REGION),
        "sagemaker_runtime": boto3.client("sagemaker-runtime", region_name=REGION),
    }
    aws.update({k: v for k, v in overrides.items() if k in fields})
    return Counter(environment, Clients(**aws)), recorder


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
