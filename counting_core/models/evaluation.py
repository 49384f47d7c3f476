"""Count error: how far a model's counts are from the labeled truth, and which threshold is best.

The definitions, in one place (docs/training.md explains them to users):

* **true count** of an image: the number of boxes its manifest line holds. A failed item (no
  labels) is skipped; an item labeled with no boxes counts 0.
* **predicted count at threshold t**: the number of detections scoring at least t.
* Over the N images, with ``error = predicted - true`` per image:

  - ``mae`` = Σ|error| / N
  - ``rmse`` = √(Σ error² / N): like ``mae``, but a few large errors weigh more than many
    small ones
  - ``wape`` = Σ|error| / Σ true (None when no image holds an object)
  - ``mape`` = mean of |error| / true over the images with true > 0 (None when there is none)
  - ``exact_accuracy`` = share of images with error 0
  - ``bias`` = Σ error / N (above 0: the model over-counts)

* ``best_threshold``: the tried threshold with the lowest ``mae``; ties go to the lowest
  |``bias``|, then to the lowest threshold. Ties are decided on the integer sums behind
  the figures (every threshold is tried on the same N images), never on rounded floats.
* ``per_class``: ``mae`` and ``bias`` of each class's count at ``best_threshold``.
* ``game`` at ``best_threshold``, levels L = 1, 2, 3: the grid average mean absolute error of
  the counting literature (Guerrero-Gómez-Olmedo et al., "Extremely Overlapping Vehicle
  Counting", IbPRIA 2015). Each image is cut into 2^L x 2^L = 4^L equal regions; each box,
  labeled or detected, belongs to the region holding its centre; an image's error at level
  L is Σ over its regions of |predicted - true| in the region, and ``game[L]`` is its mean
  over the images. GAME at level 0 is ``mae``; it grows with L when counts come out right
  for the wrong reasons (a missed object here, a false one there). None when an image's
  boxes are not known (``LabeledImage.centres``).
* ``capped_images``: how many images' responses held as many detections as the model's cap
  (``predictions.Response.capped``): their predicted counts may be low at every threshold.

Pure: the evaluation Lambda and ``counting evaluate`` read the files and call ``evaluate``.
"""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from counting_core import layout
from counting_core.counts.predictions import (
    CountedDetection,
    Detection,
    Response,
    check_threshold,
    count_detections,
)
from counting_core.datasets.manifest import Record, is_s3_object_uri, validate_manifest
from counting_core.errors import InputError
from counting_core.imaging.tiling import TileSet, merge_answers
from counting_core.models.model_record import ChampionSummary, TilingChoice

#: 0.05, 0.10, ... 0.95: the thresholds tried unless others are given.
DEFAULT_THRESHOLDS: tuple[float, ...] = tuple(round(step * 0.05, 2) for step in range(1, 20))
#: The GAME levels reported: 4, 16 and 64 regions per image.
GAME_LEVELS = (1, 2, 3)
#: How many of the images with the largest count errors the evaluation lists for review.
REVIEW_QUEUE_LENGTH = 20
# Figures in the report keep this many decimals: more than any count error needs.
_DECIMALS = 4


@dataclass(frozen=True, slots=True)
class LabeledImage:
    """One usable line of a labeled manifest: the image, the class id of each of its boxes
    and, when known, each box's centre as fractions (x, y) of the image's width and height."""

    source_ref: str
    class_ids: tuple[int, ...]
    centres: tuple[tuple[float, float], ...] | None = None

    @property
    def true_count(self) -> int:
        return len(self.class_ids)

    @property
    def file_name(self) -> str:
        return self.source_ref.rsplit("/", 1)[-1]


@dataclass(frozen=True, slots=True)
class CountErrors:
    """The figures of one threshold over all images (see the module's definitions)."""

    threshold: float
    images: int
    total_true: int
    total_absolute_error: int
    total_error: int
    exact: int
    mape: float | None
    total_squared_error: int = 0

    @property
    def mae(self) -> float:
        return self.total_absolute_error / self.images

    @property
    def rmse(self) -> float:
        return math.sqrt(self.total_squared_error / self.images)

    @property
    def wape(self) -> float | None:
        return self.total_absolute_error / self.total_true if self.total_true else None

    @property
    def exact_accuracy(self) -> float:
        return self.exact / self.images

    @property
    def bias(self) -> float:
        return self.total_error / self.images

    def rank(self) -> tuple[int, int, float]:
        """Lower is better: mae, then |bias|, then the threshold (sums share one N)."""
        return (self.total_absolute_error, abs(self.total_error), self.threshold)

    def to_dict(self) -> dict[str, Any]:
        return {
            "threshold": self.threshold,
            "mae": _rounded(self.mae),
            "rmse": _rounded(self.rmse),
            "wape": _rounded(self.wape),
            "mape": _rounded(self.mape),
            "exact_accuracy": _rounded(self.exact_accuracy),
            "bias": _rounded(self.bias),
        }


