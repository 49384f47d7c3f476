"""Bulk counting under moto: its environment, built as the function builds it."""

from __future__ import annotations

import io
from collections.abc import Callable

import boto3
from PIL import Image

from adapters import result_store
from adapters.result_store import StoreClients
from counting_core.contracts.bulk_counter import Environment
from lambdas.bulk_counter.handler import build
from lambdas.bulk_counter.service import BulkCounter
from tests.lambdas.conftest import (
    HAND_CHECKED_RESPONSE,
    REGION,
    make_bucket,
    make_results_table,
)

BUCKET = "object-counting-dev-data-123456789012-us-east-1"
RESULTS_TABLE = "results"
SOURCE = "object-counting-dev.counting"
RUN = "object-counting-dev-bulk-1a2b3c4d"
MODEL = {
    "endpoint_name": "object-counting-dev-counter",
    "endpoint_config_name": "object-counting-dev-20261101-090000-0f0f0f",
    "model_name": "object-counting-dev-20261101-090000-0f0f0f",
    "class_map": {"0": "car", "1": "person"},
}
ANSWER = HAND_CHECKED_RESPONSE


# counter.tiling's variables as configured by default: off.
TILING_OFF = {
    "TILING": "off",
    "TILE_OVERLAP": "0.2",
    "TILING_AUTO_MULTIPLE": "3.0",
    "TILE_MERGE": "merge",
    "WHOLE_IMAGE_PASS": "true",
}

# What the bulk-counting stack gives the function (stacks/components/bulk/function.py).
ENVIRONMENT = {
    "DATA_BUCKET": BUCKET,
    "RESULTS_TABLE": RESULTS_TABLE,
    "SCORE_THRESHOLD": "0.2",
    "ANNOTATE": "true",
    "MAX_PAYLOAD_BYTES": str(6 * 1024 * 1024),
    "EVENT_SOURCE": SOURCE,
    **TILING_OFF,
    "POWERTOOLS_SERVICE_NAME": "bulk-counting",
    "POWERTOOLS_METRICS_NAMESPACE": "ObjectCounting",
}


def prepare_aws(monkeypatch) -> None:
    """Under moto: the data bucket, the results table, and the function's settings for tests."""
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "bulk-counting")
    monkeypatch.setenv("POWERTOOLS_TRACE_DISABLED", "true")
    # An image's later attempts follow at once here.
    monkeypatch.setattr(result_store, "ATTEMPT_BACKOFF_SECONDS", 0)
    make_bucket(BUCKET)
    make_results_table(RESULTS_TABLE)


def build_bulk(**overrides) -> BulkCounter:
    """A bulk counter over moto's clients; ``overrides``: environment variables, or clients
    by their ``StoreClients`` field."""
    fields = set(StoreClients.__dataclass_fields__)
    aws = {
        "s3": boto3.client("s3", region_name=REGION),
        "dynamodb": boto3.client("dynamodb", region_name=REGION),
        "events": boto3.client("events", region_name=REGION),
    }
    aws.update({k: v for k, v in overrides.items() if k in fields})
    variables = {**ENVIRONMENT, **{k: v for k, v in overrides.items() if k not in fields}}
    return build(Environment.model_validate(variables), StoreClients(**aws))


def resizing_model(detector: Callable[[bytes], bytes], side: int = 512) -> Callable[[bytes], bytes]:
    """The model behind the transform: every input resized to its ``side`` x ``side`` input,
    as the built-in algorithm does, then answered by ``detector`` (a FakeDetector)."""

    def answer(payload: bytes) -> bytes:
        with Image.open(io.BytesIO(payload)) as image:
            resized = image.convert("RGB").resize((side, side))
        buffer = io.BytesIO()
        resized.save(buffer, format="JPEG", quality=95)
        return detector(buffer.getvalue())

    return answer
