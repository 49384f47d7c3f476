"""``counting bulk start``: the StartExecution request, checked by botocore's Stubber."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import ANY, Stubber

from counting import aws
from counting import bulk as bulk_cli

BUCKET = "object-counting-dev-data-123456789012-eu-west-1"
MACHINE = "arn:aws:states:eu-west-1:123456789012:stateMachine:object-counting-dev-bulk-counting"
EXECUTION = "arn:aws:states:eu-west-1:123456789012:execution:object-counting-dev-bulk-counting:x"


@pytest.fixture
def stepfunctions(monkeypatch):
    """The CLI's Step Functions client, stubbed; yields (stubber, regions asked for)."""
    client = boto3.client(
        "stepfunctions",
        region_name="eu-west-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    regions: list[str | None] = []

    def make(service: str, region: str | None):
        assert service == "stepfunctions"
        regions.append(region)
        return client

    monkeypatch.setattr(aws, "client", make)
    with Stubber(client) as stubber:
        yield stubber, regions
        stubber.assert_no_pending_responses()


def expect_start(stubber: Stubber, machine: str, request: dict) -> None:
    stubber.add_response(
        "start_execution",
        {"executionArn": EXECUTION, "startDate": "2026-11-29T12:00:00Z"},
        {"stateMachineArn": machine, "name": ANY, "input": json.dumps(request)},
    )


def test_the_state_machine_is_found_from_the_data_buckets_name(cli, stepfunctions):
    stubber, regions = stepfunctions
    expect_start(stubber, MACHINE, {"bucket": BUCKET, "prefix": "archive/2026/"})

    status, out, err = cli("bulk", "start", "--prefix", f"s3://{BUCKET}/archive/2026/")

    assert (status, err) == (0, "")
    assert json.loads(out) == {"executionArn": EXECUTION}
    assert regions == ["eu-west-1"]


def test_a_given_state_machine_and_region_are_used(cli, stepfunctions):
    stubber, regions = stepfunctions
    other = MACHINE.replace("object-counting-dev", "counting-prod")
    expect_start(stubber, other, {"bucket": BUCKET, "prefix": "archive/cam 7/"})

    status, _, err = cli(
        "bulk", "start", "--prefix", f"s3://{BUCKET}/archive/cam 7/",
        "--state-machine-arn", other, "--region", "eu-central-1",
    )  # fmt: skip

    assert (status, err) == (0, "")
    assert regions == ["eu-central-1"]


@pytest.mark.parametrize(
    ("region", "partition"),
    [("cn-north-1", "aws-cn"), ("us-gov-west-1", "aws-us-gov"), ("ap-southeast-2", "aws")],
)
def test_the_default_state_machine_is_in_the_buckets_partition(region, partition):
    arn = bulk_cli.default_state_machine_arn(f"object-counting-dev-data-123456789012-{region}")

    assert arn == (
        f"arn:{partition}:states:{region}:123456789012:stateMachine:"
        "object-counting-dev-bulk-counting"
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--prefix", "archive/2026/"],
            "--prefix: 'archive/2026/' is not an s3://bucket/prefix URI",
        ),
        (["--prefix", f"s3://{BUCKET}/"], f"--prefix: 's3://{BUCKET}/' is not an s3://bucket"),
        (
            ["--prefix", "s3://my-photos/archive/"],
            "--prefix: my-photos is not named like an app's data bucket",
        ),
        (
            ["--prefix", f"s3://{BUCKET}/archive/", "--state-machine-arn", "bulk-counting"],
            "--state-machine-arn: 'bulk-counting' is not a state machine ARN",
        ),
    ],
)
def test_bad_arguments_end_with_one_line(cli, argv, message):
    status, out, err = cli("bulk", "start", *argv)

    assert (status, out) == (2, "")
    assert err.startswith(f"counting: error: {message}")
    assert err.count("\n") == 1


def test_a_refused_start_is_one_line(cli, stepfunctions):
    stubber, _ = stepfunctions
    stubber.add_client_error(
        "start_execution",
        service_error_code="StateMachineDoesNotExist",
        service_message=f"State Machine Does Not Exist: '{MACHINE}'",
        expected_params={"stateMachineArn": MACHINE, "name": ANY, "input": ANY},
    )

    status, _, err = cli("bulk", "start", "--prefix", f"s3://{BUCKET}/archive/")

    assert status == 3  # an AWS failure, not bad input
    assert err == (
        f"counting: error: {MACHINE}: StateMachineDoesNotExist: "
        f"State Machine Does Not Exist: '{MACHINE}'\n"
    )