@dataclass(frozen=True, slots=True)
class ImageCount:
    """One image's true and predicted count at the best threshold, and the detections
    counted there (what a labeler reviewing the image is shown)."""

    source_ref: str
    true_count: int
    predicted_count: int
    detections: tuple[CountedDetection, ...] = ()

    @property
    def error(self) -> int:
        return self.predicted_count - self.true_count

    def to_dict(self) -> dict[str, Any]:
        return {
            "source_ref": self.source_ref,
            "true_count": self.true_count,
            "predicted_count": self.predicted_count,
            "error": self.error,
            "detections": [detection.to_dict() for detection in self.detections],
        }


@dataclass(frozen=True)
class Evaluation:
    """Everything ``evaluate`` found; ``to_dict`` is the JSON report (``evaluation.json``)."""

    per_threshold: tuple[CountErrors, ...]
    best: CountErrors
    per_class: dict[str, dict[str, float]]
    image_counts: tuple[ImageCount, ...]
    capped_images: int = 0
    # GAME level -> its value at the best threshold; None when boxes are not known.
    game: dict[int, float] | None = None

    def review_queue(self, length: int = REVIEW_QUEUE_LENGTH) -> list[ImageCount]:
        """The images the model miscounts most at the best threshold, largest error first
        (ties by image, for a stable list); images it counts exactly are never listed."""
        wrong = [image for image in self.image_counts if image.error]
        wrong.sort(key=lambda image: (-abs(image.error), image.source_ref))
        return wrong[:length]

    def summary(self, *, report_uri: str, plot_uri: str) -> EvaluationSummary:
        figures = self.best.to_dict()
        return EvaluationSummary(
            images=self.best.images,
            best_threshold=figures.pop("threshold"),
            report_uri=report_uri,
            plot_uri=plot_uri,
            **figures,
        )

    def headline(self) -> dict[str, Any]:
        """The figures at the best threshold, GAME included, without the per-image detail."""
        best = self.best.to_dict()
        return {
            "images": self.best.images,
            "objects": self.best.total_true,
            "capped_images": self.capped_images,
            "best_threshold": best.pop("threshold"),
            **best,
            "game": None
            if self.game is None
            else {str(level): _rounded(value) for level, value in self.game.items()},
        }

    def to_dict(self) -> dict[str, Any]:
        return {
            **self.headline(),
            "per_threshold": [errors.to_dict() for errors in self.per_threshold],
            "per_class": self.per_class,
            "review_queue": [image.to_dict() for image in self.review_queue()],
        }


