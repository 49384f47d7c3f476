"""Ground Truth bounding-box labeling jobs: requests, job inputs and the completion event.

Pure: the labeling-launcher Lambda and the ``counting labeling`` CLI validate the same
``LabelingRequest``; the Lambda then writes what these functions build and calls
``CreateLabelingJob`` with ``build_create_labeling_job_request``.

A request is a JSON file uploaded under ``labeling/requests/``. A request that cannot
be used is answered with ``<request without .json>.rejected.json`` beside it and starts
nothing. When a job completes, the launcher puts a ``completion_event`` on the default
event bus; that event is the contract with the training pipeline:

* ``source``: ``completion_event_source(prefix)``, e.g. ``object-counting-dev.labeling``
* ``detail-type``: ``COMPLETION_DETAIL_TYPE``
* ``detail``: ``{"labelingJobName", "manifestUri", "labelAttribute"}``, where
  ``manifestUri`` is the job's output (augmented) manifest and ``labelAttribute`` the
  key of the boxes in each of its lines.

Like every EventBridge event it may arrive more than once: consumers key on
``labelingJobName`` (a job name is never reused).
"""

from __future__ import annotations

import html
import json
import re
import string
import unicodedata
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
)

from counting_core import json_input, layout
from counting_core.datasets.manifest import SOURCE_REF, check_label_attribute_name, to_json_line
from counting_core.errors import InputError, describe_validation_error
from counting_core.models.training import TrainingRequest

# The accounts that own Ground Truth's bounding-box pre-annotation (PRE-) and annotation
# consolidation (ACS-) Lambda functions, one per Region. From the API reference of
# HumanTaskConfig (PreHumanTaskLambdaArn, AnnotationConsolidationLambdaArn), checked
# against the botocore 1.44 service model's copy of that page:
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_HumanTaskConfig.html
BOUNDING_BOX_FUNCTION_ACCOUNTS: Mapping[str, str] = {
    "us-east-1": "432418664414",
    "us-east-2": "266458841044",
    "us-west-2": "081040173940",
    "ca-central-1": "918755190332",
    "eu-west-1": "568282634449",
    "eu-west-2": "487402164563",
    "eu-central-1": "203001061592",
    "ap-northeast-1": "477331159723",
    "ap-northeast-2": "845288260483",
    "ap-south-1": "565803892007",
    "ap-southeast-1": "377565633583",
    "ap-southeast-2": "454466003867",
}

# Label category file format (LabelCategoryConfigS3Uri); bounding-box jobs take at most 10
# labels, each unique.
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateLabelingJob.html
LABEL_CATEGORY_DOCUMENT_VERSION = "2018-11-28"
MAX_LABELS = 10
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")

# CreateLabelingJob limits (API reference: CreateLabelingJob, HumanTaskConfig).
JOB_NAME_MAX_LENGTH = 63
_JOB_NAME_PREFIX = re.compile(r"[a-z0-9][a-z0-9-]*")
_LABEL_ATTRIBUTE = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")
LABEL_ATTRIBUTE_MAX_LENGTH = 127
TASK_DESCRIPTION_MAX_LENGTH = 255
TASK_KEYWORDS = ("Images", "bounding boxes", "object detection")
# Fewer random hex digits than this after the prefix would make name clashes likely.
_MIN_JOB_NAME_HEX = 12
# uuid5 namespace: the same request version always gives the same job name.
_JOB_NAME_NAMESPACE = uuid.UUID("6f1c3c1e-7a57-4d8e-9c41-0b7f5f3c2a10")

# What Ground Truth publishes when a labeling job changes state.
# https://docs.aws.amazon.com/sagemaker/latest/dg/sms-monitor-cloud-watch.html
GROUND_TRUTH_EVENT_SOURCE = "aws.sagemaker"
GROUND_TRUTH_STATE_CHANGE = "SageMaker Ground Truth Labeling Job State Change"
COMPLETED = "Completed"

