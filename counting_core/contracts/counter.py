"""The counter Lambda's contract with its stack (``stacks/components/counter.py``).

SQS invokes it with S3 "Object Created" events (``contracts.events``), so its environment
is all the stack hands it.
"""

from __future__ import annotations

from pydantic import Field

from counting_core.contracts.environment import (
    BucketName,
    EventSource,
    ParameterName,
    QueueUrl,
    TableName,
)
from counting_core.contracts.tiling_environment import TilingEnvironment


class Environment(TilingEnvironment):
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
    mark_tiles: bool = Field(alias="MARK_TILES")
