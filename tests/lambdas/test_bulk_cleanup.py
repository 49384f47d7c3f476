"""The bulk cleanup's reading of a run history and its refusals, with GetExecutionHistory
answered by botocore's Stubber (held to the service model). Its runs against the synthesized
state machine's real histories are in tests/stepfunctions/test_bulk_cleanup.py."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.stub import Stubber

from counting_core.contracts.bulk_cleanup import Environment
from lambdas.bulk_cleanup import handler
from lambdas.bulk_cleanup.service import NotARunName, RunCleanup
from tests.lambdas.conftest import REGION

ACCOUNT = "123456789012"
PREFIX = "object-counting-dev"
STACK = f"{PREFIX}-bulk-counting"
MODEL_NAME = f"{PREFIX}-20261101-090000-0f0f0f"
ENVIRONMENT = Environment.model_validate(
    {
        "POWERTOOLS_SERVICE_NAME": "bulk-cleanup",
        "POWERTOOLS_METRICS_NAMESPACE": "ObjectCounting",
        "RUN_NAME_PREFIX": f"{PREFIX}-bulk-",
    }
)
STATE_MACHINE = f"arn:aws:states:{REGION}:{ACCOUNT}:stateMachine:{STACK}"


def ended(execution_arn: str, status: str) -> dict:
    """The event as the Step Functions guide shows it (cw-events.html, "Execution Aborted")."""
    return {
        "version": "0",
        "id": "315c1398-40ff-a850-213b-158f73e60175",
        "detail-type": "Step Functions Execution Status Change",
        "source": "aws.states",
        "account": ACCOUNT,
        "time": "2026-12-05T03:12:21Z",
        "region": REGION,
        "resources": [execution_arn],
        "detail": {
            "executionArn": execution_arn,
            "stateMachineArn": STATE_MACHINE,
            "name": execution_arn.rsplit(":", 1)[1],
            "status": status,
            "startDate": 1796440000000,
            "stopDate": 1796440900000,
            "input": "{}",
            "inputDetails": {"included": True},
            "output": None,
            "outputDetails": None,
        },
    }


HISTORY_NAMING = {
    "events": [
        {
            "timestamp": 1796440000,
            "type": "PassStateExited",
            "id": 4,
            "previousEventId": 3,
            "stateExitedEventDetails": {
                "name": "NameRun",
                "output": json.dumps({"bucket": "b", "prefix": "archive/", "run": "NAME"}),
            },
        }
    ]
}
EXECUTION = f"arn:aws:states:{REGION}:{ACCOUNT}:execution:{STACK}:stopped-by-hand"


@pytest.mark.parametrize(
    "name",
    [
        MODEL_NAME,  # the deployed model
        f"{PREFIX}-bulk-0f0f0f0f-extra",
        f"{PREFIX}-bulk-0F0F0F0F",
        f"{PREFIX}-bulk-counting",
    ],
)
def test_a_history_naming_anything_but_a_run_copy_deletes_nothing(name):
    # GetExecutionHistory's answer, held to botocore's model by the Stubber.
    stepfunctions = boto3.client("stepfunctions", region_name=REGION)
    sagemaker = boto3.client("sagemaker", region_name=REGION)
    history = json.loads(json.dumps(HISTORY_NAMING).replace("NAME", name))
    # The SageMaker Stubber holds no response: any call to it would raise.
    with Stubber(stepfunctions) as stub, Stubber(sagemaker):
        stub.add_response(
            "get_execution_history",
            history,
            {"executionArn": EXECUTION, "includeExecutionData": True},
        )
        service = RunCleanup(ENVIRONMENT, stepfunctions=stepfunctions, sagemaker=sagemaker)
        with pytest.raises(NotARunName, match=rf"named the run '{name}', not {PREFIX}-bulk-"):
            service.clean(handler.ExecutionEnded.model_validate(ended(EXECUTION, "ABORTED")))
        stub.assert_no_pending_responses()


def test_an_event_of_another_kind_is_refused_in_one_line():
    event = {**ended(EXECUTION, "ABORTED"), "detail-type": "Object Created"}
    with pytest.raises(handler.NotAnEndedExecution, match=r"^not an execution status change: "):
        handler.clean(event, RunCleanup(ENVIRONMENT, stepfunctions=None, sagemaker=None))