#: detail-type of the event put on the default bus when a labeling job completes.
COMPLETION_DETAIL_TYPE = "Labeling Job Completed"

REQUEST_SUFFIX = ".json"
# A request is a few hundred bytes; instructions make it a few kilobytes at most.
MAX_REQUEST_BYTES = 64 * 1024
REJECTION_SUFFIX = ".rejected.json"

DEFAULT_FULL_INSTRUCTIONS = (
    "Draw one tight box around every object of the listed kinds, including objects that "
    "are partly hidden or cut off by the edge of the image. Do not draw boxes around "
    "anything else. If the image shows none of them, submit without drawing."
)

# CreateLabelingJob's rules for every text the launcher sends, copied from its API reference
# (botocore's model of it; tests/contracts/test_labeling_request.py keeps the copy equal):
# the pattern, matched against the whole value, and the least and most characters. AWS
# writes patterns as Java regular expressions, whose "." matches no line terminator.
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_CreateLabelingJob.html
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_HumanTaskConfig.html
_JAVA_DOT = r"[^\n\r\u0085\u2028\u2029]"
_ONE_LINE = re.compile(f"{_JAVA_DOT}+")


@dataclass(frozen=True)
class TextRule:
    """A request text's pattern (Python syntax, whole value) and length bounds."""

    pattern: str
    least: int
    most: int

    def problem(self, value: str) -> str | None:
        """Why ``value`` breaks the rule, or None."""
        # Java counts UTF-16 code units: an emoji is two (the stricter reading).
        length = len(value.encode("utf-16-le", "surrogatepass")) // 2
        if not self.least <= length <= self.most:
            return f"must be {self.least} to {self.most} characters, not {length}"
        if self.pattern == _TAG_TEXT:
            if not all(_tag_character(character) for character in value):
                return "may hold only letters, numbers, spaces and _.:/=+-@"
        elif not re.fullmatch(self.pattern, value):
            return f"does not match the pattern {self.pattern}"
        return None


# Tag keys and values: [\p{L}\p{Z}\p{N}_.:/=+\-@]*, Unicode classes Python's re lacks.
_TAG_TEXT = "tag text"


def _tag_character(character: str) -> bool:
    return unicodedata.category(character)[0] in "LZN" or character in "_.:/=+-@"


_S3_URI = TextRule(f"(https|s3)://([^/]+)/?({_JAVA_DOT}*)", 0, 1024)
_LAMBDA = TextRule(
    rf"arn:aws[a-z\-]*:lambda:[a-z0-9\-]*:[0-9]{{12}}:function:{_JAVA_DOT}*", 0, 2048
)
CREATE_LABELING_JOB_RULES: Mapping[str, TextRule] = {
    "LabelingJobName": TextRule("[a-zA-Z0-9](-*[a-zA-Z0-9]){0,62}", 1, 63),
    "LabelAttributeName": TextRule("[a-zA-Z0-9](-*[a-zA-Z0-9]){0,126}", 1, 127),
    "InputConfig.DataSource.S3DataSource.ManifestS3Uri": _S3_URI,
    "OutputConfig.S3OutputPath": _S3_URI,
    "OutputConfig.KmsKeyId": TextRule("[a-zA-Z0-9:/_-]*", 0, 2048),
    "RoleArn": TextRule(r"arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+", 20, 2048),
    "LabelCategoryConfigS3Uri": _S3_URI,
    "HumanTaskConfig.WorkteamArn": TextRule(
        rf"arn:aws[a-z\-]*:sagemaker:[a-z0-9\-]*:[0-9]{{12}}:workteam/{_JAVA_DOT}*", 0, 256
    ),
    "HumanTaskConfig.UiConfig.UiTemplateS3Uri": _S3_URI,
    "HumanTaskConfig.PreHumanTaskLambdaArn": _LAMBDA,
    "HumanTaskConfig.TaskKeywords[]": TextRule("[A-Za-z0-9]+( [A-Za-z0-9]+)*", 1, 30),
    "HumanTaskConfig.TaskTitle": TextRule(r"[\t\n\r -\ud7ff\ue000-\ufffd]*", 1, 128),
    "HumanTaskConfig.TaskDescription": TextRule(f"{_JAVA_DOT}+", 1, 255),
    "HumanTaskConfig.AnnotationConsolidationConfig.AnnotationConsolidationLambdaArn": _LAMBDA,
    "Tags[].Key": TextRule(_TAG_TEXT, 1, 128),
    "Tags[].Value": TextRule(_TAG_TEXT, 0, 256),
}
# Whole numbers the launcher sends, and their bounds (HumanTaskConfig).
CREATE_LABELING_JOB_NUMBERS: Mapping[str, tuple[int, int | None]] = {
    "HumanTaskConfig.NumberOfHumanWorkersPerDataObject": (1, 9),
    "HumanTaskConfig.TaskTimeLimitInSeconds": (30, None),
    "HumanTaskConfig.TaskAvailabilityLifetimeInSeconds": (60, None),
}


