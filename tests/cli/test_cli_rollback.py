"""``counting train rollback``: the active-model record's history in moto's Parameter Store,
the endpoint update checked against botocore's SageMaker model (moto has no UpdateEndpoint)."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from counting import aws
from counting import train as train_cli

REGION = "eu-west-1"
BUCKET = "object-counting-dev-data-123456789012-eu-west-1"
PARAMETER = "/object-counting-dev/active-model"
ENDPOINT = "object-counting-dev-counter"
ENDPOINT_ARN = f"arn:aws:sagemaker:{REGION}:123456789012:endpoint/{ENDPOINT}"
WHEN = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)


def record(run: str, **extra: object) -> str:
    return json.dumps(
        {"endpoint_name": ENDPOINT, "endpoint_config_name": run, "model_name": run, **extra}
    )


def endpoint(status: str, **extra: str) -> dict:
    return {
        "EndpointName": ENDPOINT,
        "EndpointArn": ENDPOINT_ARN,
        "EndpointStatus": status,
        "CreationTime": WHEN,
        "LastModifiedTime": WHEN,
        **extra,
    }


@pytest.fixture
def stage(monkeypatch):
    """(ssm client in moto, stubbed sagemaker client); sleeps are skipped and counted."""
    sagemaker = boto3.client(
        "sagemaker", region_name=REGION, aws_access_key_id="x", aws_secret_access_key="x"
    )
    sleeps: list[int] = []
    monkeypatch.setattr(train_cli.time, "sleep", sleeps.append)
    with mock_aws(), Stubber(sagemaker) as stubber:
        ssm = boto3.client("ssm", region_name=REGION)
        clients = {"ssm": ssm, "sagemaker": sagemaker}
        monkeypatch.setattr(aws, "client", lambda service, region: clients[service])
        yield ssm, stubber, sleeps
        stubber.assert_no_pending_responses()


def history(ssm, *values: str) -> None:
    for value in values:
        ssm.put_parameter(Name=PARAMETER, Value=value, Type="String", Overwrite=True)


def test_rollback_restores_the_deployment_before_the_active_one(cli, stage):
    ssm, stubber, sleeps = stage
    # Versions 1-3: run-a deployed, run-b deployed, run-b's record written again. The one
    # before the active deployment is run-a (version 1), not run-b's first record.
    first = record("run-a", best_threshold=0.35)
    history(ssm, first, record("run-b"), record("run-b", best_threshold=0.4))
    stubber.add_response(
        "update_endpoint",
        {"EndpointArn": ENDPOINT_ARN},
        {"EndpointName": ENDPOINT, "EndpointConfigName": "run-a"},
    )
    stubber.add_response("describe_endpoint", endpoint("Updating"), {"EndpointName": ENDPOINT})
    stubber.add_response("describe_endpoint", endpoint("InService"), {"EndpointName": ENDPOINT})

    status, out, err = cli("train", "rollback", "--bucket", f"s3://{BUCKET}")

    assert status == 0
    assert json.loads(out) == {
        "endpoint": ENDPOINT,
        "from": "run-b",
        "to": "run-a",
        "model": "run-a",
        "restored_version": 1,
    }
    assert err == f"counting: updating {ENDPOINT} to run-a; this takes minutes\n"
    assert sleeps == [30]  # one wait between Updating and InService
    # Written back as it was, byte for byte: a 4th version.
    current = ssm.get_parameter(Name=PARAMETER)["Parameter"]
    assert (current["Value"], current["Version"]) == (first, 4)


def test_rollback_to_a_named_deployment(cli, stage):
    ssm, stubber, _ = stage
    history(ssm, record("run-a"), record("run-b"), record("run-c"))
    stubber.add_response(
        "update_endpoint",
        {"EndpointArn": ENDPOINT_ARN},
        {"EndpointName": ENDPOINT, "EndpointConfigName": "run-a"},
    )
    stubber.add_response("describe_endpoint", endpoint("InService"), {"EndpointName": ENDPOINT})

    status, out, _ = cli("train", "rollback", "--bucket", BUCKET, "--to", "run-a")

    assert (status, json.loads(out)["to"], json.loads(out)["from"]) == (0, "run-a", "run-c")


@pytest.mark.parametrize(
    ("values", "to", "message"),
    [
        ((), None, f"{PARAMETER} holds no record: nothing was deployed yet"),
        (
            (record("run-a"), record("run-a")),
            None,
            f"no earlier deployment in the 2 version(s) Parameter Store keeps of {PARAMETER}",
        ),
        ((record("run-a"), record("run-b")), "run-b", "--to: run-b is the active deployment"),
        (
            (record("run-a"), record("run-b")),
            "run-z",
            f"--to: run-z is not in the 2 version(s) Parameter Store keeps of {PARAMETER}",
        ),
        (
            ('{"endpoint_name": "x"}', record("run-b")),
            None,
            f"{PARAMETER} version 1: endpoint_config_name: missing; model_name: missing",
        ),
    ],
    ids=["never deployed", "one deployment", "to the active", "to an unknown", "bad record"],
)
def test_nothing_to_roll_back_to_is_one_line_and_changes_nothing(cli, stage, values, to, message):
    ssm, _, _ = stage
    history(ssm, *values)
    argv = ["train", "rollback", "--bucket", BUCKET] + (["--to", to] if to else [])

    status, out, err = cli(*argv)

    # No endpoint call was stubbed: the Stubber would fail on any.
    assert (status, out, err) == (2, "", f"counting: error: {message}\n")


def test_an_endpoint_that_fails_to_update_leaves_the_record(cli, stage):
    ssm, stubber, _ = stage
    history(ssm, record("run-a"), record("run-b"))
    stubber.add_response(
        "update_endpoint",
        {"EndpointArn": ENDPOINT_ARN},
        {"EndpointName": ENDPOINT, "EndpointConfigName": "run-a"},
    )
    stubber.add_response(
        "describe_endpoint",
        endpoint("Failed", FailureReason="model.tar.gz not found"),
        {"EndpointName": ENDPOINT},
    )

    status, out, err = cli("train", "rollback", "--bucket", BUCKET)

    assert (status, out) == (3, "")  # an AWS failure
    assert err.endswith(
        f"counting: error: endpoint {ENDPOINT} is Failed after 0 s, not InService: "
        "model.tar.gz not found; the record was left as it was\n"
    )
    assert ssm.get_parameter(Name=PARAMETER)["Parameter"]["Version"] == 2


def test_a_bucket_not_named_like_a_stages_is_refused_without_a_missing_option(cli, stage):
    status, out, err = cli("train", "rollback", "--bucket", "my-photos")

    assert (status, out) == (2, "")
    assert err == (
        "counting: error: --bucket: my-photos is not named like an app's data bucket "
        "(<project>-<stage>-data-<account>-<region>)\n"
    )
