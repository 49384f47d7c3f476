"""The Prepare Lambda's contract with the training state machine
(``stacks/components/training/prepare.py``): the Prepare state sends a ``PrepareRequest``
and keeps the ``PreparedRun`` it answers with (``counting_core.models.training``) at
``$.prepared``.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field

from counting_core.contracts.environment import BucketName, FunctionEnvironment
from counting_core.models.training import PreparedRun, TrainingRequest

__all__ = ["Environment", "PrepareRequest", "PreparedRun"]


class Environment(FunctionEnvironment):
    bucket: BucketName = Field(alias="BUCKET")
    # What each run's name starts with (training.run_name).
    name_prefix: str = Field(alias="NAME_PREFIX", min_length=1)
    validation_fraction: float = Field(alias="VALIDATION_FRACTION", gt=0, lt=1)
    split_seed: int = Field(alias="SPLIT_SEED")
    # Images labeled without boxes stay in the channels as negatives (the torchvision
    # detector); the built-in algorithm trains on images with boxes only.
    keep_images_without_boxes: bool = Field(alias="KEEP_IMAGES_WITHOUT_BOXES")


class PrepareRequest(BaseModel):
    """The execution's input (a ``TrainingRequest``) and its identity, which name the run."""

    request: TrainingRequest
    execution_id: str = Field(alias="executionId", min_length=1)
    started_at: datetime = Field(alias="startedAt")
