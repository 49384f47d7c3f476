"""The bulk-counting state machine's work on S3 and DynamoDB, batch by batch.

Every decision is made by the pure ``counting_core`` modules (``bulk`` for the run,
``results`` for the documents, ``announcements`` for the events): the same
post-processing as an uploaded image, from the transform's output instead of the
endpoint's answer. Clients are injected, so tests hand in moto-backed ones.

Writes of one image go: result document (and annotated image), then its event, then its
table item. A batch whose events cannot be published fails before writing its table
items, so a retry (or a rerun of the prefix) counts those images again and announces
them; an image in the table has had its event published.
"""

from __future__ import annotations

import io
import json
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from boto3.dynamodb.conditions import Key
from botocore.exceptions import ClientError
from pydantic import ValidationError

from counting_core.constants import JSON_CONTENT_TYPE
from counting_core.contracts.published import CountedDocument, RejectedDocument, ResultDocument
from counting_core.counts import announcements, bulk, results
from counting_core.datasets.manifest import transform_manifest_chunks
from counting_core.errors import InputError
from counting_core.imaging import annotate, images
from counting_core.imaging.image_formats import is_image_name
from counting_core.models.model_record import ActiveModel

# Requests in flight per batch: S3 and DynamoDB calls are I/O-bound, and the default
# connection pool of a boto3 client holds 10 connections.
# https://botocore.amazonaws.com/v1/documentation/api/latest/reference/config.html
WORKERS = 10


@dataclass(frozen=True)
class _Result:
    """One image's result document, and its annotated PNG when the run writes them."""

    document: ResultDocument
    annotated: bytes | None = None


