"""The ``studio_exports`` Lambda's contract: what its stack (``stacks/components/studio.py``)
configures it with. It is invoked by an EventBridge rule on objects created under the
studio's export prefix (``contracts.events.ObjectCreated``) and answers with a summary.
"""

from __future__ import annotations

from pydantic import Field, Json

from counting_core.contracts.environment import BucketName, FunctionEnvironment
from counting_core.datasets.label_studio import RotatedBoxes


class Environment(FunctionEnvironment):
    bucket: BucketName = Field(alias="BUCKET")
    label_attribute: str = Field(alias="LABEL_ATTRIBUTE", min_length=1)
    # A JSON array of class names in class id order; empty: the labels used, sorted.
    class_names: Json[tuple[str, ...]] = Field(alias="CLASS_NAMES")
    rotated_boxes: RotatedBoxes = Field(alias="ROTATED_BOXES")
    start_training: bool = Field(alias="START_TRAINING")
