"""What the platform team watches: one dashboard, alarms that page through the alerts topic."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as actions
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sqs as sqs
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from counting_core.contracts import metrics

# The counter's metrics carry service=counter (its POWERTOOLS_SERVICE_NAME); names and
# namespace: counting_core.contracts.metrics, which both counting functions publish.
COUNTER_SERVICE = "counter"
# The endpoint's only production variant (set by the training pipeline's deploy step).
ENDPOINT_VARIANT = "AllTraffic"

FIVE_MINUTES = cdk.Duration.minutes(5)
# Counter errors above this share of invocations, three periods running, page someone.
COUNTER_ERROR_RATE_PERCENT = 5
# Messages older than this mean the counter is not keeping up (or is failing).
OLDEST_MESSAGE_ALARM_SECONDS = 15 * 60


def _counting_metric(name: str, statistic: str = "Sum", **dimensions: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace=metrics.NAMESPACE,
        metric_name=name,
        dimensions_map={metrics.SERVICE_DIMENSION: COUNTER_SERVICE, **dimensions},
        statistic=statistic,
        period=FIVE_MINUTES,
    )


def _per_service_search(name: str, *dimensions: str) -> cloudwatch.MathExpression:
    """Every series of ``name`` (sums per 5 minutes) whatever its ``service``: the counter's
    and the bulk-counting function's, one line each."""
    schema = ",".join((metrics.NAMESPACE, *dimensions, metrics.SERVICE_DIMENSION))
    return cloudwatch.MathExpression(
        expression=f"SEARCH('{{{schema}}} MetricName=\"{name}\"', 'Sum', 300)",
        label="",
        period=FIVE_MINUTES,
    )


def _endpoint_metric(name: str, endpoint_name: str, statistic: str) -> cloudwatch.Metric:
    return cloudwatch.Metric(
        namespace="AWS/SageMaker",
        metric_name=name,
        dimensions_map={"EndpointName": endpoint_name, "VariantName": ENDPOINT_VARIANT},
        statistic=statistic,
        period=FIVE_MINUTES,
    )


@dataclass(frozen=True)
class DeadLetters:
    """A dead-letter queue to alarm on, and what its alarm tells whoever it pages.

    ``description`` says what lands in the queue and what to do about it.
    """

    queue: sqs.IQueue
    description: str


@dataclass(frozen=True)
class WatchedPipeline:
    """A state machine whose failed or timed-out runs page, and how its alarm reads.

    ``runs`` titles its dashboard graph ("Training runs"); ``description`` says what failed
    and where the run's own report is.
    """

    state_machine: sfn.IStateMachine
    runs: str
    description: str


