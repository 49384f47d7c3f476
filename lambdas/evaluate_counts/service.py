"""Evaluate one run's model: read the labels and the Batch Transform answers, write the report.

The AWS calls live here, each one line over an injected S3 client, so tests hand in a
moto-backed client; every figure comes from the pure ``counting_core.models.evaluation``.
"""

from __future__ import annotations

import io
import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from adapters import clients
from adapters.objects import Objects
from counting_core import layout
from counting_core.constants import JSON_CONTENT_TYPE
from counting_core.contracts.evaluate_counts import Environment, EvaluateResponse
from counting_core.counts import predictions
from counting_core.counts.responses import match_responses
from counting_core.datasets.manifest import SOURCE_REF, read_manifest
from counting_core.errors import InputError
from counting_core.imaging.tiling import read_tile_sets
from counting_core.models import evaluation, evaluation_plot, training

#: Where a run's validation manifest and its predictions are; the function reads nothing else.
READABLE = (layout.TRAINING_MANIFESTS, layout.MODEL_ARTIFACTS)
#: Batch Transform answers read at once (as many as the client's connections): one GET after
#: another, 100,000 validation images would outlast the function's 5 minutes. Each answer is
#: parsed as it arrives, so only the parsed detections are held, never all the raw bodies.
READ_WORKERS = clients.PARALLEL_READS


@dataclass(frozen=True)
class Champion:
    """The active model and where its Batch Transform answers for this run's images are."""

    model_name: str
    predictions_uri: str
    class_map: dict[str, str]


@dataclass(frozen=True)
class Tiles:
    """Where the validation images' TileSets are, and the new model's answers for the tiles."""

    tile_sets_uri: str
    predictions_uri: str


@dataclass(frozen=True)
class _Tile:
    """A tile as ``match_responses`` pairs it with its answer: its key and file name."""

    source_ref: str

    @property
    def file_name(self) -> str:
        return self.source_ref.rsplit("/", 1)[-1]


class EvaluationFailed(Exception):
    """The run's counts cannot be evaluated; the message says why. The state machine
    reports it under this name and deploys nothing."""


