"""What the app asks of Label Studio: the stage's project (its labeling interface from the
class names, its S3 storages) and the model's boxes as predictions on the review queue.

The other direction, Label Studio's exports into manifests, is ``label_studio``. Fields and
behaviour as label-studio 1.23.2 defines them:

* A project is ``title``, ``description``, ``label_config`` (``label_config`` below) and
  ``show_collab_predictions`` among others (``projects/serializers.py``,
  ``ProjectSerializer.Meta.fields``). Its ``model_version`` picks the predictions shown to
  labelers as pre-annotations (``tasks/models.py``, ``get_predictions_for_prelabeling``) and
  must name predictions the project holds (``ProjectSerializer.validate_model_version``).
* The source storage (``io_storages/s3/models.py``, ``S3ImportStorageBase``) lists its
  ``prefix`` (everything below it with ``recursive_scan``) and makes one task of each key
  that ``regex_filter`` matches (``re.match`` on the whole key), the task's image being the
  object's ``s3://`` URI (``use_blob_urls``) that browsers load through presigned URLs
  (``presign``). It refuses to be created over an empty prefix (``validate_connection``
  wants one key there): the setup writes ``PLACEHOLDER_KEY`` first.
* The target storage (``S3ExportStorage.save_annotation``) writes ``<prefix>/<task id>.json``
  on every saved annotation, adding the ``/`` itself: its prefix has none.
* A prediction is a ``model_version``, a ``score`` and a ``result`` holding regions as an
  annotation does (``x``, ``y``, ``width``, ``height`` in percent of the image), for one task
  (``tasks/serializers.py``, ``PredictionSerializer``).

Pure: the studio project Lambda sends these over HTTP; ``counting labeling start --studio``
writes the review request.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Annotated, Any
from xml.sax.saxutils import quoteattr

from pydantic import BaseModel, ConfigDict, Field

from counting_core import layout
from counting_core.datasets.label_studio import DEFAULT_IMAGE_KEY, RECTANGLE_TYPE, class_list
from counting_core.datasets.manifest import is_s3_object_uri
from counting_core.errors import InputError
from counting_core.imaging.image_formats import IMAGE_SUFFIXES
from counting_core.json_input import json_type

#: The labeling interface's names: its image (read from the task's ``image`` data, which the
#: export converter reads too) and its boxes. Exports and predictions name them as
#: ``to_name`` and ``from_name``.
IMAGE_TAG = DEFAULT_IMAGE_KEY
BOXES_TAG = "label"
PROJECT_DESCRIPTION = (
    "Kept in step with the stage's settings on every deployment: the labels are "
    "labeling.studio.class_names, in class id order."
)
IMAGES_STORAGE_TITLE = "Images to label"
EXPORTS_STORAGE_TITLE = "Labeled tasks for training"
#: The object that keeps the images prefix from being empty when the source storage is made.
#: Not an image name, so no task is made of it.
PLACEHOLDER_KEY = f"{layout.LABELING_IMAGES}README.txt"
PLACEHOLDER_TEXT = (
    "Images to label go in folders below this one (labeling/images/<batch>/). Label Studio "
    "makes a task of each JPEG or PNG here when its source storage is synced.\n"
)
# The keys the source storage makes tasks of: the image names both counting pipelines take.
IMAGE_KEYS = "(?i).*(" + "|".join(re.escape(suffix) for suffix in IMAGE_SUFFIXES) + ")$"
# Percent values keep this many decimals: a ten-thousandth of a percent is a hundredth of a
# pixel across 10,000 pixels.
_PERCENT_DECIMALS = 4
_SCORE_DECIMALS = 4
_CORNERS = ("xmin", "ymin", "xmax", "ymax")

# A model version names the review request's object: what training run names are made of.
MODEL_VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$"
ModelVersion = Annotated[str, Field(pattern=MODEL_VERSION_PATTERN)]


def label_config(class_names: Sequence[str]) -> str:
    """The labeling interface: the task's image, one box tool with the class names as labels
    in class id order (each box gets exactly one, as the converter wants)."""
    labels = "".join(f"\n    <Label value={quoteattr(name)}/>" for name in class_list(class_names))
    return (
        "<View>\n"
        f'  <Image name="{IMAGE_TAG}" value="${DEFAULT_IMAGE_KEY}"/>\n'
        f'  <RectangleLabels name="{BOXES_TAG}" toName="{IMAGE_TAG}">{labels}\n'
        "  </RectangleLabels>\n"
        "</View>"
    )


def project_fields(title: str, class_names: Sequence[str]) -> dict[str, Any]:
    """What the setup holds the project to; the rest is left to the project's administrators.

    ``show_collab_predictions`` shows labelers the review queue's predictions."""
    return {
        "title": title,
        "description": PROJECT_DESCRIPTION,
        "label_config": label_config(class_names),
        "show_collab_predictions": True,
    }


