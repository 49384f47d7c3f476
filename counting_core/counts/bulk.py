"""Bulk counting of images already in S3: the decisions of the bulk-counting state machine.

A run counts every image under one prefix of the data bucket with the active model, on
SageMaker Batch Transform, then turns each transform output into the same result
document, table item, event and metrics as an upload (``"pipeline": "bulk"``). It keeps
its working files under ``bulk/<run>/``:

- ``selected/<batch>.json``: the keys one selection batch sends to the transform;
- ``transform.manifest``: all of them, as Batch Transform's ``ManifestFile``;
- ``outputs/<key>.out``: the transform's answer for each image (the endpoint's JSON);
- ``reports/<step>/<batch>.json``: what each batch did (``BatchReport``);
- ``summary.json``: the run's ``Summary``.

Batch names are digests of their keys, so a retried batch overwrites its own files and
nothing is counted twice. Pure: the bulk Lambda does the reading and writing.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from counting_core import layout
from counting_core.constants import SERVERLESS_MAX_PAYLOAD_BYTES
from counting_core.counts import results
from counting_core.errors import InputError
from counting_core.imaging.image_formats import detect_format

#: Bytes read from the start of each candidate: enough for the JPEG and PNG signatures.
HEADER_BYTES = 16
#: Suffix Batch Transform gives each output object.
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformOutput.html
OUTPUT_SUFFIX = ".out"
#: The largest transform output a run turns into a result: what a serverless endpoint may
#: answer an upload (the same model, the same JSON), some 35,000 detections. Beyond it the
#: image is failed, named in the log, rather than risking the function's memory.
MAX_OUTPUT_BYTES = SERVERLESS_MAX_PAYLOAD_BYTES
#: Bytes of transform outputs post-processed at once by one function. Each byte of an
#: output's JSON takes about 61 bytes of memory while it becomes a document, an item and an
#: event (tracemalloc's peak over counts.results.count_response, document_json, table_item
#: and announcements.entry, on outputs of 1,000 to 30,000 detections), so this holds a
#: batch's outputs to some 250 MB of the function's 2,048 MB however many detections each
#: has. An output larger than this is post-processed alone.
OUTPUT_BYTES_IN_FLIGHT = 4_000_000

Step = Literal["select", "count"]


def run_prefix(run: str) -> str:
    return f"{layout.BULK}{run}/"


def outputs_prefix(run: str) -> str:
    return f"{run_prefix(run)}outputs/"


def manifest_key(run: str) -> str:
    return f"{run_prefix(run)}transform.manifest"


def selection_prefix(run: str) -> str:
    return f"{run_prefix(run)}selected/"


def reports_prefix(run: str) -> str:
    return f"{run_prefix(run)}reports/"


def report_key(run: str, step: Step, batch: str) -> str:
    return f"{reports_prefix(run)}{step}/{batch}.json"


def summary_key(run: str) -> str:
    return f"{run_prefix(run)}summary.json"


def batch_name(keys: Iterable[str]) -> str:
    """A batch's name: the digest of its keys, the same on every retry."""
    digest = hashlib.sha256()
    for key in keys:
        digest.update(key.encode() + b"\0")
    return digest.hexdigest()[:32]


def image_key_of_output(run: str, output_key: str) -> str:
    """``bulk/<run>/outputs/archive/a.jpg.out`` -> ``archive/a.jpg``.

    The transform reads a manifest whose prefix is the bucket's root, so an output's key
    below the output prefix is its image's key, plus ``.out``.
    """
    prefix = outputs_prefix(run)
    if not output_key.startswith(prefix) or not output_key.endswith(OUTPUT_SUFFIX):
        raise InputError(f"{output_key} is not a transform output of run {run}")
    return output_key[len(prefix) : -len(OUTPUT_SUFFIX)]


def unquoted_etag(etag: str | None) -> str | None:
    """S3 listings quote ETags (``"abc"``); events and table items do not."""
    return etag.strip('"') if etag else etag


