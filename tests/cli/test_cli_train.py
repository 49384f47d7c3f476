"""``counting train start`` against moto's Step Functions."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from counting import aws
from counting import train as train_cli
from counting.options import bucket_name
from counting_core.errors import InputError

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


def test_start_finds_the_state_machine_from_the_manifests_bucket(cli, state_machine):
    # object-counting-dev-data-123456789012-eu-west-1 -> object-counting-dev-training there.
    client, arn = state_machine

    status, out, err = cli("train", "start", "--manifest", MANIFEST)

    assert (status, err) == (0, "")
    (execution,) = client.list_executions(stateMachineArn=arn)["executions"]
    assert execution["executionArn"] == json.loads(out)["executionArn"]


def test_start_without_an_arn_needs_a_bucket_named_like_the_apps(cli, state_machine):
    status, out, err = cli("train", "start", "--manifest", "s3://my-photos/a.manifest")

    assert (status, out) == (2, "")
    assert err == (
        "counting: error: --manifest: my-photos is not named like an app's data bucket "
        "(<project>-<stage>-data-<account>-<region>); give --state-machine-arn\n"
    )


def test_status_and_wait_report_why_a_run_stopped_and_wait_exits_1(cli, monkeypatch):
    # moto's DescribeExecution gives no error or cause: the response here is checked against
    # botocore's model by the Stubber instead.
    execution = "arn:aws:states:eu-west-1:123456789012:execution:object-counting-dev-training:r1"
    client = boto3.client(
        "stepfunctions", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    monkeypatch.setattr(aws, "client", lambda service, region: client)
    failed = {
        "executionArn": execution,
        "stateMachineArn": execution.replace(":execution:", ":stateMachine:").rsplit(":", 1)[0],
        "status": "FAILED",
        "startDate": datetime(2026, 12, 4, 9, 0, tzinfo=UTC),
        "stopDate": datetime(2026, 12, 4, 11, 30, tzinfo=UTC),
        "error": "CountGateNotMet",
        "cause": "WAPE 0.31 above 0.25",
    }
    expected = {
        "status": "FAILED",
        "startDate": "2026-12-04T09:00:00+00:00",
        "stopDate": "2026-12-04T11:30:00+00:00",
        "error": "CountGateNotMet",
        "cause": "WAPE 0.31 above 0.25",
    }
    with Stubber(client) as stubber:
        for _ in range(2):
            stubber.add_response("describe_execution", failed, {"executionArn": execution})

        status_status, status_out, _ = cli("train", "status", "--execution-arn", execution)
        wait_status, wait_out, _ = cli("train", "wait", "--execution-arn", execution)

    assert (status_status, wait_status) == (0, 1)
    assert json.loads(status_out) == json.loads(wait_out) == expected


def test_wait_returns_once_a_running_run_stops(cli, state_machine, monkeypatch):
    client, arn = state_machine
    execution = client.start_execution(stateMachineArn=arn, name="run-2")["executionArn"]
    sleeps = []

    def sleep(seconds):
        # The run stops while the command waits for the first time.
        sleeps.append(seconds)
        client.stop_execution(executionArn=execution)

    monkeypatch.setattr(train_cli.time, "sleep", sleep)

    status, out, _ = cli("train", "wait", "--execution-arn", execution)

    assert (status, sleeps) == (1, [30])
    assert json.loads(out)["status"] == "ABORTED"


def test_status_refuses_what_is_not_an_execution_arn(cli):
    status, out, err = cli("train", "status", "--execution-arn", MANIFEST)

    assert (status, out) == (2, "")
    assert err == f"counting: error: --execution-arn: {MANIFEST!r} is not an execution ARN\n"


@pytest.mark.parametrize(
    ("given", "bucket"),
    [(BUCKET, BUCKET), (f"s3://{BUCKET}", BUCKET), (f"s3://{BUCKET}/", BUCKET)],
)
def test_a_bucket_is_given_by_name_or_as_an_s3_uri(given, bucket):
    assert bucket_name(given) == bucket


@pytest.mark.parametrize("given", [f"s3://{BUCKET}/training/", "my bucket", "s3://"])
def test_what_is_not_a_bucket_is_refused_in_one_line(given):
    with pytest.raises(InputError) as caught:
        bucket_name(given)

    assert str(caught.value) == f"--bucket: {given!r} is not a bucket name or s3://bucket URI"
