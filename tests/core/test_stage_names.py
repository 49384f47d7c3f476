"""The names a stage's resources take from its prefix, and the stage read back from a bucket."""

from __future__ import annotations

import pytest

from counting_core import stage_names
from counting_core.stage_names import Stage


def test_every_name_of_a_stage():
    prefix = "object-counting-dev"

    assert stage_names.data_bucket(prefix, "123456789012", "eu-west-1") == (
        "object-counting-dev-data-123456789012-eu-west-1"
    )
    assert stage_names.training_state_machine(prefix) == "object-counting-dev-training"
    assert stage_names.bulk_counting_state_machine(prefix) == "object-counting-dev-bulk-counting"
    assert stage_names.endpoint(prefix) == "object-counting-dev-counter"
    assert stage_names.active_model_parameter(prefix) == "/object-counting-dev/active-model"


@pytest.mark.parametrize(
    ("bucket", "stage"),
    [
        (
            "object-counting-dev-data-123456789012-eu-west-1",
            Stage("object-counting-dev", "123456789012", "eu-west-1"),
        ),
        # A prefix holding "-data-" itself: the account and Region are read from the end.
        (
            "big-data-prod-data-210987654321-us-gov-west-1",
            Stage("big-data-prod", "210987654321", "us-gov-west-1"),
        ),
        ("my-photos", None),
        ("object-counting-dev-data-1234-eu-west-1", None),
    ],
)
def test_the_stage_is_read_back_from_its_data_buckets_name(bucket, stage):
    assert stage_names.stage_of_data_bucket(bucket) == stage


@pytest.mark.parametrize(
    ("region", "arn"),
    [
        ("eu-west-1", "arn:aws:states:eu-west-1:123456789012:stateMachine:p-training"),
        ("cn-north-1", "arn:aws-cn:states:cn-north-1:123456789012:stateMachine:p-training"),
        (
            "us-gov-east-1",
            "arn:aws-us-gov:states:us-gov-east-1:123456789012:stateMachine:p-training",
        ),
    ],
)
def test_a_state_machines_arn_is_in_its_regions_partition(region, arn):
    assert Stage("p", "123456789012", region).state_machine_arn("p-training") == arn
