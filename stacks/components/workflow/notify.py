"""How a training run ends when it does not deploy: one report, one notification, one Fail.

Every task state catches what its retries could not fix and goes to its own small Pass
state (``<state>Failed``), which builds the report: outcome, state, error, cause,
execution and a console link. Bad data, the quality gate and a failed endpoint build the
same report. All reports then share ``NotifyStopped`` (SNS) and ``RunStopped`` (Fail),
which fails the execution with the report's error and cause, so the execution list and
``describe-execution`` show why.
"""

from __future__ import annotations

from collections.abc import Sequence

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from stacks.components.workflow import retry_policies

# Where a task's caught error is kept (Error, Cause) until it is reported.
FAILURE_PATH = "$.failure"
#: Report outcomes: something broke (retry once fixed), or the data or model was refused.
FAILED = "failed"
REFUSED = "refused"
# The execution in the Step Functions console (the commercial partition's console; other
# partitions have their own console domain).
# https://docs.aws.amazon.com/step-functions/latest/dg/concepts-view-execution-details.html
CONSOLE_LINK = (
    f"https://{cdk.Aws.REGION}.console.aws.amazon.com/states/home?region={cdk.Aws.REGION}"
    "#/v2/executions/details/{}"
)


class RunNotifications(Construct):
    """Reports to the project's SNS topic: the run stopped (and why), or a model went live.

    Attributes:
        stopped: the shared chain every report goes to (``NotifyStopped`` -> ``RunStopped``).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        topic: sns.ITopic,
        stopped_subject: str = "training run stopped, no model deployed",
    ):
        """``stopped_subject`` ends the subject of every stop report."""
        super().__init__(scope, construct_id)
        self._topic = topic
        self._prefix = prefix
        run_stopped = sfn.Fail(self, "RunStopped", error_path="$.error", cause_path="$.cause")
        notify = tasks.SnsPublish(
            self,
            "NotifyStopped",
            topic=topic,
            subject=f"{prefix}: {stopped_subject}",
            message=sfn.TaskInput.from_text(
                sfn.JsonPath.json_to_string(sfn.JsonPath.object_at("$"))
            ),
            result_path=sfn.JsonPath.DISCARD,
        )
        retry_policies.NOTIFICATION.apply(notify)
        # The report could not be sent: still fail with its error and cause.
        notify.add_catch(run_stopped, result_path="$.notificationFailure")
        self.stopped = notify.next(run_stopped)

    def catch(
        self,
        task: sfn.TaskStateBase | sfn.CustomState | sfn.DistributedMap,
        *,
        errors: Sequence[str] = (sfn.Errors.ALL,),
        via: sfn.TaskStateBase | None = None,
    ) -> sfn.Pass:
        """Report ``errors`` (by default whatever ``task`` still fails with after its retries);
        return the report state, one per task however many of its catchers lead to it.

        The run fails as ``<state>Failed`` (error names starting with "States." are reserved
        for Step Functions), the task's error and cause in the cause. Add a more specific
        catch to ``task`` before the catch-all for an error that has its own report.

        ``via``: a clean-up state run between the catch and the report (the same one for
        every catch of ``task``); its own failure is ignored and the report stays the task's.
        """
        scope = task.node.scope
        assert isinstance(scope, Construct)  # a state is never the root of the tree
        existing = scope.node.try_find_child(f"{task.state_id}Failed")
        if isinstance(existing, sfn.Pass):
            task.add_catch(via or existing, errors=list(errors), result_path=FAILURE_PATH)
            return existing
        report = self.report(
            scope,
            f"{task.state_id}Failed",
            outcome=FAILED,
            state=task.state_id,
            error=f"{task.state_id}Failed",
            cause=sfn.JsonPath.format(
                "{}: {}",
                sfn.JsonPath.string_at(f"{FAILURE_PATH}.Error"),
                sfn.JsonPath.string_at(f"{FAILURE_PATH}.Cause"),
            ),
        )
        if via is not None:
            via.add_catch(report, result_path=sfn.JsonPath.DISCARD)
            via.next(report)
        task.add_catch(via or report, errors=list(errors), result_path=FAILURE_PATH)
        return report

    def report(
        self,
        scope: Construct,
        construct_id: str,
        *,
        outcome: str,
        state: str,
        error: str,
        cause: str,
    ) -> sfn.Pass:
        """A Pass state that builds the report, then notifies and fails the run.

        ``cause`` may be a JsonPath expression; ``error`` names the run's end.
        """
        report = sfn.Pass(
            scope,
            construct_id,
            comment=f"What is reported when {state} stops the run",
            parameters={
                "outcome": outcome,
                "state": state,
                "error": error,
                "cause": cause,
                "execution": sfn.JsonPath.execution_id,
                "console": sfn.JsonPath.format(CONSOLE_LINK, sfn.JsonPath.execution_id),
                "request": sfn.JsonPath.execution_input,
            },
        )
        report.next(self.stopped)
        return report

    def deployed(
        self, scope: Construct, construct_id: str, *, record_path: str
    ) -> tasks.SnsPublish:
        """Publish the new active-model record; failing to, the run is reported as failed."""
        return self.finished(
            scope, construct_id, subject="new model deployed", message_path=record_path
        )

    def finished(
        self, scope: Construct, construct_id: str, *, subject: str, message_path: str
    ) -> tasks.SnsPublish:
        """Publish the JSON at ``message_path`` with subject ``<prefix>: <subject>``;
        failing to, the run is reported as failed."""
        notify = tasks.SnsPublish(
            scope,
            construct_id,
            topic=self._topic,
            subject=f"{self._prefix}: {subject}",
            message=sfn.TaskInput.from_text(
                sfn.JsonPath.json_to_string(sfn.JsonPath.object_at(message_path))
            ),
            result_path=sfn.JsonPath.DISCARD,
        )
        retry_policies.NOTIFICATION.apply(notify)
        self.catch(notify)
        return notify

    def grant_publish(self, role: iam.IRole) -> None:
        """The topic's key, when it has one: SNS encrypts each message with it on publish."""
        key = self._topic.master_key
        if key is not None:
            role.add_to_principal_policy(
                iam.PolicyStatement(
                    sid="EncryptNotifications",
                    actions=["kms:GenerateDataKey", "kms:Decrypt"],
                    resources=[key.key_arn],
                )
            )
