"""What a counted (or refused) image leaves behind: its S3 result and its table item.

Pure: both pipelines build their result documents and table items here, as the published
``contracts`` models, and write them only through those models (``document_json``,
``dynamodb_item``); tests read them back through the same models.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from counting_core import layout
from counting_core.contracts import published
from counting_core.contracts.published import (
    CountedDocument,
    ModelUsed,
    RejectedDocument,
    ResultDocument,
    SourceObject,
    TableItem,
    TilingUsed,
)
from counting_core.counts import predictions
from counting_core.counts.predictions import CountResult
from counting_core.errors import InputError
from counting_core.models.model_record import ActiveModel, score_threshold

STATUS_COUNTED: published.Status = "counted"
STATUS_REJECTED: published.Status = "rejected"
#: Which pipeline made a result: an image uploaded under incoming/, or a bulk run.
PIPELINE_UPLOAD: published.Pipeline = "upload"
PIPELINE_BULK: published.Pipeline = "bulk"

# S3 object keys are at most 1,024 bytes of UTF-8.
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/object-keys.html
MAX_KEY_BYTES = 1024
# DynamoDB items are at most 400 KB (binary: 409,600 bytes), names and values together.
# https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/Constraints.html
MAX_ITEM_BYTES = 400 * 1024
# The table item's per-class counts stop at this many bytes, biggest classes first; the full
# counts and every detection stay in the result JSON. Leaves the rest of the item far below
# MAX_ITEM_BYTES whatever a class map holds.
BY_CLASS_ITEM_BYTES = 64 * 1024
# Rejection reasons in the item and the event are cut to this many characters (the JSON keeps
# them whole).
REASON_ITEM_CHARACTERS = 1000
# The annotated copy keeps at most this many pixels on its longest side: DCI 4K, so a 12 MP
# phone photo (4032 px) is drawn on at full resolution and larger photos are scaled down.
ANNOTATED_MAX_SIDE = 4096


@dataclass(frozen=True)
class Outcome:
    """What became of one image: what its metrics, its log line and batch reports are made of.

    ``replayed`` is true when this try found the image already recorded for the same version
    and model (an idempotent replay, or a record an earlier try finished): nothing was
    written, announced or measured again.
    """

    status: published.Status
    count: int = 0
    by_class: dict[str, int] = field(default_factory=dict)
    capped: bool = False
    reason: str | None = None
    endpoint_latency_ms: float | None = None
    replayed: bool = False

    @classmethod
    def of(cls, document: ResultDocument, *, endpoint_latency_ms: float | None = None) -> Outcome:
        if isinstance(document, RejectedDocument):
            return cls(STATUS_REJECTED, reason=document.reason)
        return cls(
            STATUS_COUNTED,
            count=document.count,
            by_class=dict(document.by_class),
            capped=document.capped,
            endpoint_latency_ms=endpoint_latency_ms,
        )


def _relative_key(key: str) -> str:
    return key.removeprefix(layout.INCOMING)


def result_key(image_key: str) -> str:
    """``incoming/a/b.jpg`` -> ``results/a/b.jpg.json``."""
    return f"{layout.RESULTS}{_relative_key(image_key)}.json"


def annotated_key(image_key: str) -> str:
    """``incoming/a/b.jpg`` -> ``annotated/a/b.jpg.png``."""
    return f"{layout.ANNOTATED}{_relative_key(image_key)}.png"


def check_derived_keys(image_key: str) -> None:
    """Raise InputError when the image's ``results/`` or ``annotated/`` key would not fit S3."""
    for derived in (result_key(image_key), annotated_key(image_key)):
        length = len(derived.encode())
        if length > MAX_KEY_BYTES:
            raise InputError(
                f"key too long to count: {derived.split('/', 1)[0]}/ key would be {length} "
                f"bytes, S3 keys hold at most {MAX_KEY_BYTES}"
            )


def count_response(
    image: SourceObject,
    body: bytes | str,
    *,
    model: ActiveModel,
    configured_threshold: float | None,
    image_size: tuple[int, int],
    counted_at: datetime,
    pipeline: published.Pipeline,
) -> tuple[CountedDocument, CountResult]:
    """The post-processing both pipelines share: the model's JSON answer to a result document.

    The upload pipeline hands in the endpoint's response, a bulk run the transform's
    output for the image (the same JSON). Raises InputError if ``body`` is not the
    model's documented answer.
    """
    response = predictions.parse_response(body)
    return count_found(
        image,
        response.detections,
        capped=response.capped,
        model=model,
        configured_threshold=configured_threshold,
        image_size=image_size,
        counted_at=counted_at,
        pipeline=pipeline,
    )


def count_found(
    image: SourceObject,
    detections: Iterable[predictions.Detection],
    *,
    capped: bool,
    model: ActiveModel,
    configured_threshold: float | None,
    image_size: tuple[int, int],
    counted_at: datetime,
    pipeline: published.Pipeline,
    tiling: TilingUsed | None = None,
) -> tuple[CountedDocument, CountResult]:
    """What the model found in an image (each object once: a tiled image's boxes merged), as
    its result document; ``tiling`` says how a tiled image was sent."""
    threshold = score_threshold(model, configured_threshold, tiled=tiling is not None)
    result = predictions.count_detections(
        detections,
        threshold=threshold.value,
        threshold_origin=threshold.origin,
        class_map=model.class_map,
        image_size=image_size,
        capped=capped,
    )
    document = counted_document(image, result, model.model_used(), counted_at, pipeline=pipeline)
    unnamed = predictions.unnamed_class_ids(
        (detection.class_id for detection in result.detections), model.class_map
    )
    if tiling is not None or unnamed:
        document = document.model_copy(
            update={"tiling": tiling, "unnamed_class_ids": unnamed or None}
        )
    return document, result


