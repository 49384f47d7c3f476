"""Mean average precision, small enough to read, for the training log.

``mean_average_precision`` gives two figures from one pass: ``at_50``, mAP at IoU 0.5
(PASCAL VOC's overlap, and the one the built-in algorithm's MXNet SSD reports as
validation:mAP, so the quality gate means the same for both algorithms), and ``coco``,
mAP@[0.5:0.95]. Each is average precision per class, from precision interpolated at 101
recall points as COCO does, averaged over the classes that have a ground-truth box (and,
for ``coco``, over the IoU thresholds 0.50, 0.55, ... 0.95).
Unlike pycocotools it has no area ranges, no crowd boxes and no cap of 100 detections per
image (every detection the model returned counts), so its figures are close to, not equal
to, COCO's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torchvision.ops import box_iou

IOU_THRESHOLDS = tuple(0.5 + 0.05 * step for step in range(10))
RECALL_POINTS = np.linspace(0.0, 1.0, 101)


@dataclass(frozen=True)
class ImageBoxes:
    """One image's boxes: (N, 4) corners, (N,) labels, and (N,) scores for detections."""

    boxes: torch.Tensor
    labels: torch.Tensor
    scores: torch.Tensor | None = None


@dataclass(frozen=True)
class MeanAveragePrecision:
    at_50: float
    coco: float


def mean_average_precision(
    detections: Sequence[ImageBoxes], truths: Sequence[ImageBoxes]
) -> MeanAveragePrecision:
    """mAP at IoU 0.5 and mAP@[0.5:0.95] of ``detections`` against ``truths``, image by
    image; both 0.0 when no image has a ground-truth box.

    Each detection is matched at the ten IoU thresholds at once: the overlaps of an image's
    boxes are computed once per class, and one pass over its detections fills a column per
    threshold.
    """
    classes = sorted({int(label) for truth in truths for label in truth.labels.tolist()})
    if not classes:
        return MeanAveragePrecision(0.0, 0.0)
    thresholds = np.array(IOU_THRESHOLDS)
    # Average precision per (IoU threshold, class).
    precisions = np.stack(
        [_average_precisions(detections, truths, label, thresholds) for label in classes], axis=1
    )
    by_threshold = precisions.mean(axis=1)
    return MeanAveragePrecision(float(by_threshold[0]), float(by_threshold.mean()))


def _average_precisions(
    detections: Sequence[ImageBoxes],
    truths: Sequence[ImageBoxes],
    label: int,
    thresholds: np.ndarray,
) -> np.ndarray:
    """Average precision of one class at each of ``thresholds``."""
    scores: list[np.ndarray] = []
    hits: list[np.ndarray] = []
    total_truths = 0
    for found, truth in zip(detections, truths, strict=True):
        truth_boxes = truth.boxes[truth.labels == label]
        total_truths += len(truth_boxes)
        mine = found.labels == label
        boxes, box_scores = found.boxes[mine], _scores(found)[mine]
        order = torch.argsort(box_scores, descending=True, stable=True)
        boxes, box_scores = boxes[order], box_scores[order]
        overlaps = (
            box_iou(boxes, truth_boxes).double().numpy()
            if len(truth_boxes) and len(boxes)
            else None
        )
        scores.append(box_scores.double().numpy())
        hits.append(_greedy_hits(overlaps, len(boxes), thresholds))
    all_scores = np.concatenate(scores)
    if total_truths == 0 or len(all_scores) == 0:
        return np.zeros(len(thresholds))
    ranked = np.concatenate(hits)[np.argsort(-all_scores, kind="stable")].astype(np.float64)
    true_positives = np.cumsum(ranked, axis=0)
    false_positives = np.cumsum(1.0 - ranked, axis=0)
    recall = true_positives / total_truths
    precision = true_positives / np.maximum(true_positives + false_positives, 1.0)
    # Precision at recall r is the best precision at any recall >= r (COCO's envelope).
    envelope = np.flip(np.maximum.accumulate(np.flip(precision, 0), axis=0), 0)
    averages = np.zeros(len(thresholds))
    for column in range(len(thresholds)):
        # Recall only grows down the ranking: the first rank reaching each recall point.
        reached = np.searchsorted(recall[:, column], RECALL_POINTS - 1e-12, side="left")
        found_at = reached < len(recall)
        sampled = np.where(found_at, envelope[np.minimum(reached, len(recall) - 1), column], 0.0)
        averages[column] = sampled.mean()
    return averages


def _greedy_hits(overlaps: np.ndarray | None, count: int, thresholds: np.ndarray) -> np.ndarray:
    """(detections, thresholds): whether each detection, best score first, matches a true box.

    Greedy, as COCO matches: each true box is matched once, to the free one a detection
    overlaps most, if that overlap reaches the threshold; at every threshold independently.
    """
    hits = np.zeros((count, len(thresholds)), dtype=bool)
    if overlaps is None:
        return hits
    taken = np.zeros((len(thresholds), overlaps.shape[1]), dtype=bool)
    rows = np.arange(len(thresholds))
    for index in range(count):
        candidates = np.where(taken, -1.0, overlaps[index])
        best = candidates.argmax(axis=1)
        hit = candidates[rows, best] >= thresholds
        taken[rows[hit], best[hit]] = True
        hits[index] = hit
    return hits


def _scores(found: ImageBoxes) -> torch.Tensor:
    return found.scores if found.scores is not None else torch.ones(len(found.boxes))
