"""What the ``studio_exports`` Lambda is configured with: its environment, by variable name."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, Json

from counting_core.datasets.label_studio import RotatedBoxes


class Environment(BaseModel):
    model_config = ConfigDict(frozen=True)

    bucket: str = Field(alias="BUCKET", min_length=3)
    label_attribute: str = Field(alias="LABEL_ATTRIBUTE", min_length=1)
    # A JSON array of class names in class id order; empty: the labels used, sorted.
    class_names: Json[tuple[str, ...]] = Field(alias="CLASS_NAMES")
    rotated_boxes: RotatedBoxes = Field(alias="ROTATED_BOXES")
    start_training: bool = Field(alias="START_TRAINING")
