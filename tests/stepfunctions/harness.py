"""Run a synthesized state machine in moto's ASL interpreter, with chosen states stubbed.

Why moto, and what is patched
-----------------------------
moto 5 ships LocalStack's Step Functions interpreter (``execute_state_machine``): it
runs Choice, Wait, Pass, Retry, Catch, intrinsic functions and JSONPath as Step
Functions does, and sends ``aws-sdk:*`` and optimized SNS tasks to moto's own service
mocks (SageMaker models, endpoint configs and endpoints; SSM; SNS). Two kinds of task it
cannot run: a Lambda invoke needs Docker, and ``createTrainingJob.sync`` (like every
optimized SageMaker integration) is not emulated.

For those, the interpreter has a mocked-response mode, the one AWS's Step Functions
Local offers (a state's responses, ``Return`` or ``Throw``, indexed by retry attempt),
which moto carries but never switches on. ``interpreter()`` switches it on with three
patches of moto's private API, and makes retries and Wait states instant:

1. ``Execution._get_start_execution_worker``: hand each execution the stubs of ``run``.
2. ``state_task_service_unsupported._SUPPORTED_INTEGRATION_PATTERNS``: accept ``.sync``
   on SageMaker, so that the stub is reached instead of a "not supported" error.
3. ``mock_eval_utils.CustomErrorName``: let a stub throw the errors Step Functions itself
   names ``States.*`` (a failed ``.sync`` job is ``States.TaskFailed``), as Step Functions
   Local's mocks can.
4. ``retrier_decl.time`` and ``WaitFunction._wait_interval``: do not sleep; a Wait state
   calls the run's ``on_wait`` instead, for a test to move the world on.
5. ``Environment.get_current_mocked_response``: moto picks a state's stub by its retry
   count, so a task state entered again by a loop would get the first stub each time; a
   state stubbed with ``Visits`` gets one stub per invocation, visits and retries together.

A stub replaces only the service's answer: the state's Parameters, ResultSelector,
ResultPath, Retry and Catch still run. moto sends requests unchecked, so ``Run.requests``
checks every request a task made against botocore's model of the service, as the real
API would. These patches rely on moto 5.2.5 internals (pinned in constraints.txt).
"""

from __future__ import annotations

import json
import time
import types
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Any
from unittest import mock