class RunEvaluator:
    def __init__(self, environment: Environment, *, s3: Any) -> None:
        self._objects = Objects(s3, environment.bucket)
        self._max_wape = environment.max_count_wape

    def evaluate(
        self,
        *,
        run_name: str,
        validation_manifest_uri: str,
        label_attribute: str | None,
        predictions_uri: str,
        run_class_map: dict[str, str] | None = None,
        champion: Champion | None = None,
        tiles: Tiles | None = None,
    ) -> EvaluateResponse:
        """The new model's figures and, when there is an active model (``champion``), both
        models' figures on the validation images the active model did not train on, side by
        side in ``evaluation.json``.

        The runs split their data apart, so a later run's validation images may have trained
        the active model (its ``train.manifest``): counted on them it would look better than
        it is, so they are left out of the comparison (both models are measured on the rest).
        Counts are totals over every class, so a champion trained for other classes (another
        ``class_map`` than ``run_class_map``), or one that trained on every validation image,
        is not compared: the report says why, and the run goes on as a first model would.

        With ``tiles``, the new model's counts of the same images in tiles, merged as the
        counter merges them, are evaluated too (``evaluation.json``'s ``tiling``) and the
        better choice returned (``EvaluateResponse.tiling``)."""
        not_compared = None
        classes = run_class_map if run_class_map is not None else {}
        if champion is not None and run_class_map is not None and champion.class_map != classes:
            not_compared = (
                f"its class map {json.dumps(champion.class_map, sort_keys=True)} is not "
                f"this run's {json.dumps(classes, sort_keys=True)}"
            )
        champion_result = challenger_result = None
        trained_on = 0
        try:
            manifest = read_manifest(
                io.BytesIO(self._objects.read(self._key(validation_manifest_uri)))
            )
            images, class_map, _ = evaluation.labeled_images(manifest, label_attribute)
            responses = self._responses(images, predictions_uri)
            result = evaluation.evaluate(images, responses, class_map=class_map)
            tiled = (
                None
                if tiles is None
                else evaluation.evaluate(
                    images, self._tiled_responses(images, responses, tiles), class_map=class_map
                )
            )
            if champion is not None and not not_compared:
                trained = self._training_images(champion.model_name)
                compared = [image for image in images if image.source_ref not in trained]
                trained_on = len(images) - len(compared)
                if not compared:
                    not_compared = f"it trained on all {len(images)} validation images of this run"
                else:
                    champion_result = evaluation.evaluate(
                        compared,
                        self._responses(compared, champion.predictions_uri),
                        class_map=class_map,
                    )
                    challenger_result = evaluation.evaluate(
                        compared,
                        {image.source_ref: responses[image.source_ref] for image in compared},
                        class_map=class_map,
                    )
        except (InputError, UnicodeDecodeError) as error:
            raise EvaluationFailed(f"run {run_name}: {error}") from None

        run_folder = training.model_folder(run_name)
        report_key = f"{run_folder}{training.EVALUATION_FILE}"
        plot_key = f"{run_folder}{training.EVALUATION_PLOT_FILE}"
        report: dict[str, Any] = {
            "run": run_name,
            "predictions": predictions_uri,
            **result.to_dict(),
        }
        choice = None
        if tiles is not None and tiled is not None:
            choice = evaluation.tiling_choice(result, tiled)
            report["tiling"] = {
                "tile": choice.tile,
                "tile_sets": tiles.tile_sets_uri,
                "predictions": tiles.predictions_uri,
                "untiled": result.headline(),
                "tiled": tiled.to_dict(),
            }
        champion_summary = None
        if champion is not None and not_compared:
            report["champion"] = {"model": champion.model_name, "not_compared": not_compared}
        if champion is not None and champion_result and challenger_result:
            champion_summary = evaluation.champion_summary(
                champion.model_name, champion_result, challenger_result, trained_on=trained_on
            )
            # The active model's figures beside the new model's (its per-image detail too).
            report["champion"] = {
                "model": champion.model_name,
                "predictions": champion.predictions_uri,
                "trained_on": trained_on,
                "challenger_mae": champion_summary.challenger_mae,
                "challenger_wape": champion_summary.challenger_wape,
                **champion_result.to_dict(),
            }
        self._objects.put(report_key, json.dumps(report, indent=2).encode(), JSON_CONTENT_TYPE)
        self._objects.put(
            plot_key, evaluation_plot.plot(result, max_wape=self._max_wape), "image/png"
        )
        summary = result.summary(
            report_uri=self._objects.uri(report_key),
            plot_uri=self._objects.uri(plot_key),
        )
        return EvaluateResponse(**summary.model_dump(), champion=champion_summary, tiling=choice)

    def _responses(
        self, images: list[evaluation.LabeledImage], predictions_uri: str
    ) -> dict[str, predictions.Response]:
        """Each image's Batch Transform answer under ``predictions_uri``, by source-ref."""
        folder = self._key(predictions_uri)
        names = [key.removeprefix(folder) for key in self._objects.keys_under(folder)]
        matched, _ = match_responses(images, names)
        with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
            parsed = pool.map(self._response, [folder + name for name in matched.values()])
            return dict(zip(matched, parsed, strict=True))

    def _tiled_responses(
        self,
        images: list[evaluation.LabeledImage],
        whole: dict[str, predictions.Response],
        tiles: Tiles,
    ) -> dict[str, predictions.Response]:
        """Each image's answers for its tiles merged into one, by source-ref; ``whole`` is
        each image's answer sent whole (its whole-image pass). The answers of one image are
        read by one worker and merged as they come, so only merged detections are held."""
        parts = sorted(self._objects.keys_under(self._key(tiles.tile_sets_uri)))
        tile_sets = read_tile_sets(self._objects.read(part) for part in parts)
        for image in images:
            if image.source_ref not in tile_sets:
                raise InputError(f"no tiles for image {image.source_ref}")
        folder = self._key(tiles.predictions_uri)
        names = [key.removeprefix(folder) for key in self._objects.keys_under(folder)]
        keys = [key for image in images for key in tile_sets[image.source_ref].tiles]
        matched, _ = match_responses([_Tile(key) for key in keys], names)

        def merged(image: evaluation.LabeledImage) -> predictions.Response:
            tile_set = tile_sets[image.source_ref]
            answers = [self._response(folder + matched[key]) for key in tile_set.tiles]
            return evaluation.tiled_response(tile_set, answers, whole[image.source_ref])

        with ThreadPoolExecutor(max_workers=READ_WORKERS) as pool:
            return dict(zip([image.source_ref for image in images], pool.map(merged, images),
                            strict=True))  # fmt: skip

    def _training_images(self, model_name: str) -> set[str]:
        """The source-refs a model's run trained on (its ``train.manifest``); none known for
        a model whose run left no manifest here (then every image is compared)."""
        body = self._objects.get(f"{training.run_folder(model_name)}{training.TRAIN_FILE}")
        if body is None:
            return set()
        return {str(record.data.get(SOURCE_REF)) for record in read_manifest(io.BytesIO(body))}

    def _response(self, key: str) -> predictions.Response:
        try:
            return predictions.parse_response(self._objects.read(key))
        except InputError as error:
            raise InputError(f"{self._objects.uri(key)}: {error}") from None

    def _key(self, uri: str) -> str:
        return self._objects.key_of(uri, READABLE)
