"""The labeling launcher's contract with its stack (``stacks/components/labeling.py``).

EventBridge invokes it (request uploads, labeling job state changes), so its environment is
all the stack hands it. The Region its jobs run in is its SageMaker client's, which Lambda
sets (``AWS_DEFAULT_REGION``).
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from counting_core.contracts.environment import (
    BucketName,
    EventSource,
    FunctionEnvironment,
    RoleArn,
)
from counting_core.datasets import labeling

# CreateLabelingJob's WorkteamArn, KmsKeyId and LabelingJobName (botocore's sagemaker model).
WorkteamArn = Annotated[
    str, Field(pattern=r"^arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{12}:workteam/.+$")
]
KmsKeyArn = Annotated[str, Field(pattern=r"^arn:aws[a-z\-]*:kms:[a-z0-9\-]+:\d{12}:key/[\w-]+$")]
JobNamePrefix = Annotated[str, Field(pattern=r"^[a-zA-Z0-9](-*[a-zA-Z0-9])*$")]


class Environment(FunctionEnvironment):
    bucket: BucketName = Field(alias="BUCKET")
    # The role Ground Truth runs each job as.
    role_arn: RoleArn = Field(alias="ROLE_ARN")
    workteam_arn: WorkteamArn = Field(alias="WORKTEAM_ARN")
    # The data key: Ground Truth encrypts its output with it.
    kms_key_arn: KmsKeyArn = Field(alias="KMS_KEY_ARN")
    job_prefix: JobNamePrefix = Field(alias="JOB_PREFIX")
    event_source: EventSource = Field(alias="EVENT_SOURCE")
    workers_per_object: int = Field(alias="WORKERS_PER_OBJECT", ge=1, le=9)
    task_time_limit_seconds: int = Field(alias="TASK_TIME_LIMIT_SECONDS", ge=30, le=28800)
    task_availability_seconds: int = Field(alias="TASK_AVAILABILITY_SECONDS", ge=60)

    def task_defaults(self) -> labeling.TaskDefaults:
        return labeling.TaskDefaults(
            workers_per_object=self.workers_per_object,
            task_time_limit_seconds=self.task_time_limit_seconds,
            task_availability_seconds=self.task_availability_seconds,
        )