class EvaluationSummary(BaseModel):
    """The figures at the best threshold and where the report is: what the evaluation Lambda
    returns to the state machine (JSON keys in camelCase) for the count gate and the record."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True)

    images: int
    best_threshold: float
    mae: float
    wape: float | None
    mape: float | None
    exact_accuracy: float
    bias: float
    report_uri: str
    plot_uri: str


def champion_summary(
    model_name: str, champion: Evaluation, challenger: Evaluation, *, trained_on: int
) -> ChampionSummary:
    """The active model's figures and the new model's, each at its own best threshold, on
    the same images (those the active model did not train on), for the champion comparison."""
    figures, challenger_figures = champion.best.to_dict(), challenger.best.to_dict()
    return ChampionSummary(
        model_name=model_name,
        images=champion.best.images,
        best_threshold=figures["threshold"],
        mae=figures["mae"],
        wape=figures["wape"],
        bias=figures["bias"],
        challenger_mae=challenger_figures["mae"],
        challenger_wape=challenger_figures["wape"],
        trained_on=trained_on,
    )


def tiling_choice(untiled: Evaluation, tiled: Evaluation) -> TilingChoice:
    """Whether tiles counted the same images better than whole images, each at its own best
    threshold: tiled only when its total absolute error is strictly lower (the integer sums
    behind MAE, on the same N); a tie goes to whole images, one call each, not dozens."""
    if untiled.best.images != tiled.best.images:
        raise InputError(
            f"{tiled.best.images} images counted in tiles, {untiled.best.images} whole: "
            "tiling is compared on the same images"
        )
    figures = tiled.best.to_dict()
    return TilingChoice(
        tile=tiled.best.total_absolute_error < untiled.best.total_absolute_error,
        images=tiled.best.images,
        best_threshold=figures["threshold"],
        mae=figures["mae"],
        wape=figures["wape"],
        untiled_mae=untiled.best.to_dict()["mae"],
    )


def tiled_response(tile_set: TileSet, tiles: Sequence[Response], whole: Response) -> Response:
    """One image's answer counted in tiles, as the counter merges them (``merge_answers``):
    the answers of its tiles, by source, and of the image sent whole, which is the
    whole-image pass when the tile set has one. When a request reached the model's cap, the
    merged answer carries the cap: a capped tile's boxes each stay an object of their own, so
    the image counts as capped (a capped whole-image pass only when enough of its boxes are
    larger than the overlap, the rest being left to the tiles)."""
    plan = tile_set.plan()
    if len(tiles) != len(plan.windows):
        raise InputError(
            f"{tile_set.image}: {len(tiles)} tile answers for {len(plan.windows)} tiles"
        )
    answers = list(enumerate(tiles))
    if plan.whole_image_pass:
        answers.append((plan.whole_image_source, whole))
    detections, record = merge_answers(plan, answers)
    return Response(detections, record.max_detections if record.capped else None)


class LabeledImages(NamedTuple):
    """What a validation manifest gives the evaluation."""

    #: The images that can be scored, each once however often the manifest lists it.
    images: list[LabeledImage]
    #: The class map in Ground Truth's form (``{"0": "car"}``).
    class_map: dict[str, str]
    #: Failed items: listed, but with no label to score a response against.
    failed: tuple[str, ...]


def labeled_images(records: Sequence[Record], label_attribute: str | None = None) -> LabeledImages:
    """The images of a valid manifest that can be scored, its class map and its failed items."""
    manifest = validate_manifest(records, label_attribute)
    images = [
        LabeledImage(
            item.record.data["source-ref"],
            item.class_ids,
            _centres(item.record.data[manifest.label_attribute]),
        )
        for item in manifest.items
        if item.status != "failed"
    ]
    if not images:
        raise InputError("the manifest has no labeled image to evaluate on (every item failed)")
    class_map = {str(class_id): name for class_id, name in manifest.class_map.items()}
    failed = tuple(
        str(item.record.data.get("source-ref", "")) for item in manifest.having("failed")
    )
    return LabeledImages(images, class_map, failed)


def _centres(label: Mapping[str, Any]) -> tuple[tuple[float, float], ...]:
    """Each box's centre as fractions of the image, from a label ``validate_manifest`` passed
    (boxes in pixels: left, top, width, height; one image_size)."""
    size = label["image_size"][0]
    width, height = size["width"], size["height"]
    return tuple(
        ((box["left"] + box["width"] / 2) / width, (box["top"] + box["height"] / 2) / height)
        for box in label["annotations"]
    )


def check_thresholds(thresholds: Iterable[float]) -> tuple[float, ...]:
    """The thresholds to try, each in [0, 1], sorted, without repeats; at least one."""
    checked = sorted({check_threshold(threshold) for threshold in thresholds})
    if not checked:
        raise InputError("no threshold to try")
    return tuple(checked)


def parse_thresholds(text: str) -> tuple[float, ...]:
    """``"0.1,0.2,0.3"`` as thresholds to try."""
    values = []
    for part in text.split(","):
        try:
            values.append(float(part))
        except ValueError:
            raise InputError(f"threshold {part.strip()!r} is not a number") from None
    return check_thresholds(values)


def evaluate(
    images: Sequence[LabeledImage],
    responses: Mapping[str, Response],
    *,
    class_map: Mapping[str, str],
    thresholds: Iterable[float] = DEFAULT_THRESHOLDS,
) -> Evaluation:
    """Score the model's responses (by image ``source_ref``) against the labeled counts."""
    if not images:
        raise InputError("no image to evaluate on")
    tried = check_thresholds(thresholds)
    missing = [image.source_ref for image in images if image.source_ref not in responses]
    if missing:
        raise InputError(f"no detections for image {missing[0]}")
    detections = {source_ref: response.detections for source_ref, response in responses.items()}
    # Ascending scores per image: the count at t is how many sit at or above t.
    scores = {
        image.source_ref: sorted(detection.score for detection in detections[image.source_ref])
        for image in images
    }

    def predicted(image: LabeledImage, threshold: float) -> int:
        ranked = scores[image.source_ref]
        return len(ranked) - bisect.bisect_left(ranked, threshold)

    per_threshold = tuple(
        count_errors([(predicted(image, t), image.true_count) for image in images], t)
        for t in tried
    )
    best = min(per_threshold, key=CountErrors.rank)
    counted = {
        image.source_ref: count_detections(
            detections[image.source_ref], threshold=best.threshold, class_map=class_map
        )
        for image in images
    }
    image_counts = tuple(
        ImageCount(
            image.source_ref,
            image.true_count,
            counted[image.source_ref].count,
            counted[image.source_ref].detections,
        )
        for image in images
    )
    per_class = _per_class(images, detections, class_map, best.threshold)
    capped_images = sum(1 for image in images if responses[image.source_ref].capped)
    game = _game(images, detections, best.threshold)
    return Evaluation(per_threshold, best, per_class, image_counts, capped_images, game)