def images_storage_fields(bucket: str) -> dict[str, Any]:
    """The source storage: a task per JPEG or PNG anywhere under ``labeling/images/``, read
    with the service's own AWS credentials (no keys: Label Studio then uses boto3's default
    chain, the ECS task role)."""
    return {
        "title": IMAGES_STORAGE_TITLE,
        "bucket": bucket,
        "prefix": layout.LABELING_IMAGES,
        "regex_filter": IMAGE_KEYS,
        "use_blob_urls": True,
        "recursive_scan": True,
        "presign": True,
    }


def exports_storage_fields(bucket: str) -> dict[str, Any]:
    """The target storage: each labeled task as ``labeling/studio/exports/<task id>.json``,
    removed when its annotation is deleted."""
    return {
        "title": EXPORTS_STORAGE_TITLE,
        "bucket": bucket,
        "prefix": layout.STUDIO_EXPORTS.rstrip("/"),
        "can_delete_objects": True,
    }


def changed_fields(wanted: Mapping[str, Any], current: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of ``wanted`` whose value ``current`` does not have: what to update."""
    return {name: value for name, value in wanted.items() if current.get(name) != value}


def project_labels(project: Mapping[str, Any]) -> list[str]:
    """The labels of the project's box tool, as Label Studio parsed its labeling interface
    (``parsed_label_config``); none if it has no box tool of that name."""
    parsed = project.get("parsed_label_config")
    tool = parsed.get(BOXES_TAG) if isinstance(parsed, Mapping) else None
    labels = tool.get("labels") if isinstance(tool, Mapping) else None
    return [label for label in labels if isinstance(label, str)] if isinstance(labels, list) else []


class ImagePrediction(BaseModel):
    """The model's boxes on one image: what becomes a prediction on its task."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str
    # The mean of the boxes' scores; None without boxes.
    score: float | None
    result: list[dict[str, Any]]


class ReviewRequest(BaseModel):
    """A review queue for Label Studio (``labeling/studio/reviews/<model version>.request.json``):
    the model's boxes on each image, under the model's name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model_version: ModelVersion
    predictions: list[ImagePrediction] = Field(min_length=1)

    def labels(self) -> list[str]:
        """Every label the predictions use, sorted."""
        return sorted(
            {
                label
                for prediction in self.predictions
                for region in prediction.result
                for label in region["value"][RECTANGLE_TYPE]
            }
        )


REVIEW_REQUEST_SUFFIX = ".request.json"


def review_request_key(model_version: str) -> str:
    """Where the review request of ``model_version`` is uploaded."""
    return f"{layout.STUDIO_REVIEWS}{model_version}{REVIEW_REQUEST_SUFFIX}"


def review_request(
    report: object, *, bucket: str, model_version: str | None = None
) -> ReviewRequest:
    """The review queue of an evaluation report (``evaluation.json``) as predictions: each
    image's detections counted at the best threshold, under ``model_version`` (default: the
    report's run).

    Every image must be under ``s3://bucket/labeling/images/``: the studio's tasks are made
    from there, and its service may read nothing else.
    """
    queue = report.get("review_queue") if isinstance(report, Mapping) else None
    if not isinstance(queue, list):
        raise InputError("not an evaluation report: no 'review_queue' list")
    if not queue:
        raise InputError("the evaluation's review queue is empty: every image was counted exactly")
    name = model_version or (report.get("run") if isinstance(report, Mapping) else None)
    if not isinstance(name, str):
        raise InputError(
            "the evaluation names no run (counting evaluate writes none): give --model-version"
        )
    if not re.fullmatch(MODEL_VERSION_PATTERN, name):
        raise InputError(
            f"model version {name!r}: use letters, digits, '.', '_' and '-' (at most 100, "
            "starting with a letter or digit)"
        )
    images = f"s3://{bucket}/{layout.LABELING_IMAGES}"
    predictions = []
    for index, entry in enumerate(queue):
        at = f"review_queue[{index}]"
        if not isinstance(entry, Mapping):
            raise InputError(f"{at} is {json_type(entry)}, not an object")
        source_ref = entry.get("source_ref")
        if not is_s3_object_uri(source_ref) or not source_ref.startswith(images):
            raise InputError(
                f"{at}: image {source_ref!r} is not under {images}, where the studio's tasks "
                "come from"
            )
        detections = entry.get("detections")
        if not isinstance(detections, list):
            raise InputError(
                f"{at}: no 'detections' (an evaluation.json written before they were "
                "listed): evaluate again"
            )
        regions = [
            _region(detection, f"{at}.detections[{index}]", region_id=f"box-{index + 1}")
            for index, detection in enumerate(detections)
        ]
        scores = [region["score"] for region in regions]
        predictions.append(
            ImagePrediction(
                image=source_ref,
                score=round(sum(scores) / len(scores), _SCORE_DECIMALS) if scores else None,
                result=regions,
            )
        )
    return ReviewRequest(model_version=name, predictions=predictions)


def _region(detection: object, at: str, *, region_id: str) -> dict[str, Any]:
    """One detection (``predictions.CountedDetection.to_dict``) as a Label Studio box."""
    if not isinstance(detection, Mapping):
        raise InputError(f"{at} is {json_type(detection)}, not an object")
    label = detection.get("class_name")
    if not isinstance(label, str) or not label.strip():
        raise InputError(f"{at}: class_name must be a non-empty string, got {label!r}")
    score = _fraction(detection.get("score"), "score", at)
    box = detection.get("box")
    if not isinstance(box, Mapping):
        raise InputError(f"{at}: no 'box' object")
    xmin, ymin, xmax, ymax = (_fraction(box.get(corner), corner, at) for corner in _CORNERS)
    if xmax < xmin or ymax < ymin:
        raise InputError(f"{at}: the box's max corner lies before its min corner")
    return {
        "id": region_id,
        "type": RECTANGLE_TYPE,
        "from_name": BOXES_TAG,
        "to_name": IMAGE_TAG,
        "score": score,
        "value": {
            "x": _percent(xmin),
            "y": _percent(ymin),
            "width": _percent(xmax - xmin),
            "height": _percent(ymax - ymin),
            "rotation": 0,
            RECTANGLE_TYPE: [label],
        },
    }


def _fraction(value: object, key: str, at: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise InputError(f"{at}: {key} must be a number from 0 to 1, got {value!r}")
    return float(value)


def _percent(fraction: float) -> float:
    return round(fraction * 100, _PERCENT_DECIMALS)


def unknown_labels(request: ReviewRequest, labels: Iterable[str]) -> list[str]:
    """The labels the predictions use that the project's box tool lacks, sorted."""
    known = set(labels)
    return [label for label in request.labels() if label not in known]


def tasks_by_image(tasks: Iterable[Mapping[str, Any]]) -> dict[str, list[int]]:
    """Image URI -> the ids of the tasks showing it, from Label Studio's task list."""
    found: dict[str, list[int]] = {}
    for task in tasks:
        data = task.get("data")
        image = data.get(IMAGE_TAG) if isinstance(data, Mapping) else None
        if isinstance(image, str) and isinstance(task.get("id"), int):
            found.setdefault(image, []).append(task["id"])
    return found
