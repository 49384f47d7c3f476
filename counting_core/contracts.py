"""The published contracts: what a result document, a table item and a result event hold.

These models describe what ``results`` and ``announcements`` write; they are not used to
write it (building plain dicts keeps the hot path fast). ``json_schemas`` turns them into
the JSON Schemas checked into ``schemas/`` (``make schemas``) and registered in the
stack's EventBridge schema registry, and tests validate real outputs of both pipelines
against those schemas, so a field added without its contract fails the build.

EventBridge registries take ``OpenApi3`` or ``JSONSchemaDraft4`` schemas; pydantic writes
JSON Schema 2020-12, so ``_draft4`` rewrites the few constructs that differ (``$defs``,
``const``) and the models avoid the others (``gt``/``lt``: exclusive bounds changed type).
https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-eventschemas-schema.html
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from counting_core import announcements

DRAFT4 = "http://json-schema.org/draft-04/schema#"

Pipeline = Literal["upload", "bulk"]
# model_record.score_threshold: pinned in the config, the model's calibrated one, or 0.2.
ThresholdOrigin = Literal["configured", "calibrated", "default"]


class _Contract(BaseModel):
    # A field the code writes but the contract does not name is an error in the tests.
    model_config = ConfigDict(extra="forbid")


class SourceObject(_Contract):
    """The S3 object version that was counted."""

    bucket: str
    key: str
    version_id: str | None = Field(description="S3 version id (versioned buckets)")
    etag: str | None = Field(description="S3 ETag, without quotes")


class ImageSize(_Contract):
    width: int | None = Field(ge=1)
    height: int | None = Field(ge=1)


class ModelUsed(_Contract):
    endpoint_name: str
    endpoint_config_name: str
    model_name: str = Field(description="The model version: a new one per training run")


class Box(_Contract):
    """Corners as fractions (0..1) of the image's width and height."""

    xmin: float = Field(ge=0, le=1)
    ymin: float = Field(ge=0, le=1)
    xmax: float = Field(ge=0, le=1)
    ymax: float = Field(ge=0, le=1)


class PixelBox(_Contract):
    """Inclusive pixel indices of the box."""

    left: int = Field(ge=0)
    top: int = Field(ge=0)
    right: int = Field(ge=0)
    bottom: int = Field(ge=0)


class Detection(_Contract):
    number: int = Field(ge=1, description="1, 2, ... by descending score")
    class_id: int = Field(ge=0)
    class_name: str
    score: float = Field(ge=0, le=1)
    box: Box
    box_pixels: PixelBox | None = None


class CountedDocument(_Contract):
    """``results/<key>.json`` of a counted image."""

    status: Literal["counted"]
    pipeline: Pipeline = Field(description="upload: an image put under incoming/; bulk: a run")
    source: SourceObject
    image_size: ImageSize
    model: ModelUsed
    counted_at: str = Field(description="ISO 8601 time the result was made")
    count: int = Field(ge=0)
    by_class: dict[str, int] = Field(description="class name -> objects counted")
    threshold: float = Field(ge=0, le=1, description="detections scoring at least this count")
    threshold_origin: ThresholdOrigin = Field(
        description="configured: counter.score_threshold; calibrated: the model's "
        "best_threshold; default: 0.2"
    )
    detections: list[Detection]


class RejectedDocument(_Contract):
    """``results/<key>.json`` of an image that cannot be counted (not retried)."""

    status: Literal["rejected"]
    pipeline: Pipeline
    source: SourceObject
    reason: str
    counted_at: str


class ResultDocument(BaseModel):
    """Either document; ``status`` tells which."""

    document: CountedDocument | RejectedDocument = Field(discriminator="status")


class TableItem(_Contract):
    """One item of the results table per image version (keys ``image``, ``version``)."""

    image: str = Field(description="s3://bucket/key")
    version: str = Field(description="version id, else ETag, else '-'")
    status: Literal["counted", "rejected"]
    pipeline: Pipeline
    counted_at: str
    etag: str | None = None
    count: int | None = Field(None, ge=0)
    by_class: dict[str, int] | None = None
    threshold: float | None = Field(None, ge=0, le=1)
    threshold_origin: ThresholdOrigin | None = None
    model_name: str | None = None
    endpoint_config_name: str | None = None
    reason: str | None = None


class EventModel(_Contract):
    model_name: str
    endpoint_config_name: str


class ImageCountedDetail(_Contract):
    """Detail of an ``Image Counted`` event.

    Delivery is at least once: deduplicate on (``image``, ``version``, ``model.model_name``).
    """

    image: str = Field(description="s3://bucket/key of the image")
    version: str = Field(description="S3 version id, else ETag")
    pipeline: Pipeline
    count: int = Field(ge=0)
    by_class: dict[str, int]
    threshold: float = Field(ge=0, le=1)
    threshold_origin: ThresholdOrigin
    model: EventModel
    result: str = Field(description="s3:// URI of the result document")
    annotated: str | None = Field(description="s3:// URI of the annotated image, if written")
    counted_at: str


class ImageRejectedDetail(_Contract):
    """Detail of an ``Image Rejected`` event: the image cannot be counted, and why."""

    image: str
    version: str
    pipeline: Pipeline
    reason: str
    result: str
    counted_at: str


class _Event(_Contract):
    """The EventBridge envelope a consumer receives around ``detail``."""

    version: str
    id: str = Field(description="Differs per delivery attempt: not a deduplication key")
    detail_type: str = Field(alias="detail-type")
    source: str = Field(description="<project>-<stage>" + announcements.SOURCE_SUFFIX)
    account: str
    time: str
    region: str
    resources: list[str]


class ImageCountedEvent(_Event):
    detail_type: Literal["Image Counted"] = Field(alias="detail-type")
    detail: ImageCountedDetail


class ImageRejectedEvent(_Event):
    detail_type: Literal["Image Rejected"] = Field(alias="detail-type")
    detail: ImageRejectedDetail


#: File name under ``schemas/`` -> the model it describes.
SCHEMAS: dict[str, type[BaseModel]] = {
    "result-document.json": ResultDocument,
    "result-table-item.json": TableItem,
    "image-counted-event.json": ImageCountedEvent,
    "image-rejected-event.json": ImageRejectedEvent,
}


def _draft4(node: Any) -> Any:
    if isinstance(node, list):
        return [_draft4(item) for item in node]
    if not isinstance(node, dict):
        return node
    converted = {}
    for key, value in node.items():
        if key == "const":
            converted["enum"] = [value]
        elif key == "$defs":
            converted["definitions"] = _draft4(value)
        elif key == "discriminator":
            continue  # an OpenAPI keyword; the oneOf alone says the same in JSON Schema
        else:
            converted[key] = _draft4(value)
    return converted


def json_schema(model: type[BaseModel]) -> dict[str, Any]:
    """``model``'s JSON Schema, draft 4, as registered and checked in."""
    generated = model.model_json_schema(by_alias=True, ref_template="#/definitions/{model}")
    if model is ResultDocument:
        # The wrapper only names the union: publish the union itself.
        union = generated["properties"]["document"]
        generated = {"title": "ResultDocument", **union, "$defs": generated["$defs"]}
    return {"$schema": DRAFT4, **_draft4(generated)}


def json_schemas() -> dict[str, dict[str, Any]]:
    """Every published schema by its file name under ``schemas/``."""
    return {name: json_schema(model) for name, model in SCHEMAS.items()}
