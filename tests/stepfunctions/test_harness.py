"""The harness's own promise: a request the real API would refuse fails the test."""

from __future__ import annotations

import json

import pytest

from tests.stepfunctions.harness import Run


def run_with_request(resource_type: str, resource: str, parameters: dict) -> Run:
    events = [
        {"stateEnteredEventDetails": {"name": "CreateEndpointConfig"}},
        {
            "taskScheduledEventDetails": {
                "resourceType": resource_type,
                "resource": resource,
                "parameters": json.dumps(parameters),
            }
        },
    ]
    return Run(status="SUCCEEDED", error=None, cause=None, output=None, events=events)


def test_a_request_the_service_model_refuses_fails():
    misspelt = {
        "EndpointConfigName": "config",
        "ProductionVariants": [
            {
                "VariantName": "AllTraffic",
                "ModelName": "m",
                "ServerlessConfig": {"MemorySizeInMb": 1},
            }
        ],
    }

    with pytest.raises(AssertionError, match=r'Unknown parameter .*"MemorySizeInMb"'):
        run_with_request("aws-sdk:sagemaker", "createEndpointConfig", misspelt).check_requests()


def test_a_sync_request_is_checked_as_the_operation_it_starts():
    with pytest.raises(AssertionError, match=r'Missing required parameter .*"TrainingJobName"'):
        run_with_request("sagemaker", "createTrainingJob.sync", {}).check_requests()
