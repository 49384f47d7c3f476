"""Ground Truth bounding-box jobs started by a request upload, announced when they complete.

A request uploaded under ``labeling/requests/`` reaches the launcher Lambda through
EventBridge; so does Ground Truth's "job completed" event for this app's jobs. The
launcher starts jobs as a Ground Truth execution role that can read the labeling inputs
and write the labeling output, and nothing else.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from constructs import Construct

from counting_core import layout
from counting_core.contracts import labeling_launcher
from counting_core.datasets import labeling
from counting_core.errors import InputError
from stacks.components.delivery import (
    dead_letter_failed_invocations,
    dead_letter_queue,
    retried_lambda_target,
)
from stacks.components.permissions import (
    SageMakerExecutionRole,
    acknowledge_object_prefixes,
    allow,
)
from stacks.components.python_function import HandlerFunction
from stacks.components.storage import DataStorage, objects_created
from stacks.config import LabelingSettings
from stacks.nag import acknowledge, arn_finding, object_prefix_finding

# Where Ground Truth writes labeling job logs.
# https://docs.aws.amazon.com/sagemaker/latest/dg/sms-security-permission-execution-role.html
LABELING_JOB_LOG_GROUP = "/aws/sagemaker/LabelingJobs"


class LabelingJobs(Construct):
    """The launcher Lambda, its two EventBridge rules and the Ground Truth execution role.

    Attributes:
        launcher: the ``labeling_launcher`` HandlerFunction.
        ground_truth_role: the role labeling jobs run as.
        dead_letters: events the launcher could not take or failed on after retries.
        request_rule: request uploads -> launcher.
        completion_rule: this app's jobs completing -> launcher (which announces them).
        event_source: ``source`` of the "Labeling Job Completed" events it puts.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        settings: LabelingSettings,
        storage: DataStorage,
        workteam_arn: str,
    ) -> None:
        super().__init__(scope, construct_id)
        stack = cdk.Stack.of(self)
        self._check_region(stack.region)
        self._storage = storage
        self._bucket = storage.bucket_in(self)
        self.event_source = labeling.completion_event_source(prefix)
        # Job names are "<prefix>-<hex>" (counting_core.datasets.labeling.unique_job_name).
        self._job_names = f"{prefix}-*"
        job_arns = stack.format_arn(
            service="sagemaker", resource="labeling-job", resource_name=self._job_names
        )

        self.ground_truth_role = self._ground_truth_role()
        self.dead_letters = dead_letter_queue(
            self,
            "DeadLetters",
            storage.key,
            holds="Labeling requests and job completions the launcher could not handle",
            named_by_targets=True,
        )

        self.launcher = HandlerFunction(
            self,
            "Launcher",
            name="labeling_launcher",
            description="Starts a Ground Truth job per labeling request; announces completed jobs",
            key=storage.key,
            service="labeling-launcher",
            contract=labeling_launcher.Environment,
            environment={
                "bucket": storage.bucket_name,
                "role_arn": self.ground_truth_role.role_arn,
                "workteam_arn": workteam_arn,
                "kms_key_arn": storage.key.key_arn,
                "job_prefix": prefix,
                "event_source": self.event_source,
                "workers_per_object": settings.workers_per_object,
                "task_time_limit_seconds": settings.task_time_limit_seconds,
                "task_availability_seconds": settings.task_availability_seconds,
            },
            timeout=cdk.Duration.minutes(2),
            memory_size=512,
        )
        function = self.launcher.function
        # The role's DeadLetterFailedInvocations statement grants exactly what is needed.
        dead_letter_failed_invocations(function, self.dead_letters, who="The labeling launcher")
        self._grant_launcher(job_arns)

        self.request_rule = events.Rule(
            self,
            "RequestUploaded",
            description=f"A request uploaded under {layout.LABELING_REQUESTS} starts a job",
            event_pattern=objects_created(
                storage.bucket_name,
                {"wildcard": f"{layout.LABELING_REQUESTS}*{labeling.REQUEST_SUFFIX}"},
            ),
        )
        self.completion_rule = events.Rule(
            self,
            "JobCompleted",
            description=f"A completed {prefix} labeling job is announced for training",
            event_pattern=events.EventPattern(
                source=[labeling.GROUND_TRUTH_EVENT_SOURCE],
                detail_type=[labeling.GROUND_TRUTH_STATE_CHANGE],
                detail={"LabelingJobStatus": [labeling.COMPLETED]},
                resources=events.Match.prefix(job_arns.removesuffix("*")),
            ),
        )
        for rule in (self.request_rule, self.completion_rule):
            rule.add_target(retried_lambda_target(function, self.dead_letters))

    def _check_region(self, region: str) -> None:
        """Fail synth for a Region without Ground Truth's bounding-box functions."""
        if cdk.Token.is_unresolved(region):
            return  # environment-agnostic: the launcher checks its Region at run time
        try:
            labeling.bounding_box_lambda_arns(region)
        except InputError as error:
            cdk.Annotations.of(self).add_error(str(error))

    def _ground_truth_role(self) -> iam.Role:
        """What a labeling job needs: read its inputs and images, write its output and logs."""
        bucket, key = self._bucket, self._storage.key
        execution = SageMakerExecutionRole(
            self,
            "GroundTruthRole",
            description="Runs this app's Ground Truth labeling jobs",
            log_group_name=LABELING_JOB_LOG_GROUP,
            metrics_namespace=None,
            runs="Ground Truth labeling jobs",
        )
        policy = allow(
            execution.role,
            {
                "ReadImagesAndJobInputs": (
                    ["s3:GetObject"],
                    [
                        bucket.arn_for_objects(f"{layout.LABELING_IMAGES}*"),
                        bucket.arn_for_objects(f"{layout.LABELING_INPUT}*"),
                        bucket.arn_for_objects(f"{layout.LABELING_OUTPUT}*"),
                    ],
                ),
                "WriteJobOutput": (
                    ["s3:PutObject", "s3:AbortMultipartUpload"],
                    [bucket.arn_for_objects(f"{layout.LABELING_OUTPUT}*")],
                ),
                "LocateTheBucket": (["s3:GetBucketLocation"], [bucket.bucket_arn]),
                "ListLabelingObjects": (
                    ["s3:ListBucket"],
                    [bucket.bucket_arn],
                    {"StringLike": {"s3:prefix": "labeling/*"}},
                ),
                "UseTheDataKey": (
                    ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
                    [key.key_arn],
                ),
            },
        )
        acknowledge_object_prefixes(
            policy,
            self._storage.bucket_name,
            {
                prefix: f"A Ground Truth job {why} {prefix}, in folders named after batches and "
                "jobs that exist only at run time."
                for prefix, why in (
                    (layout.LABELING_IMAGES, "shows workers the images under"),
                    (
                        layout.LABELING_INPUT,
                        "reads each job's manifest, categories and template under",
                    ),
                    (layout.LABELING_OUTPUT, "writes and re-reads each job's annotations under"),
                )
            },
        )
        return execution.role

    def _grant_launcher(self, job_arns: str) -> None:
        """Read requests, list images, write job inputs, start and describe this app's jobs."""
        stack = cdk.Stack.of(self)
        bucket, key = self._bucket, self._storage.key
        role = self.launcher.role
        statements = {
            "ReadRequests": (
                ["s3:GetObject", "s3:GetObjectVersion"],
                [bucket.arn_for_objects(f"{layout.LABELING_REQUESTS}*")],
                None,
            ),
            "WriteRejections": (
                ["s3:PutObject"],
                [bucket.arn_for_objects(f"{layout.LABELING_REQUESTS}*{labeling.REJECTION_SUFFIX}")],
                None,
            ),
            # Deleted again when no job starts, so that a refused request leaves none.
            "WriteJobInputs": (
                ["s3:PutObject", "s3:DeleteObject"],
                [bucket.arn_for_objects(f"{layout.LABELING_INPUT}*")],
                None,
            ),
            "ListImages": (
                ["s3:ListBucket"],
                [bucket.bucket_arn],
                {"StringLike": {"s3:prefix": f"{layout.LABELING_IMAGES}*"}},
            ),
            "UseTheDataKey": (["kms:Decrypt", "kms:GenerateDataKey"], [key.key_arn], None),
            # CreateLabelingJob with Tags also needs sagemaker:AddTags.
            "StartAndDescribeJobs": (
                [
                    "sagemaker:CreateLabelingJob",
                    "sagemaker:DescribeLabelingJob",
                    "sagemaker:AddTags",
                ],
                [job_arns],
                None,
            ),
            "PassTheGroundTruthRole": (
                ["iam:PassRole"],
                [self.ground_truth_role.role_arn],
                {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
            "AnnounceCompletedJobs": (
                ["events:PutEvents"],
                [stack.format_arn(service="events", resource="event-bus", resource_name="default")],
                None,
            ),
            "DeadLetterFailedInvocations": (
                ["sqs:SendMessage"],
                [self.dead_letters.queue_arn],
                None,
            ),
        }
        policy = allow(role, statements)
        acknowledge_object_prefixes(
            policy,
            self._storage.bucket_name,
            {
                layout.LABELING_REQUESTS: "The labeling launcher reads each uploaded request, "
                f"whatever its name, under {layout.LABELING_REQUESTS}.",
                layout.LABELING_INPUT: "The labeling launcher writes each new job's inputs into "
                f"a folder named after it under {layout.LABELING_INPUT}, and deletes them when "
                "the job does not start.",
            },
        )
        rejections = f"{layout.LABELING_REQUESTS}*{labeling.REJECTION_SUFFIX}"
        acknowledge(
            policy,
            # object_prefix_finding appends the "*" that this pattern has inside it.
            object_prefix_finding(self._storage.bucket_name, rejections).replace(
                f"{rejections}*]", f"{rejections}]"
            ),
            "The labeling launcher writes a rejection beside each refused request, named after "
            "it; it can write no other file under the requests prefix.",
        )
        acknowledge(
            policy,
            arn_finding(stack, "sagemaker", f"labeling-job/{self._job_names}"),
            "Labeling job names are generated per request (never reusable); the launcher may "
            "only start, tag and describe jobs whose names carry this stage's prefix.",
        )
