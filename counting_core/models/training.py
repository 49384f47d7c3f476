"""One training run: where its data may come from, what it is called, what it hands on.

The training state machine's Prepare step (``lambdas/prepare_training_data``) checks a
labeled manifest with ``counting_core.datasets.manifest`` and then, with this module, names
the run, refuses data the training job could not read, and returns a ``PreparedRun``: the
figures and names every later state of the run uses. Pure: no AWS calls.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from counting_core import layout
from counting_core.datasets.manifest import SOURCE_REF, SplitResult, transform_manifest_chunks
from counting_core.errors import InputError

#: Where a manifest to train on may be: uploaded for training, or written by Ground Truth.
MANIFEST_SOURCES = (layout.TRAINING_REQUESTS, layout.LABELING_OUTPUT)
#: The only images the training job may read (its role is limited to this prefix):
#: ``counting_core.datasets.manifest.split``'s ``image_source`` in the data bucket.
IMAGE_SOURCE = layout.LABELING_IMAGES

#: How Prepare splits a manifest unless a stage says otherwise (training.validation_fraction,
#: training.split_seed); `counting manifest split` and `detector train-local` split alike.
DEFAULT_VALIDATION_FRACTION = 0.2
DEFAULT_SPLIT_SEED = 42

TRAIN_FILE = "train.manifest"
VALIDATION_FILE = "validation.manifest"
#: The validation images as Batch Transform reads them (``transform_manifest``).
VALIDATION_IMAGES_FILE = "validation-images.manifest"
#: Every image of the run (train and validation), in the same format: the torchvision training
#: job's ``images`` channel (a ManifestFile in File mode puts each image at its key below
#: the manifest's prefix, as detector/train.py looks them up).
IMAGES_FILE = "images.manifest"
REPORT_FILE = "data-report.json"
#: Under ``model_folder(run)``: the Batch Transform answers (the run's model's, and the active
#: model's on the same images), the count evaluation and its plot.
PREDICTIONS_FOLDER = "predictions/"
CHAMPION_PREDICTIONS_FOLDER = "champion-predictions/"
#: The active model's Batch Transform job of a run is named ``<run><CHAMPION_JOB_SUFFIX>``.
CHAMPION_JOB_SUFFIX = "-champion"
#: With counter.tiling on or auto, the validation images cut into tiles (their JPEGs under
#: ``TILE_IMAGES``, how each image was cut under ``TILE_SETS`` as JSON lines, one part per
#: invocation of the cutting function, and the Batch Transform manifest of the tiles,
#: ``TILES_MANIFEST_FILE``), and the run's model's answers for them.
TILES_FOLDER = "tiles/"
TILE_IMAGES = f"{TILES_FOLDER}images/"
TILE_SETS = f"{TILES_FOLDER}tile-sets/"
TILES_MANIFEST_FILE = f"{TILES_FOLDER}tiles.manifest"
TILE_PREDICTIONS_FOLDER = "tile-predictions/"
#: The Batch Transform job over a run's tiles is named ``<run><TILES_JOB_SUFFIX>`` (shorter
#: than ``CHAMPION_JOB_SUFFIX``, which sets how long a prefix may be).
TILES_JOB_SUFFIX = "-tiles"
EVALUATION_FILE = "evaluation.json"
EVALUATION_PLOT_FILE = "evaluation.png"

#: Object Detection hyperparameters that come from the data, not from the configuration.
#: https://docs.aws.amazon.com/sagemaker/latest/dg/object-detection-api-config.html
DATA_HYPERPARAMETERS = ("num_classes", "num_training_samples", "label_width")
#: torchvision's (detector/train.py) that the data or other settings decide: the class count
#: and label attribute from Prepare, where the images lie, the detector from its setting.
TORCHVISION_DATA_HYPERPARAMETERS = ("num_classes", "label_attribute", "image_prefix", "detector")

# SageMaker training job, model and endpoint config names: at most 63 characters of
# letters, digits and hyphens (API reference: CreateTrainingJob, TrainingJobName).
MAX_SAGEMAKER_NAME = 63
_RUN_TIME_FORMAT = "%Y%m%d-%H%M%S"
_RUN_DIGEST_LENGTH = 6
#: "-20261126-173000-a1b2c3": what ``run_name`` adds to the prefix.
RUN_SUFFIX_LENGTH = 1 + len("20261126-173000") + 1 + _RUN_DIGEST_LENGTH
#: The longest name prefix whose run names, and the champion's transform job named after the
#: run, still fit SageMaker's limit.
MAX_PREFIX_LENGTH = MAX_SAGEMAKER_NAME - RUN_SUFFIX_LENGTH - len(CHAMPION_JOB_SUFFIX)


class DataNotTrainable(InputError):
    """The manifest cannot train a model; the message says why.

    The Prepare Lambda raises it under this name, which is the error the state machine
    reports, so a run with bad data stops before a GPU instance is started.
    """


class TrainingRequest(BaseModel):
    """What starts a run: the state machine's input, from an upload, a labeling job or the CLI.

    JSON names are camelCase (``manifestUri``); build it with Python names and send
    ``payload()``, so every starter writes the same fields the Prepare step reads.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    # In the order they are written, as the labeling launcher has always announced them.
    labeling_job_name: str | None = None
    manifest_uri: str = Field(min_length=1)
    label_attribute: str | None = None

    def payload(self) -> dict[str, str]:
        """The execution input (or event detail): camelCase, unset fields left out."""
        return self.model_dump(by_alias=True, exclude_none=True)