class ListedObject(BaseModel):
    """One item of the Distributed Map's S3 listing.

    Step Functions hands each listed object over as ``{"Etag", "Key", "LastModified",
    "Size", "StorageClass"}`` (the ItemReader page's example), not with ListObjectsV2's
    own ``ETag``: read as ``ETag`` alone, the tag was always missing and a re-run counted
    every image again. Both spellings are read, so either shape works.
    https://docs.aws.amazon.com/step-functions/latest/dg/input-output-itemreader.html
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    key: str = Field(alias="Key", min_length=1)
    etag: str | None = Field(None, validation_alias=AliasChoices("Etag", "ETag"))
    size: int = Field(alias="Size", ge=0)


def refusal(key: str, size: int, header: bytes, max_bytes: int) -> str | None:
    """Why an image cannot be sent to the transform, or None if it can.

    The same words as the upload pipeline's for a key too long for its results, an empty or
    a non-JPEG/PNG file; an image larger than the transform's payload limit would fail the
    job, so it is refused here.
    """
    try:
        results.check_derived_keys(key)
        detect_format(header)
    except InputError as error:
        return str(error)
    if size > max_bytes:
        return (
            f"image is {size} bytes, more than the {max_bytes} a bulk run sends to the model; "
            "upload it under incoming/ to have it shrunk and counted"
        )
    return None


class BatchReport(BaseModel):
    """What one batch of a run did: images by outcome, objects by class."""

    model_config = ConfigDict(extra="forbid")

    listed: int = 0
    ignored: int = 0
    skipped: int = 0
    selected: int = 0
    counted: int = 0
    # Of the counted: the model returned as many detections as its cap (CountedDocument.capped).
    capped: int = 0
    rejected: int = 0
    failed: int = 0
    objects_by_class: dict[str, int] = Field(default_factory=dict)


# The figures of a BatchReport that add up across batches: all but objects_by_class.
_TALLIES = tuple(name for name in BatchReport.model_fields if name != "objects_by_class")


class _TransformResources(BaseModel):
    model_config = ConfigDict(extra="ignore")

    instance_type: str = Field("", alias="InstanceType")
    instance_count: int = Field(0, alias="InstanceCount", ge=0)


class TransformOutcome(BaseModel):
    """The transform job as the state machine saw it end: DescribeTransformJob's answer
    (``createTransformJob.sync``), the error a failed job was caught with, or not run."""

    model_config = ConfigDict(extra="ignore")

    status: str = Field("NotRun", alias="TransformJobStatus")
    failure_reason: str | None = Field(None, alias="FailureReason")
    started: datetime | None = Field(None, alias="TransformStartTime")
    ended: datetime | None = Field(None, alias="TransformEndTime")
    resources: _TransformResources = Field(
        default_factory=_TransformResources, alias="TransformResources"
    )

    @model_validator(mode="before")
    @classmethod
    def _from_caught_error(cls, data: Any) -> Any:
        # A failed .sync job is caught as {"Error": "States.TaskFailed", "Cause": <text>};
        # the cause is the job's description as JSON when SageMaker gave one.
        if not isinstance(data, dict) or "Cause" not in data:
            return data
        try:
            described = json.loads(data["Cause"])
        except (TypeError, ValueError):
            described = None
        if isinstance(described, dict) and "TransformJobStatus" in described:
            return described
        return {
            "TransformJobStatus": "Failed",
            "FailureReason": f"{data.get('Error')}: {data['Cause']}",
        }


class Summary(BaseModel):
    """A run's result: what lands in ``summary.json`` and in the final notification."""

    run: str
    prefix: str
    model_name: str
    outcome: Literal["complete", "partial", "failed"]
    images_listed: int
    counted: int
    capped: int = Field(
        description="of the counted, how many hit the model's detection cap: their counts "
        "may be low"
    )
    rejected: int
    skipped: int = Field(description="already counted by the same model version")
    ignored: int = Field(description="not named like an image (image_formats.IMAGE_SUFFIXES)")
    failed: int = Field(description="sent to the transform but not counted; a rerun retries them")
    objects_by_class: dict[str, int]
    transform_status: str
    transform_failure: str | None
    instance_hours: float = Field(description="cost estimate: transform instances x hours")
    summary_uri: str


def instance_hours(transform: TransformOutcome) -> float:
    """Instance-hours of the transform (billed per second of each instance)."""
    if transform.started is None or transform.ended is None:
        return 0.0
    seconds = (transform.ended - transform.started).total_seconds()
    return round(max(seconds, 0.0) / 3600 * transform.resources.instance_count, 4)


def summarize(
    *,
    run: str,
    prefix: str,
    model_name: str,
    bucket: str,
    selections: Iterable[BatchReport],
    counts: Iterable[BatchReport],
    transform: TransformOutcome,
) -> Summary:
    """Add up the batch reports of both maps into the run's summary.

    Images selected for the transform but without a result are failed: the transform
    (or the post-processing) could not count them; they are not in the results table,
    so running the same prefix again retries exactly those.
    """
    selected, counted = _total(selections), _total(counts)
    failed = max(selected.selected - counted.counted - counted.rejected, 0)
    outcome: Literal["complete", "partial", "failed"] = "complete"
    if failed:
        outcome = "partial" if counted.counted else "failed"
    return Summary(
        run=run,
        prefix=prefix,
        model_name=model_name,
        outcome=outcome,
        images_listed=selected.listed,
        counted=counted.counted,
        capped=counted.capped,
        rejected=selected.rejected + counted.rejected,
        skipped=selected.skipped,
        ignored=selected.ignored,
        failed=failed,
        objects_by_class=counted.objects_by_class,
        transform_status=transform.status,
        transform_failure=transform.failure_reason,
        instance_hours=instance_hours(transform),
        summary_uri=f"s3://{bucket}/{summary_key(run)}",
    )


def _total(reports: Iterable[BatchReport]) -> BatchReport:
    total = BatchReport()
    by_class: Counter[str] = Counter()
    for report in reports:
        for field in _TALLIES:
            setattr(total, field, getattr(total, field) + getattr(report, field))
        by_class.update(report.objects_by_class)
    total.objects_by_class = dict(sorted(by_class.items()))
    return total