def count_errors(counts: Sequence[tuple[int, int]], threshold: float) -> CountErrors:
    """The figures of (predicted, true) count pairs, one pair per image."""
    if not counts:
        raise InputError("no image to evaluate on")
    errors = [predicted - true for predicted, true in counts]
    relative = [abs(predicted - true) / true for predicted, true in counts if true > 0]
    return CountErrors(
        threshold=threshold,
        images=len(counts),
        total_true=sum(true for _, true in counts),
        total_absolute_error=sum(map(abs, errors)),
        total_error=sum(errors),
        exact=errors.count(0),
        mape=sum(relative) / len(relative) if relative else None,
        total_squared_error=sum(error * error for error in errors),
    )


def grid_error(
    true_centres: Iterable[tuple[float, float]],
    predicted_centres: Iterable[tuple[float, float]],
    level: int,
) -> int:
    """One image's error at GAME level ``level``: Σ over its 2^level x 2^level regions of
    |predicted - true| in the region. Centres are fractions (x, y) of the image; a centre on
    a line between regions belongs to the region right of or below it."""
    cuts = 2**level

    def region(centre: tuple[float, float]) -> tuple[int, int]:
        x, y = centre
        return min(int(x * cuts), cuts - 1), min(int(y * cuts), cuts - 1)

    difference = Counter(map(region, predicted_centres))
    difference.subtract(Counter(map(region, true_centres)))
    return sum(abs(count) for count in difference.values())


def _game(
    images: Sequence[LabeledImage],
    detections: Mapping[str, Sequence[Detection]],
    threshold: float,
) -> dict[int, float] | None:
    """GAME at each of ``GAME_LEVELS``, detections assigned by their box's centre."""
    totals = dict.fromkeys(GAME_LEVELS, 0)
    for image in images:
        if image.centres is None:
            return None
        predicted = [
            ((detection.xmin + detection.xmax) / 2, (detection.ymin + detection.ymax) / 2)
            for detection in detections[image.source_ref]
            if detection.score >= threshold
        ]
        for level in GAME_LEVELS:
            totals[level] += grid_error(image.centres, predicted, level)
    return {level: total / len(images) for level, total in totals.items()}


def _per_class(
    images: Sequence[LabeledImage],
    detections: Mapping[str, Sequence[Detection]],
    class_map: Mapping[str, str],
    threshold: float,
) -> dict[str, dict[str, float]]:
    """mae and bias per class name: every class of the map, and any other class predicted
    (named by its id, as the counter names it)."""
    per_image: list[tuple[Counter[str], Counter[str]]] = []
    names = set(class_map.values())
    for image in images:
        true = Counter(class_map.get(str(class_id), str(class_id)) for class_id in image.class_ids)
        predicted = Counter(
            class_map.get(str(detection.class_id), str(detection.class_id))
            for detection in detections[image.source_ref]
            if detection.score >= threshold
        )
        names |= set(true) | set(predicted)
        per_image.append((predicted, true))
    report = {}
    for name in sorted(names):
        errors = [predicted[name] - true[name] for predicted, true in per_image]
        report[name] = {
            "mae": round(sum(map(abs, errors)) / len(errors), _DECIMALS),
            "bias": round(sum(errors) / len(errors), _DECIMALS),
        }
    return report


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, _DECIMALS)


def relabeling_copies(report: Mapping[str, Any], image_prefix: str) -> list[tuple[str, str, str]]:
    """Where to copy the images of an evaluation report's review queue to label them again:
    ``(source bucket, source key, key under image_prefix)`` per image.

    Each keeps its path below ``labeling/images/`` (or its file name if it was elsewhere),
    so images of different folders that share a file name stay apart.
    """
    queue = report.get("review_queue") if isinstance(report, Mapping) else None
    if not isinstance(queue, list):
        raise InputError("not an evaluation report: no 'review_queue' list")
    if not queue:
        raise InputError("the evaluation's review queue is empty: every image was counted exactly")
    copies = []
    for entry in queue:
        source_ref = entry.get("source_ref") if isinstance(entry, Mapping) else None
        if not is_s3_object_uri(source_ref):
            raise InputError(f"review_queue: {source_ref!r} is not an s3://bucket/key URI")
        bucket, _, key = source_ref.removeprefix("s3://").partition("/")
        relative = (
            key.removeprefix(layout.LABELING_IMAGES)
            if key.startswith(layout.LABELING_IMAGES)
            else key.rsplit("/", 1)[-1]
        )
        copies.append((bucket, key, f"{image_prefix}{relative}"))
    return copies
