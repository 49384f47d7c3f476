"""Bulk counting of images already in S3: the decisions of the bulk-counting state machine.

A run counts every image under one prefix of the data bucket with the active model, on
SageMaker Batch Transform, then turns each transform output into the same result
document, table item, event and metrics as an upload (``"pipeline": "bulk"``). It keeps
its working files under ``bulk/<run>/``:

- ``selected/<batch>.json``: what one selection batch sends to the transform: each key
  with the ETag the listing saw, and how many tiles it was cut into (``Selected``);
- ``transform.manifest``: all the keys (each image's tiles, and the image itself unless it
  went in tiles only), as Batch Transform's ``ManifestFile``;
- ``selected-by-name/<shard>.json``: the same, grouped by file name (``name_shard``), so
  a count batch finds which images an output may belong to without reading them all;
- ``outputs/<key>.out``: the transform's answer for each image and each tile (the
  endpoint's JSON);
- ``reports/<step>/<batch>.json``: what each batch did (``BatchReport``);
- ``summary.json``: the run's ``Summary``.

An image tiled (``counter.tiling``, ``counting_core.imaging.tiling``) has its tiles under
``bulk/tiles/<run>/`` (``tiles_prefix``), not in the run's folder: S3 lifecycle rules filter
by prefix, and one rule on ``bulk/tiles/`` expires every run's tiles once no run can need
them (stacks/components/storage.py). There, ``<digest>-<source>.jpg`` is each tile and
``<digest>.json`` the image's ``TiledImage``, ``<digest>`` being the image key's
(``image_digest``): tile file names are unique in a run, whichever output layout Batch
Transform keeps (``counting_core.counts.responses``).

Batch names are digests of their keys, so a retried batch overwrites its own files and
nothing is counted twice. Pure: the bulk Lambda does the reading and writing.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections import Counter
from collections.abc import Iterable
from datetime import datetime
from typing import Any, Literal, NamedTuple

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, model_validator

from counting_core import layout
from counting_core.constants import SERVERLESS_MAX_PAYLOAD_BYTES
from counting_core.counts import results
from counting_core.errors import InputError
from counting_core.imaging.image_formats import detect_format
from counting_core.imaging.tiling import TileSet

#: Bytes read from the start of each candidate: enough for the JPEG and PNG signatures.
HEADER_BYTES = 16
#: ... and when images may be tiled (``counter.tiling`` not ``off``), whose decision and plan
#: take the image's size: enough for a PNG's and for a JPEG's behind an EXIF block (thumbnail
#: included) smaller than this; a JPEG whose size lies further in is read whole.
SIZE_HEADER_BYTES = 65_536
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

#: Every run's tiles, below the run's name (``tiles_prefix``).
TILES = f"{layout.BULK}tiles/"
#: Tiles go to the transform as JPEG (``detection.cut_for_transform``).
TILE_SUFFIX = ".jpg"


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


def tiles_prefix(run: str) -> str:
    return f"{TILES}{run}/"


def tiles_kept_days(timeout_hours: int) -> int:
    """Days the lifecycle rule on ``TILES`` keeps a tile: past the end of the longest run
    (``bulk.timeout_hours``), and a day more, since S3 expires objects at the midnight (UTC)
    after their age is reached (lifecycle rules based on an object's age):
    https://docs.aws.amazon.com/AmazonS3/latest/userguide/intro-lifecycle-rules.html
    """
    return math.ceil(timeout_hours / 24) + 1


def image_digest(key: str) -> str:
    """The name of an image's tiles: the digest of its key."""
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def tile_key(run: str, digest: str, source: int) -> str:
    """Tile ``source`` (its index in the image's ``TilePlan``) of the image of ``digest``."""
    return f"{tiles_prefix(run)}{digest}-{source}{TILE_SUFFIX}"


def tile_set_key(run: str, digest: str) -> str:
    return f"{tiles_prefix(run)}{digest}.json"


class TileOutput(NamedTuple):
    """A transform output that answers a tile: the tiled image's digest and the tile's source."""

    digest: str
    source: int


_TILE_OUTPUT = re.compile(rf"^([0-9a-f]{{32}})-(\d+){re.escape(TILE_SUFFIX + OUTPUT_SUFFIX)}$")


def tile_output(run: str, name: str) -> TileOutput | None:
    """What an output name (``output_name``) answers, if a tile of this run: with the input's
    folders kept, ``bulk/tiles/<run>/<digest>-<source>.jpg.out``, else the file name alone."""
    folders, _, file_name = name.rpartition("/")
    match = _TILE_OUTPUT.match(file_name)
    if match is None or folders not in ("", tiles_prefix(run).rstrip("/")):
        return None
    return TileOutput(match[1], int(match[2]))


def batch_name(keys: Iterable[str]) -> str:
    """A batch's name: the digest of its keys, the same on every retry."""
    digest = hashlib.sha256()
    for key in keys:
        digest.update(key.encode() + b"\0")
    return digest.hexdigest()[:32]


def output_name(run: str, output_key: str) -> str:
    """``bulk/<run>/outputs/archive/a.jpg.out`` -> ``archive/a.jpg.out``: the output's name
    below the run's output path, which ``responses.pair_responses`` matches to its image
    (the input's folders may or may not be kept: see ``counting_core.counts.responses``)."""
    prefix = outputs_prefix(run)
    if not output_key.startswith(prefix) or not output_key.endswith(OUTPUT_SUFFIX):
        raise InputError(f"{output_key} is not a transform output of run {run}")
    return output_key[len(prefix) :]


#: Shards of a run's selection grouped by file name: 256, so that a million selected images
#: make files of some 300 KB each.
NAME_SHARD_DIGITS = 2


def name_shard(file_name: str) -> str:
    """The shard of ``selected-by-name/`` that lists the images named ``file_name``."""
    return hashlib.sha256(file_name.encode()).hexdigest()[:NAME_SHARD_DIGITS]


def name_shards() -> list[str]:
    """Every shard's name: ``00`` to ``ff``."""
    return [f"{number:0{NAME_SHARD_DIGITS}x}" for number in range(16**NAME_SHARD_DIGITS)]


def name_shard_key(run: str, shard: str) -> str:
    return f"{run_prefix(run)}selected-by-name/{shard}.json"


class Selected(BaseModel):
    """An image sent to the transform, with the ETag its listing saw.

    Step Functions' S3 listing gives no version id (``Key``, ``Etag``, ``LastModified``,
    ``Size``, ``StorageClass``), and Batch Transform reads each image's newest version. The
    count step reads the image only if it still has this ETag (GetObject's ``IfMatch``), so
    an image overwritten during the run is reported as such, never counted under a version
    the transform may not have seen.
    """

    model_config = ConfigDict(frozen=True)

    key: str
    etag: str | None
    # Tiled: how many tiles (tile_key), and whether the image itself also goes to the
    # transform (the whole-image pass); its TiledImage is at tile_set_key.
    tiles: int = Field(0, ge=0)
    whole: bool = True

    @property
    def source_ref(self) -> str:
        return self.key

    @property
    def file_name(self) -> str:
        return self.key.rsplit("/", 1)[-1]


def transform_inputs(run: str, image: Selected) -> list[str]:
    """The keys the transform reads for one selected image: the image itself unless it goes
    in tiles only, then its tiles by source."""
    digest = image_digest(image.key)
    tiles = [tile_key(run, digest, source) for source in range(image.tiles)]
    return [image.key, *tiles] if image.whole else tiles


class TiledImage(BaseModel):
    """A selected image cut into tiles, as the count step reads it back from one of its
    tiles' outputs (``tile_set_key``)."""

    model_config = ConfigDict(frozen=True)

    selected: Selected
    tile_set: TileSet


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
    # Overwritten after the listing: before the select step cut it into tiles, or before the
    # count step read it (Selected).
    overwritten: int = 0
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
    overwritten: int = Field(
        description="overwritten after the run listed them: not counted, as the transform "
        "may have seen either version; a rerun counts the new one"
    )
    ignored: int = Field(description="not named like an image (image_formats.IMAGE_SUFFIXES)")
    failed: int = Field(
        description="not counted (the transform, cutting into tiles or recording failed); a "
        "rerun retries them"
    )
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
    # An image the select step could not cut into tiles, or whose rejection it could not
    # record, is failed too: it is not in the table, so a rerun retries it.
    failed = selected.failed + max(
        selected.selected - counted.counted - counted.rejected - counted.overwritten, 0
    )
    overwritten = selected.overwritten + counted.overwritten
    outcome: Literal["complete", "partial", "failed"] = "complete"
    if failed or overwritten:
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
        overwritten=overwritten,
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
