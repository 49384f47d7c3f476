"""A SageMaker Batch Transform job as one Step Functions task: a model over S3 images, waited for.

``createTransformJob.sync`` starts the job and waits until it completes; a job that fails
or stops fails the task (``States.TaskFailed``). The state is written out (``CustomState``)
rather than built with CDK's ``SageMakerCreateTransformJob``, which grants every
``transform-job/*`` and ``iam:PassRole`` on a role of its own that CreateTransformJob does
not take: a transform job runs as its model's execution role, so
that role (``grant_model_role``) is what reads the images and writes the results. AWS's
policy template for this integration still lists ``iam:PassRole`` on that role; whether
CreateTransformJob checks it is not documented, so the state machine keeps the PassRole it
already needs for CreateModel (``deploy.PassTheModelRole``) and it does not matter.
https://docs.aws.amazon.com/step-functions/latest/dg/connect-sagemaker.html
https://docs.aws.amazon.com/step-functions/latest/dg/sagemaker-iam.html

Output: each input object's answer is ``<input key>.out`` under the output path (the
input's folders may be kept), and if any object fails the whole job fails.
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformOutput.html
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct, IConstruct

from counting_core.constants import IMAGE_CONTENT_TYPE, JSON_CONTENT_TYPE
from stacks.components.permissions import (
    acknowledge_job_logs,
    acknowledge_object_prefixes,
    allow,
    job_logging,
)
from stacks.components.workflow import retry_policies

#: The service's own rule that ``.sync`` uses to hear about transform job state changes.
#: https://docs.aws.amazon.com/step-functions/latest/dg/sagemaker-iam.html
SYNC_EVENTS_RULE = "StepFunctionsGetEventsForSageMakerTransformJobsRule"
#: Batch Transform reads a list of objects (``[{"prefix": ...}, "key", ...]``); it cannot read
#: an augmented manifest.
#: https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformS3DataSource.html
MANIFEST_FILE = "ManifestFile"
#: Megabytes one image may have: a request is one whole image (SingleRecord, no split), and a
#: job fails on a record larger than this. The API's default is 6 MB, below many phone and
#: drone photos; the limit is 100 MB for MaxPayloadInMB times MaxConcurrentTransforms (1).
#: https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTransformJob.html
MAX_PAYLOAD_MB = 50


def model_server_environment(max_request_mb: int) -> dict[str, str]:
    """What the PyTorch inference container's model server needs to take whole photos.

    Its TorchServe refuses requests over 6,553,500 bytes unless told otherwise, whatever
    Batch Transform's MaxPayloadInMB allows (one refused record fails the whole job); with
    ``enable_envvars_config`` on, as the container's default config has it, TS_* variables
    set TorchServe's properties. One worker: each would load torch and the model again,
    in a serverless endpoint's memory and cold start. Other containers ignore these names.
    https://pytorch.org/serve/configuration.html
    https://github.com/aws/sagemaker-pytorch-inference-toolkit
    """
    limit = str(max_request_mb * 1024 * 1024)
    return {
        "TS_MAX_REQUEST_SIZE": limit,
        "TS_MAX_RESPONSE_SIZE": limit,
        "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
    }


MAX_CONCURRENT_TRANSFORMS = 1
#: Where transform jobs log, and their metrics' namespace.
#: https://docs.aws.amazon.com/sagemaker/latest/dg/logging-cloudwatch.html
TRANSFORM_LOG_GROUP = "/aws/sagemaker/TransformJobs"


class BatchTransform(Construct):
    """``createTransformJob.sync`` over the images a manifest file lists, and its IAM.

    Names and locations come from the execution's state (JsonPath), so one definition
    serves every run: ``job_name_path`` and ``model_name_path`` name the job and an
    existing model, ``manifest_uri_path`` the manifest file, ``output_uri_path`` the
    S3 folder the ``.out`` files go to. Results are encrypted with ``key``, and so is the
    volume (``volume_key``; leave it off for instance types with local NVMe storage). The
    task keeps ``result_selector`` of the finished job (by default ``TransformJobName`` and
    ``TransformOutput``) at ``result_path``.

    Attributes:
        state: the task state, retried on SageMaker's start-up errors and missing capacity
            (``retry_policies.SAGEMAKER_JOB_API``, ``TRANSFORM_CAPACITY``); the caller adds
            its catch.
        statements: what the state machine's role needs to run, watch and stop the job.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        state_name: str,
        job_name_prefix: str,
        job_name_path: str,
        model_name_path: str,
        manifest_uri_path: str,
        output_uri_path: str,
        instance_type: str,
        key: kms.IKey,
        timeout: cdk.Duration,
        result_path: str,
        tags: list[dict[str, str]],
        instance_count: int = 1,
        max_payload_mb: int = MAX_PAYLOAD_MB,
        volume_key: bool = True,
        max_concurrent_transforms: int | None = MAX_CONCURRENT_TRANSFORMS,
        result_selector: dict[str, str] | None = None,
    ) -> None:
        super().__init__(scope, construct_id)
        resources: dict[str, object] = {
            "InstanceType": instance_type,
            "InstanceCount": instance_count,
        }
        # Instances with local NVMe storage encrypt it in hardware and refuse a volume key.
        # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformResources.html
        if volume_key:
            resources["VolumeKmsKeyId"] = key.key_arn
        self.state = sfn.CustomState(
            self,
            state_name,
            state_json={
                "Type": "Task",
                "Resource": f"arn:{cdk.Aws.PARTITION}:states:::sagemaker:createTransformJob.sync",
                "Parameters": {
                    "TransformJobName.$": job_name_path,
                    "ModelName.$": model_name_path,
                    "BatchStrategy": "SingleRecord",
                    "MaxPayloadInMB": max_payload_mb,
                    # None: left to the container (its execution parameters).
                    **(
                        {}
                        if max_concurrent_transforms is None
                        else {"MaxConcurrentTransforms": max_concurrent_transforms}
                    ),
                    "TransformInput": {
                        "DataSource": {
                            "S3DataSource": {
                                "S3DataType": MANIFEST_FILE,
                                "S3Uri.$": manifest_uri_path,
                            }
                        },
                        "ContentType": IMAGE_CONTENT_TYPE,
                        "CompressionType": "None",
                        "SplitType": "None",
                    },
                    "TransformOutput": {
                        "S3OutputPath.$": output_uri_path,
                        "Accept": JSON_CONTENT_TYPE,
                        "AssembleWith": "None",
                        "KmsKeyId": key.key_arn,
                    },
                    "TransformResources": resources,
                    "Tags": tags,
                },
                # A transform job has no stopping condition of its own; on timeout Step
                # Functions stops the job (StopTransformJob).
                "TimeoutSeconds": int(timeout.to_seconds()),
                "ResultSelector": result_selector
                or {
                    "TransformJobName.$": "$.TransformJobName",
                    "TransformOutput.$": "$.TransformOutput",
                },
                "ResultPath": result_path,
            },
        )
        retry_policies.SAGEMAKER_JOB_API.apply(self.state)
        retry_policies.TRANSFORM_CAPACITY.apply(self.state)

        self.statements = transform_job_statements(self, f"{job_name_prefix}*")

    @staticmethod
    def grant_model_role(
        role: iam.IRole,
        *,
        bucket: s3.IBucket,
        bucket_name: str,
        key: kms.IKey,
        reads: dict[str, str],
        writes: dict[str, str],
    ) -> IConstruct:
        """Let the model's execution role read the inputs, write the results and log.

        ``reads`` and ``writes`` map key prefixes (the manifest file and the images; the
        output folder) to why the job needs them, for the acknowledgments a reviewer reads.
        """
        policy = allow(
            role,
            {
                **job_logging(
                    cdk.Stack.of(role), TRANSFORM_LOG_GROUP, TRANSFORM_LOG_GROUP, job="Transform"
                ),
                "ReadTransformInputs": (
                    ["s3:GetObject"],
                    [bucket.arn_for_objects(f"{prefix}*") for prefix in reads],
                ),
                "WriteTransformResults": (
                    ["s3:PutObject"],
                    [bucket.arn_for_objects(f"{prefix}*") for prefix in writes],
                ),
                # Reads encrypted inputs; encrypts the results and the volume with the key.
                # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformOutput.html
                "UseTheDataKeyForTransforms": (
                    ["kms:Decrypt", "kms:GenerateDataKey", "kms:CreateGrant"],
                    [key.key_arn],
                ),
            },
        )
        acknowledge_object_prefixes(policy, bucket_name, {**reads, **writes})
        acknowledge_job_logs(policy, TRANSFORM_LOG_GROUP, "transform jobs")
        return policy


def transform_job_statements(scope: Construct, job_names: str) -> list[iam.PolicyStatement]:
    """What a state machine needs to run ``createTransformJob.sync`` jobs named ``job_names``:
    the job calls, the tags Step Functions puts on the jobs it starts, and the managed
    EventBridge rule through which it learns that a job ended.
    https://docs.aws.amazon.com/step-functions/latest/dg/sagemaker-iam.html
    """
    stack = cdk.Stack.of(scope)
    return [
        iam.PolicyStatement(
            sid="RunTransformJobs",
            actions=[
                "sagemaker:CreateTransformJob",
                "sagemaker:DescribeTransformJob",
                "sagemaker:StopTransformJob",
                "sagemaker:ListTags",
                # Step Functions tags the jobs it starts (as for training jobs).
                "sagemaker:AddTags",
            ],
            resources=[
                stack.format_arn(
                    service="sagemaker", resource="transform-job", resource_name=job_names
                )
            ],
        ),
        iam.PolicyStatement(
            sid="WatchTransformJobs",
            actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
            resources=[
                stack.format_arn(service="events", resource="rule", resource_name=SYNC_EVENTS_RULE)
            ],
        ),
    ]
