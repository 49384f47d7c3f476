"""The evaluate-counts Lambda's contract with the training state machine
(``stacks/components/training/evaluate.py``): the EvaluateCounts state sends an
``EvaluateRequest`` and keeps the ``EvaluateResponse`` at ``$.evaluation``. JSON keys are
camelCase.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from counting_core.contracts.environment import BucketName, FunctionEnvironment
from counting_core.models.evaluation import EvaluationSummary
from counting_core.models.model_record import ChampionSummary, TilingChoice


class Environment(FunctionEnvironment):
    bucket: BucketName = Field(alias="BUCKET")
    # The count gate (training.max_count_wape), drawn on the plot's WAPE scale; unset: no gate.
    max_count_wape: float | None = Field(None, alias="MAX_COUNT_WAPE", gt=0)


class ChampionRequest(BaseModel):
    """The active model to compare with: empty when there is none (a first model)."""

    model_config = ConfigDict(alias_generator=to_camel, frozen=True)

    model_name: str | None = Field(None, min_length=1)
    predictions_uri: str | None = Field(None, min_length=1)
    # Its class map, as its record holds it: counts are compared only for the same classes.
    class_map: dict[str, str] = Field(default_factory=dict)


class TilesRequest(BaseModel):
    """The validation images cut into tiles (counter.tiling on or auto): where the cutting
    function left their TileSets, and where the run's model's answers for the tiles are."""

    model_config = ConfigDict(alias_generator=to_camel, frozen=True)

    tile_sets_uri: str = Field(min_length=1)
    predictions_uri: str = Field(min_length=1)


class EvaluateRequest(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, frozen=True)

    run_name: str = Field(min_length=1)
    validation_manifest_uri: str = Field(min_length=1)
    label_attribute: str | None = None
    # The run's class map as Prepare found it in the whole manifest (the validation images
    # alone may lack a class).
    class_map: dict[str, str] = Field(default_factory=dict)
    predictions_uri: str = Field(min_length=1)
    champion: ChampionRequest = ChampionRequest()
    # None: counter.tiling is off, tiled counts are not measured.
    tiles: TilesRequest | None = None


class EvaluateResponse(EvaluationSummary):
    """The new model's figures at its calibrated threshold, and the active model's on the
    same images (``None`` for a first model, or one trained for other classes), and whether
    the new model counts better in tiles (``None`` when tiled counts were not measured; the
    active model is never counted in tiles)."""

    champion: ChampionSummary | None
    tiling: TilingChoice | None = None
