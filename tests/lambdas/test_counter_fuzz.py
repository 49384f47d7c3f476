"""Fuzz: 2,000 malformed messages through the handler, 2,000 malformed endpoint answers.

Neither may raise: every message ends settled (counted, rejected, sent again, dead-lettered
or ignored), every answer that is not a valid ``prediction`` list is retried and never
counted.
"""

from __future__ import annotations

import io
import json
import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters.result_store import ResultStore
from counting_core.contracts import published
from counting_core.imaging.tiling import TilingPolicy
from counting_core.models.model_record import ActiveModel
from counting_core.uploads import delivery
from counting_core.uploads.failures import TryAgain
from lambdas.counter.service import CountingService
from tests.lambdas.conftest import image_bytes
from tests.lambdas.counter_harness import (
    ACTIVE_MODEL,
    BUCKET,
    TimedContext,
    build_counter,
    read_json,
    upload,
)

# Thousands of generated cases: run by `make test`, left out of the `make unit` loop.
pytestmark = pytest.mark.slow

EXAMPLES = 2000

json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=True) | st.integers() | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=30,
)
keys = st.one_of(
    st.text(max_size=40),
    st.text(max_size=20).map(lambda name: f"incoming/{name}"),
    st.sampled_from(
        ["incoming/", "incoming/a/", "incoming/x.jpg", "results/x.jpg", "incoming/" + "k" * 1100]
    ),
)
events = st.fixed_dictionaries(
    {
        "detail-type": st.sampled_from(["Object Created", "Object Deleted", ""]) | json_values,
        "detail": st.fixed_dictionaries(
            {
                "bucket": st.fixed_dictionaries(
                    {"name": st.sampled_from([BUCKET, "other-bucket", ""]) | json_values}
                )
                | json_values,
                "object": st.fixed_dictionaries(
                    {"key": keys | json_values, "etag": json_values, "version-id": json_values}
                )
                | json_values,
            }
        )
        | json_values,
    }
)
bodies = st.one_of(
    st.text(max_size=200),
    json_values.map(json.dumps),
    events.map(lambda event: json.dumps(event, allow_nan=True)),
)
attribute_values = st.one_of(
    st.fixed_dictionaries({"stringValue": st.text(max_size=6), "dataType": st.just("Number")}),
    json_values,
)
message_attributes = (
    st.dictionaries(
        st.sampled_from([delivery.FAILURES_ATTRIBUTE, delivery.CRASHES_ATTRIBUTE, "other"]),
        attribute_values,
        max_size=3,
    )
    | json_values
)
receive_counts = st.integers(-3, 12).map(str) | st.text(max_size=4) | st.none()


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    messages=st.lists(st.tuples(bodies, message_attributes, receive_counts), min_size=1, max_size=3)
)
def test_malformed_messages_never_escape(counter, messages):
    handler, _ = counter
    records = [
        {
            "messageId": str(uuid.uuid4()),
            "receiptHandle": str(uuid.uuid4()),
            "body": body,
            "attributes": {"ApproximateReceiveCount": count},
            "messageAttributes": attributes,
            "eventSource": "aws:sqs",
        }
        for body, attributes, count in messages
    ]

    response = handler.process({"Records": records}, TimedContext())

    assert response == {"batchItemFailures": []}


class Objects:
    """S3 and DynamoDB in memory: the fuzz of answers is about the answers."""

    def __init__(self, image: bytes) -> None:
        self.image = image
        self.written: dict[str, bytes] = {}
        self.items: dict[tuple[str, str], dict] = {}

    def get_object(self, **request):
        return {"Body": io.BytesIO(self.image), "ContentLength": len(self.image)}

    def head_object(self, **request):
        return {"VersionId": "v1"}

    def put_object(self, **request):
        self.written[request["Key"]] = request["Body"]
        return {"ETag": '"e"'}

    def put_item(self, **request):
        item = request["Item"]
        self.items[item["image"]["S"], item["version"]["S"]] = item

    def put_events(self, **request):
        # EventBridge accepts every entry here; publishing failures have their own tests.
        return {"FailedEntryCount": 0, "Entries": [{"EventId": "e"} for _ in request["Entries"]]}


class Answers:
    def __init__(self) -> None:
        self.body = b""

    def invoke_endpoint(self, **request):
        return {"Body": io.BytesIO(self.body)}


