"""Operations: the dashboard and every alarm, notifying the alerts topic."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_sns as sns
from constructs import Construct

from stacks.bulk_stack import BulkCountingStack
from stacks.components.monitoring import CountingMonitoring, DeadLetters, WatchedPipeline
from stacks.config import AppConfig
from stacks.counting_stack import CountingStack
from stacks.labeling_stack import LabelingStack
from stacks.training_stack import TrainingStack


def dead_letters_of(
    counting: CountingStack,
    training: TrainingStack | None = None,
    labeling: LabelingStack | None = None,
) -> dict[str, DeadLetters]:
    """Every dead-letter queue of the app by alarm name, with what its alarm tells on-call."""
    found = {
        "IntakeDeadLetters": DeadLetters(
            counting.intake.dead_letters,
            "Images the counter failed on 5 times wait in the counting stack's dead-letter "
            "queue (output DeadLetterQueueUrl): read one and the counter's logs for its "
            "image (no model deployed? endpoint failing or deleted?), fix the cause, then "
            "redrive the queue.",
        ),
        "UndeliverableUploads": DeadLetters(
            counting.intake.undeliverable,
            "EventBridge could not put upload events on the intake queue for 24 hours; they "
            "wait in the counting stack's Undeliverable queue: check the intake queue's "
            "policy, the key's policy and the rule's target, then send the events to the "
            "intake queue or upload the images again.",
        ),
    }
    if training is not None:
        found["TrainingStartDeadLetters"] = DeadLetters(
            training.starts.dead_letters,
            "A training start (manifest upload or finished labeling job) could not reach "
            "the state machine and waits in the training stack's dead-letter queue (output "
            "DeadLetterQueueUrl): read the message for the manifest URI, then start the run "
            "with `counting train start`.",
        )
    if labeling is not None:
        found["LabelingDeadLetters"] = DeadLetters(
            labeling.jobs.dead_letters,
            "A labeling request upload or a finished labeling job the launcher could not "
            "take, or failed on after retries, waits in the labeling stack's dead-letter "
            "queue (output DeadLetterQueueUrl): read the message (failed invocations carry "
            "the error) and the launcher's logs, fix the cause, then upload the request "
            "again; for a finished job, start its training run with `counting train start`.",
        )
    return found


def pipelines_of(
    training: TrainingStack | None = None, bulk: BulkCountingStack | None = None
) -> dict[str, WatchedPipeline]:
    """Every state machine whose failed runs page, by alarm name."""
    stopped = "failed or timed out; its notification names the state and the cause."
    watched = {
        "TrainingPipelineFailed": (training, "Training runs", f"A training run {stopped}"),
        "BulkCountingFailed": (
            bulk,
            "Bulk counting runs",
            f"A bulk counting run {stopped} Running the same prefix again retries only what "
            "was not counted.",
        ),
    }
    return {
        name: WatchedPipeline(stack.pipeline.state_machine, runs, description)
        for name, (stack, runs, description) in watched.items()
        if stack is not None
    }


class MonitoringStack(cdk.Stack):
    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        topic: sns.ITopic,
        counting: CountingStack,
        training: TrainingStack | None = None,
        labeling: LabelingStack | None = None,
        bulk: BulkCountingStack | None = None,
        **kwargs,
    ) -> None:
        super().__init__(scope, construct_id, **kwargs)
        self.monitoring = CountingMonitoring(
            self,
            "Monitoring",
            prefix=config.prefix,
            topic=topic,
            queue=counting.intake.queue,
            dead_letters=dead_letters_of(counting, training, labeling),
            counter=counting.counter.function,
            endpoint_name=config.endpoint_name,
            pipelines=pipelines_of(training, bulk),
        )
        cdk.CfnOutput(
            self,
            "DashboardUrl",
            value=f"https://{self.region}.console.aws.amazon.com/cloudwatch/home"
            f"?region={self.region}#dashboards:name={self.monitoring.dashboard.dashboard_name}",
        )
