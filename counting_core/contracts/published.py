"""The published contracts: what a result document, a table item and a result event hold.

``results`` and ``announcements`` build every document, item and event detail as one of
these models, and the Lambdas write them only through the models' serializers, so nothing
reaches S3, DynamoDB or EventBridge that the contract does not name (``extra="forbid"``).
``json_schemas`` turns them into the JSON Schemas checked into ``schemas/``
(``make schemas``) and registered in the stack's EventBridge schema registry; tests also
validate real outputs of both pipelines against those schemas.

EventBridge registries take ``OpenApi3`` or ``JSONSchemaDraft4`` schemas; pydantic writes
JSON Schema 2020-12, so ``_draft4`` rewrites the few constructs that differ (``$defs``,
``const``) and the models avoid the others (``gt``/``lt``: exclusive bounds changed type).
https://docs.aws.amazon.com/AWSCloudFormation/latest/TemplateReference/aws-resource-eventschemas-schema.html
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

DRAFT4 = "http://json-schema.org/draft-04/schema#"

Pipeline = Literal["upload", "bulk"]
#: What a result says of its image: counted, or rejected (it cannot be counted, never retried).
Status = Literal["counted", "rejected"]
#: Where a count's threshold came from (``model_record.score_threshold``): the configuration
#: pinned it, the model's training run calibrated it (``counting_core.models.evaluation``), or
#: neither and the guide's 0.2 applies.
ThresholdOrigin = Literal["configured", "calibrated", "default"]
#: ``<project>-<stage>`` + this is every result event's source.
SOURCE_SUFFIX = ".counting"


class _Contract(BaseModel):
    # A field the code writes but the contract does not name is an error in the tests.
    model_config = ConfigDict(extra="forbid")


class SourceObject(_Contract):
    """The S3 object version that was counted."""

    bucket: str
    key: str
    version_id: str | None = Field(description="S3 version id (versioned buckets)")
    etag: str | None = Field(description="S3 ETag, without quotes")

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def version(self) -> str:
        """What tells this version of the object apart: version id, else ETag, else ``-``."""
        return self.version_id or self.etag or "-"


class ImageSize(_Contract):
    width: int | None = Field(ge=1)
    height: int | None = Field(ge=1)


# The model that counted an image, as its result document and its event name it.
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


_CAPPED = (
    "true: the model returned as many detections as its cap (max_detections), so the image "
    "may hold more objects than count says; false: fewer, or the model does not say its cap"
)
# Results written before the flag existed lack it; they meant false (the built-in algorithm
# does not say its cap), so readers take a missing flag as false.
_CAPPED_OR_ABSENT = f"{_CAPPED}. Absent in results written before this field: read as false"


#: How boxes of several tiles become one object (``counting_core.imaging.tiling``).
MergeMethod = Literal["merge", "nms"]


class TilingUsed(_Contract):
    """How a tiled image was sent: in overlapping tiles at native resolution, boxes merged
    across tile borders (docs/counting.md, Tiling)."""

    tiles: int = Field(ge=1)
    tile_side: int = Field(ge=1, description="pixels")
    overlap: int = Field(ge=1, description="pixels shared by neighbouring tiles")
    merge: MergeMethod = Field(
        description="merge: pieces of an object cut by a tile border join it; nms: "
        "suppression on intersection over union"
    )
    whole_image_pass: bool = Field(description="the image was also sent whole, scaled")
    endpoint_calls: int = Field(ge=1, description="tiles, plus one for the whole-image pass")
    capped_calls: int = Field(
        ge=0, description="calls whose answer held as many detections as the model's cap"
    )


_TILED = (
    "How the image was tiled; absent when it was sent whole (and in results written before "
    "this field)"
)


class CountedDocument(_Contract):
    """``results/<key>.json`` of a counted image."""

    status: Literal["counted"]
    pipeline: Pipeline = Field(description="upload: an image put under incoming/; bulk: a run")
    source: SourceObject
    image_size: ImageSize
    model: ModelUsed
    counted_at: str = Field(description="ISO 8601 time the result was made")
    count: int = Field(ge=0)
    capped: bool = Field(False, description=_CAPPED_OR_ABSENT)
    by_class: dict[str, int] = Field(description="class name -> objects counted")
    threshold: float = Field(ge=0, le=1, description="detections scoring at least this count")
    threshold_origin: ThresholdOrigin = Field(
        description="configured: counter.score_threshold; calibrated: the model's "
        "best_threshold; default: 0.2"
    )
    tiling: TilingUsed | None = Field(None, description=_TILED)
    unnamed_class_ids: list[int] | None = Field(
        None,
        description="class ids of counted detections that the model's class map does not "
        "name (counted under their number): the class map is likely wrong; absent when every "
        "counted class is named (and in results written before this field)",
    )
    detections: list[Detection]


class RejectedDocument(_Contract):
    """``results/<key>.json`` of an image that cannot be counted (not retried)."""

    status: Literal["rejected"]
    pipeline: Pipeline
    source: SourceObject
    reason: str
    counted_at: str


#: ``results/<key>.json``: either document; ``status`` tells which.
ResultDocument = Annotated[CountedDocument | RejectedDocument, Field(discriminator="status")]
#: Reads (``validate_json``) and writes (``dump_json``) a result document of either kind.
RESULT_DOCUMENT: TypeAdapter[ResultDocument] = TypeAdapter(ResultDocument)


class TableItem(_Contract):
    """One item of the results table per image version (keys ``image``, ``version``)."""

    image: str = Field(description="s3://bucket/key")
    version: str = Field(description="version id, else ETag, else '-'")
    status: Status
    pipeline: Pipeline
    counted_at: str
    etag: str | None = None
    count: int | None = Field(None, ge=0)
    capped: bool | None = Field(None, description=f"counted images: {_CAPPED_OR_ABSENT}")
    by_class: dict[str, int] | None = Field(
        None,
        description="class name -> objects counted; the biggest classes only, when too many "
        "for one item (classes_in_result_only)",
    )
    classes_in_result_only: int | None = Field(
        None, ge=1, description="classes left out of by_class; the result document has all"
    )
    threshold: float | None = Field(None, ge=0, le=1)
    threshold_origin: ThresholdOrigin | None = None
    model_name: str | None = None
    endpoint_config_name: str | None = None
    tiles: int | None = Field(None, ge=1, description="tiles sent; absent: sent whole")
    endpoint_calls: int | None = Field(
        None, ge=1, description="tiled images: endpoint calls made (tiles and whole-image pass)"
    )
    reason: str | None = None
    unfinished: bool | None = Field(
        None,
        description="true while the image is being recorded: the item is written first, and "
        "its result document or event may not be there yet; absent once they are. An item "
        "with it is a count under way or one that failed: its retry finishes it",
    )


class ImageCountedDetail(_Contract):
    """Detail of an ``Image Counted`` event.

    Delivery is at least once: deduplicate on (``image``, ``version``, ``model.model_name``).
    """

    image: str = Field(description="s3://bucket/key of the image")
    version: str = Field(description="S3 version id, else ETag")
    pipeline: Pipeline
    count: int = Field(ge=0)
    capped: bool = Field(description=_CAPPED)
    by_class: dict[str, int] = Field(
        description="class name -> objects counted; the biggest classes only, when too many "
        "for one event (classes_in_result_only)"
    )
    classes_in_result_only: int | None = Field(
        None, ge=1, description="classes left out of by_class; the result document has all"
    )
    threshold: float = Field(ge=0, le=1)
    threshold_origin: ThresholdOrigin
    model: ModelUsed
    tiles: int | None = Field(None, ge=1, description="tiles sent; absent: sent whole")
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
    source: str = Field(description="<project>-<stage>" + SOURCE_SUFFIX)
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


#: File name under ``schemas/`` -> the contract it describes.
SCHEMAS: dict[str, TypeAdapter[Any]] = {
    "result-document.json": RESULT_DOCUMENT,
    "result-table-item.json": TypeAdapter(TableItem),
    "image-counted-event.json": TypeAdapter(ImageCountedEvent),
    "image-rejected-event.json": TypeAdapter(ImageRejectedEvent),
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


def json_schema(contract: TypeAdapter[Any]) -> dict[str, Any]:
    """``contract``'s JSON Schema, draft 4, as registered and checked in."""
    generated = contract.json_schema(by_alias=True, ref_template="#/definitions/{model}")
    if contract is RESULT_DOCUMENT:
        generated = {"title": "ResultDocument", **generated}  # a union has no title of its own
    return {"$schema": DRAFT4, **_draft4(generated)}


def json_schemas() -> dict[str, dict[str, Any]]:
    """Every published schema by its file name under ``schemas/``."""
    return {name: json_schema(model) for name, model in SCHEMAS.items()}
