"""The bulk-counting state machine's work on S3 and DynamoDB, batch by batch.

Every decision is made by the pure ``counting_core`` modules (``bulk`` for the run,
``results`` for the documents): the same post-processing as an uploaded image, from the
transform's output instead of the endpoint's answer. Every image's result is written by the
same result store as an upload's (``adapters.result_store``), image by image: one image's
failure (after the store's own attempts) is that image's, counted ``failed`` in the batch's
report, and never fails its batch; a batch the Distributed Map runs again finds its finished
images recorded and neither announces nor measures them twice. Clients are injected, so
tests hand in moto-backed ones.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from adapters.objects import Objects
from adapters.result_store import ImageResult, ResultStore, Staged
from counting_core.constants import JSON_CONTENT_TYPE
from counting_core.contracts.bulk_counter import ManifestWritten
from counting_core.contracts.published import RejectedDocument, SourceObject
from counting_core.counts import bulk, results
from counting_core.counts.announcements import MAX_ENTRIES_PER_REQUEST
from counting_core.counts.results import Outcome
from counting_core.datasets.manifest import transform_manifest_chunks
from counting_core.errors import InputError
from counting_core.imaging import images
from counting_core.imaging.image_formats import is_image_name
from counting_core.models.model_record import ActiveModel

logger = logging.getLogger(__name__)

# Images in flight per batch: S3 and DynamoDB calls are I/O-bound. Clients' connection pools
# hold at least this many (adapters.clients.SHARED_BY_THREADS).
WORKERS = 10
# Tries per image for its writes, the first included, before it is counted failed: the result
# store resumes where a try stopped, so a retry costs only what is left.
WRITE_ATTEMPTS = 3


class BulkCounter:
    def __init__(
        self,
        *,
        objects: Objects,
        dynamodb: Any,
        store: ResultStore,
        table_name: str,
        configured_threshold: float | None,
        annotate_images: bool,
        max_payload_bytes: int,
        clock: Callable[[], datetime],
    ) -> None:
        self._objects = objects
        self._bucket = objects.bucket
        self._dynamodb = dynamodb
        self._store = store
        self._table_name = table_name
        self._threshold = configured_threshold
        self._annotate = annotate_images
        self._max_payload = max_payload_bytes
        self._clock = clock
        self._outputs_in_flight = _ByteBudget(bulk.OUTPUT_BYTES_IN_FLIGHT)

    # --- Step 1: which listed objects go to the transform ---------------------------------

    def select(
        self, run: str, model: ActiveModel, listed: list[bulk.ListedObject]
    ) -> bulk.BatchReport:
        """Drop what is not an image, skip what this model counted, refuse what would fail
        the transform; write the rest as this batch's selection."""
        report = bulk.BatchReport(listed=len(listed))
        candidates = [item for item in listed if is_image_name(item.key)]
        report.ignored = len(listed) - len(candidates)
        with ThreadPoolExecutor(WORKERS) as pool:
            done = list(pool.map(lambda item: self._counted_by(item, model), candidates))
            fresh = [item for item, counted in zip(candidates, done, strict=True) if not counted]
            report.skipped = len(candidates) - len(fresh)
            headers = list(pool.map(self._head, fresh))
            selected, refused = [], []
            for item, (image, header) in zip(fresh, headers, strict=True):
                reason = bulk.refusal(item.key, item.size, header, self._max_payload)
                if reason is None:
                    selected.append(item.key)
                else:
                    refused.append(ImageResult(self._rejected(image, reason)))
            ended = self._record(pool, [self._store_stage(found) for found in refused])
        self._tally(report, ended)
        report.selected = len(selected)
        batch = bulk.batch_name(item.key for item in listed)
        if selected:
            self._objects.put_json(f"{bulk.selection_prefix(run)}{batch}.json", selected)
        self._objects.put_json(bulk.report_key(run, "select", batch), report.model_dump())
        return report

    def _counted_by(self, item: bulk.ListedObject, model: ActiveModel) -> bool:
        """True if this object's content was counted by ``model`` already (any version), and
        that count finished (an unfinished item is counted again, which finishes it)."""
        etag = bulk.unquoted_etag(item.etag)
        response = self._dynamodb.query(
            TableName=self._table_name,
            KeyConditionExpression="#image = :image",
            ProjectionExpression="#status, #etag, #model, #unfinished",
            # STATUS is a DynamoDB reserved word; the others are named alike for clarity.
            ExpressionAttributeNames={
                "#image": "image",
                "#status": "status",
                "#etag": "etag",
                "#model": "model_name",
                "#unfinished": "unfinished",
            },
            ExpressionAttributeValues={":image": {"S": self._objects.uri(item.key)}},
        )
        return any(
            found.get("status", {}).get("S") == results.STATUS_COUNTED
            and found.get("model_name", {}).get("S") == model.model_name
            and found.get("etag", {}).get("S") == etag
            and "unfinished" not in found
            for found in response.get("Items", ())
        )

    def _head(self, item: bulk.ListedObject) -> tuple[SourceObject, bytes]:
        """The object's version and first bytes (one ranged GET; none for an empty file)."""
        request: dict[str, Any] = {"Bucket": self._bucket, "Key": item.key}
        if item.size:
            request["Range"] = f"bytes=0-{bulk.HEADER_BYTES - 1}"
        response = self._objects.s3.get_object(**request)
        image = SourceObject(
            bucket=self._bucket,
            key=item.key,
            version_id=response.get("VersionId"),
            etag=bulk.unquoted_etag(response.get("ETag")),
        )
        return image, response["Body"].read()

    # --- Step 2: the transform's input -----------------------------------------------------

    def write_manifest(self, run: str) -> ManifestWritten:
        """Join the batches' selections into the transform's manifest; return its size."""
        selections = list(self._objects.keys_under(bulk.selection_prefix(run)))
        selected = 0

        def keys() -> Iterator[str]:
            nonlocal selected
            with ThreadPoolExecutor(WORKERS) as pool:
                for batch in pool.map(self._objects.get_json, selections):
                    selected += len(batch)
                    yield from batch

        key = bulk.manifest_key(run)
        self._objects.upload_chunks(
            key, transform_manifest_chunks(f"s3://{self._bucket}/", keys()), JSON_CONTENT_TYPE
        )
        return ManifestWritten(selected=selected, uri=self._objects.uri(key))

    # --- Step 3: outputs to results --------------------------------------------------------

    def count(
        self, run: str, model: ActiveModel, outputs: list[bulk.ListedObject]
    ) -> bulk.BatchReport:
        """Turn each transform output into the upload pipeline's result, event and metrics."""
        with ThreadPoolExecutor(WORKERS) as pool:
            staged = list(pool.map(lambda output: self._stage_output(run, model, output), outputs))
            ended = self._record(pool, staged)
        report = bulk.BatchReport()
        self._tally(report, ended)
        batch = bulk.batch_name(output.key for output in outputs)
        self._objects.put_json(bulk.report_key(run, "count", batch), report.model_dump())
        return report

    def _stage_output(
        self, run: str, model: ActiveModel, output: bulk.ListedObject
    ) -> Staged | Outcome | Exception:
        """One output through the store's first steps, holding its bytes in the budget."""
        if output.size > bulk.MAX_OUTPUT_BYTES:
            error = InputError(
                f"the model's answer is {output.size} bytes, more than the "
                f"{bulk.MAX_OUTPUT_BYTES} a bulk run turns into a result"
            )
            _log_failure(self._objects.uri(output.key), error)
            return error
        with self._outputs_in_flight.holding(output.size):
            try:
                found = self._post_process(run, model, output)
            except Exception as error:  # this image's, reported failed; never its batch's
                _log_failure(self._objects.uri(output.key), error)
                return error
            return self._store_stage(found)

    def _post_process(self, run: str, model: ActiveModel, output: bulk.ListedObject) -> ImageResult:
        """The output's result; InputError when it cannot be one (the summary counts it
        failed)."""
        key = bulk.image_key_of_output(run, output.key)
        body = self._objects.s3.get_object(Bucket=self._bucket, Key=output.key)["Body"].read()
        response = self._objects.s3.get_object(Bucket=self._bucket, Key=key)
        data = response["Body"].read()
        image = SourceObject(
            bucket=self._bucket,
            key=key,
            version_id=response.get("VersionId"),
            etag=bulk.unquoted_etag(response.get("ETag")),
        )
        try:
            size = images.image_size(data)
        except InputError as error:
            return ImageResult(self._rejected(image, str(error)))
        document, result = results.count_response(
            image,
            body,
            model=model,
            configured_threshold=self._threshold,
            image_size=size,
            counted_at=self._clock(),
            pipeline=results.PIPELINE_BULK,
        )
        return ImageResult(document, result, data if self._annotate else None)

    # --- Step 4: the run's summary ----------------------------------------------------------

    def summarize(
        self, run: str, prefix: str, model_name: str, transform: bulk.TransformOutcome
    ) -> bulk.Summary:
        reports: dict[str, list[bulk.BatchReport]] = {}
        for step in ("select", "count"):
            keys = list(self._objects.keys_under(f"{bulk.reports_prefix(run)}{step}/"))
            with ThreadPoolExecutor(WORKERS) as pool:
                reports[step] = [
                    bulk.BatchReport.model_validate(found)
                    for found in pool.map(self._objects.get_json, keys)
                ]
        summary = bulk.summarize(
            run=run,
            prefix=prefix,
            model_name=model_name,
            bucket=self._bucket,
            selections=reports["select"],
            counts=reports["count"],
            transform=transform,
        )
        self._objects.put_json(bulk.summary_key(run), summary.model_dump(mode="json"))
        return summary

    # --- Recording ---------------------------------------------------------------------------

    def _rejected(self, image: SourceObject, reason: str) -> RejectedDocument:
        return results.rejected_document(
            image, reason, self._clock(), pipeline=results.PIPELINE_BULK
        )

    def _store_stage(self, found: ImageResult) -> Staged | Outcome | Exception:
        try:
            return self._store.stage(found)
        except Exception as error:  # this image's, reported failed; never its batch's
            _log_failure(found.document.source.uri, error)
            return error

    def _record(
        self, pool: ThreadPoolExecutor, staged: list[Staged | Outcome | Exception]
    ) -> list[Outcome | Exception]:
        """Announce, measure and finish the staged images, a PutEvents request's worth per
        task; what was not staged keeps its outcome or failure."""
        ready = [index for index, image in enumerate(staged) if isinstance(image, Staged)]
        groups = [
            ready[start : start + MAX_ENTRIES_PER_REQUEST]
            for start in range(0, len(ready), MAX_ENTRIES_PER_REQUEST)
        ]
        ended = [image.outcome if isinstance(image, Staged) else image for image in staged]
        finished = pool.map(self._finish, ([staged[index] for index in group] for group in groups))
        for group, ends in zip(groups, finished, strict=True):
            for index, end in zip(group, ends, strict=True):
                ended[index] = end
        return ended

    def _finish(self, staged: list[Staged]) -> list[Outcome | Exception]:
        ends = self._store.finish(staged)
        for image, end in zip(staged, ends, strict=True):
            if isinstance(end, Exception):
                _log_failure(image.image, end)
        return ends

    def _tally(self, report: bulk.BatchReport, ended: list[Outcome | Exception]) -> None:
        """Add each image's end to ``report``: what the table holds finished, and failures."""
        by_class: Counter[str] = Counter(report.objects_by_class)
        for end in ended:
            if isinstance(end, Exception):
                report.failed += 1
            elif end.status == results.STATUS_COUNTED:
                report.counted += 1
                report.capped += int(end.capped)
                by_class.update(end.by_class)
            else:
                report.rejected += 1
        report.objects_by_class = dict(sorted(by_class.items()))


def _log_failure(image: str, error: Exception) -> None:
    lines = str(error).strip().splitlines()
    logger.warning(
        "image not recorded: counted failed",
        extra={"image": image, "error": f"{type(error).__name__}: {lines[0] if lines else ''}"},
    )


class _ByteBudget:
    """Bytes of transform outputs held at once, across a batch's worker threads."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._held = 0
        self._changed = threading.Condition()

    @contextmanager
    def holding(self, size: int) -> Iterator[None]:
        """Wait until ``size`` bytes fit (all of the budget for an output larger than it)."""
        size = min(size, self._limit)
        with self._changed:
            self._changed.wait_for(lambda: self._held + size <= self._limit)
            self._held += size
        try:
            yield
        finally:
            with self._changed:
                self._held -= size
                self._changed.notify_all()
