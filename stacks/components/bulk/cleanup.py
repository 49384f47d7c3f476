"""Delete the model copy each ended bulk run leaves behind, however it ended.

The bulk-counting state machine deletes its run's model copy itself on every path that
runs a state (``transform.py``). A run stopped by hand or past ``bulk.timeout_hours`` runs
none, and a DeleteModel that failed after its retries leaves the copy too. An EventBridge
rule on the state machine's ended executions (Standard workflows announce each status
change on the default bus) invokes the ``bulk_cleanup`` Lambda, which deletes the ended
run's copy if it is still there (``lambdas/bulk_cleanup/service.py``). Child executions of
the Distributed Maps belong to map runs, not to this state machine's ARN, so the rule does
not match them.
https://docs.aws.amazon.com/step-functions/latest/dg/cw-events.html
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from counting_core import stage_names
from counting_core.contracts import bulk_cleanup
from counting_core.contracts.events import ENDED_STATUSES
from stacks.components.delivery import (
    dead_letter_failed_invocations,
    dead_letter_queue,
    retried_lambda_target,
)
from stacks.components.permissions import allow
from stacks.components.python_function import HandlerFunction
from stacks.nag import acknowledge, arn_finding


class BulkRunCleanup(Construct):
    """The rule on ``state_machine``'s ended executions, the ``bulk_cleanup`` function it
    invokes, and the dead-letter queue of events the function failed on.

    Attributes:
        handler: the HandlerFunction.
        dead_letters: the queue.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        state_machine: sfn.IStateMachine,
        key: kms.IKey,
    ) -> None:
        super().__init__(scope, construct_id)
        run_name_prefix = bulk_cleanup.run_name_prefix(prefix)
        self.dead_letters = dead_letter_queue(
            self,
            "DeadLetters",
            key,
            holds="Ended bulk runs whose model copy could not be deleted after retries",
            named_by_targets=True,
        )
        self.handler = HandlerFunction(
            self,
            "Function",
            name="bulk_cleanup",
            description="Deletes the model copy an ended bulk-counting run left behind",
            key=key,
            service="bulk-cleanup",
            contract=bulk_cleanup.Environment,
            environment={"run_name_prefix": run_name_prefix},
            timeout=cdk.Duration.minutes(1),
        )
        function = self.handler.function
        dead_letter_failed_invocations(function, self.dead_letters, who="The bulk cleanup")
        stack = cdk.Stack.of(self)
        # Named by the stage, as the pipeline names it: the name is known at synth time.
        state_machine_name = stage_names.bulk_counting_state_machine(prefix)
        executions = f"execution:{state_machine_name}:*"
        run_models = f"model/{run_name_prefix}*"
        executions_arn = stack.format_arn(
            service="states",
            resource="execution",
            resource_name=f"{state_machine_name}:*",
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        run_models_arn = stack.format_arn(
            service="sagemaker", resource="model", resource_name=f"{run_name_prefix}*"
        )
        policy = allow(
            self.handler.role,
            {
                "ReadRunHistories": (
                    ["states:GetExecutionHistory"],
                    [executions_arn],
                ),
                # ListModels has no resource-level permissions.
                "ListModels": (["sagemaker:ListModels"], ["*"]),
                "DeleteRunModels": (
                    ["sagemaker:DeleteModel"],
                    [run_models_arn],
                ),
                "DeadLetterFailedInvocations": (["sqs:SendMessage"], [self.dead_letters.queue_arn]),
                "UseTheQueueKey": (["kms:Decrypt", "kms:GenerateDataKey"], [key.key_arn]),
            },
        )
        acknowledge(
            policy,
            arn_finding(stack, "states", executions),
            "Executions are named when a run starts; the cleanup reads the history of the "
            "ended run it is told of, of this state machine only.",
        )
        acknowledge(
            policy,
            arn_finding(stack, "sagemaker", run_models),
            f"Each bulk run's model copy is named {run_name_prefix}<run id> at run time; the "
            "function deletes only a name of that form read from the ended run's history, and "
            f"synth refuses a stage whose prefix extends {prefix}.",
        )
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::*]",
            "sagemaker:ListModels takes no resource ARN; the function lists only to learn "
            "whether the ended run's copy is still there.",
        )
        rule = events.Rule(
            self,
            "RunEnded",
            description=f"An ended run of {state_machine_name} gets its model copy deleted",
            event_pattern=events.EventPattern(
                source=["aws.states"],
                detail_type=["Step Functions Execution Status Change"],
                detail={
                    "stateMachineArn": [state_machine.state_machine_arn],
                    "status": list(ENDED_STATUSES),
                },
            ),
        )
        rule.add_target(retried_lambda_target(function, self.dead_letters))