def _leaves(value: Any, path: str = "") -> Iterable[tuple[str, Any]]:
    """(path, value) of every text and number in a request; list items as ``name[]``."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            yield from _leaves(item, f"{path}.{key}" if path else key)
    elif isinstance(value, list):
        for item in value:
            yield from _leaves(item, f"{path}[]")
    else:
        yield path, value


def check_create_labeling_job_request(request: Mapping[str, Any]) -> None:
    """Raise InputError naming the first value CreateLabelingJob would refuse, if any."""
    for path, value in _leaves(request):
        if path in CREATE_LABELING_JOB_NUMBERS:
            least, most = CREATE_LABELING_JOB_NUMBERS[path]
            if value < least or (most is not None and value > most):
                raise InputError(f"{path}: {value} is out of range for CreateLabelingJob")
            continue
        if path not in CREATE_LABELING_JOB_RULES:
            raise InputError(f"{path}: CreateLabelingJob has no rule for it here")
        problem = CREATE_LABELING_JOB_RULES[path].problem(value)
        if problem:
            raise InputError(f"{path}: {value!r} {problem} (CreateLabelingJob)")


# Letters, digits, "_" and "-": safe in S3 keys, job tags and file names.
BatchName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_-]{0,63}$")]


def _check_label_attribute(name: str) -> str:
    if len(name) > LABEL_ATTRIBUTE_MAX_LENGTH:
        raise ValueError(f"must be at most {LABEL_ATTRIBUTE_MAX_LENGTH} characters")
    if not _LABEL_ATTRIBUTE.fullmatch(name):
        raise ValueError(
            f"{name!r} must be letters, digits and hyphens, starting and ending with a "
            "letter or digit"
        )
    try:
        return check_label_attribute_name(name)
    except InputError as error:
        raise ValueError(str(error)) from None


LabelAttribute = Annotated[str, AfterValidator(_check_label_attribute)]


@dataclass(frozen=True)
class TaskDefaults:
    """What a request leaves out; the stack sets these from ``labeling`` settings."""

    workers_per_object: int
    task_time_limit_seconds: int
    task_availability_seconds: int


class Instructions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    # Also the job's TaskDescription, which the worker portal lists: at most 255 characters
    # on one line (its pattern ".+" matches no line break).
    short: str = Field(min_length=1, max_length=TASK_DESCRIPTION_MAX_LENGTH)

    @field_validator("short")
    @classmethod
    def _one_line(cls, short: str) -> str:
        if not _ONE_LINE.fullmatch(short):
            raise ValueError("must be one line (it is the labeling job's TaskDescription)")
        return short

    full: str | None = Field(None, min_length=1)


class LabelingRequest(BaseModel):
    """One batch of images to label with boxes; ``parse_request`` builds it.

    ``image_prefix`` is stored as a key prefix in the data bucket, under
    ``labeling/images/`` and ending in "/". The three task settings are ``None`` when
    the request leaves them to the deployment's defaults.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    batch_name: BatchName
    image_prefix: str
    labels: list[str] = Field(min_length=1, max_length=MAX_LABELS)
    label_attribute: LabelAttribute
    instructions: Instructions
    # HumanTaskConfig limits for image jobs and a private workforce (8 hours per task,
    # 30 days of availability): API reference page of HumanTaskConfig, linked above.
    workers_per_object: int | None = Field(None, ge=1, le=9)
    task_time_limit_seconds: int | None = Field(None, ge=30, le=28_800)
    task_availability_seconds: int | None = Field(None, ge=60, le=2_592_000)

    @field_validator("image_prefix")
    @classmethod
    def _key_prefix_in_the_data_bucket(cls, value: str, info: ValidationInfo) -> str:
        bucket = (info.context or {})["bucket"]
        key = value
        if value.startswith("s3://"):
            named_bucket, _, key = value.removeprefix("s3://").partition("/")
            if named_bucket != bucket:
                raise ValueError(f"{value!r} is not in the data bucket {bucket}")
        if not key.startswith(layout.LABELING_IMAGES) or key == layout.LABELING_IMAGES:
            raise ValueError(
                f"{value!r} must be a folder under {layout.LABELING_IMAGES} "
                f"(like {layout.LABELING_IMAGES}my-batch/)"
            )
        return key if key.endswith("/") else key + "/"

    @field_validator("labels")
    @classmethod
    def _distinct_names(cls, labels: list[str]) -> list[str]:
        names = [label.strip() for label in labels]
        if not all(names):
            raise ValueError("a label is empty")
        repeated = sorted({name for name in names if names.count(name) > 1})
        if repeated:
            raise ValueError(f"labels repeat: {', '.join(repeated)}")
        return names

    def task_settings(self, defaults: TaskDefaults) -> TaskDefaults:
        """The request's own task settings, each falling back on the deployment's."""
        return TaskDefaults(
            workers_per_object=self.workers_per_object or defaults.workers_per_object,
            task_time_limit_seconds=self.task_time_limit_seconds
            or defaults.task_time_limit_seconds,
            task_availability_seconds=self.task_availability_seconds
            or defaults.task_availability_seconds,
        )


