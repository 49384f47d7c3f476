"""Check real outputs against the published schemas (``schemas/``, JSON Schema draft 4)."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator

SCHEMAS = Path(__file__).resolve().parents[1] / "schemas"


def _plain(value: Any) -> Any:
    """DynamoDB numbers (Decimal) as the JSON numbers a consumer reads."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    raise TypeError(type(value))


def assert_valid(schema_file: str, instance: Any) -> None:
    schema = json.loads((SCHEMAS / schema_file).read_text())
    plain = json.loads(json.dumps(instance, default=_plain))
    errors = sorted(Draft4Validator(schema).iter_errors(plain), key=str)
    assert not errors, f"{schema_file}: " + "; ".join(
        f"{'/'.join(map(str, error.absolute_path))}: {error.message}" for error in errors
    )


#: The account moto runs as.
MOTO_ACCOUNT = "123456789012"


def sqs_events(sqs: Any, queue_url: str) -> list[dict]:
    """Every EventBridge event delivered to ``queue_url`` so far.

    moto 5.2.5 delivers events to SQS through a template that leaves out ``account``
    (moto/events/utils.py, DEFAULT_EVENT_INPUT_TEMPLATE), which EventBridge always sends;
    it is put back, as the only change, so the envelope is checked whole.
    https://docs.aws.amazon.com/eventbridge/latest/ref/overiew-event-structure.html
    """
    events = []
    while messages := sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
        "Messages"
    ):
        for message in messages:
            event = json.loads(message["Body"])
            if "detail-type" in event:
                event.setdefault("account", MOTO_ACCOUNT)
            events.append(event)
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
    return events


def capture_result_events(events: Any, sqs: Any, source: str) -> str:
    """A rule on the default bus sending this source's events to a new queue; its URL."""
    queue_url = sqs.create_queue(QueueName="result-events")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events.put_rule(Name="result-events", EventPattern=json.dumps({"source": [source]}))
    events.put_targets(Rule="result-events", Targets=[{"Id": "queue", "Arn": queue_arn}])
    return queue_url