import botocore.session
from botocore.validate import ParamValidator
from moto.stepfunctions.parser.asl.component.common.error_name.custom_error_name import (
    CustomErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.error_name import ErrorName
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.retry import retrier_decl
from moto.stepfunctions.parser.asl.component.state.exec.state_task import mock_eval_utils
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_unsupported,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service.resource import (
    ResourceCondition,
)
from moto.stepfunctions.parser.asl.component.state.wait.wait_function.wait_function import (
    WaitFunction,
)
from moto.stepfunctions.parser.asl.eval.environment import Environment
from moto.stepfunctions.parser.backend.execution import Execution
from moto.stepfunctions.parser.mocking.mock_config import (
    MockedResponse,
    MockedResponseReturn,
    MockedResponseThrow,
    MockTestCase,
    StateMockedResponses,
)

MOTO_CONFIG = {"stepfunctions": {"execute_state_machine": True}}
TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class Return:
    """The service answers ``payload`` (for a Lambda invoke: ``{"Payload": ...}``)."""

    payload: dict[str, Any]


@dataclass(frozen=True)
class Throw:
    """The task fails with ``error`` and ``cause``, as Step Functions names them."""

    error: str
    cause: str = ""


Stub = Return | Throw


@dataclass(frozen=True)
class Visits:
    """One stub per invocation of a state that a loop enters again, retries included."""

    stubs: list[Stub]


# The stubs of the execution being started: {state name: one stub per attempt}.
_stubs: dict[str, list[Stub]] = {}
# Of those, the states stubbed per invocation (``Visits``), and how often each was invoked.
_per_invocation: dict[str, int] = {}
# Called each time the running execution's Wait state would wait.
_on_wait: list[Callable[[], None]] = []


def _worker_with_stubs(execution: Execution, original=Execution._get_start_execution_worker):
    worker = original(execution)
    worker._mock_test_case = MockTestCase(
        execution.state_machine.name,
        execution.name,
        [
            StateMockedResponses(
                state, f"{state}-stub", [_mocked(i, s) for i, s in enumerate(stubs)]
            )
            for state, stubs in _stubs.items()
        ],
    )
    return worker


def _mocked_response(
    env: Environment, original=Environment.get_current_mocked_response
) -> MockedResponse:
    state = env.next_state_name
    if state not in _per_invocation:
        return original(env)
    responses = env.mock_test_case.state_mocked_responses[state].mocked_responses
    invocation = _per_invocation[state]
    _per_invocation[state] += 1
    if invocation >= len(responses):
        raise RuntimeError(f"no stub for invocation {invocation} of state {state!r}")
    return responses[invocation]


def _error_name(name: str) -> ErrorName:
    if name.startswith("States."):
        return StatesErrorName.from_name(name)
    return CustomErrorName(name)


def _mocked(attempt: int, stub: Stub) -> MockedResponse:
    if isinstance(stub, Return):
        return MockedResponseReturn(attempt, attempt, stub.payload)
    return MockedResponseThrow(attempt, attempt, stub.error, stub.cause)


def _instead_of_waiting(*_args, **_kwargs) -> None:
    _on_wait[0]()


@contextmanager
def interpreter() -> Iterator[None]:
    """Within ``mock_aws(config=MOTO_CONFIG)``: stubs on, no sleeping."""
    no_sleep = types.SimpleNamespace(sleep=lambda _seconds: None)
    with ExitStack() as patches:
        patches.enter_context(
            mock.patch.object(Execution, "_get_start_execution_worker", _worker_with_stubs)
        )
        patches.enter_context(
            mock.patch.object(
                state_task_service_unsupported,
                "_SUPPORTED_INTEGRATION_PATTERNS",
                {ResourceCondition.WaitForTaskToken, ResourceCondition.Sync},
            )
        )
        patches.enter_context(mock.patch.object(mock_eval_utils, "CustomErrorName", _error_name))
        patches.enter_context(mock.patch.object(retrier_decl, "time", no_sleep))
        patches.enter_context(
            mock.patch.object(WaitFunction, "_wait_interval", _instead_of_waiting)
        )
        patches.enter_context(
            mock.patch.object(Environment, "get_current_mocked_response", _mocked_response)
        )
        yield


@dataclass
class Run:
    """A finished execution: its outcome and its history."""

    status: str
    error: str | None
    cause: str | None
    output: Any
    events: list[dict[str, Any]] = field(repr=False)
    arn: str = ""  # the execution's

    def states(self) -> list[str]:
        """The states entered, in order."""
        return [
            event["stateEnteredEventDetails"]["name"]
            for event in self.events
            if "stateEnteredEventDetails" in event
        ]

    def attempts(self, state: str) -> int:
        """How many times ``state``'s task was scheduled (1 + retries)."""
        return len(self.requests(state))

    def requests(self, state: str) -> list[dict[str, Any]]:
        """The parameters each attempt of ``state``'s task sent, as the service received them."""
        return [params for name, _, params in self._scheduled() if name == state]

    def check_requests(self) -> None:
        """Every SageMaker, SSM and SNS request is valid for the service's API model."""
        session = botocore.session.get_session()
        for state, resource, params in self._scheduled():
            service, action = resource
            if service not in ("sagemaker", "ssm", "sns"):
                continue
            operation = session.get_service_model(service).operation_model(
                action[0].upper() + action[1:]
            )
            report = ParamValidator().validate(params, operation.input_shape)
            assert not report.has_errors(), f"{state}: {report.generate_report()}"

    def _scheduled(self) -> Iterator[tuple[str, tuple[str, str], dict[str, Any]]]:
        state = None
        for event in self.events:
            if "stateEnteredEventDetails" in event:
                state = event["stateEnteredEventDetails"]["name"]
            details = event.get("taskScheduledEventDetails")
            if details:
                # "aws-sdk:sagemaker" + "createModel", or "sagemaker" + "createTrainingJob.sync".
                service = details["resourceType"].removeprefix("aws-sdk:")
                action = details["resource"].split(".")[0]
                yield state, (service, action), json.loads(details["parameters"])


def run(
    client: Any,
    machine_arn: str,
    execution_input: dict,
    *,
    name: str,
    stubs: dict[str, list[Stub] | Visits],
    on_wait: Callable[[], None] = lambda: None,
) -> Run:
    """Start one execution with ``stubs`` (state name -> a stub per attempt, or ``Visits``:
    one per invocation); wait for its end."""
    _stubs.clear()
    _stubs.update({state: s.stubs if isinstance(s, Visits) else s for state, s in stubs.items()})
    _per_invocation.clear()
    _per_invocation.update({state: 0 for state, s in stubs.items() if isinstance(s, Visits)})
    _on_wait[:] = [on_wait]
    arn = client.start_execution(
        stateMachineArn=machine_arn, name=name, input=json.dumps(execution_input)
    )["executionArn"]
    deadline = time.monotonic() + TIMEOUT_SECONDS
    while (described := client.describe_execution(executionArn=arn))["status"] == "RUNNING":
        assert time.monotonic() < deadline, f"{name} still running after {TIMEOUT_SECONDS} s"
        time.sleep(0.01)
    events = client.get_execution_history(executionArn=arn, maxResults=1000)["events"]
    return Run(
        status=described["status"],
        error=described.get("error"),
        cause=described.get("cause"),
        output=json.loads(described["output"]) if described.get("output") else None,
        events=events,
        arn=arn,
    )