def parse_request(data: object, *, bucket: str) -> LabelingRequest:
    """The request in ``data`` (parsed JSON) for the data bucket ``bucket``, or InputError."""
    if (where := json_input.lone_surrogate(data)) is not None:
        raise InputError(f"request: {where}: holds a lone surrogate (\\ud800-\\udfff), not text")
    try:
        return LabelingRequest.model_validate(data, context={"bucket": bucket})
    except ValidationError as error:
        raise InputError("; ".join(describe_validation_error(error, whole="request"))) from None


def parse_request_json(text: bytes, *, bucket: str) -> LabelingRequest:
    """``parse_request`` for the bytes of a request file, bounded before parsing."""
    if len(text) > MAX_REQUEST_BYTES:
        raise InputError(
            f"the request is {len(text):,} bytes; a request has at most {MAX_REQUEST_BYTES:,}"
        )
    try:
        data = json_input.loads(text, within="request")
    except json_input.JsonInputError as error:
        message = str(error)
        if not message.startswith("the request"):
            message = f"the request {'is' if message.startswith('not ') else 'has'} {message}"
        raise InputError(message) from None
    if isinstance(data, list):
        raise InputError(
            f"the request is a JSON array of {len(data)} item(s); a request is one JSON object"
        )
    return parse_request(data, bucket=bucket)


def is_image_key(key: str) -> bool:
    """Whether ``key`` names a JPEG or PNG image by its extension, in any letter case."""
    return key.lower().endswith(IMAGE_SUFFIXES)


