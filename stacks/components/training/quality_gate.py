"""Step 3, the quality gate: deploy only a model whose validation:mAP reaches the minimum.

The built-in algorithm reports ``validation:mAP`` (mean average precision on the
validation channel) in the finished job's ``FinalMetricDataList``.
https://docs.aws.amazon.com/sagemaker/latest/dg/object-detection-tuning.html

A refused model stops the run, reported as ``refused``: the execution fails with
``QualityGateNotMet`` (or ``ValidationMapMissing``), the topic is told the score, and the
endpoint keeps serving the model it had. Failing (rather than succeeding) keeps "no new
model went live" visible in the execution list and to failed-execution alarms.
"""

from __future__ import annotations

from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.components.training.train import METRIC, TRAINING
from stacks.components.workflow.notify import REFUSED, RunNotifications

#: Where the state machine keeps the gate's reading: ``{"validationMap": [<number>]}``
#: (a filter's result is a list, here of the one value).
GATE = "$.gate"
VALIDATION_MAP = f"{GATE}.validationMap[0]"


class QualityGate(Construct):
    """Read ``validation:mAP``, then let the run on to ``then`` or stop it.

    A path that matches nothing is an error no Catch can handle, so the gate first checks
    that the job reported metrics at all (a finished job may have no FinalMetricDataList),
    then that validation:mAP is among them, then reads it; each miss is reported as
    ``ValidationMapMissing``.

    Attributes:
        start: the first state.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        min_validation_map: float,
        notifications: RunNotifications,
        then: sfn.IChainable,
    ) -> None:
        super().__init__(scope, construct_id)
        metrics = f"{TRAINING}.FinalMetricDataList"
        find = sfn.Pass(
            self,
            "FindValidationMap",
            parameters={
                "reported": sfn.JsonPath.array_contains(
                    sfn.JsonPath.list_at(f"{metrics}[*].MetricName"), METRIC
                )
            },
            result_path=GATE,
        )
        read = sfn.Pass(
            self,
            "ReadValidationMap",
            parameters={
                "validationMap": sfn.JsonPath.list_at(
                    f"{metrics}[?(@.MetricName == '{METRIC}')].Value"
                )
            },
            result_path=GATE,
        )
        missing = notifications.report(
            self,
            "ValidationMapMissing",
            outcome=REFUSED,
            state="QualityGate",
            error="ValidationMapMissing",
            cause=f"The training job reported no {METRIC}; nothing was deployed.",
        )
        below = notifications.report(
            self,
            "QualityGateNotMet",
            outcome=REFUSED,
            state="QualityGate",
            error="QualityGateNotMet",
            cause=sfn.JsonPath.format(
                f"{METRIC} {{}} is below the minimum {min_validation_map}; nothing was "
                "deployed, the endpoint keeps its current model.",
                sfn.JsonPath.string_at(VALIDATION_MAP),
            ),
        )
        gate = (
            sfn.Choice(self, "QualityGate", comment=f"{METRIC} >= {min_validation_map}?")
            .when(
                sfn.Condition.number_greater_than_equals(VALIDATION_MAP, min_validation_map), then
            )
            .otherwise(below)
        )
        self.start = (
            sfn.Choice(self, "MetricsReported")
            .when(sfn.Condition.is_present(f"{metrics}[0]"), find)
            .otherwise(missing)
        )
        find.next(
            sfn.Choice(self, "ValidationMapReported")
            .when(sfn.Condition.boolean_equals(f"{GATE}.reported", True), read.next(gate))
            .otherwise(missing)
        )