class CountingMonitoring(Construct):
    """Dashboard and alarms over the counting pipeline, the endpoint and the state machines.

    Attributes:
        dashboard: the one CloudWatch dashboard.
        alarms: every alarm by short name; each notifies ``topic`` on alarm and on recovery.
            A dead-letter queue's alarm is named by its key in ``dead_letters``, a state
            machine's by its key in ``pipelines``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        topic: sns.ITopic,
        queue: sqs.IQueue,
        dead_letters: Mapping[str, DeadLetters],
        counter: lambda_.IFunction,
        endpoint_name: str,
        pipelines: Mapping[str, WatchedPipeline],
    ) -> None:
        super().__init__(scope, construct_id)
        self.alarms: dict[str, cloudwatch.Alarm] = {}
        errors = counter.metric_errors(period=FIVE_MINUTES)
        invocations = counter.metric_invocations(period=FIVE_MINUTES)
        error_rate = cloudwatch.MathExpression(
            expression="IF(invocations > 0, 100 * errors / invocations, 0)",
            using_metrics={"errors": errors, "invocations": invocations},
            label="Counter error rate (%)",
            period=FIVE_MINUTES,
        )
        oldest = queue.metric_approximate_age_of_oldest_message(period=FIVE_MINUTES)
        endpoint_4xx = _endpoint_metric("Invocation4XXErrors", endpoint_name, "Sum")
        endpoint_5xx = _endpoint_metric("Invocation5XXErrors", endpoint_name, "Sum")

        waiting = {
            name: entry.queue.metric_approximate_number_of_messages_visible(
                period=FIVE_MINUTES, statistic="Maximum"
            )
            for name, entry in dead_letters.items()
        }
        for name, entry in dead_letters.items():
            self._alarm(name, waiting[name], threshold=0, description=entry.description)
        self._alarm(
            "CounterErrorRate",
            error_rate,
            threshold=COUNTER_ERROR_RATE_PERCENT,
            evaluation_periods=3,
            description="The counter Lambda fails on more than 5% of invocations: check its logs.",
        )
        self._alarm(
            "OldestMessageAge",
            oldest,
            threshold=OLDEST_MESSAGE_ALARM_SECONDS,
            description="Images wait more than 15 minutes to be counted: the counter is "
            "failing, throttled, or uploads outpace counter.max_concurrency.",
        )
        self._alarm(
            "Endpoint4xx",
            endpoint_4xx,
            threshold=0,
            # A serverless endpoint answers a cold start or a burst with a 4xx the counter
            # retries (ModelNotReady, throttling): only refusals lasting 15 minutes page.
            evaluation_periods=3,
            description="The endpoint has refused requests (4xx) for 15 minutes: wrong content "
            "type, payload over 4 MB, the endpoint is missing, or it is throttled throughout.",
        )
        self._alarm(
            "Endpoint5xx",
            endpoint_5xx,
            threshold=0,
            description="The endpoint's model fails (5xx): check the endpoint's logs.",
        )
        for name, pipeline in pipelines.items():
            # A run that hits the state machine's timeout is not counted as failed.
            ended_badly = cloudwatch.MathExpression(
                expression="failed + timedOut",
                using_metrics={
                    "failed": pipeline.state_machine.metric_failed(period=FIVE_MINUTES),
                    "timedOut": pipeline.state_machine.metric_timed_out(period=FIVE_MINUTES),
                },
                label=f"{pipeline.runs} failed or timed out",
                period=FIVE_MINUTES,
            )
            self._alarm(name, ended_badly, threshold=0, description=pipeline.description)

        self.dashboard = cloudwatch.Dashboard(
            self,
            "Dashboard",
            dashboard_name=f"{prefix}-counting",
            default_interval=cdk.Duration.days(1),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Images",
                left=[
                    _counting_metric(metrics.IMAGES_COUNTED),
                    _counting_metric(metrics.IMAGES_REJECTED),
                ],
                width=6,
            ),
            # No alarm: a count at the cap is the model meeting a dense scene, not an outage;
            # the answer is a setting (docs/operating.md), so it is watched, not paged.
            cloudwatch.GraphWidget(
                title="Images counted at the model's detection cap (counts may be low)",
                left=[_per_service_search(metrics.IMAGES_CAPPED)],
                width=6,
            ),
            cloudwatch.GraphWidget(
                title="Objects counted per class",
                left=[
                    _per_service_search(
                        metrics.OBJECTS_COUNTED_BY_CLASS, metrics.CLASS_NAME_DIMENSION
                    )
                ],
                width=6,
            ),
            cloudwatch.GraphWidget(
                title="Counter errors and duration",
                left=[errors, error_rate],
                right=[counter.metric_duration(period=FIVE_MINUTES, statistic="p90")],
                width=6,
            ),
        )
        self.dashboard.add_widgets(
            cloudwatch.GraphWidget(
                title="Queue: oldest message age (s) and dead letters",
                left=[oldest],
                right=[metric.with_(label=name) for name, metric in waiting.items()],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Endpoint invocations and errors",
                left=[_endpoint_metric("Invocations", endpoint_name, "Sum")],
                right=[endpoint_4xx, endpoint_5xx],
                width=8,
            ),
            cloudwatch.GraphWidget(
                title="Endpoint latency and cold starts (model setup time)",
                left=[
                    _counting_metric(metrics.ENDPOINT_LATENCY, "p90"),
                    _endpoint_metric("ModelLatency", endpoint_name, "p90"),
                ],
                right=[_endpoint_metric("ModelSetupTime", endpoint_name, "Maximum")],
                width=8,
            ),
        )
        if pipelines:
            hourly = cdk.Duration.hours(1)
            self.dashboard.add_widgets(
                *(
                    cloudwatch.GraphWidget(
                        title=pipeline.runs,
                        left=[
                            pipeline.state_machine.metric_started(period=hourly),
                            pipeline.state_machine.metric_succeeded(period=hourly),
                            pipeline.state_machine.metric_failed(period=hourly),
                            pipeline.state_machine.metric_timed_out(period=hourly),
                        ],
                        width=24 // len(pipelines),
                    )
                    for pipeline in pipelines.values()
                )
            )
        self.dashboard.add_widgets(
            cloudwatch.AlarmStatusWidget(
                title="Alarms", alarms=list(self.alarms.values()), width=24
            )
        )

        notify = actions.SnsAction(topic)
        for alarm in self.alarms.values():
            alarm.add_alarm_action(notify)
            alarm.add_ok_action(notify)

    def _alarm(
        self,
        name: str,
        metric: cloudwatch.IMetric,
        *,
        threshold: float,
        description: str,
        evaluation_periods: int = 1,
    ) -> None:
        if name in self.alarms:
            raise ValueError(f"two alarms named {name!r}")
        self.alarms[name] = cloudwatch.Alarm(
            self,
            name,
            metric=metric,
            threshold=threshold,
            evaluation_periods=evaluation_periods,
            comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
            treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
            alarm_description=description,
        )
