"""The variables of ``counter.tiling`` (stacks/config.py ``TilingSettings``), for every
function that counts images with the tiler or cuts them into tiles: the counter, the bulk
counter and the cutter of validation images. A module of its own, so that only those
functions' assets carry the tiler."""

from __future__ import annotations

from pydantic import Field

from counting_core.contracts.environment import FunctionEnvironment
from counting_core.contracts.published import MergeMethod
from counting_core.imaging import tiling


class TilingEnvironment(FunctionEnvironment):
    """A function that counts images as ``counter.tiling`` says, one variable per setting."""

    tiling_mode: tiling.TilingMode = Field(alias="TILING")
    tile_side: int | None = Field(
        None, alias="TILE_SIDE", ge=tiling.MIN_TILE_SIDE, le=tiling.MAX_TILE_SIDE
    )
    tile_overlap: float = Field(alias="TILE_OVERLAP", gt=0, le=tiling.MAX_OVERLAP)
    tiling_auto_multiple: float = Field(alias="TILING_AUTO_MULTIPLE", ge=1)
    tile_merge: MergeMethod = Field(alias="TILE_MERGE")
    whole_image_pass: bool = Field(alias="WHOLE_IMAGE_PASS")

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
