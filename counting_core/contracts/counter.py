"""The counter Lambda's contract with its stack (``stacks/components/counter.py``).

SQS invokes it with S3 "Object Created" events (``contracts.events``), so its environment
is all the stack hands it.
"""

from __future__ import annotations

from pydantic import Field

from counting_core.contracts.environment import (
    BucketName,
    EventSource,
    FunctionEnvironment,
    ParameterName,
    QueueUrl,
    TableName,
)
from counting_core.contracts.published import MergeMethod
from counting_core.imaging import tiling


class Environment(FunctionEnvironment):
    data_bucket: BucketName = Field(alias="DATA_BUCKET")
    queue_url: QueueUrl = Field(alias="QUEUE_URL")
    dead_letter_queue_url: QueueUrl = Field(alias="DEAD_LETTER_QUEUE_URL")
    results_table: TableName = Field(alias="RESULTS_TABLE")
    idempotency_table: TableName = Field(alias="IDEMPOTENCY_TABLE")
    active_model_parameter: ParameterName = Field(alias="ACTIVE_MODEL_PARAMETER")
    # Unset: the active model's calibrated threshold (model_record.score_threshold).
    score_threshold: float | None = Field(None, alias="SCORE_THRESHOLD", ge=0, le=1)
    annotate: bool = Field(alias="ANNOTATE")
    images_in_flight: int = Field(alias="IMAGES_IN_FLIGHT", ge=1, le=10)
    payload_scale: float = Field(alias="PAYLOAD_SCALE", ge=1)
    event_source: EventSource = Field(alias="EVENT_SOURCE")
    # counter.tiling (stacks/config.py TilingSettings), one variable per setting.
    tiling_mode: tiling.TilingMode = Field(alias="TILING")
    tile_side: int | None = Field(
        None, alias="TILE_SIDE", ge=tiling.MIN_TILE_SIDE, le=tiling.MAX_TILE_SIDE
    )
    tile_overlap: float = Field(alias="TILE_OVERLAP", gt=0, le=tiling.MAX_OVERLAP)
    tiling_auto_multiple: float = Field(alias="TILING_AUTO_MULTIPLE", ge=1)
    tile_merge: MergeMethod = Field(alias="TILE_MERGE")
    whole_image_pass: bool = Field(alias="WHOLE_IMAGE_PASS")
    mark_tiles: bool = Field(alias="MARK_TILES")

    @property
    def tiling_policy(self) -> tiling.TilingPolicy:
        return tiling.TilingPolicy(
            mode=self.tiling_mode,
            tile_side=self.tile_side,
            overlap=self.tile_overlap,
            auto_multiple=self.tiling_auto_multiple,
            merge=self.tile_merge,
            whole_image_pass=self.whole_image_pass,
        )