def build_input_manifest(bucket: str, keys: Iterable[str]) -> str:
    """JSON Lines with one ``{"source-ref": "s3://bucket/key"}`` per key; refuses none."""
    lines = [to_json_line({SOURCE_REF: f"s3://{bucket}/{key}"}) for key in keys]
    if not lines:
        raise InputError("no JPEG or PNG images (.jpg, .jpeg, .png) to label")
    return "".join(f"{line}\n" for line in lines)


def label_category_config(labels: Iterable[str]) -> dict[str, Any]:
    """The label category file: the labels in order (their index becomes the class id)."""
    return {
        "document-version": LABEL_CATEGORY_DOCUMENT_VERSION,
        "labels": [{"label": label} for label in labels],
    }


def unique_job_name(prefix: str, request_version: str | None = None) -> str:
    """A lowercase labeling job name that starts with ``prefix`` (at most 63 characters).

    Job names can never be reused. Given ``request_version`` (a request object's bucket,
    key and version), the name is derived from it, so that a duplicate delivery of the
    same upload asks for the same job and SageMaker refuses the second one; without it,
    the name is random (uuid4).
    """
    prefix = prefix.lower()
    if not _JOB_NAME_PREFIX.fullmatch(prefix):
        raise ValueError(f"job name prefix {prefix!r} must be letters, digits and hyphens")
    room = JOB_NAME_MAX_LENGTH - len(prefix) - 1
    if room < _MIN_JOB_NAME_HEX:
        raise ValueError(f"job name prefix {prefix!r} leaves too little room to be unique")
    unique = uuid.uuid5(_JOB_NAME_NAMESPACE, request_version) if request_version else uuid.uuid4()
    return f"{prefix}-{unique.hex[:room]}"


def job_name_from_arn(labeling_job_arn: str) -> str:
    """``arn:aws:sagemaker:<region>:<account>:labeling-job/<name>`` -> ``<name>``."""
    resource = labeling_job_arn.rsplit(":", 1)[-1]
    kind, _, name = resource.partition("/")
    if kind != "labeling-job" or not name:
        raise InputError(f"{labeling_job_arn!r} is not a labeling job ARN")
    return name


def bounding_box_lambda_arns(region: str) -> tuple[str, str]:
    """(PRE-BoundingBox, ACS-BoundingBox) function ARNs of Ground Truth in ``region``."""
    account = BOUNDING_BOX_FUNCTION_ACCOUNTS.get(region)
    if account is None:
        raise InputError(f"Ground Truth bounding-box jobs are not available in region {region}")
    prefix = f"arn:aws:lambda:{region}:{account}:function"
    return f"{prefix}:PRE-BoundingBox", f"{prefix}:ACS-BoundingBox"


@dataclass(frozen=True)
class JobInputs:
    """Where one job's input manifest, label categories and worker template are written."""

    manifest_key: str
    categories_key: str
    template_key: str

    @classmethod
    def for_job(cls, job_name: str) -> JobInputs:
        folder = f"{layout.LABELING_INPUT}{job_name}/"
        return cls(
            manifest_key=f"{folder}input.manifest",
            categories_key=f"{folder}categories.json",
            template_key=f"{folder}worker-template.liquid.html",
        )


def output_path(bucket: str, request: LabelingRequest) -> str:
    """S3OutputPath: Ground Truth writes each job into ``<this>/<job name>/``."""
    return f"s3://{bucket}/{layout.LABELING_OUTPUT}{request.batch_name}/"


def render_worker_template(template: str, request: LabelingRequest) -> str:
    """The worker template with the request's instructions filled in, safely escaped.

    ``template`` is Liquid HTML with ``$header``, ``$short_instructions`` and
    ``$full_instructions`` placeholders; the labels themselves come from the label
    category file at run time (``task.input.labels``).
    """
    instructions = request.instructions
    labels = ", ".join(request.labels)
    return string.Template(template).substitute(
        header=_html_text(instructions.short),
        short_instructions=f"{_html_text(instructions.short)}<br>Labels: {_html_text(labels)}",
        full_instructions=_html_text(instructions.full or DEFAULT_FULL_INSTRUCTIONS),
    )


