"""The counter Lambda end to end against moto, its faults with Stubber, and a fuzz."""

from __future__ import annotations

import importlib
import io
import json
import sys
import uuid

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.lambdas.conftest import REGION, image_bytes, make_bucket

BUCKET = "counting-data"
RESULTS_TABLE = "results"
IDEMPOTENCY_TABLE = "idempotency"
PARAMETER = "/object-counting-dev/active-model"
ACTIVE_MODEL = {
    "endpoint_name": "object-counting-dev-counter",
    "endpoint_config_name": "object-counting-dev-config-1",
    "model_name": "object-counting-dev-model-1",
    "class_map": {"0": "car", "1": "person"},
}
# Hand-checked: four boxes, two at or above 0.2 for "car", one for "person", one below.
RESPONSE = {
    "prediction": [
        [0.0, 0.91, 0.10, 0.20, 0.30, 0.60],
        [1.0, 0.55, 0.50, 0.10, 0.70, 0.90],
        [0.0, 0.20, 0.60, 0.50, 0.80, 0.70],
        [1.0, 0.19, 0.00, 0.00, 0.10, 0.10],
    ]
}


@pytest.fixture
def handler(aws, monkeypatch):
    monkeypatch.setenv("RESULTS_TABLE", RESULTS_TABLE)
    monkeypatch.setenv("IDEMPOTENCY_TABLE", IDEMPOTENCY_TABLE)
    monkeypatch.setenv("ACTIVE_MODEL_PARAMETER", PARAMETER)
    monkeypatch.setenv("SCORE_THRESHOLD", "0.2")
    monkeypatch.setenv("ANNOTATE", "true")
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "counter")
    monkeypatch.setenv("POWERTOOLS_METRICS_NAMESPACE", "ObjectCounting")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    make_bucket(BUCKET)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    dynamodb.create_table(
        TableName=RESULTS_TABLE,
        KeySchema=[
            {"AttributeName": "image", "KeyType": "HASH"},
            {"AttributeName": "version", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "image", "AttributeType": "S"},
            {"AttributeName": "version", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    dynamodb.create_table(
        TableName=IDEMPOTENCY_TABLE,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=PARAMETER, Value=json.dumps(ACTIVE_MODEL), Type="String"
    )
    sys.modules.pop("lambdas.counter.handler", None)
    module = importlib.import_module("lambdas.counter.handler")
    yield module
    module.image_counter.cache_clear()


@pytest.fixture
def endpoint(handler):
    """The endpoint's answers, queued in order.

    moto 5.2.5's sagemaker-runtime cannot take a binary (image) request body, so the
    endpoint is botocore's Stubber, which also checks each request against the API model.
    """
    with Stubber(handler.image_counter()._runtime) as stub:
        yield stub
        stub.assert_no_pending_responses()


def answers(stub: Stubber, response: object) -> None:
    body = json.dumps(response).encode()
    stub.add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(io.BytesIO(body), len(body)), "ContentType": "application/json"},
        {
            "EndpointName": ACTIVE_MODEL["endpoint_name"],
            "ContentType": "application/x-image",
            "Accept": "application/json",
            "Body": ANY,
        },
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


def read_json(key: str) -> dict:
    body = boto3.client("s3", region_name=REGION).get_object(Bucket=BUCKET, Key=key)["Body"]
    return json.loads(body.read())


def table_items() -> list[dict]:
    table = boto3.resource("dynamodb", region_name=REGION).Table(RESULTS_TABLE)
    return table.scan()["Items"]


def test_an_image_delivered_twice_is_counted_once(handler, endpoint, lambda_context):
    event = json.dumps(upload("incoming/street/cam1.png", image_bytes()))
    answers(endpoint, RESPONSE)
    counter = handler.image_counter()
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
        ("ModelNotReadyException", 429),
        ("ThrottlingException", 400),
        ("ServiceUnavailable", 503),
        ("InternalFailure", 500),
    ],
)
def test_endpoint_faults_are_retried_then_counted(handler, endpoint, lambda_context, code, status):
    event = sqs_event(json.dumps(upload("incoming/cold.png", image_bytes())))
    endpoint.add_client_error("invoke_endpoint", service_error_code=code, http_status_code=status)

    response = handler.main(event, lambda_context)

    assert response["batchItemFailures"] == [{"itemIdentifier": event["Records"][0]["messageId"]}]
    assert table_items() == []

    # SQS delivers it again once visible: the idempotency record of the failure was
    # released, so this time it is counted.
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
    endpoint.add_client_error("invoke_endpoint", service_error_code="ThrottlingException")
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


json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=30,
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(body=st.text(max_size=200) | json_values.map(json.dumps), response=json_values)
def test_fuzz_malformed_events_and_responses_never_escape(handler, lambda_context, body, response):
    good = json.dumps(upload(f"incoming/{uuid.uuid4()}.png", image_bytes()))
    with Stubber(handler.image_counter()._runtime) as stub:
        answers(stub, response)
        result = handler.main(sqs_event(body, good), lambda_context)
    # Every message is either processed or reported for retry; nothing raises.
    assert set(result) == {"batchItemFailures"}
    assert len(result["batchItemFailures"]) <= 2
