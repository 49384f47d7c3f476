"""The result-event samples and the example rule in docs/pipelines.md."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from counting_core.contracts import published
from counting_core.counts import announcements
from tests.docs.pages import ROOT, sample, sample_text
from tests.schema_checks import assert_valid, sqs_events

PIPELINES = ROOT / "docs" / "pipelines.md"
REGION = "eu-west-1"


def test_the_counted_event_carries_what_the_counted_document_says():
    shown = sample(PIPELINES, "image-counted-event")
    document = published.RESULT_DOCUMENT.validate_json(sample_text(PIPELINES, "counted-document"))

    entry = announcements.entry(document, source=shown["source"], annotated=True)

    assert json.loads(entry["Detail"]) == shown["detail"]
    assert entry["DetailType"] == shown["detail-type"]
    assert_valid("image-counted-event.json", shown)


def test_the_rejected_event_carries_the_rejected_documents_reason():
    shown = sample(PIPELINES, "image-rejected-event")
    document = published.RESULT_DOCUMENT.validate_json(sample_text(PIPELINES, "rejected-document"))

    entry = announcements.entry(document, source=shown["source"], annotated=False)

    assert json.loads(entry["Detail"]) == shown["detail"]
    assert entry["DetailType"] == shown["detail-type"]
    assert_valid("image-rejected-event.json", shown)


@pytest.mark.parametrize(
    ("by_class", "delivered"),
    [({"pallet": 2, "box": 9}, True), ({"pallet": 3}, False), ({"box": 4}, True), ({}, True)],
)
def test_the_fewer_than_rule_matches_shelves_short_of_pallets(by_class, delivered):
    event = sample(PIPELINES, "image-counted-event")
    with mock_aws():
        events = boto3.client("events", region_name=REGION)
        sqs = boto3.client("sqs", region_name=REGION)
        queue = sqs.create_queue(QueueName="restock")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
        events.put_rule(
            Name="restock-when-low",
            EventPattern=json.dumps(sample(PIPELINES, "fewer-than-rule")),
        )
        events.put_targets(
            Rule="restock-when-low",
            Targets=[{"Id": "queue", "Arn": arn["Attributes"]["QueueArn"]}],
        )
        events.put_events(
            Entries=[
                {
                    "Source": event["source"],
                    "DetailType": event["detail-type"],
                    "Detail": json.dumps({**event["detail"], "by_class": by_class}),
                }
            ]
        )

        assert bool(sqs_events(sqs, queue)) is delivered
