"""Result events: one EventBridge event per counted or rejected image, from either pipeline.

Downstream pipelines subscribe with a rule on the default bus (source
``<project>-<stage>.counting``, detail-type ``Image Counted`` or ``Image Rejected``)
instead of polling S3 or DynamoDB. The detail is ``contracts.ImageCountedDetail`` or
``contracts.ImageRejectedDetail``; both are published as JSON Schemas (``schemas/``).

Delivery is at least once: an image's event is published after its table item is claimed
and its result document written, and before the item is marked finished
(``adapters.result_store``); an entry still refused after the retries here leaves its image
unfinished, and the image's retry publishes it. A consumer deduplicates on (image, version,
model), see ``contracts.ImageCountedDetail``.

The detail stays far below PutEvents' 256 KB whatever the class map holds: ``by_class``
keeps the classes with the most objects up to ``BY_CLASS_EVENT_BYTES`` and
``classes_in_result_only`` says how many more the result document lists, as the table item
does.

Pure: ``publish`` takes the ``put_events`` call as an argument, so this module stays free
of AWS SDKs and each Lambda hands in its own client.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

from counting_core.contracts.published import (
    SOURCE_SUFFIX,
    ImageCountedDetail,
    ImageRejectedDetail,
    RejectedDocument,
    ResultDocument,
)
from counting_core.counts import results

IMAGE_COUNTED = "Image Counted"
IMAGE_REJECTED = "Image Rejected"
DETAIL_TYPES = {results.STATUS_COUNTED: IMAGE_COUNTED, results.STATUS_REJECTED: IMAGE_REJECTED}
#: The bus every result goes to: rules of other teams in the account subscribe there.
EVENT_BUS = "default"

# PutEvents takes at most 10 entries per request, and the entries' total size must be
# under 256 KB, counted as the UTF-8 bytes of Source, DetailType, Detail and Resources
# (plus 14 for Time, which is not sent here).
# https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-putevents.html
# https://docs.aws.amazon.com/AmazonCloudWatch/latest/events/CalculatePutEventsEntrySize.html
MAX_ENTRIES_PER_REQUEST = 10
MAX_REQUEST_BYTES = 256 * 1024
# Attempts for entries EventBridge refused (throttling, internal errors), the first
# included; botocore already retries whole requests that fail (standard mode).
PUBLISH_ATTEMPTS = 4
# Seconds before the first retry of refused entries, doubled for each next one.
PUBLISH_BACKOFF_SECONDS = 0.2
# An event's per-class counts stop at this many bytes of JSON, biggest classes first: with the
# rest of the detail (URIs of at most 1,024-byte keys, names, a reason cut to
# results.REASON_ITEM_CHARACTERS) an entry stays under a third of MAX_REQUEST_BYTES.
BY_CLASS_EVENT_BYTES = 64 * 1024


class EventsNotDelivered(Exception):
    """EventBridge still refused an entry after every attempt; its image is tried again."""


def event_source(prefix: str) -> str:
    """``object-counting-dev`` -> ``object-counting-dev.counting``."""
    return f"{prefix}{SOURCE_SUFFIX}"


def s3_uri(bucket: str, key: str) -> str:
    return f"s3://{bucket}/{key}"


def event_detail(
    document: ResultDocument, *, annotated: bool
) -> ImageCountedDetail | ImageRejectedDetail:
    """The detail of ``document``'s event.

    ``annotated`` says whether the pipeline wrote the annotated image beside the result.
    """
    source = document.source
    common: dict[str, Any] = {
        "image": source.uri,
        "version": source.version,
        "pipeline": document.pipeline,
        "result": s3_uri(source.bucket, results.result_key(source.key)),
        "counted_at": document.counted_at,
    }
    if isinstance(document, RejectedDocument):
        return ImageRejectedDetail(
            **common, reason=document.reason[: results.REASON_ITEM_CHARACTERS]
        )
    by_class = results.largest_classes(document.by_class, BY_CLASS_EVENT_BYTES, _json_entry_bytes)
    return ImageCountedDetail(
        **common,
        count=document.count,
        capped=document.capped,
        by_class=by_class,
        classes_in_result_only=(len(document.by_class) - len(by_class)) or None,
        threshold=document.threshold,
        threshold_origin=document.threshold_origin,
        model=document.model,
        tiles=document.tiling.tiles if document.tiling else None,
        annotated=s3_uri(source.bucket, results.annotated_key(source.key)) if annotated else None,
    )


def _json_entry_bytes(count: int, name: str) -> int:
    """At most the bytes of ``"name":count`` in the detail's JSON (ASCII-escaped: an upper bound
    of the UTF-8 pydantic writes)."""
    return len(json.dumps(name)) + len(str(count)) + 1


# Left out of a counted event when unset, as in the table item: classes_in_result_only when
# nothing was left out, tiles when the image was sent whole.
_LEFT_OUT_UNSET = ("classes_in_result_only", "tiles")


def _detail_json(detail: ImageCountedDetail | ImageRejectedDetail) -> str:
    if isinstance(detail, ImageCountedDetail):
        unset = {name for name in _LEFT_OUT_UNSET if getattr(detail, name) is None}
        return detail.model_dump_json(exclude=unset)
    return detail.model_dump_json()


def entry(document: ResultDocument, *, source: str, annotated: bool) -> dict[str, Any]:
    """The PutEvents entry announcing ``document`` on the default bus."""
    return {
        "Source": source,
        "DetailType": DETAIL_TYPES[document.status],
        "Detail": _detail_json(event_detail(document, annotated=annotated)),
        "EventBusName": EVENT_BUS,
    }


def entry_size(item: Mapping[str, Any]) -> int:
    """An entry's size as EventBridge counts it against the 256 KB request limit."""
    size = sum(len(item.get(field, "").encode()) for field in ("Source", "DetailType", "Detail"))
    size += sum(len(resource.encode()) for resource in item.get("Resources", ()))
    return size + (14 if "Time" in item else 0)


