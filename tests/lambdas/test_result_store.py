"""Both pipelines through the one result store, under the same write failures.

Each case breaks one write of an image, in the counter (an upload, then its message's copy)
and in bulk counting (a batch, then the Distributed Map's retry of it): the first try must
leave the image either fully recorded or with nothing announced, and the retry must finish
it with exactly one event and one set of metrics, whatever broke.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass

import boto3
import pytest
from botocore.exceptions import ClientError

from adapters import result_store
from counting_core.uploads import cold_start
from lambdas.bulk_counter.handler import run_step
from tests.lambdas import bulk_harness, counter_harness
from tests.lambdas.conftest import REGION, emitted, image_bytes, make_bucket, make_results_table
from tests.schema_checks import capture_result_events, sqs_events

SOURCE = counter_harness.EVENT_SOURCE  # the same for both pipelines here


class Faulty:
    """A client whose ``operation`` fails for the requests ``breaks`` picks, while ``on``
    (and ``times`` times at most, when given); everything else reaches the real client."""

    def __init__(self, service: str, operation: str, breaks: Callable[[dict], bool]) -> None:
        self.client = boto3.client(service, region_name=REGION)
        self.operation = operation
        self.breaks = breaks
        self.on = True
        self.times: int | None = None

    def __getattr__(self, name):
        call = getattr(self.client, name)
        if name != self.operation:
            return call

        def faulty(**request):
            if self.on and self.breaks(request) and self.times != 0:
                if self.times is not None:
                    self.times -= 1
                if name == "put_events":
                    # EventBridge's refusal: per entry, in a successful answer.
                    entries = [{"ErrorCode": "InternalFailure"} for _ in request["Entries"]]
                    return {"FailedEntryCount": len(entries), "Entries": entries}
                raise ClientError({"Error": {"Code": "InternalServerError", "Message": "x"}}, name)
            return call(**request)

        return faulty


def claim(request: dict) -> bool:
    return "ConditionExpression" in request and request["TableName"] == "results"


def finish(request: dict) -> bool:
    return "ConditionExpression" not in request and request["TableName"] == "results"


FAULTS = {
    "claim refused": (("dynamodb", "put_item", claim), None),
    "result document refused": (
        ("s3", "put_object", lambda r: r["Key"].startswith("results/")),
        None,
    ),
    "annotated copy refused": (
        ("s3", "put_object", lambda r: r["Key"].startswith("annotated/")),
        None,
    ),
    "event refused": (("events", "put_events", lambda r: True), None),
    "finish refused once": (("dynamodb", "put_item", finish), 1),
}


@dataclass
class Pipeline:
    bucket: str
    record: Callable[[], None]  # the first try
    retry: Callable[[], None]  # its retry, once the fault is gone


class Answering:
    def invoke_endpoint(self, **request):
        return {"Body": io.BytesIO(json.dumps(counter_harness.RESPONSE).encode())}


def upload_pipeline(monkeypatch, clients: dict) -> Pipeline:
    counter_harness.powertools_environment(monkeypatch)
    monkeypatch.setattr(cold_start, "time", counter_harness.FakeTime())
    counter_harness.create_resources()
    counter, sent = counter_harness.build_counter(
        EVENT_SOURCE=SOURCE, sagemaker_runtime=Answering(), **clients
    )
    body = json.dumps(counter_harness.upload("incoming/a.png", image_bytes()))
    context = counter_harness.TimedContext()

    def retry() -> None:
        # The message's copy, or (none sent: the first try finished) a duplicate of it.
        tally = sent.sent[-1].attributes if sent.sent else {}
        counter.process({"Records": [counter_harness.record(body, attributes=tally)]}, context)

    return Pipeline(
        counter_harness.BUCKET,
        lambda: counter.process(counter_harness.sqs_event(body), context),
        retry,
    )


def bulk_pipeline(monkeypatch, clients: dict) -> Pipeline:
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "bulk-counting")
    make_bucket(bulk_harness.BUCKET)
    make_results_table(bulk_harness.RESULTS_TABLE)
    s3 = boto3.client("s3", region_name=REGION)
    s3.put_object(Bucket=bulk_harness.BUCKET, Key="archive/a.png", Body=image_bytes())
    output = f"bulk/{bulk_harness.RUN}/outputs/archive/a.png.out"
    s3.put_object(Bucket=bulk_harness.BUCKET, Key=output, Body=json.dumps(bulk_harness.ANSWER))
    listed = json.loads(
        json.dumps(
            s3.list_objects_v2(Bucket=bulk_harness.BUCKET, Prefix=output)["Contents"], default=str
        )
    )
    counter = bulk_harness.build_bulk(EVENT_SOURCE=SOURCE, **clients)
    request = {"run": bulk_harness.RUN, "action": "count", "model": bulk_harness.MODEL}

    def count() -> None:
        run_step(counter, {**request, "items": listed})

    return Pipeline(bulk_harness.BUCKET, count, count)


PIPELINES = {"upload": upload_pipeline, "bulk": bulk_pipeline}


def objects(bucket: str, prefix: str) -> set[str]:
    listing = boto3.client("s3", region_name=REGION).list_objects_v2(Bucket=bucket, Prefix=prefix)
    return {item["Key"] for item in listing.get("Contents", [])}


def items() -> list[dict]:
    return boto3.resource("dynamodb", region_name=REGION).Table("results").scan()["Items"]


@pytest.mark.parametrize("pipeline", list(PIPELINES))
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_broken_write_leaves_nothing_announced_and_its_retry_finishes_once(
    aws, monkeypatch, capsys, pipeline, fault
):
    monkeypatch.setattr(result_store, "ATTEMPT_BACKOFF_SECONDS", 0)
    monkeypatch.setattr("counting_core.counts.announcements.time.sleep", lambda _: None)
    (service, operation, breaks), times = FAULTS[fault]
    faulty = Faulty(service, operation, breaks)
    faulty.times = times
    sqs = boto3.client("sqs", region_name=REGION)
    events = capture_result_events(boto3.client("events", region_name=REGION), sqs, SOURCE)
    run = PIPELINES[pipeline](monkeypatch, {service: faulty})

    run.record()

    announced = sqs_events(sqs, events)
    finished = [item for item in items() if "unfinished" not in item]
    if announced:  # recorded whole: document, copy, finished item, one event
        assert len(announced) == len(finished) == 1
    else:  # nothing announced: no finished item, and no copy without its document
        assert finished == []
        if not objects(run.bucket, "results/"):
            assert objects(run.bucket, "annotated/") == set()
    faulty.on = False

    run.retry()

    (item,) = items()
    assert "unfinished" not in item
    assert len(objects(run.bucket, "results/")) == len(objects(run.bucket, "annotated/")) == 1
    assert len(announced) + len(sqs_events(sqs, events)) == 1
    assert emitted(capsys, "ImagesCounted") == 1
