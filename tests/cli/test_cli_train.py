"""``counting train start`` against moto's Step Functions."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import boto3
import pytest
from moto import mock_aws

from counting import train as train_cli

REGION = "eu-west-1"
BUCKET = "object-counting-dev-data-123456789012-eu-west-1"
MANIFEST = f"s3://{BUCKET}/training/requests/street.manifest"


@pytest.fixture
def state_machine():
    """A state machine in moto (whose executions moto records but does not run)."""
    with mock_aws():
        client = boto3.client("stepfunctions", region_name=REGION)
        arn = client.create_state_machine(
            name="object-counting-dev-training",
            definition=json.dumps({"StartAt": "Done", "States": {"Done": {"Type": "Succeed"}}}),
            roleArn="arn:aws:iam::123456789012:role/training",
        )["stateMachineArn"]
        yield client, arn


def test_starts_an_execution_on_the_manifest(cli, state_machine):
    client, arn = state_machine

    status, out, err = cli(
        "train", "start", "--manifest", MANIFEST, "--state-machine-arn", arn,
        "--label-attribute", "vehicles",
    )  # fmt: skip

    assert (status, err) == (0, "")
    execution_arn = json.loads(out)["executionArn"]
    (execution,) = client.list_executions(stateMachineArn=arn)["executions"]
    assert execution["executionArn"] == execution_arn
    assert re.fullmatch(r"cli-\d{8}T\d{6}Z-[0-9a-f]{8}", execution["name"])
    started = client.describe_execution(executionArn=execution_arn)
    assert json.loads(started["input"]) == {"manifestUri": MANIFEST, "labelAttribute": "vehicles"}


def test_two_starts_in_the_same_second_get_different_names():
    now = datetime(2026, 11, 26, 17, 30, tzinfo=UTC)

    assert train_cli.execution_name(now) != train_cli.execution_name(now)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--manifest", "training/requests/a.manifest"], "--manifest: 'training/requests/a"),
        (["--state-machine-arn", "object-counting-dev-training"], "--state-machine-arn: "),
        (["--label-attribute", "vehicles-metadata"], "must not contain '-metadata'"),
    ],
    ids=["manifest not in S3", "not an ARN", "bad label attribute"],
)
def test_bad_arguments_exit_2_with_one_line_and_start_nothing(cli, state_machine, argv, message):
    client, arn = state_machine
    arguments = {"--manifest": MANIFEST, "--state-machine-arn": arn}
    arguments.update(zip(argv[::2], argv[1::2], strict=True))

    status, out, err = cli("train", "start", *[part for pair in arguments.items() for part in pair])

    assert (status, out) == (2, "")
    assert message in err
    assert err.count("\n") == 1
    assert client.list_executions(stateMachineArn=arn)["executions"] == []


def test_a_missing_state_machine_is_reported_without_a_traceback(cli, state_machine):
    _, arn = state_machine

    status, out, err = cli(
        "train", "start", "--manifest", MANIFEST, "--state-machine-arn", arn + "-gone"
    )

    assert (status, out) == (3, "")  # an AWS failure, not bad input
    assert "StateMachineDoesNotExist" in err
    assert err.count("\n") == 1