def counted_document(
    image: SourceObject,
    result: CountResult,
    model: ModelUsed,
    counted_at: datetime,
    *,
    pipeline: published.Pipeline,
) -> CountedDocument:
    """The document written to ``results/<key>.json`` for a counted image."""
    width, height = result.image_size or (None, None)
    # One validation of the whole document: pydantic checks the detections in bulk, faster
    # than building each one as a model (make bench, bulk post-processing).
    return CountedDocument.model_validate(
        {
            "status": STATUS_COUNTED,
            "pipeline": pipeline,
            "source": image,
            "image_size": {"width": width, "height": height},
            "model": model,
            "counted_at": counted_at.isoformat(),
            **result.to_dict(),
        }
    )


def rejected_document(
    image: SourceObject, reason: str, counted_at: datetime, *, pipeline: published.Pipeline
) -> RejectedDocument:
    """The document written for an image that cannot be counted (not retried)."""
    return RejectedDocument(
        status=STATUS_REJECTED,
        pipeline=pipeline,
        source=image,
        reason=reason,
        counted_at=counted_at.isoformat(),
    )


#: Fields a counted document holds only when they say something: an image sent whole, with
#: every class named, reads as before these fields.
_ONLY_WHEN_SET = ("tiling", "unnamed_class_ids")


def document_json(document: ResultDocument) -> bytes:
    """The bytes of ``results/<key>.json``: the contract's fields in its order, indented;
    ``tiling`` only for a tiled image, ``unnamed_class_ids`` only when some are."""
    unset = (
        {name for name in _ONLY_WHEN_SET if getattr(document, name) is None}
        if isinstance(document, CountedDocument)
        else None
    )
    return published.RESULT_DOCUMENT.dump_json(document, indent=2, exclude=unset or None)


def table_item(document: ResultDocument, *, unfinished: bool = False) -> TableItem:
    """The results table's item summarising a result document.

    ``unfinished``: the item as it is first written, before the document and the event
    (``TableItem.unfinished``).
    """
    source = document.source
    common: dict[str, Any] = {
        "image": source.uri,
        "version": source.version,
        "status": document.status,
        "pipeline": document.pipeline,
        "counted_at": document.counted_at,
        # A bulk run skips an object whose content this model counted already.
        "etag": source.etag or None,
        "unfinished": unfinished or None,
    }
    if isinstance(document, RejectedDocument):
        return TableItem(**common, reason=document.reason[:REASON_ITEM_CHARACTERS])
    by_class = largest_classes(document.by_class, BY_CLASS_ITEM_BYTES, item_size_bytes)
    return TableItem(
        **common,
        count=document.count,
        capped=document.capped,
        by_class=by_class,
        # Named so a reader of the item knows the JSON holds the rest.
        classes_in_result_only=(len(document.by_class) - len(by_class)) or None,
        threshold=document.threshold,
        threshold_origin=document.threshold_origin,
        model_name=document.model.model_name,
        endpoint_config_name=document.model.endpoint_config_name,
        tiles=document.tiling.tiles if document.tiling else None,
        endpoint_calls=document.tiling.endpoint_calls if document.tiling else None,
    )


def dynamodb_item(item: TableItem) -> dict[str, Any]:
    """``item`` in boto3's resource-layer types: absent fields left out, numbers as Decimal.

    boto3 refuses Python floats (they may not round-trip); the threshold goes through its
    shortest text form, so 0.2 is stored as 0.2, not 0.2000000000000000111.
    """
    fields = item.model_dump(exclude_none=True)
    if "threshold" in fields:
        fields["threshold"] = Decimal(str(fields["threshold"]))
    return fields


def item_size_bytes(value: Any, name: str = "") -> int:
    """DynamoDB's size of one attribute (``name`` and ``value``), by its documented rules.

    Strings count their UTF-8 bytes; numbers about one byte per two significant digits plus
    one; maps and lists 3 bytes plus one per element. A whole item is a map with no name.
    https://docs.aws.amazon.com/amazondynamodb/latest/developerguide/CapacityUnitCalculations.html
    """
    size = len(name.encode())
    if isinstance(value, str):
        return size + len(value.encode())
    if isinstance(value, bool) or value is None:
        return size + 1
    if isinstance(value, int | float | Decimal):
        digits = len(str(abs(value)).replace(".", "").strip("0")) or 1
        return size + (digits + 1) // 2 + 1
    if isinstance(value, dict):
        return size + 3 + sum(item_size_bytes(v, str(k)) + 1 for k, v in value.items())
    return size + 3 + sum(item_size_bytes(v) + 1 for v in value)


def largest_classes(
    by_class: dict[str, int], budget_bytes: int, size: Callable[[int, str], int]
) -> dict[str, int]:
    """The classes with the most objects whose entries fit ``budget_bytes``, sorted by name.

    ``size(count, name)`` is one entry's size as the store that keeps them counts it.
    """
    kept: dict[str, int] = {}
    used = 0
    for name, count in sorted(by_class.items(), key=lambda entry: (-entry[1], entry[0])):
        used += size(count, name) + 1
        if used > budget_bytes:
            break
        kept[name] = count
    return dict(sorted(kept.items()))
