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

from counting import aws
from counting import count as count_cli
from counting import train as train_cli
from counting_core.counts import announcements, results
from lambdas.counter import endpoint
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


def test_the_counter_invokes_the_endpoint_as_the_api_allows():
    runtime = boto3.client("sagemaker-runtime", region_name=REGION, config=endpoint.CLIENT_CONFIG)
    counter = CountingService(
        s3=None,
        sagemaker_runtime=runtime,
        dynamodb=None,
        table_name="results",
        active_model=lambda: None,
        configured_threshold=0.2,
        annotate_images=False,
        payload_scale=2,
        put_events=None,
        event_source="object-counting-dev.counting",
    )
    with answered(runtime, "invoke_endpoint", endpoint_answer(), INVOKE) as sent:
        assert counter._invoke(ENDPOINT, b"\xff\xd8 jpeg bytes") == PREDICTIONS

    (request,) = sent
    assert request_problems("sagemaker-runtime", "InvokeEndpoint", request) == []


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
    image = results.ImageRef("amzn-s3-demo-bucket", "archive/a.jpg", "v1", "e1")
    document = results.rejected_document(
        image, "image is empty", datetime(2026, 11, 29, tzinfo=UTC), pipeline="bulk"
    )
    entry = announcements.entry(document, source="object-counting-dev.counting", annotated=False)
    answer = {"FailedEntryCount": 0, "Entries": [{"EventId": "1"}]}
    with answered(events, "put_events", answer, {"Entries": [entry]}) as sent:
        announcements.publish([entry], events.put_events)

    (request,) = sent
    assert request_problems("events", "PutEvents", request) == []