def requests(entries: Iterable[Mapping[str, Any]]) -> Iterator[list[Mapping[str, Any]]]:
    """Group entries into PutEvents requests within the entry and size limits."""
    batch: list[Mapping[str, Any]] = []
    batch_bytes = 0
    for item in entries:
        size = entry_size(item)
        if size > MAX_REQUEST_BYTES:
            raise ValueError(f"an event of {size} bytes exceeds PutEvents' {MAX_REQUEST_BYTES}")
        if len(batch) == MAX_ENTRIES_PER_REQUEST or batch_bytes + size > MAX_REQUEST_BYTES:
            yield batch
            batch, batch_bytes = [], 0
        batch.append(item)
        batch_bytes += size
    if batch:
        yield batch


def publish(
    entries: Sequence[Mapping[str, Any]],
    put_events: Callable[..., Mapping[str, Any]],
    *,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[int, str]:
    """Send every entry, retrying those EventBridge refuses.

    Returns the entries still refused after ``PUBLISH_ATTEMPTS`` attempts, as their index in
    ``entries`` and EventBridge's error code; empty when every one was delivered. Entries are
    independent events, so a retry resends only the refused ones (the response lists entries
    in the request's order), and one refused entry holds back no other.
    """
    refused: dict[int, str] = {}
    first = 0
    for request in requests(entries):
        pending = dict(enumerate(request, first))
        first += len(request)
        codes: dict[int, str] = {}
        for attempt in range(PUBLISH_ATTEMPTS):
            if attempt:
                sleep(PUBLISH_BACKOFF_SECONDS * 2 ** (attempt - 1))
            response = put_events(Entries=list(pending.values()))
            codes = {
                index: answer["ErrorCode"]
                for index, answer in zip(pending, response["Entries"], strict=True)
                if answer.get("ErrorCode")
            }
            pending = {index: pending[index] for index in codes}
            if not pending:
                break
        refused.update(codes)
    return refused
