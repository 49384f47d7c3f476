"""Step 2, Train: a SageMaker training job on the prepared manifests, waited for (.sync).

torchvision (the default): ``detector/train.py`` in SageMaker's PyTorch training image,
script mode under network isolation. File-mode channels: ``train`` and ``validation`` (the
prepared augmented manifests, as plain files), ``images`` (a ManifestFile of the run's images:
each lands at its key below the manifest's prefix), ``weights`` (the pretrained weights file,
unless ``training.pretrained_weights`` is ``none``) and ``code`` (the source tarball, a CDK
asset). The built-in algorithm reads the manifests as RecordIO in Pipe mode.

The state is written out (``CustomState``) rather than built with CDK's
``SageMakerCreateTrainingJob``: that task has no managed spot training, checkpoints or
maximum wait, and grants ``training-job/*`` when the job name comes from the state.
The IAM it needs is granted here instead, scoped to this project's jobs.
https://docs.aws.amazon.com/step-functions/latest/dg/connect-sagemaker.html
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from counting_core import layout
from counting_core.models import training
from stacks.components.permissions import (
    SageMakerExecutionRole,
    Statement,
    acknowledge_object_prefixes,
    allow,
)
from stacks.components.storage import DataStorage
from stacks.components.training.prepare import PREPARED
from stacks.components.training.source import (
    CHANNEL_DIRECTORY,
    CODE_CHANNEL,
    code_file_name,
    source_asset,
)
from stacks.components.workflow import retry_policies
from stacks.components.workflow.notify import RunNotifications
from stacks.config import TrainingSettings

#: Where the state machine keeps the finished job (DescribeTrainingJob's response).
TRAINING = "$.training"
#: Spot checkpoints, one folder per run, so that a run never resumes another run's model.
CHECKPOINTS = f"{layout.MODEL_ARTIFACTS}checkpoints/"
# The built-in algorithm reads augmented manifests as RecordIO in Pipe mode, image first.
# https://docs.aws.amazon.com/sagemaker/latest/dg/object-detection.html
# https://docs.aws.amazon.com/sagemaker/latest/dg/augmented-manifest.html
INPUT_MODE = "Pipe"
RECORDIO = "application/x-recordio"
# torchvision reads every channel as files: the augmented manifests as plain files (only Pipe
# mode reads them as AugmentedManifestFile; FastFile cannot), the images listed by a
# ManifestFile, downloaded before the script starts (each image is read once per epoch).
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_S3DataSource.html
FILE_MODE = "File"
#: What the quality gate reads from the finished job's FinalMetricDataList.
METRIC = "validation:mAP"
# What detector/train.py prints at every evaluation, as detector-contract.md states it; the
# quality gate reads validation:mAP from FinalMetricDataList.
METRIC_DEFINITIONS = [
    {"Name": METRIC, "Regex": "validation:mAP=([0-9.]+)"},
    # COCO's mAP@[0.5:0.95], for reading beside torchvision's published figures; the gate
    # reads validation:mAP (IoU 0.5, as the built-in algorithm reports it).
    {"Name": "validation:mAP_coco", "Regex": "validation:mAP_coco=([0-9.]+)"},
    {"Name": "train:loss", "Regex": "train:loss=([0-9.]+)"},
]
# detector/train.py stops training at its time budget (max_minutes), then evaluates and saves
# the model; a job stopped at MaxRuntimeInSeconds instead fails and saves nothing. The budget
# leaves this much of the runtime for the last evaluation, the save and the upload.
RUNTIME_MARGIN_MINUTES = 30
# Script mode: the script to run from the unpacked source directory.
# https://github.com/aws/sagemaker-training-toolkit/blob/master/src/sagemaker_training/params.py
ENTRY_POINT = "train.py"
# The service's own rule that .sync uses to hear about training job state changes.
# https://docs.aws.amazon.com/step-functions/latest/dg/sagemaker-iam.html
SYNC_EVENTS_RULE = "StepFunctionsGetEventsForSageMakerTrainingJobsRule"
# Where training jobs log.
TRAINING_LOG_GROUP = "/aws/sagemaker/TrainingJobs"


class TrainStep(Construct):
    """``createTrainingJob.sync`` as the training execution role, and that role.

    Attributes:
        role: what the training job runs as: reads the prepared manifests and the labeled
            images, writes model artifacts and checkpoints, logs.
        state: the task state; its result (the finished job) is kept at ``$.training``.
        statements: what the state machine's role needs to run, watch and stop the job.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        settings: TrainingSettings,
        storage: DataStorage,
        image: str,
        tags: list[dict[str, str]],
        notifications: RunNotifications,
    ) -> None:
        super().__init__(scope, construct_id)
        self._storage = storage
        self._tags = tags
        self._bucket = storage.bucket_in(self)
        # The torchvision job's code (detector/), uploaded with the stack's assets.
        self.code = source_asset(self, "Code") if settings.algorithm == "torchvision" else None
        self.role = self._training_role(settings)
        self.state = sfn.CustomState(
            self, "Train", state_json=self._state_json(settings, image, storage)
        )
        retry_policies.SAGEMAKER_JOB_API.apply(self.state)
        retry_policies.TRAINING_CAPACITY.apply(self.state)
        notifications.catch(self.state)

        stack = cdk.Stack.of(self)
        job_arns = stack.format_arn(
            service="sagemaker", resource="training-job", resource_name=f"{prefix}-*"
        )
        # AWS's policy for createTrainingJob.sync, scoped to this project's jobs. Differences:
        # ListTags is granted on the jobs, not "*" (.sync reads the tags of the job it
        # started); AddTags is added, as CDK's SageMakerCreateTrainingJob grants it, because
        # Step Functions tags the jobs it starts and tagging on create needs it.
        # https://docs.aws.amazon.com/step-functions/latest/dg/sagemaker-iam.html
        # https://docs.aws.amazon.com/sagemaker/latest/dg/security_iam_id-based-policy-examples.html
        self.statements = [
            iam.PolicyStatement(
                sid="RunTrainingJobs",
                actions=[
                    "sagemaker:CreateTrainingJob",
                    "sagemaker:DescribeTrainingJob",
                    "sagemaker:StopTrainingJob",
                    "sagemaker:AddTags",
                    "sagemaker:ListTags",
                ],
                resources=[job_arns],
            ),
            iam.PolicyStatement(
                sid="PassTheTrainingRole",
                actions=["iam:PassRole"],
                resources=[self.role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
            ),
            # The service's managed rule that .sync uses to hear about job state changes.
            iam.PolicyStatement(
                sid="WatchTrainingJobs",
                actions=["events:PutTargets", "events:PutRule", "events:DescribeRule"],
                resources=[
                    stack.format_arn(
                        service="events", resource="rule", resource_name=SYNC_EVENTS_RULE
                    )
                ],
            ),
        ]

    def _state_json(self, settings: TrainingSettings, image: str, storage: DataStorage) -> dict:
        bucket_uri = f"s3://{storage.bucket_name}/"
        stopping = {"MaxRuntimeInSeconds": settings.max_runtime_hours * 3600}
        spot: dict = {"EnableManagedSpotTraining": settings.use_spot}
        if settings.use_spot:
            # Time to wait for spot capacity plus training; at least MaxRuntimeInSeconds.
            # https://docs.aws.amazon.com/sagemaker/latest/dg/model-managed-spot-training.html
            stopping["MaxWaitTimeInSeconds"] = settings.max_wait_hours * 3600
            spot["CheckpointConfig"] = {
                "S3Uri.$": sfn.JsonPath.format(
                    f"{bucket_uri}{CHECKPOINTS}{{}}/", sfn.JsonPath.string_at(f"{PREPARED}.runName")
                )
            }
        reserved = training.data_hyperparameters_of(settings.algorithm)
        configured = {
            name: value for name, value in settings.hyperparameters.items() if name not in reserved
        }
        if settings.algorithm == "torchvision":
            algorithm = self._torchvision(settings, image, storage, configured)
        else:
            algorithm = self._builtin(image, configured)
        return {
            "Type": "Task",
            "Resource": f"arn:{cdk.Aws.PARTITION}:states:::sagemaker:createTrainingJob.sync",
            "Parameters": {
                "TrainingJobName.$": f"{PREPARED}.runName",
                "RoleArn": self.role.role_arn,
                **algorithm,
                "OutputDataConfig": {
                    "S3OutputPath": f"{bucket_uri}{layout.MODEL_ARTIFACTS}",
                    "KmsKeyId": storage.key.key_arn,
                },
                "ResourceConfig": self._resources(settings, storage),
                "StoppingCondition": stopping,
                **spot,
                "Tags": self._tags,
            },
            "ResultPath": TRAINING,
        }

    def _builtin(self, image: str, configured: dict[str, str]) -> dict:
        from_data = {
            f"{name}.$": f"{PREPARED}.hyperparameters.{name}"
            for name in training.DATA_HYPERPARAMETERS
        }
        return {
            "AlgorithmSpecification": {"TrainingImage": image, "TrainingInputMode": INPUT_MODE},
            "HyperParameters": {**configured, **from_data},
            "InputDataConfig": [
                self._channel("train", f"{PREPARED}.trainManifestUri"),
                self._channel("validation", f"{PREPARED}.validationManifestUri"),
            ],
        }

    def _torchvision(
        self, settings: TrainingSettings, image: str, storage: DataStorage, configured: dict
    ) -> dict:
        assert self.code is not None  # built for torchvision
        channels = [
            self._file_channel("train", "S3Prefix", {"S3Uri.$": f"{PREPARED}.trainManifestUri"}),
            self._file_channel(
                "validation", "S3Prefix", {"S3Uri.$": f"{PREPARED}.validationManifestUri"}
            ),
            self._file_channel("images", "ManifestFile", {"S3Uri.$": f"{PREPARED}.imagesUri"}),
        ]
        if settings.uses_pretrained_weights:
            weights = f"s3://{storage.bucket_name}/{weights_key(settings)}"
            channels.append(self._file_channel("weights", "S3Prefix", {"S3Uri": weights}))
        # The asset's exact key as the prefix: the one file lands in the channel's folder
        # under its base name (the SDK's Framework names it so: .../code/sourcedir.tar.gz for
        # a key <job>/source/sourcedir.tar.gz), which sagemaker_submit_directory names.
        channels.append(
            self._file_channel(CODE_CHANNEL, "S3Prefix", {"S3Uri": self.code.s3_object_url})
        )
        return {
            "AlgorithmSpecification": {
                "TrainingImage": image,
                "TrainingInputMode": FILE_MODE,
                "MetricDefinitions": METRIC_DEFINITIONS,
            },
            "HyperParameters": {
                "max_minutes": str(settings.max_runtime_hours * 60 - RUNTIME_MARGIN_MINUTES),
                **configured,
                "detector": settings.detector,
                "image_prefix": training.image_prefix_uri(storage.bucket_name),
                "num_classes.$": f"{PREPARED}.hyperparameters.num_classes",
                "label_attribute.$": f"{PREPARED}.labelAttribute",
                # Script mode, as the SageMaker Python SDK sets it for a network-isolated job.
                # https://github.com/aws/sagemaker-python-sdk/blob/master/src/sagemaker/estimator.py
                "sagemaker_program": ENTRY_POINT,
                "sagemaker_submit_directory": CHANNEL_DIRECTORY + code_file_name(self.code),
                "sagemaker_region": cdk.Stack.of(self).region,
            },
            "InputDataConfig": channels,
            # No internet from the training container: code, weights and data come as channels.
            # https://docs.aws.amazon.com/sagemaker/latest/dg/mkt-algo-model-internet-free.html
            "EnableNetworkIsolation": True,
        }

    @staticmethod
    def _file_channel(name: str, data_type: str, uri: dict) -> dict:
        return {
            "ChannelName": name,
            "InputMode": FILE_MODE,
            "CompressionType": "None",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": data_type,
                    **uri,
                    "S3DataDistributionType": "FullyReplicated",
                }
            },
        }

    @staticmethod
    def _resources(settings: TrainingSettings, storage: DataStorage) -> dict:
        resources = {
            "InstanceCount": 1,
            "InstanceType": settings.instance_type,
            "VolumeSizeInGB": settings.volume_size_gb,
        }
        # Instances with local NVMe storage encrypt it in hardware and refuse a volume key.
        # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ResourceConfig.html
        if not settings.uses_instance_store:
            resources["VolumeKmsKeyId"] = storage.key.key_arn
        return resources

    @staticmethod
    def _channel(name: str, manifest_uri_path: str) -> dict:
        return {
            "ChannelName": name,
            "InputMode": INPUT_MODE,
            "ContentType": RECORDIO,
            "RecordWrapperType": "RecordIO",
            "CompressionType": "None",
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "AugmentedManifestFile",
                    "S3Uri.$": manifest_uri_path,
                    "S3DataDistributionType": "FullyReplicated",
                    # ["source-ref", <label attribute>]: the image, then its boxes.
                    "AttributeNames.$": f"{PREPARED}.attributeNames",
                }
            },
        }

    def _training_role(self, settings: TrainingSettings) -> iam.Role:
        """AWS's execution role policy for CreateTrainingJob, scoped to this project's data.
        https://docs.aws.amazon.com/sagemaker/latest/dg/sagemaker-roles.html"""
        bucket, key = self._bucket, self._storage.key
        execution = SageMakerExecutionRole(
            self,
            "TrainingRole",
            description="Runs this app's SageMaker training jobs",
            log_group_name=TRAINING_LOG_GROUP,
            metrics_namespace=TRAINING_LOG_GROUP,
            runs="training jobs",
            image_uri=settings.image_uri,
        )
        # AWS's policy: kms:Decrypt for encrypted input, kms:Encrypt for the output key,
        # kms:CreateGrant for a volume key (not sent for instances with NVMe storage);
        # GenerateDataKey too, as writing SSE-KMS objects to S3 needs it.
        # https://docs.aws.amazon.com/AmazonS3/latest/userguide/UsingKMSEncryption.html
        key_actions = ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"]
        if not settings.uses_instance_store:
            key_actions.append("kms:CreateGrant")
        reads = (layout.TRAINING_MANIFESTS, layout.LABELING_IMAGES)
        # The one weights file configured, by its exact key (torchvision's weights channel).
        weights = (
            [weights_key(settings)]
            if settings.algorithm == "torchvision" and settings.uses_pretrained_weights
            else []
        )
        statements: dict[str, Statement] = {
            "ReadPreparedManifestsAndImages": (
                ["s3:GetObject"],
                [bucket.arn_for_objects(f"{prefix}*") for prefix in reads],
            ),
            # Model artifacts out; spot checkpoints out and, after an interruption, back in.
            "WriteModelsAndCheckpoints": (
                ["s3:PutObject", "s3:GetObject"],
                [bucket.arn_for_objects(f"{layout.MODEL_ARTIFACTS}*")],
            ),
            # AWS's policy lists the input bucket; here only the prefixes the job reads
            # and writes (its channels' manifests and images, its checkpoints).
            "ListTheJobsData": (
                ["s3:ListBucket"],
                [bucket.bucket_arn],
                {
                    "StringLike": {
                        "s3:prefix": [
                            *(f"{prefix}*" for prefix in (*reads, CHECKPOINTS)),
                            *weights,
                        ]
                    }
                },
            ),
            "UseTheDataKey": (key_actions, [key.key_arn]),
        }
        if weights:
            statements["ReadThePretrainedWeights"] = (
                ["s3:GetObject"],
                [bucket.arn_for_objects(key) for key in weights],
            )
        if self.code is not None:
            # The one object of the code channel, in the CDK assets bucket (encrypted with
            # S3's own key when bootstrapped with the defaults, so no key grant).
            statements["ReadTheTrainingCode"] = (
                ["s3:GetObject"],
                [self.code.bucket.arn_for_objects(self.code.s3_object_key)],
            )
            statements["ListTheTrainingCode"] = (
                ["s3:ListBucket"],
                [self.code.bucket.bucket_arn],
                {"StringEquals": {"s3:prefix": self.code.s3_object_key}},
            )
        policy = allow(execution.role, statements)
        acknowledge_object_prefixes(
            policy,
            self._storage.bucket_name,
            {
                prefix: f"A training job {why} {prefix}; the files are named per run at run time."
                for prefix, why in (
                    (
                        layout.TRAINING_MANIFESTS,
                        "reads the run's train and validation manifests under",
                    ),
                    (
                        layout.LABELING_IMAGES,
                        "reads every labeled image the manifests reference under",
                    ),
                    (
                        layout.MODEL_ARTIFACTS,
                        "writes its model and spot checkpoints, per job, under",
                    ),
                )
            },
        )
        return execution.role


def weights_key(settings: TrainingSettings) -> str:
    """The configured pretrained weights' key in the data bucket."""
    return f"{layout.DETECTOR_WEIGHTS}{settings.pretrained_weights}"
