"""The published schemas: generated from the models, valid draft 4, and strict."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft4Validator

from counting_core.contracts import published
from tools.schemas import render

SCHEMAS = Path(__file__).resolve().parents[2] / "schemas"


@pytest.mark.parametrize("name", sorted(published.SCHEMAS))
def test_the_checked_in_schema_is_the_generated_one(name):
    checked_in = (SCHEMAS / name).read_text()

    assert render(published.json_schema(published.SCHEMAS[name])) == checked_in, (
        f"schemas/{name} is out of date: run `make schemas`"
    )


@pytest.mark.parametrize("name", sorted(published.SCHEMAS))
def test_each_schema_is_json_schema_draft_4(name):
    schema = json.loads((SCHEMAS / name).read_text())
    text = json.dumps(schema)

    Draft4Validator.check_schema(schema)
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    # Draft 2020-12 words a draft-4 validator would silently ignore.
    for newer in ('"$defs"', '"const"', '"exclusiveMinimum": 0', '"prefixItems"'):
        assert newer not in text


def test_a_field_the_contract_does_not_name_is_refused():
    schema = json.loads((SCHEMAS / "image-rejected-event.json").read_text())
    event = {
        "version": "0",
        "id": "5b2b5e2c-0d1d-4bd3-9a3e-1f0000000000",
        "detail-type": "Image Rejected",
        "source": "object-counting-dev.counting",
        "account": "123456789012",
        "time": "2026-11-29T12:00:00Z",
        "region": "eu-west-1",
        "resources": [],
        "detail": {
            "image": "s3://b/archive/a.jpg",
            "version": "v1",
            "pipeline": "bulk",
            "reason": "image is empty",
            "result": "s3://b/results/archive/a.jpg.json",
            "counted_at": "2026-11-29T12:00:00+00:00",
        },
    }
    validator = Draft4Validator(schema)

    assert validator.is_valid(event)
    assert not validator.is_valid({**event, "detail": {**event["detail"], "extra": 1}})
    assert not validator.is_valid({**event, "detail-type": "Image Counted"})
    assert not validator.is_valid({**event, "detail": {**event["detail"], "pipeline": "cli"}})
