"""The API calls a synthesized state machine makes, read from its definition.

Each Task state's ``Resource`` names a service integration; its ``Parameters`` (or, in
JSONata, ``Arguments``) are the request. Optimized integrations and AWS SDK integrations
take the API's own request shape, parameter names in Pascal case; a key ending in ``.$``
(or a ``{% %}`` JSONata expression) gets its value at run time, so only its name can be
checked.
https://docs.aws.amazon.com/step-functions/latest/dg/connect-parameters.html
https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import botocore.session

from tests.contracts.model import UNKNOWN
from tests.stepfunctions.template import Templates

_INTEGRATION_PREFIX = ":states:::"
_SDK = "aws-sdk"
# Optimized integrations whose name in the Resource differs from botocore's service name.
# https://docs.aws.amazon.com/step-functions/latest/dg/integrate-optimized.html
_OPTIMIZED_SERVICES = {"states": "stepfunctions", "elasticmapreduce": "emr"}


@dataclass(frozen=True)
class TaskCall:
    """One Task state and the API call it makes."""

    machine: str
    state: str
    service: str
    operation: str
    request: Any

    def __str__(self) -> str:
        return f"{self.machine}/{self.state} ({self.service}.{self.operation})"


def definitions(templates: Templates) -> Iterator[tuple[str, dict[str, Any]]]:
    """(state machine's logical id, its ASL) for every state machine of every stack."""
    for stack in templates.stacks():
        for logical_id, machine in templates.resources(
            stack, "AWS::StepFunctions::StateMachine"
        ).items():
            properties = machine["Properties"]
            if "DefinitionString" in properties:
                definition = json.loads(templates.resolve(stack, properties["DefinitionString"]))
            else:
                definition = templates.resolve(stack, properties["Definition"])
            yield f"{stack}/{logical_id}", definition


def states(definition: Mapping[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Every state, those inside Parallel branches and Map iterations included."""
    for name, state in definition["States"].items():
        yield name, state
        for branch in state.get("Branches", []):
            yield from states(branch)
        for inner in ("Iterator", "ItemProcessor"):
            if inner in state:
                yield from states(state[inner])


def task_calls(machine: str, definition: Mapping[str, Any]) -> Iterator[TaskCall]:
    """The API call of every Task state that calls an AWS API through an integration."""
    for name, state in states(definition):
        if state["Type"] != "Task":
            continue
        api = api_of(state["Resource"])
        if api is None:
            continue  # an activity, or a Lambda function called by its own ARN
        service, operation = api
        request = state.get("Parameters", state.get("Arguments", {}))
        yield TaskCall(machine, name, service, operation, as_sent(request))


def api_of(resource: str) -> tuple[str, str] | None:
    """The botocore service and operation a Task's Resource calls, or None.

    ``arn:aws:states:::sagemaker:createTrainingJob.sync`` -> sagemaker, CreateTrainingJob.
    """
    if _INTEGRATION_PREFIX not in resource:
        return None
    parts = resource.split(_INTEGRATION_PREFIX, 1)[1].split(":")
    if parts[0] == _SDK:
        service, action = sdk_service(parts[1]), parts[2]
    else:
        service, action = _OPTIMIZED_SERVICES.get(parts[0], parts[0]), parts[1]
    # The integration pattern (".sync", ".waitForTaskToken") is not part of the API name.
    action = action.split(".")[0]
    return service, action[0].upper() + action[1:]


@cache
def sdk_service(name: str) -> str:
    """The botocore service an ``aws-sdk:<name>`` integration calls: its SDK id, lower case,
    without spaces (``SageMaker Runtime`` -> ``sagemakerruntime``)."""
    session = botocore.session.get_session()
    available = session.get_available_services()
    if name in available:
        return name
    for service in available:
        service_id = session.get_service_model(service).metadata["serviceId"]
        if service_id.lower().replace(" ", "").replace("-", "") == name:
            return service
    raise LookupError(f"no AWS SDK service is called {name!r}")


def as_sent(value: Any) -> Any:
    """The request with run-time values (``.$`` keys, JSONata) as ``UNKNOWN``."""
    if isinstance(value, Mapping):
        return {
            key.removesuffix(".$"): UNKNOWN if key.endswith(".$") else as_sent(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [as_sent(item) for item in value]
    if isinstance(value, str) and value.startswith("{%") and value.endswith("%}"):
        return UNKNOWN
    return value
