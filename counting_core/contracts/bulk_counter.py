"""The bulk-counting Lambda's contract with its state machine (``stacks/components/bulk/``).

One function, four requests told apart by ``action`` (``Request``), each answered with:

- ``select`` and ``count`` (a Distributed Map batch): a ``bulk.BatchReport``;
- ``manifest``: ``ManifestWritten``, whose ``selected`` the state machine checks before
  starting a transform job;
- ``summarize``: the run's ``bulk.Summary``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from counting_core.contracts.environment import (
    BucketName,
    EventSource,
    TableName,
)
from counting_core.contracts.tiling_environment import TilingEnvironment
from counting_core.counts import bulk
from counting_core.models.model_record import ActiveModel


class Environment(TilingEnvironment):
    """The counter's tiling (``counter.tiling``) applies to every image of a run."""

    bucket: BucketName = Field(alias="DATA_BUCKET")
    results_table: TableName = Field(alias="RESULTS_TABLE")
    # Unset: the active model's calibrated threshold (model_record.score_threshold).
    score_threshold: float | None = Field(None, alias="SCORE_THRESHOLD", ge=0, le=1)
    annotate: bool = Field(alias="ANNOTATE")
    max_payload_bytes: int = Field(alias="MAX_PAYLOAD_BYTES", ge=1)
    event_source: EventSource = Field(alias="EVENT_SOURCE")


class _Request(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # A run's name names its transform job and model too: at most 63 characters.
    run: str = Field(min_length=1, max_length=63)


class Select(_Request):
    action: Literal["select"]
    model: ActiveModel
    items: list[bulk.ListedObject]


class WriteManifest(_Request):
    action: Literal["manifest"]


class Count(_Request):
    action: Literal["count"]
    model: ActiveModel
    items: list[bulk.ListedObject]


class Summarize(_Request):
    action: Literal["summarize"]
    prefix: str
    model_name: str
    transform: bulk.TransformOutcome


Request = TypeAdapter(
    Annotated[Select | WriteManifest | Count | Summarize, Field(discriminator="action")]
)


class ManifestWritten(BaseModel):
    """The transform's manifest: how many images it lists, and where it is."""

    model_config = ConfigDict(frozen=True)

    selected: int = Field(ge=0)
    uri: str
