"""The active-model record: what the training pipeline deployed, read by the counter.

The state machine writes it (as JSON) to one SSM parameter after a deployment
succeeds; the counter Lambda reads it to know which endpoint to call, how to
name classes and which score threshold to apply.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class ActiveModel(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    endpoint_name: str = Field(min_length=1)
    endpoint_config_name: str = Field(min_length=1)
    model_name: str = Field(min_length=1)
    training_job_name: str = ""
    validation_map: float | None = Field(None, ge=0, le=1)
    # Ground Truth style: class id as text -> class name.
    class_map: dict[str, str] = Field(default_factory=dict)
    label_attribute: str = ""
    # A threshold calibrated for this model; None means use the configured one.
    score_threshold: float | None = Field(None, ge=0, le=1)
    deployed_at: str = ""