class PreparedRun(BaseModel):
    """What Prepare returns to the state machine (JSON keys in camelCase).

    ``hyperparameters`` holds ``DATA_HYPERPARAMETERS`` as text, as SageMaker requires;
    the state machine adds the configured ones.
    """

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    run_name: str
    label_attribute: str
    attribute_names: tuple[str, str]
    class_map: dict[str, str]
    train_manifest_uri: str
    validation_manifest_uri: str
    validation_images_uri: str
    images_uri: str
    data_report_uri: str
    hyperparameters: dict[str, str]
    figures: dict[str, int]


def run_name(prefix: str, execution_id: str, started_at: datetime) -> str:
    """``<prefix>-<start time>-<6 hex digits of the execution id>``: unique, lower-case
    (SageMaker writes names lower-case in ARNs, which IAM policies match).

    The same execution always gets the same name, so a retried Prepare writes the same
    files and the training job it names can never be started twice.
    """
    digest = hashlib.sha256(execution_id.encode()).hexdigest()[:_RUN_DIGEST_LENGTH]
    return f"{prefix}-{started_at.strftime(_RUN_TIME_FORMAT)}-{digest}"


def run_folder(name: str) -> str:
    """Key prefix of one run's manifests and data report."""
    return f"{layout.TRAINING_MANIFESTS}{name}/"


def model_folder(name: str) -> str:
    """Key prefix of one run's training job output (SageMaker names it after the job, which is
    named after the run) and of its count evaluation."""
    return f"{layout.MODEL_ARTIFACTS}{name}/"


def manifest_key(uri: str, bucket: str) -> str:
    """The key of a manifest to train on, if it is one Prepare may read; else ``InputError``."""
    allowed = " or ".join(f"s3://{bucket}/{prefix}" for prefix in MANIFEST_SOURCES)
    key = uri.removeprefix(f"s3://{bucket}/")
    if key == uri or not key.startswith(MANIFEST_SOURCES) or key.endswith("/"):
        raise DataNotTrainable(f"manifest {uri!r} is not an object under {allowed}")
    return key


def data_hyperparameters_of(algorithm: str) -> tuple[str, ...]:
    """The hyperparameters of ``algorithm`` (``builtin`` or ``torchvision``) no setting may give."""
    return TORCHVISION_DATA_HYPERPARAMETERS if algorithm == "torchvision" else DATA_HYPERPARAMETERS


def image_prefix_uri(bucket: str) -> str:
    """Where every image a run trains or is evaluated on lies."""
    return f"s3://{bucket}/{IMAGE_SOURCE}"


def data_hyperparameters(split: SplitResult) -> dict[str, str]:
    """The hyperparameters the data decides, as SageMaker takes them (text)."""
    values = {
        "num_classes": split.num_classes,
        "num_training_samples": split.num_training_samples,
        "label_width": split.label_width,
    }
    return {name: str(values[name]) for name in DATA_HYPERPARAMETERS}


def prepared_run(
    *, name: str, bucket: str, split: SplitResult, figures: dict[str, int]
) -> PreparedRun:
    """The names, locations and figures of a run whose data was written to ``run_folder``."""
    folder = f"s3://{bucket}/{run_folder(name)}"
    return PreparedRun(
        run_name=name,
        label_attribute=split.label_attribute,
        attribute_names=(SOURCE_REF, split.label_attribute),
        class_map=split.class_map,
        train_manifest_uri=f"{folder}{TRAIN_FILE}",
        validation_manifest_uri=f"{folder}{VALIDATION_FILE}",
        validation_images_uri=f"{folder}{VALIDATION_IMAGES_FILE}",
        images_uri=f"{folder}{IMAGES_FILE}",
        data_report_uri=f"{folder}{REPORT_FILE}",
        hyperparameters=data_hyperparameters(split),
        figures=figures,
    )


def transform_manifest(source_refs: Iterable[str], prefix: str) -> str:
    """A ManifestFile (``manifest.transform_manifest_chunks``) listing images all under
    ``prefix`` (``s3://bucket/folder/``): Batch Transform's input (the run's validation
    images) and the torchvision training job's ``images`` channel (all the run's images)."""
    keys = []
    for source_ref in source_refs:
        if not source_ref.startswith(prefix) or source_ref == prefix:
            raise InputError(f"image {source_ref} is not under {prefix}")
        keys.append(source_ref.removeprefix(prefix))
    return b"".join(transform_manifest_chunks(prefix, keys)).decode()
