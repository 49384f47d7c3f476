"""``counting stage teardown``: what a stage's runs created, in moto's SageMaker and SSM."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

REGION = "eu-west-1"
BUCKET = "object-counting-dev-data-123456789012-eu-west-1"
ROLE = "arn:aws:iam::123456789012:role/model"
IMAGE = "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312"


@pytest.fixture
def sagemaker():
    with mock_aws():
        client = boto3.client("sagemaker", region_name=REGION)
        ssm = boto3.client("ssm", region_name=REGION)
        # Two runs of the dev stage, one bulk run's model copy, and a neighbour stage
        # ("object-counting-dev2") whose names also contain the dev prefix.
        for name in (
            "object-counting-dev-20261201-101500-a1b2c3",
            "object-counting-dev-20261203-090000-d4e5f6",
            "object-counting-dev-bulk-20261203-1a2b3c4d",
            "object-counting-dev2-20261203-090000-000000",
        ):
            client.create_model(
                ModelName=name,
                PrimaryContainer={"Image": IMAGE, "ModelDataUrl": f"s3://{BUCKET}/m.tar.gz"},
                ExecutionRoleArn=ROLE,
            )
        for name in (
            "object-counting-dev-20261203-090000-d4e5f6",
            "object-counting-dev2-20261203-090000-000000",
        ):
            client.create_endpoint_config(
                EndpointConfigName=name,
                ProductionVariants=[
                    {
                        "VariantName": "AllTraffic",
                        "ModelName": name,
                        "ServerlessConfig": {"MemorySizeInMB": 3072, "MaxConcurrency": 6},
                    }
                ],
            )
        client.create_endpoint(
            EndpointName="object-counting-dev-counter",
            EndpointConfigName="object-counting-dev-20261203-090000-d4e5f6",
        )
        client.create_endpoint(
            EndpointName="object-counting-dev2-counter",
            EndpointConfigName="object-counting-dev2-20261203-090000-000000",
        )
        for stage in ("dev", "dev2"):
            ssm.put_parameter(
                Name=f"/object-counting-{stage}/active-model", Value="{}", Type="String"
            )
        yield client, ssm


EXPECTED = {
    "endpoint": "object-counting-dev-counter",
    "endpoint_configs": ["object-counting-dev-20261203-090000-d4e5f6"],
    "models": [
        "object-counting-dev-20261201-101500-a1b2c3",
        "object-counting-dev-20261203-090000-d4e5f6",
        "object-counting-dev-bulk-20261203-1a2b3c4d",
    ],
    "parameter": "/object-counting-dev/active-model",
}


def test_without_yes_it_lists_the_stages_resources_and_deletes_nothing(cli, sagemaker):
    client, _ = sagemaker

    status, out, err = cli("stage", "teardown", "--bucket", BUCKET)

    assert (status, err) == (0, "")
    assert json.loads(out) == {**EXPECTED, "deleted": False}
    assert len(client.list_models()["Models"]) == 4


def test_with_yes_it_deletes_them_and_leaves_the_neighbour_stage(cli, sagemaker):
    client, ssm = sagemaker

    status, out, _ = cli("stage", "teardown", "--bucket", f"s3://{BUCKET}", "--yes")

    assert status == 0
    assert json.loads(out) == {**EXPECTED, "deleted": True}
    assert [e["EndpointName"] for e in client.list_endpoints()["Endpoints"]] == [
        "object-counting-dev2-counter"
    ]
    assert [m["ModelName"] for m in client.list_models()["Models"]] == [
        "object-counting-dev2-20261203-090000-000000"
    ]
    assert [c["EndpointConfigName"] for c in client.list_endpoint_configs()["EndpointConfigs"]] == [
        "object-counting-dev2-20261203-090000-000000"
    ]
    assert [p["Name"] for p in ssm.describe_parameters()["Parameters"]] == [
        "/object-counting-dev2/active-model"
    ]
    # Run again: nothing is left to find.
    status, out, _ = cli("stage", "teardown", "--bucket", BUCKET, "--yes")
    assert json.loads(out) == {
        "endpoint": None,
        "endpoint_configs": [],
        "models": [],
        "parameter": None,
        "deleted": True,
    }


def test_a_bucket_not_named_like_a_stages_is_refused_in_one_line(cli):
    status, out, err = cli("stage", "teardown", "--bucket", "my-photos")

    assert (status, out) == (2, "")
    assert err == (
        "counting: error: --bucket: my-photos is not named like an app's data bucket "
        "(<project>-<stage>-data-<account>-<region>)\n"
    )
