"""The app's one typed configuration.

Settings come from four layers, each overriding the one before:

1. the defaults below (safe for production);
2. ``cdk.json`` context ``counting`` (project-wide) and ``counting.stages.<stage>``;
3. a JSON file named with ``-c config=path/to/file.json``;
4. single values given as ``-c counting.<dotted.path>=<value>`` (JSON or text).

Every stage difference is an explicit setting here; constructs never test the
stage name. A value that breaks a rule stops synth with one line per problem
naming the field (``workforce.invite_emails[1]: 'bob@' is not an email address``).
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Annotated, Any, Literal

import botocore.session
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from counting_core import layout, stage_names
from counting_core.constants import (
    COUNTER_TIMEOUT_SECONDS,
    DEFAULT_IMAGE_SHAPE,
    DEFAULT_PAYLOAD_SCALE,
    IMAGE_WORST_CASE_SECONDS,
)
from counting_core.contracts.published import MergeMethod
from counting_core.counts import announcements
from counting_core.datasets import label_studio
from counting_core.errors import InputError, describe_validation_error
from counting_core.imaging import tiling
from counting_core.models import detectors, training

CONTEXT_KEY = "counting"
STAGE_CONTEXT_KEY = "stage"
FILE_CONTEXT_KEY = "config"
DEFAULT_STAGE = "dev"

# A 12-digit AWS account id and a region name such as eu-west-1 or us-gov-west-1.
_ACCOUNT = re.compile(r"^\d{12}$")
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d$")
# Lower-case, digits and hyphens: safe in stack names, S3-derived names and IAM paths.
_NAME = re.compile(r"^[a-z][a-z0-9-]{1,23}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


# S3 bucket names have at most 63 characters; "<prefix>-data-<12-digit account>-<region>"
# leaves 30 for the prefix with the longest Region names (14 characters, ap-southeast-5).
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
# Training run names (``counting_core.models.training.run_name``) need the prefix shorter
# still, if ever.
MAX_PREFIX_LENGTH = min(63 - len("-data-") - 12 - len("-") - 14, training.MAX_PREFIX_LENGTH)


class ConfigError(ValueError):
    """The configuration cannot be used; the message has one line per problem."""


def _check(pattern: re.Pattern[str], rule: str):
    def validate(value: str) -> str:
        if not pattern.match(value):
            raise ValueError(f"{value!r} {rule}")
        return value

    return AfterValidator(validate)


AccountId = Annotated[str, _check(_ACCOUNT, "is not a 12-digit AWS account id")]
Region = Annotated[str, _check(_REGION, "is not an AWS region name (like eu-west-1)")]
Name = Annotated[str, _check(_NAME, "must be 2-24 characters: lower-case letters, digits, hyphens")]
Email = Annotated[str, _check(_EMAIL, "is not an email address")]


class Settings(BaseModel):
    """Base for every section: unknown keys are errors, not silently ignored."""

    # `-c counting.account=123456789012` arrives as a number: accept it as text.
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class StorageSettings(Settings):
    removal_policy: Literal["retain", "destroy"] = Field(
        "retain",
        description="What `make destroy` does with the stage's data: `retain` keeps the buckets, "
        "the KMS key, the results table, the log groups and the user pool; `destroy` empties "
        "and deletes the buckets, schedules the key's deletion (7 days) and deletes the rest, "
        "so the stage can be deployed again under the same names (the `dev` stage's setting "
        "in cdk.json).",
    )
    noncurrent_version_days: int = Field(
        30, ge=1, le=3650, description="Days a replaced or deleted object version is kept."
    )
    incomplete_upload_days: int = Field(
        7, ge=1, le=365, description="Days before an unfinished multipart upload is aborted."
    )
    access_log_days: int = Field(
        365, ge=1, le=3650, description="Days S3 server access logs are kept."
    )
    labeling_cors_origins: tuple[str, ...] = Field(
        ("*",),
        min_length=1,
        description="Origins allowed to GET images for the Ground Truth worker UI "
        "(the documented rule is `*`; CORS grants no access by itself, pre-signed URLs do).",
    )


class WorkforceSettings(Settings):
    enabled: bool = Field(
        False,
        description="Deploy the private labeling workforce and the Ground Truth labeling "
        "launcher. Off by default: Ground Truth is closed to new customers, so a new account "
        "labels with the stage's Label Studio (`labeling.studio`) or brings labels from "
        "elsewhere (`counting manifest from-coco`); an account that has Ground Truth turns it on.",
    )
    existing_user_pool_id: str | None = Field(
        None,
        description="Attach to the region's existing private workforce built on this Cognito "
        "user pool instead of creating one (one private workforce per account and region).",
    )
    existing_app_client_id: str | None = Field(
        None, description="App client of the existing workforce's user pool."
    )
    invite_emails: tuple[Email, ...] = Field(
        (), description="Workers to invite; each gets an email with a temporary password."
    )
    mfa: Literal["off", "optional", "required"] = Field(
        "optional",
        description="Multi-factor sign-in for workers (TOTP). `optional` lets each worker "
        "turn it on without blocking invited people who have no authenticator app.",
    )


# An image pinned by content: "sha256:" and 64 hexadecimal digits.
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
# A DNS name such as label.example.com (ACM certificates name the same).
_DOMAIN = re.compile(r"^(?=.{4,253}$)([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z]{2,63}$")
_CERTIFICATE = re.compile(r"^arn:aws[a-z-]*:acm:[a-z0-9-]+:\d{12}:certificate/[0-9a-f-]{36}$")
Digest = Annotated[str, _check(_DIGEST, "is not an image digest (sha256: and 64 hex digits)")]
DomainName = Annotated[str, _check(_DOMAIN, "is not a lower-case DNS name (label.example.com)")]
CertificateArn = Annotated[str, _check(_CERTIFICATE, "is not an ACM certificate ARN")]


class StudioSettings(Settings):
    enabled: bool = Field(
        False,
        description="Deploy Label Studio (open source, self-hosted) behind the stage's own "
        "Cognito sign-in: the labeling tool for accounts Ground Truth does not accept. "
        "Independent of `workforce`; both may be on.",
    )
    domain_name: DomainName | None = Field(
        None,
        description="Host name the studio is served at (required when enabled); point it "
        "(CNAME or alias) at the StudioLoadBalancerDns output.",
    )
    certificate_arn: CertificateArn | None = Field(
        None,
        description="ACM certificate for `domain_name`, in the stage's Region (required when "
        "enabled).",
    )
    image_digest: Digest | None = Field(
        None,
        description="Digest of the heartexlabs/label-studio image to run (required when "
        "enabled): `docker buildx imagetools inspect heartexlabs/label-studio:1.23.2`. The "
        "app's Label Studio code was checked against 1.23.2.",
    )
    admin_email: Email = Field(
        "admin@example.com",
        description="Label Studio's first administrator (its password and API token are "
        "generated into Secrets Manager).",
    )
    invite_emails: tuple[Email, ...] = Field(
        (),
        description="People who may pass the studio's Cognito sign-in; each gets an email "
        "with a temporary password.",
    )
    mfa: Literal["off", "optional", "required"] = Field(
        "optional", description="Multi-factor sign-in to the studio (TOTP)."
    )
    cpu: Literal[512, 1024, 2048, 4096] = Field(
        1024, description="Fargate CPU units of the Label Studio task."
    )
    memory_mib: int = Field(
        2048, ge=1024, le=30720, description="Memory of the Label Studio task, in MiB."
    )
    database_instance_type: str = Field(
        "t4g.micro", description="RDS PostgreSQL instance class (without the `db.` prefix)."
    )
    database_multi_az: bool = Field(
        False, description="Run the database with a standby in a second Availability Zone."
    )
    database_backup_days: int = Field(
        7, ge=1, le=35, description="Days of automated database backups."
    )
    class_names: tuple[str, ...] = Field(
        (),
        description="The studio's labels in class id order (required when enabled): the "
        "project's labeling interface offers them, and exports convert to them (a box with "
        "another label is refused). Changing them updates the project on the next deployment.",
    )
    label_attribute: str = Field(
        "objects", description="Label attribute of the manifest converted from the exports."
    )
    rotated_boxes: Literal["refuse", "enclose"] = Field(
        "refuse",
        description="What converting exports does with rotated boxes: refuse, naming their "
        "tasks, or enclose each in an upright box.",
    )
    start_training: bool = Field(
        False,
        description="Start a training run when a whole JSON export is uploaded under "
        "labeling/studio/exports/ (tasks the target storage writes only refresh the manifest).",
    )
    deletion_protection: bool = Field(
        True,
        description="RDS deletion protection on the studio's database (turn off only for "
        "throwaway stages).",
    )

    @field_validator("class_names")
    @classmethod
    def _labels_of_one_box_tool(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if names:
            try:
                label_studio.class_list(names)
            except InputError as error:
                raise PydanticCustomError(
                    "class_names", "{problem}", {"problem": str(error)}
                ) from None
        return names


# What an enabled studio cannot be deployed without, besides the stage's ``region`` (its load
# balancer's access logs are written by the Region's Elastic Load Balancing account).
STUDIO_REQUIRED = ("domain_name", "certificate_arn", "image_digest", "class_names")


class LabelingSettings(Settings):
    workers_per_object: int = Field(
        1, ge=1, le=9, description="Workers who label each image (answers are consolidated)."
    )
    task_time_limit_seconds: int = Field(
        300, ge=30, le=28800, description="Time one worker has for one image."
    )
    task_availability_seconds: int = Field(
        864000,
        ge=60,
        le=2592000,
        description="How long a task waits for a worker (private workforce: at most 30 days).",
    )
    studio: StudioSettings = Field(default_factory=StudioSettings)


#: What trains the detector: torchvision in SageMaker's PyTorch containers, or SageMaker's
#: built-in Object Detection algorithm (MXNet, which no longer gets patches).
Algorithm = Literal["torchvision", "builtin"]

# GPU instance families each algorithm trains on. Built-in Object Detection: P2, P3, G4dn and
# G5 (https://docs.aws.amazon.com/sagemaker/latest/dg/object-detection.html). torchvision: the
# PyTorch training image's CUDA build (12.4 for 2.6, stacks/components/algorithms/images.py) runs
# Volta (P3) to Hopper (P5) GPUs: T4 (G4dn), A10G (G5), L4 (G6), L40S (G6e), A100 (P4d/P4de),
# H100/H200 (P5, P5e, P5en). Not P2: its K80s are below what PyTorch 2 builds for. Not P6 or
# G7: Blackwell GPUs need a CUDA 12.8 build.
# https://docs.aws.amazon.com/sagemaker/latest/dg/pre-built-containers-frameworks-deep-learning.html
TRAINING_FAMILIES: dict[str, tuple[str, ...]] = {
    "builtin": ("p2", "p3", "g4dn", "g5"),
    "torchvision": ("g4dn", "g5", "g6", "g6e", "p3", "p4d", "p4de", "p5", "p5e", "p5en"),
}
# The cheapest instance of each that trains the default detector well: a 16 GiB V100 for the
# built-in algorithm (as before), a 16 GiB T4 for torchvision (mixed precision; about a fifth
# of a P3's price).
DEFAULT_TRAINING_INSTANCE: dict[str, str] = {
    "builtin": "ml.p3.2xlarge",
    "torchvision": "ml.g4dn.xlarge",
}
# Of those, the families whose instances have local NVMe storage. SageMaker encrypts it with
# a hardware module on the instance and refuses a VolumeKmsKeyId for them (botocore's
# ResourceConfig: "ML instance families with the NVMe-type instance storage include ml.p4d,
# ml.g4dn, and ml.g5"; "ML instance families that use EBS volumes include ml.c5 and ml.p2";
# EC2's instance store table lists NVMe SSDs on G6, G6e, P4de, P5, P5e, P5en and Trn1 too, and
# none on P3 other than p3dn, nor on Inf2).
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ResourceConfig.html
# https://docs.aws.amazon.com/AWSEC2/latest/UserGuide/InstanceStorage.html
INSTANCE_STORE_FAMILIES = frozenset(
    {"g4dn", "g5", "g6", "g6e", "p4d", "p4de", "p5", "p5e", "p5en", "trn1"}
)


@cache
def training_instance_types(algorithm: str = "builtin") -> tuple[str, ...]:
    """Instance types CreateTrainingJob accepts (botocore's ``TrainingInstanceType`` enum)
    in the algorithm's families, in the model's order."""
    model = botocore.session.get_session().get_service_model("sagemaker")
    return tuple(
        name
        for name in model.shape_for("TrainingInstanceType").enum
        if instance_family(name) in TRAINING_FAMILIES[algorithm]
    )


def instance_family(instance_type: str) -> str:
    """``ml.g5.2xlarge`` -> ``g5``."""
    return instance_type.split(".")[1] if instance_type.count(".") == 2 else ""


def _is_detector(name: str) -> str:
    if name not in detectors.DETECTORS:
        raise ValueError(f"{name!r} is not one of {', '.join(detectors.DETECTORS)}")
    return name


Detector = Annotated[str, AfterValidator(_is_detector)]
# A file name as `counting detector fetch-weights` uploads it (torchvision's published name).
_WEIGHTS_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*\.pth$")
NO_WEIGHTS = "none"


@cache
def transform_instance_types() -> tuple[str, ...]:
    """Instance types CreateTransformJob accepts (botocore's ``TransformInstanceType`` enum)."""
    model = botocore.session.get_session().get_service_model("sagemaker")
    return tuple(model.shape_for("TransformInstanceType").enum)


# CPU families Batch Transform offers without local storage: a transform job's volume can
# then take the data key ("You can't request a VolumeKmsKeyId when using an instance type
# with local storage": botocore's TransformResources).
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformResources.html
CPU_TRANSFORM_FAMILIES = frozenset(
    {"m4", "m5", "m6i", "m7i", "c4", "c5", "c6i", "c7i", "r6i", "r7i"}
)


def _offered_by_batch_transform(instance_type: str) -> str:
    if instance_type not in transform_instance_types():
        close = difflib.get_close_matches(instance_type, transform_instance_types(), n=3)
        raise ValueError(
            f"{instance_type!r} is not an instance type Batch Transform offers (botocore's "
            "TransformInstanceType)" + (f"; did you mean {', '.join(close)}?" if close else "")
        )
    return instance_type


def _cpu_without_local_storage(instance_type: str) -> str:
    if instance_family(instance_type) not in CPU_TRANSFORM_FAMILIES:
        raise ValueError(
            f"{instance_type!r} is not a CPU Batch Transform instance type without local "
            f"storage ({', '.join(f'ml.{family}' for family in sorted(CPU_TRANSFORM_FAMILIES))})"
        )
    return instance_type


TransformInstanceType = Annotated[str, AfterValidator(_offered_by_batch_transform)]
CpuTransformInstanceType = Annotated[
    TransformInstanceType, AfterValidator(_cpu_without_local_storage)
]


# The guide's settings for the built-in Object Detection algorithm.
# https://docs.aws.amazon.com/sagemaker/latest/dg/object-detection-api-config.html
# mini_batch_size: the guide's largest batch without running out of GPU memory is 32 for
# resnet-50 at image_shape 300 on ml.p3.2xlarge (one 16 GiB V100). Memory grows with the
# pixels of image_shape: at 512, (512 / 300) ** 2 = 2.9 times as many, so 32 / 2.9 = 11
# images fit, and 8 leaves room. 8 also fits the smallest GPU of the allowed families
# (ml.p2: one 12 GiB K80, 11 * 12 / 16 = 8.2). 16, the value before, would not fit.
BUILTIN_HYPERPARAMETERS: dict[str, str] = {
    "base_network": "resnet-50",
    "use_pretrained_model": "1",
    "image_shape": str(DEFAULT_IMAGE_SHAPE),
    "mini_batch_size": "8",
    "epochs": "30",
    "learning_rate": "0.001",
    "optimizer": "sgd",
    "momentum": "0.9",
    "weight_decay": "0.0005",
}


# torchvision (detector/train.py, docs/training.md): the detector's input side as the built-in
# algorithm's image_shape (the counter scales images to it); 30 epochs and batches of 8 as the
# built-in defaults; a cap of 1,000 detections per image, above the densest scenes counted so
# far (the response echoes it, so a count at the cap is flagged). The learning rate is left to
# the detector's own default for its optimizer.
TORCHVISION_HYPERPARAMETERS: dict[str, str] = {
    "image_size": str(DEFAULT_IMAGE_SHAPE),
    "epochs": "30",
    "batch_size": "8",
    "max_detections": "1000",
    "seed": "42",
}
DEFAULT_HYPERPARAMETERS: dict[str, dict[str, str]] = {
    "builtin": BUILTIN_HYPERPARAMETERS,
    "torchvision": TORCHVISION_HYPERPARAMETERS,
}
# The hyperparameter each algorithm takes the model's input side from.
IMAGE_SIZE_HYPERPARAMETER = {"builtin": "image_shape", "torchvision": "image_size"}


class TrainingSettings(Settings):
    algorithm: Algorithm = Field(
        "torchvision",
        description="What trains and serves the detector: `torchvision` (PyTorch containers, "
        "`detector/train.py` and `detector/inference.py`) or `builtin` (SageMaker's Object "
        "Detection algorithm, MXNet-based, no longer patched). See docs/training.md to switch "
        "a stage or roll back.",
    )
    detector: Detector = Field(
        detectors.DEFAULT,
        description="torchvision only: the torchvision detector to train "
        f"({', '.join(detectors.DETECTORS)}).",
    )
    pretrained_weights: str = Field(
        "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth",
        validate_default=True,
        description="torchvision only: the COCO-pretrained weights file the job starts from, "
        f"by name under the data bucket's `{layout.DETECTOR_WEIGHTS}` (where the command counting "
        "detector fetch-weights puts torchvision's published file, whose name starts with the "
        "detector's); `none` trains from scratch. The default is the default detector's "
        "published file: run counting detector fetch-weights once before the first run.",
    )
    force_deploy: str | None = Field(
        None,
        min_length=1,
        max_length=500,
        description="Why runs deploy even when their count error on the validation images is "
        "worse than the active model's (the champion comparison is skipped, the other gates "
        "still apply, the reason is written into the active-model record). Applies to every "
        "run until unset: give it for one deployment (`-c`) and remove it.",
    )
    instance_type: str | None = Field(
        None,
        validate_default=True,
        description="GPU instance type for training, as SageMaker lists them. Unset: "
        f"`{DEFAULT_TRAINING_INSTANCE['torchvision']}` for torchvision (families "
        f"{', '.join(TRAINING_FAMILIES['torchvision'])}), "
        f"`{DEFAULT_TRAINING_INSTANCE['builtin']}` for the built-in algorithm (families "
        f"{', '.join(TRAINING_FAMILIES['builtin'])}). Instances with NVMe storage (g4dn, g5, "
        "g6, g6e, p4d, p5...) keep the job's data on it, hardware-encrypted, instead of on a "
        "KMS-encrypted volume.",
    )
    volume_size_gb: int = Field(50, ge=1, le=16384, description="Training volume size.")
    max_runtime_hours: int = Field(24, ge=1, le=672, description="Training stops after this.")
    use_spot: bool = Field(
        True, description="Managed spot training (cheaper; resumes from checkpoints)."
    )
    max_wait_hours: int = Field(
        48, ge=1, le=672, description="Spot only: time to wait for capacity plus training."
    )
    validation_fraction: float = Field(
        training.DEFAULT_VALIDATION_FRACTION,
        gt=0,
        lt=1,
        description="Share of labeled images held out for validation.",
    )
    split_seed: int = Field(
        training.DEFAULT_SPLIT_SEED, description="Seed of the train/validation shuffle."
    )
    min_validation_map: float = Field(
        0.5, ge=0, le=1, description="Quality gate: deploy only at or above this validation:mAP."
    )
    evaluation_instance_type: CpuTransformInstanceType = Field(
        "ml.m5.xlarge",
        description="CPU instance type of the Batch Transform job that counts the validation "
        "images with each new model before it is deployed.",
    )
    max_count_wape: float | None = Field(
        0.25,
        ge=0,
        description="Count gate: deploy only when the count error on the validation images "
        "(WAPE: total absolute count error over the total true count, at the calibrated "
        "threshold) is at most this; by default a model that miscounts more than a quarter "
        "of the objects is not deployed. `null` switches the gate off (the error is still "
        "measured and recorded).",
    )
    image_uri: str | None = Field(
        None,
        description="Built-in algorithm only: its training and inference image. Unset: the "
        "region's built-in `object-detection:1`. (torchvision uses SageMaker's PyTorch "
        "training and inference images.)",
    )
    hyperparameters: dict[str, str] = Field(
        default_factory=dict,
        validate_default=True,
        description="Hyperparameters, merged onto the algorithm's defaults: torchvision "
        f"`{json.dumps(TORCHVISION_HYPERPARAMETERS)}` (`num_classes`, `label_attribute` and "
        "`image_prefix` come from the data, `detector` from `training.detector`); built-in "
        f"`{json.dumps(BUILTIN_HYPERPARAMETERS)}` (`num_classes`, `num_training_samples` and "
        "`label_width` come from the data).",
    )

    @property
    def uses_instance_store(self) -> bool:
        """Whether the instance keeps the job's data on local NVMe storage (no volume key)."""
        return instance_family(self.instance_type or "") in INSTANCE_STORE_FAMILIES

    @property
    def image_shape(self) -> int:
        """The model's input side in pixels (the counter scales images to a multiple of it)."""
        return int(self.hyperparameters[IMAGE_SIZE_HYPERPARAMETER[self.algorithm]])

    @property
    def uses_pretrained_weights(self) -> bool:
        return self.pretrained_weights != NO_WEIGHTS

    @field_validator("pretrained_weights")
    @classmethod
    def _weights_of_the_detector(cls, name: str, info: ValidationInfo) -> str:
        detector = info.data.get("detector")
        if name == NO_WEIGHTS or info.data.get("algorithm") != "torchvision" or detector is None:
            return name
        # torchvision names each published file after its model builder, so weights of
        # another detector are caught here, not by a failed GPU run.
        if not _WEIGHTS_FILE.match(name) or not name.startswith(detector):
            raise PydanticCustomError(
                "pretrained_weights",
                "{name} is not a weights file of {detector} (a .pth file under "
                "{prefix} whose name starts with the detector's, as `counting detector "
                "fetch-weights` uploads it) nor none",
                {"name": repr(name), "detector": detector, "prefix": layout.DETECTOR_WEIGHTS},
            )
        return name

    @field_validator("instance_type")
    @classmethod
    def _trains_the_algorithm(cls, instance_type: str | None, info: ValidationInfo) -> str:
        algorithm = info.data.get("algorithm", "torchvision")
        if instance_type is None:
            return DEFAULT_TRAINING_INSTANCE[algorithm]
        allowed = training_instance_types(algorithm)
        if instance_type not in allowed:
            raise PydanticCustomError(
                "training_instance_type",
                "{instance_type} is not a SageMaker training instance type the {algorithm} "
                "algorithm trains on: {allowed}",
                {
                    "instance_type": repr(instance_type),
                    "algorithm": algorithm,
                    "allowed": ", ".join(allowed),
                },
            )
        return instance_type

    @field_validator("image_uri")
    @classmethod
    def _builtin_only(cls, image_uri: str | None, info: ValidationInfo) -> str | None:
        if image_uri is not None and info.data.get("algorithm") == "torchvision":
            raise PydanticCustomError(
                "image_uri",
                "applies to the built-in algorithm only; torchvision trains and serves with "
                "SageMaker's PyTorch images",
            )
        return image_uri

    @field_validator("hyperparameters")
    @classmethod
    def _merged_onto_the_defaults(
        cls, given: dict[str, str], info: ValidationInfo
    ) -> dict[str, str]:
        algorithm = info.data.get("algorithm", "torchvision")
        # A stage or file setting one hyperparameter must not drop the others: the job
        # would silently train with the algorithm's own defaults instead.
        reserved = training.data_hyperparameters_of(algorithm)
        # sagemaker_*: the container's own (script, code location, region), set by the stack.
        if data_driven := sorted(
            name for name in given if name in reserved or name.startswith("sagemaker_")
        ):
            raise PydanticCustomError(
                "data_hyperparameter",
                "{names} come from the data of each run or other settings and cannot be set",
                {"names": ", ".join(data_driven)},
            )
        merged = {**DEFAULT_HYPERPARAMETERS[algorithm], **given}
        # The counter scales images to a multiple of it (the active-model record carries it).
        size = IMAGE_SIZE_HYPERPARAMETER[algorithm]
        if not merged[size].isdigit() or int(merged[size]) < 1:
            raise PydanticCustomError(
                "image_shape",
                "{name} must be a whole number of pixels, got {value}",
                {"name": size, "value": repr(merged[size])},
            )
        return merged

    @field_validator("max_wait_hours")
    @classmethod
    def _spot_waits_at_least_the_runtime(cls, wait: int, info: ValidationInfo) -> int:
        # CreateTrainingJob refuses MaxWaitTimeInSeconds below MaxRuntimeInSeconds.
        # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_StoppingCondition.html
        runtime = info.data.get("max_runtime_hours")
        if info.data.get("use_spot") and runtime is not None and wait < runtime:
            raise PydanticCustomError(
                "spot_wait",
                "{wait} is below max_runtime_hours ({runtime}); spot training waits for "
                "capacity plus the whole runtime",
                {"wait": wait, "runtime": runtime},
            )
        return wait


class InferenceSettings(Settings):
    memory_size_mb: Literal[1024, 2048, 3072, 4096, 5120, 6144] = Field(
        4096, description="Serverless endpoint memory (1024-6144 in 1024 steps)."
    )
    max_concurrency: int = Field(
        6,
        ge=1,
        le=200,
        description="Serverless endpoint concurrent invocations; must equal "
        "`counter.max_concurrency` x `counter.images_in_flight`.",
    )
    provisioned_concurrency: int | None = Field(
        None,
        ge=1,
        le=200,
        description="Warm instances kept ready (billed while idle); at most `max_concurrency`.",
    )

    @field_validator("provisioned_concurrency")
    @classmethod
    def _within_max_concurrency(cls, provisioned: int | None, info: ValidationInfo) -> int | None:
        # Checked here, not by CreateEndpointConfig after a GPU training run has been paid for.
        # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_ProductionVariantServerlessConfig.html
        most = info.data.get("max_concurrency")
        if provisioned is not None and most is not None and provisioned > most:
            raise PydanticCustomError(
                "provisioned_concurrency",
                "{provisioned} exceeds max_concurrency ({most})",
                {"provisioned": provisioned, "most": most},
            )
        return provisioned


class TilingSettings(Settings):
    """How an image is counted: whole, or in tiles at native resolution (docs/counting.md)."""

    mode: tiling.TilingMode = Field(
        "off",
        description="`off`: each image goes to the endpoint whole, scaled to the model; `on`: "
        "in overlapping tiles at native resolution, boxes merged across tile borders (one "
        "endpoint call per tile: 80 for a 12 MP photo); `auto`: in tiles as the active model's "
        "training run measured (tiles only if they counted its validation images with a "
        "lower MAE), or, for a model not measured, when the image's shorter side exceeds "
        "`auto_multiple` x the model's `image_shape`. Applied by the counter (its memory rises "
        "to 2048 MB unless `off`), bulk runs (each tile one transform request) and `counting "
        "invoke --tiling`. Unless `off`, every training run also counts its validation images "
        "in tiles (one more Batch Transform job, one request per tile) to measure it.",
    )
    tile_side: int | None = Field(
        None,
        ge=tiling.MIN_TILE_SIDE,
        le=tiling.MAX_TILE_SIDE,
        description="Tile side in pixels. `null`: the model's `image_shape`, so each tile "
        "reaches the model at native resolution.",
    )
    overlap: float = Field(
        tiling.DEFAULT_OVERLAP,
        gt=0,
        le=tiling.MAX_OVERLAP,
        description="Overlap of neighbouring tiles, a fraction of the tile side: objects no "
        "larger than it are seen whole by some tile.",
    )
    auto_multiple: float = Field(
        tiling.DEFAULT_AUTO_MULTIPLE,
        ge=1,
        description="`auto` tiles images whose shorter side exceeds this many times the "
        "model's `image_shape`, for a model whose training run did not measure tiling.",
    )
    merge: MergeMethod = Field(
        "merge",
        description="How boxes of several tiles become one object: `merge` (pieces of an "
        "object cut by a tile border join it: intersection over the smaller box) or `nms` "
        "(suppression on intersection over union, which keeps such pieces).",
    )
    whole_image_pass: bool = Field(
        True,
        description="Also send the image whole, scaled (one call more), for objects larger "
        "than a tile.",
    )

    @property
    def policy(self) -> tiling.TilingPolicy:
        """The same settings as the tiler takes them."""
        return tiling.TilingPolicy(**self.model_dump())

    @property
    def environment(self) -> dict[str, object]:
        """The same settings as a counting function's environment takes them
        (``counting_core.contracts.tiling_environment``), by field name."""
        return {
            "tiling_mode": self.mode,
            "tile_side": self.tile_side,
            "tile_overlap": self.overlap,
            "tiling_auto_multiple": self.auto_multiple,
            "tile_merge": self.merge,
            "whole_image_pass": self.whole_image_pass,
        }


class CounterSettings(Settings):
    score_threshold: float | None = Field(
        None,
        ge=0,
        le=1,
        description="Count detections scoring at least this. `null`: the threshold calibrated "
        "for the active model by its training run (lowest count error on the validation "
        "images), or 0.2 for a model without one.",
    )
    annotate: bool = Field(True, description="Write `annotated/<key>.png` for each image.")
    mark_tiles: bool = Field(
        False,
        description="Draw the tile borders on the annotated image of a tiled image (to see "
        "where objects were cut and merged).",
    )
    max_concurrency: int = Field(
        2,
        ge=2,
        le=1000,
        description="Counter Lambdas running at once (SQS event source maximum concurrency).",
    )
    images_in_flight: int = Field(
        3,
        ge=1,
        le=10,
        description="Endpoint calls each counter Lambda makes at once: images sent whole, or "
        "the tiles of a tiled image, which share these slots with the other images' calls; "
        "`max_concurrency` x this must equal `inference.max_concurrency`, so the endpoint is "
        "kept busy but not throttled.",
    )
    batch_size: int = Field(
        9,
        ge=1,
        le=10,
        description="Images per counter invocation; a multiple of `images_in_flight` keeps "
        "every slot busy to the end of the batch.",
    )
    payload_scale: float = Field(
        DEFAULT_PAYLOAD_SCALE,
        ge=1,
        le=8,
        description="Images are sent to the endpoint as JPEG with their longest side at most "
        "this many times the model's `image_shape` (the model resizes to `image_shape`).",
    )
    timeout_seconds: int = Field(
        COUNTER_TIMEOUT_SECONDS,
        ge=IMAGE_WORST_CASE_SECONDS,
        le=900,
        description="Counter Lambda timeout; at least one image's worst case "
        f"({IMAGE_WORST_CASE_SECONDS} s: a cold endpoint's 3 minutes, then every attempt of "
        "the call timing out): an image starts, and each endpoint call (each tile of a tiled "
        "image) goes, only with that much time left; the rest of the batch, and a tiled "
        "image cut short, are sent again. The intake queue's visibility timeout is six times "
        "this.",
    )
    tiling: TilingSettings = Field(default_factory=TilingSettings)


_KEY_PREFIX = re.compile(r"^[A-Za-z0-9!_.*'()-][A-Za-z0-9!_.*'()/-]*/$")
KeyPrefix = Annotated[
    str, _check(_KEY_PREFIX, "is not an S3 key prefix ending in / (like archive/)")
]


class BulkSettings(Settings):
    instance_type: TransformInstanceType = Field(
        "ml.m5.xlarge",
        description="Batch Transform instance type of bulk runs (CPU or GPU; Batch Transform "
        "has no managed spot instances).",
    )
    instance_count: int = Field(1, ge=1, le=100, description="Batch Transform instances.")

    @property
    def uses_instance_store(self) -> bool:
        """Whether the instance keeps the job's data on local NVMe storage (no volume key)."""
        return instance_family(self.instance_type) in INSTANCE_STORE_FAMILIES

    # The API's default is 6 MB, below many phone and drone photos; 100 MB is its limit.
    # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateTransformJob.html
    max_payload_mb: int = Field(
        20,
        ge=1,
        le=100,
        description="Largest image a bulk run sends to the model (Batch Transform's "
        "`MaxPayloadInMB`); larger ones are rejected: upload them under `incoming/` instead.",
    )
    batch_size: int = Field(
        500,
        ge=1,
        le=1000,
        description="Images per Distributed Map child execution (`MaxItemsPerBatch`).",
    )
    max_concurrency: int = Field(
        100,
        ge=1,
        le=10000,
        description="Child executions (bulk Lambda invocations) running at once per map.",
    )
    tolerated_failure_percentage: int = Field(
        5,
        ge=0,
        le=100,
        description="Share of failed batches a map tolerates before the run stops.",
    )
    annotate: bool = Field(
        False, description="Write `annotated/<key>.png` for each image of a bulk run."
    )
    source_prefixes: tuple[KeyPrefix, ...] = Field(
        ("archive/",),
        min_length=1,
        description="Prefixes of the data bucket a bulk run may count (its transform reads "
        "only these).",
    )
    timeout_hours: int = Field(
        48,
        ge=1,
        le=8760,
        description="A bulk run stops after this; its transform job after three quarters of "
        "it, leaving the rest to count what the job wrote.",
    )

    @field_validator("source_prefixes")
    @classmethod
    def _not_the_app_outputs(cls, prefixes: tuple[str, ...]) -> tuple[str, ...]:
        # Counting results, annotated images or a run's own files would feed on themselves.
        outputs = (layout.RESULTS, layout.ANNOTATED, layout.BULK)
        if clashing := [prefix for prefix in prefixes if prefix.startswith(outputs)]:
            raise PydanticCustomError(
                "bulk_source",
                "{prefixes} hold the app's own outputs and cannot be counted",
                {"prefixes": ", ".join(clashing)},
            )
        return prefixes


class AlertsSettings(Settings):
    emails: tuple[Email, ...] = Field(
        (),
        description="Who receives alarms and pipeline notifications (each confirms by email).",
    )


class AppConfig(Settings):
    project: Name = Field("object-counting", description="Prefix of every stack and resource name.")
    stage: Name = Field(DEFAULT_STAGE, description="Stage name, chosen with `-c stage=NAME`.")
    account: AccountId | None = Field(
        None,
        description="Account to deploy to. Unset: environment-agnostic templates "
        "(synth needs no credentials).",
    )
    region: Region | None = Field(
        None, description="Region to deploy to. Unset: environment-agnostic templates."
    )
    tags: dict[str, str] = Field(
        default_factory=dict, description="Extra tags on every resource (e.g. `cost-centre`)."
    )
    termination_protection: bool = Field(
        False,
        description="CloudFormation termination protection on the stateful stacks "
        "(storage, counting, workforce); `prod` turns it on.",
    )
    storage: StorageSettings = Field(default_factory=StorageSettings)
    workforce: WorkforceSettings = Field(default_factory=WorkforceSettings)
    labeling: LabelingSettings = Field(default_factory=LabelingSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    inference: InferenceSettings = Field(default_factory=InferenceSettings)
    counter: CounterSettings = Field(default_factory=CounterSettings)
    bulk: BulkSettings = Field(default_factory=BulkSettings)
    alerts: AlertsSettings = Field(default_factory=AlertsSettings)

    @model_validator(mode="after")
    def _names_fit(self) -> AppConfig:
        if len(self.prefix) > MAX_PREFIX_LENGTH:
            raise PydanticCustomError(
                "prefix_length",
                "project and stage: '{prefix}' is {length} characters; at most {most} keep "
                "bucket names ('<project>-<stage>-data-<account>-<region>') within 63",
                {"prefix": self.prefix, "length": len(self.prefix), "most": MAX_PREFIX_LENGTH},
            )
        return self

    @model_validator(mode="after")
    def _counting_fits_the_endpoint(self) -> AppConfig:
        in_flight = self.counter.max_concurrency * self.counter.images_in_flight
        if in_flight != self.inference.max_concurrency:
            raise PydanticCustomError(
                "counting_concurrency",
                "counter.max_concurrency x counter.images_in_flight ({functions} x {each} = "
                "{in_flight}) must equal inference.max_concurrency ({endpoint}): these are "
                "endpoint calls at once, a tiled image's tiles among them; fewer leaves the "
                "endpoint idle, more gets throttled",
                {
                    "functions": self.counter.max_concurrency,
                    "each": self.counter.images_in_flight,
                    "in_flight": in_flight,
                    "endpoint": self.inference.max_concurrency,
                },
            )
        if bool(self.workforce.existing_user_pool_id) != bool(
            self.workforce.existing_app_client_id
        ):
            raise PydanticCustomError(
                "existing_workforce",
                "workforce.existing_user_pool_id and workforce.existing_app_client_id go together",
            )
        return self

    @model_validator(mode="after")
    def _studio_has_its_address(self) -> AppConfig:
        studio = self.labeling.studio
        missing = [name for name in STUDIO_REQUIRED if getattr(studio, name) in (None, ())]
        if studio.enabled and self.region is None:
            missing.insert(0, "region")
        if studio.enabled and missing:
            raise ValueError(
                ", ".join(
                    name if name == "region" else f"labeling.studio.{name}" for name in missing
                )
                + ": required when labeling.studio.enabled is true"
            )
        certificate_region = (studio.certificate_arn or "").split(":")[3:4]
        if studio.enabled and certificate_region != [self.region]:
            raise ValueError(
                f"labeling.studio.certificate_arn: the certificate is in {certificate_region[0]}"
                f", not {self.region}, where the studio's load balancer runs"
            )
        return self

    @property
    def resource_tags(self) -> dict[str, str]:
        """The tags of every resource of the stage: CloudFormation's, and the SageMaker jobs,
        models and endpoints its state machines create (cost allocation sees both)."""
        return dict(sorted({"project": self.project, "stage": self.stage, **self.tags}.items()))

    @property
    def sagemaker_tags(self) -> list[dict[str, str]]:
        """``resource_tags`` as SageMaker's Create* requests take them (``Tags``)."""
        return [{"Key": key, "Value": value} for key, value in self.resource_tags.items()]

    @property
    def prefix(self) -> str:
        """Name prefix shared by every stack and named resource of this stage."""
        return f"{self.project}-{self.stage}"

    @property
    def endpoint_name(self) -> str:
        """The serverless endpoint's stable name: the training pipeline updates it in place."""
        return stage_names.endpoint(self.prefix)

    @property
    def active_model_parameter(self) -> str:
        """SSM parameter holding the active-model record (``counting_core.models.model_record``)."""
        return stage_names.active_model_parameter(self.prefix)

    @property
    def event_source(self) -> str:
        """Source of every result event on the default bus (``counts.announcements``)."""
        return announcements.event_source(self.prefix)


def describe_errors(error: ValidationError) -> str:
    """One line per problem: ``field.path[i]: what is wrong``."""
    return "\n".join(describe_validation_error(error, unknown="unknown setting"))


def _deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _parse_value(text: Any) -> Any:
    """`-c` values arrive as text: accept JSON (numbers, lists, booleans), else keep text."""
    if not isinstance(text, str):
        return text
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _dotted_overrides(context: Mapping[str, Any]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for key in sorted(context):
        if not key.startswith(f"{CONTEXT_KEY}."):
            continue
        *parents, leaf = key.split(".")[1:]
        target = overrides
        for part in parents:
            target = target.setdefault(part, {})
        target[leaf] = _parse_value(context[key])
    return overrides


def _read_file(path: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigError(f"{FILE_CONTEXT_KEY}: cannot read {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise ConfigError(f"{FILE_CONTEXT_KEY}: {path} is not valid JSON: {error}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{FILE_CONTEXT_KEY}: {path} must hold a JSON object")
    return data


def _check_no_stage_extends_another(
    project_settings: Mapping[str, Any], stages: Mapping[str, Any], stage: str
) -> None:
    """Refuse a stage whose name prefix is another stage's followed by a hyphen.

    Names, and the permissions scoped to them (``<prefix>-*``: training jobs, models,
    state machine runs), would then include the other stage's: ``dev``'s reach
    ``dev-eu``'s resources in a shared account.
    """
    default_project = AppConfig.model_fields["project"].default

    def prefix(name: str) -> str:
        settings = stages.get(name)
        settings = settings if isinstance(settings, dict) else {}
        return f"{settings.get('project', project_settings.get('project', default_project))}-{name}"

    for other in sorted(set(stages) - {stage}):
        inner, outer = sorted((prefix(stage), prefix(other)), key=len)
        if outer.startswith(f"{inner}-"):
            raise ConfigError(
                f"stages: {outer!r} starts with {inner!r} and a hyphen, so names and "
                f"permissions scoped to {inner}-* would include its resources; rename a stage"
            )


def load_config(context: Mapping[str, Any]) -> AppConfig:
    """Build the configuration from CDK context (``cdk.json`` plus ``-c`` values)."""
    project_settings = dict(context.get(CONTEXT_KEY) or {})
    stages = project_settings.pop("stages", {})
    stage = str(context.get(STAGE_CONTEXT_KEY) or DEFAULT_STAGE)
    if stages and stage not in stages:
        known = ", ".join(sorted(stages))
        raise ConfigError(f"stage: {stage!r} is not one of the stages in cdk.json ({known})")

    _check_no_stage_extends_another(project_settings, stages, stage)

    merged = _deep_merge(project_settings, stages.get(stage, {}))
    if file_path := context.get(FILE_CONTEXT_KEY):
        merged = _deep_merge(merged, _read_file(str(file_path)))
    merged = _deep_merge(merged, _dotted_overrides(context))
    merged["stage"] = stage
    try:
        return AppConfig.model_validate(merged)
    except ValidationError as error:
        raise ConfigError(describe_errors(error)) from None


def settings_table(model: type[BaseModel] = AppConfig, path: str = "") -> list[str]:
    """Markdown rows documenting every setting (``configuration_page`` lists them)."""
    rows = []
    for name, field in model.model_fields.items():
        dotted = f"{path}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, Settings):
            rows.extend(settings_table(annotation, f"{dotted}."))
            continue
        default = field.get_default(call_default_factory=True)
        rows.append(f"| `{dotted}` | `{json.dumps(default)}` | {field.description or ''} |")
    return rows


CONFIGURATION_PAGE_HEADER = """\
# Configuration

<!-- Generated by `make docs` (`python -m stacks.config`) from stacks/config.py: edit the
field descriptions there, not this page. A test checks that it is current. -->

Every setting, its default and its meaning. Settings are read from `cdk.json` (per
project and per stage), a JSON file and `-c` values, in that order: see
[deploying.md](deploying.md#configuration). On the command line each is prefixed with
`counting.`, e.g. `-c counting.counter.annotate=false`; the stage is chosen with
`-c stage=NAME`.

| Setting | Default | Meaning |
| --- | --- | --- |
"""


def configuration_page() -> str:
    """docs/configuration.md: every setting with its default and description."""
    return CONFIGURATION_PAGE_HEADER + "\n".join(settings_table()) + "\n"


if __name__ == "__main__":
    # `python -m stacks.config` prints docs/configuration.md (`make docs` writes it).
    print(configuration_page(), end="")
