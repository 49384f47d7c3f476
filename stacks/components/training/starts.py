"""What starts a training run besides the CLI: a manifest upload, a completed labeling job.

Both are EventBridge rules on the default bus that start the state machine with a
``counting_core.models.training.TrainingRequest``: the manifest's URI (plus the job's name and
label attribute for a labeling job). Events EventBridge cannot deliver go to a dead-letter
queue.
"""

from __future__ import annotations

from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_kms as kms
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from counting_core import layout
from counting_core.datasets import labeling
from counting_core.models import training
from stacks.components.delivery import EVENT_RETRY_ATTEMPTS, MAX_EVENT_AGE, dead_letter_queue
from stacks.components.storage import objects_created

#: A manifest uploaded under training/requests/ with this suffix starts a run.
MANIFEST_SUFFIX = ".manifest"


class TrainingStarts(Construct):
    """Attributes:
    upload_rule: "Object Created" under training/requests/ -> a run on that manifest.
    labeling_rule: "Labeling Job Completed" from this app -> a run on the job's output.
    dead_letters: start requests EventBridge could not deliver.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        bucket_name: str,
        key: kms.IKey,
        state_machine: sfn.IStateMachine,
    ) -> None:
        super().__init__(scope, construct_id)
        self.dead_letters = dead_letter_queue(
            self,
            "DeadLetters",
            key,
            holds="Training starts (uploads and completed labeling jobs) EventBridge could "
            "not deliver to the state machine",
            named_by_targets=True,
        )

        self.upload_rule = events.Rule(
            self,
            "ManifestUploaded",
            description=f"A manifest uploaded under {layout.TRAINING_REQUESTS} starts training",
            event_pattern=objects_created(
                bucket_name, {"wildcard": f"{layout.TRAINING_REQUESTS}*{MANIFEST_SUFFIX}"}
            ),
        )
        uploaded = events.EventField.from_path
        request = training.TrainingRequest(
            manifest_uri=f"s3://{uploaded('$.detail.bucket.name')}/"
            f"{uploaded('$.detail.object.key')}"
        )
        self._start(
            self.upload_rule, events.RuleTargetInput.from_object(request.payload()), state_machine
        )

        self.labeling_rule = events.Rule(
            self,
            "LabelingJobCompleted",
            description=f"A completed {prefix} labeling job starts training on its output",
            event_pattern=events.EventPattern(
                source=[labeling.completion_event_source(prefix)],
                detail_type=[labeling.COMPLETION_DETAIL_TYPE],
            ),
        )
        # The detail is a training.TrainingRequest (labeling.completion_event writes it).
        self._start(
            self.labeling_rule, events.RuleTargetInput.from_event_path("$.detail"), state_machine
        )

    def _start(
        self, rule: events.Rule, start_input: events.RuleTargetInput, machine: sfn.IStateMachine
    ) -> None:
        rule.add_target(
            targets.SfnStateMachine(
                machine,
                input=start_input,
                dead_letter_queue=self.dead_letters,
                retry_attempts=EVENT_RETRY_ATTEMPTS,
                max_event_age=MAX_EVENT_AGE,
            )
        )
