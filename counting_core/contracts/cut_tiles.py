"""The cut-tiles Lambda's contract with the training state machine
(``stacks/components/training/evaluate.py``): the CutValidationTiles state sends a
``CutRequest`` and keeps the ``CutResponse`` at ``$.tileCut``, then invokes the function
again from ``next`` until ``done``. JSON keys are camelCase.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from counting_core.contracts.environment import BucketName
from counting_core.contracts.tiling_environment import TilingEnvironment
from counting_core.imaging import tiling


class Environment(TilingEnvironment):
    """``counter.tiling``'s variables, as the counting functions read them (the cutter cuts
    every validation image whatever the mode: ``detection.cut_for_transform``), the bucket
    and the trained model's input side."""

    bucket: BucketName = Field(alias="BUCKET")
    # The trained model's input side (training's image_shape): the tile side unless set.
    image_shape: int = Field(alias="IMAGE_SHAPE", ge=tiling.MIN_TILE_SIDE)


class CutRequest(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, frozen=True)

    run_name: str = Field(min_length=1)
    validation_manifest_uri: str = Field(min_length=1)
    label_attribute: str | None = None
    # Where to resume: how many of the validation images (in the manifest's order, each once)
    # earlier invocations have cut.
    next: int = Field(0, ge=0)


class CutResponse(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    # Every image is cut and the manifest of the tiles written: on to the transform job.
    done: bool
    # Images cut so far, all invocations together: where the next invocation resumes.
    next: int = Field(ge=0)
    images: int = Field(ge=0, description="validation images to cut in all")
    tile_sets_uri: str = Field(description="the folder of the TileSets (JSON lines)")
    # The Batch Transform manifest of every tile; None until done.
    manifest_uri: str | None
