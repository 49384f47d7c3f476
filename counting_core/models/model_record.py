"""The active-model record: what the training pipeline deployed, read by the counter.

The state machine writes it (as JSON) to one SSM parameter after a deployment
succeeds; the counter Lambda reads it to know which endpoint to call, how to
name classes and which score threshold to apply (``score_threshold``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from counting_core.constants import DEFAULT_SCORE_THRESHOLD
from counting_core.contracts.published import ModelUsed, ThresholdOrigin


class ChampionSummary(BaseModel):
    """The active model's figures and the new model's on the run's validation images that the
    active model did not train on, each at its own calibrated threshold
    (``counting_core.models.evaluation.champion_summary``): what the champion comparison
    reads, and what the record of the model that replaced it keeps. JSON keys in camelCase,
    as the evaluation Lambda returns them and the record holds them."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True, frozen=True
    )

    model_name: str
    images: int
    best_threshold: float
    mae: float
    wape: float | None
    bias: float
    # The new model's MAE and WAPE on the same images. (Absent from records written before
    # the comparison left out the active model's training images; the gate reads new ones.)
    challenger_mae: float | None = None
    challenger_wape: float | None = None
    # Validation images left out of the comparison: the active model trained on them, so its
    # counts of them would flatter it.
    trained_on: int = 0


class TilingChoice(BaseModel):
    """What the count evaluation found of tiling (``counter.tiling``'s tiles) on the run's
    validation images, each counted whole and in tiles: whether tiles gave the lower count
    error, and the threshold calibrated on tiled counts, which tiled images are counted at.
    JSON keys in camelCase, as the evaluation Lambda returns them and the record holds them."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, serialize_by_alias=True, frozen=True
    )

    # Tiled counts had a lower MAE than whole ones, each at its own best threshold: what
    # counter.tiling `auto` follows. A tie goes to whole images: one call each, not dozens.
    tile: bool
    images: int = Field(ge=0)
    best_threshold: float = Field(ge=0, le=1)
    mae: float = Field(ge=0)
    wape: float | None = Field(None, ge=0)
    # The same images counted whole, at the whole counts' best threshold.
    untiled_mae: float = Field(ge=0)


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
    # The score threshold with the lowest count error on the run's validation images, and
    # that error (counting_core.models.evaluation); None for a model deployed without an evaluation.
    best_threshold: float | None = Field(None, ge=0, le=1)
    count_mae: float | None = Field(None, ge=0)
    count_wape: float | None = Field(None, ge=0)
    count_bias: float | None = None
    evaluation_uri: str = ""
    deployed_at: str = ""
    # The model's input side in pixels (the `image_shape` hyperparameter it was trained with);
    # None in records written before it was recorded: DEFAULT_IMAGE_SHAPE is assumed.
    image_shape: int | None = Field(None, ge=1)
    # What trained and serves the model (stacks/config.py training.algorithm, training.detector);
    # records written before these were recorded are the built-in algorithm's.
    algorithm: Literal["builtin", "torchvision"] = "builtin"
    detector: str | None = None
    # The model this one replaced, measured on the same validation images (None for the
    # first model, and in older records); the reason, when it was deployed without beating it.
    champion: ChampionSummary | None = None
    forced_deploy: str | None = None
    # Tiled against whole counts on the run's validation images; None when the run did not
    # measure it (counter.tiling `off`, and older records): `auto` then goes by image size.
    tiling: TilingChoice | None = None

    @property
    def tiling_measured(self) -> bool | None:
        """Whether the evaluation found tiles better for this model; None: not measured."""
        return None if self.tiling is None else self.tiling.tile

    def model_used(self) -> ModelUsed:
        """This record as a result names the model that counted it."""
        return ModelUsed(
            endpoint_name=self.endpoint_name,
            endpoint_config_name=self.endpoint_config_name,
            model_name=self.model_name,
        )


@dataclass(frozen=True, slots=True)
class ScoreThreshold:
    """The threshold a count applies, and where it came from."""

    value: float
    origin: ThresholdOrigin


def score_threshold(
    model: ActiveModel | None, configured: float | None, *, tiled: bool = False
) -> ScoreThreshold:
    """A configured threshold wins; else the model's calibrated one, calibrated on tiled
    counts for an image counted in tiles when the evaluation measured them; else the default
    (0.2)."""
    if configured is not None:
        return ScoreThreshold(configured, "configured")
    if tiled and model is not None and model.tiling is not None:
        return ScoreThreshold(model.tiling.best_threshold, "calibrated")
    if model is not None and model.best_threshold is not None:
        return ScoreThreshold(model.best_threshold, "calibrated")
    return ScoreThreshold(DEFAULT_SCORE_THRESHOLD, "default")