unit = st.floats(0, 1)
box = st.tuples(st.integers(0, 2), unit, unit, unit, unit, unit).map(
    lambda b: [b[0], b[1], min(b[2], b[4]), min(b[3], b[5]), max(b[2], b[4]), max(b[3], b[5])]
)
box_numbers = (
    st.integers(-1, 2)
    | st.floats(-0.7, 1.7)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.booleans()
    | st.none()
    | st.text(max_size=3)
)
nearly_box = st.lists(box_numbers, min_size=4, max_size=7)
# (kind, answer text, rows): "valid" answers are well formed by construction, "invalid" ones
# broken by construction (no prediction list, a row of the wrong length, or not UTF-8 JSON),
# "any" may be either.
answers = st.one_of(
    st.lists(box, max_size=5).map(lambda rows: ("valid", json.dumps({"prediction": rows}), rows)),
    st.dictionaries(st.text(max_size=6).filter(lambda key: key != "prediction"), json_values).map(
        lambda value: ("invalid", json.dumps(value), None)
    ),
    st.tuples(st.lists(box, max_size=3), st.lists(box_numbers, min_size=7, max_size=9)).map(
        lambda parts: ("invalid", json.dumps({"prediction": [*parts[0], parts[1]]}), None)
    ),
    st.binary(max_size=60).map(lambda data: ("invalid", "\udcff" + data.decode("latin-1"), None)),
    json_values.map(lambda value: ("any", json.dumps({"prediction": value}), None)),
    st.lists(box | nearly_box, min_size=1, max_size=5).map(
        lambda rows: ("any", json.dumps({"prediction": rows}), None)
    ),
    st.text(max_size=40).map(lambda text: ("any", '{"prediction": [' + text, None)),
)


@pytest.fixture(scope="module")
def service() -> tuple[CountingService, Objects, Answers]:
    objects, endpoint = Objects(image_bytes("JPEG")), Answers()
    budget = delivery.TimeBudget()
    budget.new_invocation(lambda: 600_000)
    counting = CountingService(
        s3=objects,
        sagemaker_runtime=endpoint,
        store=ResultStore(
            s3=objects,
            dynamodb=objects,
            events=objects,
            table_name="results",
            event_source="object-counting-dev.counting",
            measure=lambda outcome: None,
        ),
        active_model=lambda: ActiveModel.model_validate(ACTIVE_MODEL),
        configured_threshold=0.2,
        annotate_images=True,
        payload_scale=2,
        endpoint_slots=1,
        time_budget=budget,
        tiling_policy=TilingPolicy(),  # whole images, the default
        mark_tiles=False,
    )
    return counting, objects, endpoint


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(answer=answers)
def test_malformed_answers_are_retried_never_counted(service, answer):
    kind, text, rows = answer
    counting, objects, endpoint = service
    endpoint.body = text.encode("utf-8", "surrogatepass")
    objects.items.clear()

    try:
        outcome = counting.count(
            published.SourceObject(
                bucket=BUCKET, key="incoming/a.jpg", version_id="v1", etag="etag"
            )
        )
    except TryAgain:
        outcome = None

    if kind == "valid":
        assert outcome is not None
        assert outcome.status == "counted"
        # Counted here from the rows themselves: those scoring at least the 0.2 threshold.
        assert outcome.count == sum(1 for row in rows if row[1] >= 0.2)
        assert len(objects.items) == 1
    elif kind == "invalid":
        assert outcome is None, "a malformed answer is retried"
        assert objects.items == {}
    else:  # either retried with nothing written, or counted and written once
        assert (outcome is None and objects.items == {}) or (
            outcome.status == "counted" and len(objects.items) == 1
        )


def test_a_valid_upload_among_malformed_messages_is_counted(counter):
    endpoint = Answers()
    endpoint.body = b'{"prediction": [[0, 0.9, 0, 0, 1, 1]]}'
    handler, recorder = build_counter(sagemaker_runtime=endpoint)
    good = json.dumps(upload("incoming/good.png", image_bytes()))
    event = {
        "Records": [
            {"messageId": "1", "receiptHandle": "1", "body": "{]", "attributes": {}},
            {"messageId": "2", "receiptHandle": "2", "body": good, "attributes": {}},
        ]
    }

    assert handler.process(event, TimedContext()) == {"batchItemFailures": []}

    (letter,) = recorder.sent
    assert letter.queue == "dead letters"
    assert read_json("results/good.png.json")["count"] == 1