class BulkCounter:
    def __init__(
        self,
        *,
        s3: Any,
        table: Any,
        put_events: Callable[..., Any],
        bucket: str,
        configured_threshold: float | None,
        annotate_images: bool,
        max_payload_bytes: int,
        event_source: str,
        clock: Callable[[], datetime],
    ) -> None:
        self._s3 = s3
        self._table = table
        self._put_events = put_events
        self._bucket = bucket
        self._threshold = configured_threshold
        self._annotate = annotate_images
        self._max_payload = max_payload_bytes
        self._source = event_source
        self._clock = clock

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
        selected, rejected = [], []
        for item, (image, header) in zip(fresh, headers, strict=True):
            reason = bulk.refusal(item.size, header, self._max_payload)
            if reason is None:
                selected.append(item.key)
            else:
                rejected.append(_Result(self._rejected(image, reason)))
        self._record(rejected)
        report.rejected, report.selected = len(rejected), len(selected)
        batch = bulk.batch_name(item.key for item in listed)
        if selected:
            self._put_json(f"{bulk.selection_prefix(run)}{batch}.json", selected)
        self._put_json(bulk.report_key(run, "select", batch), report.model_dump())
        return report

    def _counted_by(self, item: bulk.ListedObject, model: ActiveModel) -> bool:
        """True if this object's content was counted by ``model`` already (any version)."""
        etag = bulk.unquoted_etag(item.etag)
        response = self._table.query(
            KeyConditionExpression=Key("image").eq(f"s3://{self._bucket}/{item.key}"),
            ProjectionExpression="#status, #etag, #model",
            # STATUS is a DynamoDB reserved word; the others are named alike for clarity.
            ExpressionAttributeNames={"#status": "status", "#etag": "etag", "#model": "model_name"},
        )
        return any(
            found.get("status") == results.STATUS_COUNTED
            and found.get("model_name") == model.model_name
            and found.get("etag") == etag
            for found in response.get("Items", ())
        )

    def _head(self, item: bulk.ListedObject) -> tuple[results.ImageRef, bytes]:
        """The object's version and first bytes (one ranged GET; none for an empty file)."""
        request: dict[str, Any] = {"Bucket": self._bucket, "Key": item.key}
        if item.size:
            request["Range"] = f"bytes=0-{bulk.HEADER_BYTES - 1}"
        response = self._s3.get_object(**request)
        image = results.ImageRef(
            self._bucket,
            item.key,
            response.get("VersionId"),
            bulk.unquoted_etag(response.get("ETag")),
        )
        return image, response["Body"].read()

    # --- Step 2: the transform's input -----------------------------------------------------

    def write_manifest(self, run: str) -> dict[str, Any]:
        """Join the batches' selections into the transform's manifest; return its size."""
        selections = list(self._keys_under(bulk.selection_prefix(run)))
        selected = 0

        def keys() -> Iterator[str]:
            nonlocal selected
            with ThreadPoolExecutor(WORKERS) as pool:
                for batch in pool.map(self._get_json, selections):
                    selected += len(batch)
                    yield from batch

        key = bulk.manifest_key(run)
        self._s3.upload_fileobj(
            io.BufferedReader(
                _ChunkStream(transform_manifest_chunks(f"s3://{self._bucket}/", keys()))
            ),
            self._bucket,
            key,
            ExtraArgs={"ContentType": JSON_CONTENT_TYPE},
        )
        return {"selected": selected, "uri": f"s3://{self._bucket}/{key}"}

    # --- Step 3: outputs to results --------------------------------------------------------

    def count(
        self, run: str, model: ActiveModel, outputs: list[bulk.ListedObject]
    ) -> bulk.BatchReport:
        """Turn each transform output into the upload pipeline's result, event and item."""
        with ThreadPoolExecutor(WORKERS) as pool:
            done = list(pool.map(lambda output: self._post_process(run, model, output), outputs))
        made = [item for item in done if item is not None]
        self._record(made)
        report = bulk.BatchReport(failed=len(outputs) - len(made))
        by_class: Counter[str] = Counter()
        for document in (item.document for item in made):
            if isinstance(document, CountedDocument):
                report.counted += 1
                report.capped += int(document.capped)
                by_class.update(document.by_class)
            else:
                report.rejected += 1
        report.objects_by_class = dict(sorted(by_class.items()))
        batch = bulk.batch_name(output.key for output in outputs)
        self._put_json(bulk.report_key(run, "count", batch), report.model_dump())
        return report

    def _post_process(
        self, run: str, model: ActiveModel, output: bulk.ListedObject
    ) -> _Result | None:
        """The output's result, or None if it cannot be one (the summary counts it failed)."""
        try:
            key = bulk.image_key_of_output(run, output.key)
            body = self._s3.get_object(Bucket=self._bucket, Key=output.key)["Body"].read()
            response = self._s3.get_object(Bucket=self._bucket, Key=key)
        except (InputError, ClientError):
            # Not an output of this run, or its image is gone: nothing to count.
            return None
        data = response["Body"].read()
        image = results.ImageRef(
            self._bucket, key, response.get("VersionId"), bulk.unquoted_etag(response.get("ETag"))
        )
        now = self._clock()
        try:
            size = images.image_size(data)
        except InputError as error:
            return _Result(self._rejected(image, str(error)))
        try:
            document, result = results.count_response(
                image,
                body,
                model=model,
                configured_threshold=self._threshold,
                image_size=size,
                counted_at=now,
                pipeline=results.PIPELINE_BULK,
            )
        except (InputError, ValidationError):
            # The model answered something else than its documented JSON, or (a bug) the
            # result breaks its contract: nothing is written, the summary counts it failed.
            return None
        annotated = annotate.annotate(data, result.detections, result) if self._annotate else None
        return _Result(document, annotated)

    # --- Step 4: the run's summary ----------------------------------------------------------

    def summarize(
        self, run: str, prefix: str, model_name: str, transform: bulk.TransformOutcome
    ) -> bulk.Summary:
        reports: dict[str, list[bulk.BatchReport]] = {}
        for step in ("select", "count"):
            keys = list(self._keys_under(f"{bulk.reports_prefix(run)}{step}/"))
            with ThreadPoolExecutor(WORKERS) as pool:
                reports[step] = [
                    bulk.BatchReport.model_validate(found)
                    for found in pool.map(self._get_json, keys)
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
        self._put_json(bulk.summary_key(run), summary.model_dump(mode="json"))
        return summary

    # --- Writing ----------------------------------------------------------------------------

    def _rejected(self, image: results.ImageRef, reason: str) -> RejectedDocument:
        return results.rejected_document(
            image, reason, self._clock(), pipeline=results.PIPELINE_BULK
        )

    def _record(self, made: list[_Result]) -> None:
        """Result documents (and annotated images), then events, then table items."""
        with ThreadPoolExecutor(WORKERS) as pool:
            list(pool.map(self._write, made))
        announcements.publish(
            [
                announcements.entry(
                    item.document, source=self._source, annotated=item.annotated is not None
                )
                for item in made
            ],
            self._put_events,
        )
        with self._table.batch_writer() as writer:
            for item in made:
                writer.put_item(Item=results.dynamodb_item(results.table_item(item.document)))

    def _write(self, item: _Result) -> None:
        key = item.document.source.key
        self._s3.put_object(
            Bucket=self._bucket,
            Key=results.result_key(key),
            Body=results.document_json(item.document),
            ContentType=JSON_CONTENT_TYPE,
        )
        if item.annotated is not None:
            self._s3.put_object(
                Bucket=self._bucket,
                Key=results.annotated_key(key),
                Body=item.annotated,
                ContentType="image/png",
            )

    def _put_json(self, key: str, value: Any) -> None:
        self._s3.put_object(
            Bucket=self._bucket,
            Key=key,
            Body=json.dumps(value, sort_keys=True).encode(),
            ContentType=JSON_CONTENT_TYPE,
        )

    def _get_json(self, key: str) -> Any:
        return json.loads(self._s3.get_object(Bucket=self._bucket, Key=key)["Body"].read())

    def _keys_under(self, prefix: str) -> Iterable[str]:
        pages = self._s3.get_paginator("list_objects_v2").paginate(
            Bucket=self._bucket, Prefix=prefix
        )
        for page in pages:
            for found in page.get("Contents", ()):
                yield found["Key"]


class _ChunkStream(io.RawIOBase):
    """A readable stream over byte chunks, for boto3's multipart ``upload_fileobj``."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = bytearray()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while len(self._pending) < len(buffer):
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._pending += chunk
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        del self._pending[:size]
        return size
