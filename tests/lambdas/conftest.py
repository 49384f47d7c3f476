"""Fixtures for handler tests: moto-backed AWS and a Lambda context."""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import boto3
import pytest
from moto import mock_aws
from PIL import Image

REGION = "us-east-1"
ACCOUNT = "123456789012"


@dataclass
class FakeLambdaContext:
    function_name: str = "counter"
    memory_limit_in_mb: int = 1024
    invoked_function_arn: str = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:counter"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 60_000


@pytest.fixture
def lambda_context() -> FakeLambdaContext:
    return FakeLambdaContext()


@pytest.fixture
def aws():
    with mock_aws():
        yield


class Cached(Protocol):
    """A ``functools.cache`` getter."""

    def cache_clear(self) -> None: ...


@contextlib.contextmanager
def deployed(
    monkeypatch, environment: Mapping[str, str], made_on_first_use: Cached
) -> Iterator[None]:
    """A handler as Lambda runs it: ``environment`` set, and what it makes from it on its
    first invocation (its cached getter) not yet made, nor left behind."""
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    made_on_first_use.cache_clear()
    yield
    made_on_first_use.cache_clear()


def image_bytes(fmt: str = "PNG", size: tuple[int, int] = (200, 100)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, (120, 160, 200)).save(buffer, format=fmt)
    return buffer.getvalue()


def object_created(bucket: str, key: str, put: Mapping[str, Any]) -> dict[str, Any]:
    """The EventBridge event S3 sends for the object ``put`` (PutObject's or HeadObject's
    answer) wrote: https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html"""
    written = {"key": key, "etag": put["ETag"].strip('"')}
    if put.get("VersionId"):
        written["version-id"] = put["VersionId"]
    return {
        "version": "0",
        "detail-type": "Object Created",
        "source": "aws.s3",
        "detail": {"bucket": {"name": bucket}, "object": written},
    }


def make_bucket(name: str) -> None:
    s3 = boto3.client("s3", region_name=REGION)
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})


@pytest.fixture
def counter(aws, monkeypatch, request):
    """The counter under moto, built as the function builds it: (Counter, its recorded sends).

    Configured with a threshold of "0.2" unless a test gives ``(configured threshold or None,
    active-model record)`` as the fixture's parameter.
    """
    from tests.lambdas.counter_harness import (
        build_counter,
        create_resources,
        powertools_environment,
    )

    configured, active_model = getattr(request, "param", ("0.2", None))
    powertools_environment(monkeypatch)
    create_resources(active_model)
    return build_counter(SCORE_THRESHOLD=configured)


# Hand-checked: four boxes, two at or above 0.2 for "car", one for "person", one below.
HAND_CHECKED_RESPONSE = {
    "prediction": [
        [0.0, 0.91, 0.10, 0.20, 0.30, 0.60],
        [1.0, 0.55, 0.50, 0.10, 0.70, 0.90],
        [0.0, 0.20, 0.60, 0.50, 0.80, 0.70],
        [1.0, 0.19, 0.00, 0.00, 0.10, 0.10],
    ]
}


def make_results_table(name: str) -> None:
    """The results table as the counting stack defines it: image (hash), version (range)."""
    boto3.client("dynamodb", region_name=REGION).create_table(
        TableName=name,
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


def emitted(capsys, metric: str) -> float:
    """The sum of ``metric`` over the EMF documents Powertools printed to stdout."""
    total = 0.0
    for line in capsys.readouterr().out.splitlines():
        with contextlib.suppress(ValueError):
            document = json.loads(line)
            if isinstance(document, dict) and "_aws" in document:
                total += sum(
                    document.get(metric, [])
                    if isinstance(document.get(metric), list)
                    else [document.get(metric, 0)]
                )
    return total