def _html_text(text: str) -> str:
    """``text`` as HTML that neither HTML nor Liquid interprets ("{" starts Liquid tags)."""
    escaped = html.escape(text, quote=True).replace("{", "&#123;").replace("}", "&#125;")
    return escaped.replace("\n", "<br>")


def build_create_labeling_job_request(
    *,
    request: LabelingRequest,
    job_name: str,
    bucket: str,
    role_arn: str,
    workteam_arn: str,
    kms_key_arn: str,
    region: str,
    defaults: TaskDefaults,
) -> dict[str, Any]:
    """Keyword arguments of ``sagemaker.create_labeling_job`` for one bounding-box job."""
    pre_annotation, consolidation = bounding_box_lambda_arns(region)
    inputs = JobInputs.for_job(job_name)
    task = request.task_settings(defaults)
    return {
        "LabelingJobName": job_name,
        "LabelAttributeName": request.label_attribute,
        "InputConfig": {
            "DataSource": {
                "S3DataSource": {"ManifestS3Uri": f"s3://{bucket}/{inputs.manifest_key}"}
            }
        },
        "OutputConfig": {"S3OutputPath": output_path(bucket, request), "KmsKeyId": kms_key_arn},
        "RoleArn": role_arn,
        "LabelCategoryConfigS3Uri": f"s3://{bucket}/{inputs.categories_key}",
        "HumanTaskConfig": {
            "WorkteamArn": workteam_arn,
            "UiConfig": {"UiTemplateS3Uri": f"s3://{bucket}/{inputs.template_key}"},
            "PreHumanTaskLambdaArn": pre_annotation,
            "TaskKeywords": list(TASK_KEYWORDS),
            "TaskTitle": f"Draw boxes around objects ({request.batch_name})",
            "TaskDescription": request.instructions.short,
            "NumberOfHumanWorkersPerDataObject": task.workers_per_object,
            "TaskTimeLimitInSeconds": task.task_time_limit_seconds,
            "TaskAvailabilityLifetimeInSeconds": task.task_availability_seconds,
            "AnnotationConsolidationConfig": {"AnnotationConsolidationLambdaArn": consolidation},
        },
        "Tags": [{"Key": "batch", "Value": request.batch_name}],
    }


def is_request_key(key: str) -> bool:
    """Whether an uploaded ``key`` is a labeling request (not a rejection written back)."""
    return (
        key.startswith(layout.LABELING_REQUESTS)
        and key.endswith(REQUEST_SUFFIX)
        and not key.endswith(REJECTION_SUFFIX)
    )


def rejection_key(request_key: str) -> str:
    """``labeling/requests/a.json`` -> ``labeling/requests/a.rejected.json``."""
    return request_key.removesuffix(REQUEST_SUFFIX) + REJECTION_SUFFIX


class Rejection(BaseModel):
    """``labeling/requests/<name>.rejected.json``: a request that started nothing, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    request: str = Field(description="The request's S3 key")
    reason: str = Field(description="One line")
    time: str = Field(description="ISO 8601 time of the rejection")


def rejection_document(request_key: str, reason: str, time: datetime) -> Rejection:
    """What is written beside a request that started nothing, and why (one line)."""
    return Rejection(request=request_key, reason=" ".join(reason.split()), time=time.isoformat())


def completion_event_source(prefix: str) -> str:
    """The ``source`` of this deployment's completion events (one per project and stage)."""
    return f"{prefix}.labeling"


def completion_event(
    *, source: str, job_name: str, manifest_uri: str, label_attribute: str
) -> dict[str, str]:
    """The ``PutEvents`` entry announcing a completed job's output manifest."""
    detail = TrainingRequest(
        manifest_uri=manifest_uri, label_attribute=label_attribute, labeling_job_name=job_name
    ).payload()
    return {"Source": source, "DetailType": COMPLETION_DETAIL_TYPE, "Detail": json.dumps(detail)}
