"""Ground Truth bounding-box jobs started by a request upload, announced when they complete.

A request uploaded under ``labeling/requests/`` reaches the launcher Lambda through
EventBridge; so does Ground Truth's "job completed" event for this app's jobs. The
launcher starts jobs as a Ground Truth execution role that can read the labeling inputs
and write the labeling output, and nothing else.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_events_targets as targets
from aws_cdk import aws_iam as iam
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_sqs as sqs
from constructs import Construct

from counting import labeling, layout
from counting.errors import InputError
from stacks.components.python_function import PythonFunction
from stacks.components.storage import DataStorage
from stacks.config import LabelingSettings
from stacks.nag import acknowledge, object_prefix_finding

# EventBridge's own maxima: it keeps retrying delivery to the launcher for a day.
EVENT_RETRY_ATTEMPTS = 185
MAX_EVENT_AGE = cdk.Duration.hours(24)
# Lambda retries a failed asynchronous invocation twice (6 hours at most, Lambda's maximum),
# then sends it to the dead letters.
ASYNC_RETRY_ATTEMPTS = 2
ASYNC_MAX_EVENT_AGE = cdk.Duration.hours(6)
DEAD_LETTER_RETENTION = cdk.Duration.days(14)
# Where Ground Truth writes labeling job logs.
# https://docs.aws.amazon.com/sagemaker/latest/dg/sms-security-permission-execution-role.html
LABELING_JOB_LOG_GROUP = "/aws/sagemaker/LabelingJobs"


def _arn_finding(stack: cdk.Stack, service: str, resource: str) -> str:
    """The AwsSolutions-IAM5 finding id of a wildcard ARN of this stack's account and Region.

    cdk-nag renders pseudo parameters as ``<AWS::Region>``; a stack with an explicit
    environment has its account and Region written out.
    """
    region = "<AWS::Region>" if cdk.Token.is_unresolved(stack.region) else stack.region
    account = "<AWS::AccountId>" if cdk.Token.is_unresolved(stack.account) else stack.account
    return (
        f"AwsSolutions-IAM5[Resource::arn:<AWS::Partition>:{service}:{region}:{account}:{resource}]"
    )


class LabelingJobs(Construct):
    """The launcher Lambda, its two EventBridge rules and the Ground Truth execution role.

    Attributes:
        launcher: the ``labeling_launcher`` PythonFunction.
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
        # Job names are "<prefix>-<hex>" (counting.labeling.unique_job_name).
        self._job_names = f"{prefix}-*"
        job_arns = stack.format_arn(
            service="sagemaker", resource="labeling-job", resource_name=self._job_names
        )

        self.ground_truth_role = self._ground_truth_role()
        self.dead_letters = sqs.Queue(
            self,
            "DeadLetters",
            encryption=sqs.QueueEncryption.KMS,
            encryption_master_key=storage.key,
            enforce_ssl=True,
            retention_period=DEAD_LETTER_RETENTION,
        )
        for rule in ("AwsSolutions-SQS3", "Serverless-SQSRedrivePolicy"):
            acknowledge(
                self.dead_letters,
                rule,
                "Dead letters of the labeling launcher (undeliverable events and failed "
                "invocations), kept two weeks for inspection; nothing reads it to redrive.",
            )

        self.launcher = PythonFunction(
            self,
            "Launcher",
            name="labeling_launcher",
            description="Starts a Ground Truth job per labeling request; announces completed jobs",
            key=storage.key,
            service="labeling-launcher",
            timeout=cdk.Duration.minutes(2),
            memory_size=512,
            environment={
                "BUCKET": storage.bucket_name,
                "ROLE_ARN": self.ground_truth_role.role_arn,
                "WORKTEAM_ARN": workteam_arn,
                "KMS_KEY_ARN": storage.key.key_arn,
                "JOB_PREFIX": prefix,
                "EVENT_SOURCE": self.event_source,
                "WORKERS_PER_OBJECT": str(settings.workers_per_object),
                "TASK_TIME_LIMIT_SECONDS": str(settings.task_time_limit_seconds),
                "TASK_AVAILABILITY_SECONDS": str(settings.task_availability_seconds),
            },
        )
        function = self.launcher.function
        function.configure_async_invoke(
            retry_attempts=ASYNC_RETRY_ATTEMPTS, max_event_age=ASYNC_MAX_EVENT_AGE
        )
        # What still fails after the retries goes to the dead letters. Set on the L1
        # resource: the SqsDestination construct would grant the role wildcard KMS actions;
        # the role's DeadLetterFailedInvocations statement grants exactly what is needed.
        invoke_config = function.node.find_child("EventInvokeConfig").node.default_child
        assert isinstance(invoke_config, lambda_.CfnEventInvokeConfig)
        invoke_config.destination_config = lambda_.CfnEventInvokeConfig.DestinationConfigProperty(
            on_failure=lambda_.CfnEventInvokeConfig.OnFailureProperty(
                destination=self.dead_letters.queue_arn
            )
        )
        acknowledge(
            function,
            "Serverless-LambdaDLQ",
            "The labeling launcher's failed asynchronous invocations go to its on-failure "
            "destination, the same dead-letter queue, with the error; a DLQ would duplicate them.",
        )
        self._grant_launcher(job_arns)

        self.request_rule = events.Rule(
            self,
            "RequestUploaded",
            description=f"A request uploaded under {layout.LABELING_REQUESTS} starts a job",
            event_pattern=events.EventPattern(
                source=["aws.s3"],
                detail_type=["Object Created"],
                detail={
                    "bucket": {"name": [storage.bucket_name]},
                    "object": {
                        "key": [
                            {"wildcard": f"{layout.LABELING_REQUESTS}*{labeling.REQUEST_SUFFIX}"}
                        ]
                    },
                },
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
            rule.add_target(
                targets.LambdaFunction(
                    function,
                    dead_letter_queue=self.dead_letters,
                    retry_attempts=EVENT_RETRY_ATTEMPTS,
                    max_event_age=MAX_EVENT_AGE,
                )
            )

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
        stack = cdk.Stack.of(self)
        bucket, key = self._bucket, self._storage.key
        role = iam.Role(
            self,
            "GroundTruthRole",
            assumed_by=iam.ServicePrincipal("sagemaker.amazonaws.com"),
            description="Runs this app's Ground Truth labeling jobs",
        )
        log_group = stack.format_arn(
            service="logs",
            resource="log-group",
            resource_name=LABELING_JOB_LOG_GROUP,
            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
        )
        statements = {
            "ReadImagesAndJobInputs": (
                ["s3:GetObject"],
                [
                    bucket.arn_for_objects(f"{layout.LABELING_IMAGES}*"),
                    bucket.arn_for_objects(f"{layout.LABELING_INPUT}*"),
                    bucket.arn_for_objects(f"{layout.LABELING_OUTPUT}*"),
                ],
                None,
            ),
            "WriteJobOutput": (
                ["s3:PutObject", "s3:AbortMultipartUpload"],
                [bucket.arn_for_objects(f"{layout.LABELING_OUTPUT}*")],
                None,
            ),
            "LocateTheBucket": (["s3:GetBucketLocation"], [bucket.bucket_arn], None),
            "ListLabelingObjects": (
                ["s3:ListBucket"],
                [bucket.bucket_arn],
                {"StringLike": {"s3:prefix": "labeling/*"}},
            ),
            "UseTheDataKey": (
                ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
                [key.key_arn],
                None,
            ),
            "WriteJobLogs": (
                [
                    "logs:CreateLogGroup",
                    "logs:CreateLogStream",
                    "logs:DescribeLogStreams",
                    "logs:PutLogEvents",
                ],
                [log_group, f"{log_group}:log-stream:*"],
                None,
            ),
            # CloudWatch metrics have no ARNs to scope to.
            "PutJobMetrics": (["cloudwatch:PutMetricData"], ["*"], None),
        }
        for sid, (actions, resources, conditions) in statements.items():
            role.add_to_policy(
                iam.PolicyStatement(
                    sid=sid, actions=actions, resources=resources, conditions=conditions
                )
            )
        policy = role.node.find_child("DefaultPolicy")
        for prefix, why in (
            (layout.LABELING_IMAGES, "shows workers the images under"),
            (layout.LABELING_INPUT, "reads each job's manifest, categories and template under"),
            (layout.LABELING_OUTPUT, "writes and re-reads each job's annotations under"),
        ):
            acknowledge(
                policy,
                object_prefix_finding(self._storage.bucket_name, prefix),
                f"A Ground Truth job {why} {prefix}, in folders named after batches and "
                "jobs that exist only at run time.",
            )
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::*]",
            "Ground Truth labeling jobs publish CloudWatch metrics; cloudwatch:PutMetricData "
            "supports no resource-level permissions.",
        )
        acknowledge(
            policy,
            _arn_finding(stack, "logs", f"log-group:{LABELING_JOB_LOG_GROUP}:log-stream:*"),
            "Ground Truth names one log stream per labeling job in its log group "
            f"{LABELING_JOB_LOG_GROUP} at run time.",
        )
        return role

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
            "WriteJobInputs": (
                ["s3:PutObject"],
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
        for sid, (actions, resources, conditions) in statements.items():
            role.add_to_policy(
                iam.PolicyStatement(
                    sid=sid, actions=actions, resources=resources, conditions=conditions
                )
            )
        policy = role.node.find_child("DefaultPolicy")
        for prefix, why in (
            (layout.LABELING_REQUESTS, "reads each uploaded request, whatever its name, under"),
            (
                layout.LABELING_INPUT,
                "writes each new job's inputs into a folder named after it under",
            ),
        ):
            acknowledge(
                policy,
                object_prefix_finding(self._storage.bucket_name, prefix),
                f"The labeling launcher {why} {prefix}.",
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
            _arn_finding(stack, "sagemaker", f"labeling-job/{self._job_names}"),
            "Labeling job names are generated per request (never reusable); the launcher may "
            "only start, tag and describe jobs whose names carry this stage's prefix.",
        )
