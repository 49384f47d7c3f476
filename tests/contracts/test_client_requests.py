"""Requests the counter Lambda and the CLI send, held to botocore's model of each API.

Each is sent through a real botocore client answered by botocore's Stubber (which runs
botocore's ParamValidator); the request as the client received it is then checked for
what that validator skips: maximums, enums and patterns (``model.request_problems``).
The labeling launcher's request: test_labeling_request.py.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from PIL import Image

from adapters import clients
from adapters.result_store import ImageResult, ResultStore
from counting import aws
from counting import count as count_cli
from counting import train as train_cli
from counting_core.contracts import published
from counting_core.counts import announcements, predictions, results
from counting_core.imaging.tiling import TilingPolicy
from counting_core.models.model_record import ActiveModel
from counting_core.uploads.delivery import TimeBudget
from lambdas.counter.service import CountingService
from tests.contracts.model import request_problems

REGION = "eu-west-1"
ENDPOINT = "object-counting-dev-counter"
STATE_MACHINE = f"arn:aws:states:{REGION}:123456789012:stateMachine:object-counting-dev-training"
PREDICTIONS = json.dumps({"prediction": []}).encode()


@contextmanager
def answered(client: Any, operation: str, response: dict, expected: dict) -> Iterator[list[dict]]:
    """``client`` answers one ``operation`` with ``response``; yields the requests it got."""
    sent: list[dict] = []
    client.meta.events.register(
        "provide-client-params.*.*", lambda params, **_: sent.append(dict(params))
    )
    with Stubber(client) as stub:
        stub.add_response(operation, response, expected)
        yield sent
        stub.assert_no_pending_responses()


def endpoint_answer() -> dict:
    return {"Body": StreamingBody(io.BytesIO(PREDICTIONS), len(PREDICTIONS))}


INVOKE = {
    "EndpointName": ENDPOINT,
    "ContentType": "application/x-image",
    "Accept": "application/json",
    "Body": ANY,
}


class Uploads:
    """The counter's S3 reads: one small JPEG, whatever is asked."""

    def __init__(self) -> None:
        buffer = io.BytesIO()
        Image.new("RGB", (64, 48)).save(buffer, format="JPEG")
        self.image = buffer.getvalue()

    def get_object(self, **request: Any) -> dict:
        return {"Body": io.BytesIO(self.image), "ContentLength": len(self.image)}


class Recorded:
    """A result store that keeps what it is handed."""

    def record(self, found: ImageResult) -> results.Outcome:
        return results.Outcome.of(found.document)


MODEL = ActiveModel(endpoint_name=ENDPOINT, endpoint_config_name="c-1", model_name="m-1")


def test_the_counter_invokes_the_endpoint_as_the_api_allows():
    runtime = boto3.client("sagemaker-runtime", region_name=REGION, config=clients.ENDPOINT)
    budget = TimeBudget()
    budget.new_invocation(lambda: 600_000)
    counter = CountingService(
        s3=Uploads(),
        sagemaker_runtime=runtime,
        store=Recorded(),  # type: ignore[arg-type]
        active_model=lambda: MODEL,
        configured_threshold=0.2,
        annotate_images=False,
        payload_scale=2,
        endpoint_slots=1,
        time_budget=budget,
        tiling_policy=TilingPolicy(),  # whole images, the default
        mark_tiles=False,
    )
    with answered(runtime, "invoke_endpoint", endpoint_answer(), INVOKE) as sent:
        outcome = counter.count(
            published.SourceObject(
                bucket="amzn-s3-demo-bucket", key="incoming/a.jpg", version_id=None, etag=None
            )
        )

    assert (outcome.status, outcome.count) == ("counted", 0)
    (request,) = sent
    assert request_problems("sagemaker-runtime", "InvokeEndpoint", request) == []


def counted_with_picture() -> ImageResult:
    image = published.SourceObject(
        bucket="amzn-s3-demo-bucket", key="incoming/a.jpg", version_id="v1", etag="e1"
    )
    found = predictions.count_detections(
        [predictions.Detection(0, 0.9, 0.1, 0.1, 0.5, 0.5)],
        image_size=(64, 48),
        threshold_origin="default",
    )
    document = results.counted_document(
        image, found, MODEL.model_used(), datetime(2026, 11, 29, tzinfo=UTC), pipeline="upload"
    )
    return ImageResult(document, found, Image.new("RGB", (64, 48)))


