"""The active-model record: what the training state machine writes, what the counter reads."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from counting_core.model_record import ActiveModel

# As the state machine's DescribeActiveModel state builds it (no score_threshold: the
# counter then uses its configured threshold).
WRITTEN = {
    "endpoint_name": "object-counting-dev-counter",
    "endpoint_config_name": "object-counting-dev-20261126-173000-a1b2c3",
    "model_name": "object-counting-dev-20261126-173000-a1b2c3",
    "training_job_name": "object-counting-dev-20261126-173000-a1b2c3",
    "validation_map": 0.73,
    "class_map": {"0": "car", "1": "truck"},
    "label_attribute": "vehicles",
    "deployed_at": "2026-11-26T18:02:11.512Z",
}


def test_reads_the_record_the_state_machine_writes():
    record = ActiveModel.model_validate_json(json.dumps(WRITTEN))

    assert record.model_dump(exclude={"score_threshold"}) == WRITTEN
    assert record.score_threshold is None


def test_a_record_from_a_newer_writer_still_reads():
    record = ActiveModel.model_validate({**WRITTEN, "data_report": "s3://bucket/report.json"})

    assert record.endpoint_name == WRITTEN["endpoint_name"]


@pytest.mark.parametrize(
    "change",
    [
        {"endpoint_name": ""},
        {"model_name": None},
        {"validation_map": 1.2},
        {"validation_map": -0.1},
        {"class_map": ["car"]},
    ],
)
def test_a_broken_record_is_refused(change):
    with pytest.raises(ValidationError):
        ActiveModel.model_validate({**WRITTEN, **change})


def test_names_are_required_and_the_rest_optional():
    record = ActiveModel(endpoint_name="e", endpoint_config_name="c", model_name="m")

    assert (record.validation_map, record.class_map, record.training_job_name) == (None, {}, "")
    with pytest.raises(ValidationError):
        ActiveModel.model_validate({"endpoint_name": "e", "model_name": "m"})