def test_the_result_store_writes_as_the_apis_allow():
    s3 = boto3.client("s3", region_name=REGION)
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    events = boto3.client("events", region_name=REGION)
    requests: list[tuple[str, str, dict]] = []
    for service, client in (("s3", s3), ("dynamodb", dynamodb), ("events", events)):
        client.meta.events.register(
            "provide-client-params.*.*",
            lambda params, model, service=service, **_: requests.append(
                (service, model.name, dict(params))
            ),
        )
    store = ResultStore(
        s3=s3,
        dynamodb=dynamodb,
        events=events,
        table_name="results",
        event_source="object-counting-dev.counting",
        measure=lambda outcome: None,
    )
    image = "s3://amzn-s3-demo-bucket/incoming/a.jpg"
    item = {"TableName": "results", "Item": ANY}
    claim = {
        **item,
        "ConditionExpression": ANY,
        "ExpressionAttributeNames": ANY,
        "ExpressionAttributeValues": ANY,
    }
    bucket = {"Bucket": "amzn-s3-demo-bucket"}
    new_file = {**bucket, "Body": ANY, "IfNoneMatch": "*"}
    with Stubber(s3) as s3_stub, Stubber(dynamodb) as table, Stubber(events) as bus:
        table.add_response("put_item", {}, claim)
        source = {**bucket, "Key": "incoming/a.jpg"}
        s3_stub.add_response("head_object", {"VersionId": "v1"}, source)
        s3_stub.add_response(
            "put_object",
            {"ETag": '"d"'},
            {**new_file, "Key": "results/a.jpg.json", "ContentType": "application/json"},
        )
        s3_stub.add_response(
            "put_object",
            {"ETag": '"a"'},
            {**new_file, "Key": "annotated/a.jpg.png", "ContentType": "image/png"},
        )
        bus.add_response(
            "put_events", {"FailedEntryCount": 0, "Entries": [{"EventId": "1"}]}, {"Entries": ANY}
        )
        table.add_response("put_item", {}, item)
        outcome = store.record(counted_with_picture())

    assert image in requests[-2][2]["Entries"][0]["Detail"]
    assert outcome.count == 1
    assert [(service, operation) for service, operation, _ in requests] == [
        ("dynamodb", "PutItem"),
        ("s3", "HeadObject"),
        ("s3", "PutObject"),
        ("s3", "PutObject"),
        ("events", "PutEvents"),
        ("dynamodb", "PutItem"),
    ]
    for service, operation, request in requests:
        assert request_problems(service, operation, request) == [], operation


@pytest.fixture
def cli_client(monkeypatch):
    """``counting.aws.client`` hands out this one client."""
    clients: dict[str, Any] = {}

    def client(service: str, region: str | None) -> Any:
        return clients.setdefault(service, boto3.client(service, region_name=region or REGION))

    monkeypatch.setattr(aws, "client", client)
    return lambda service: client(service, REGION)


def test_counting_invoke_calls_the_endpoint_as_the_api_allows(cli_client):
    runtime = cli_client("sagemaker-runtime")
    with (
        answered(runtime, "invoke_endpoint", endpoint_answer(), INVOKE) as sent,
        count_cli.endpoint_invoker(ENDPOINT, REGION) as invoke,
    ):
        invoke(b"\xff\xd8 jpeg bytes")

    (request,) = sent
    assert request_problems("sagemaker-runtime", "InvokeEndpoint", request) == []


def test_counting_train_start_starts_an_execution_as_the_api_allows(cli_client):
    stepfunctions = cli_client("stepfunctions")
    started = {"executionArn": f"{STATE_MACHINE}:run", "startDate": "2026-11-29T12:00:00Z"}
    request = {"manifestUri": "s3://bucket/training/requests/a.manifest"}
    expected = {"stateMachineArn": STATE_MACHINE, "name": ANY, "input": json.dumps(request)}
    with answered(stepfunctions, "start_execution", started, expected) as sent:
        train_cli.start_execution(STATE_MACHINE, request, region=REGION)

    (params,) = sent
    assert request_problems("stepfunctions", "StartExecution", params) == []


def test_result_events_are_put_as_the_api_allows():
    events = boto3.client("events", region_name=REGION)
    image = published.SourceObject(
        bucket="amzn-s3-demo-bucket", key="archive/a.jpg", version_id="v1", etag="e1"
    )
    document = results.rejected_document(
        image, "image is empty", datetime(2026, 11, 29, tzinfo=UTC), pipeline="bulk"
    )
    entry = announcements.entry(document, source="object-counting-dev.counting", annotated=False)
    answer = {"FailedEntryCount": 0, "Entries": [{"EventId": "1"}]}
    with answered(events, "put_events", answer, {"Entries": [entry]}) as sent:
        announcements.publish([entry], events.put_events)

    (request,) = sent
    assert request_problems("events", "PutEvents", request) == []
