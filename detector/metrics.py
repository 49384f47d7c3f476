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

import torch
from torchvision.ops import box_iou

IOU_THRESHOLDS = tuple(0.5 + 0.05 * step for step in range(10))
RECALL_POINTS = torch.linspace(0.0, 1.0, 101)


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
    image; both 0.0 when no image has a ground-truth box."""
    classes = sorted({int(label) for truth in truths for label in truth.labels.tolist()})
    if not classes:
        return MeanAveragePrecision(0.0, 0.0)
    by_threshold = [
        sum(_average_precision(detections, truths, label, iou) for label in classes) / len(classes)
        for iou in IOU_THRESHOLDS
    ]
    return MeanAveragePrecision(by_threshold[0], sum(by_threshold) / len(by_threshold))


def _average_precision(
    detections: Sequence[ImageBoxes], truths: Sequence[ImageBoxes], label: int, threshold: float
) -> float:
    scores: list[float] = []
    hits: list[bool] = []
    total_truths = 0
    for found, truth in zip(detections, truths, strict=True):
        truth_boxes = truth.boxes[truth.labels == label]
        total_truths += len(truth_boxes)
        mine = found.labels == label
        boxes, box_scores = found.boxes[mine], _scores(found)[mine]
        order = torch.argsort(box_scores, descending=True, stable=True)
        boxes, box_scores = boxes[order], box_scores[order]
        overlaps = box_iou(boxes, truth_boxes) if len(truth_boxes) else None
        taken = torch.zeros(len(truth_boxes), dtype=torch.bool)
        for index in range(len(boxes)):
            hit = False
            if overlaps is not None:
                # Greedy, best score first: each true box is matched once, to the free one
                # this detection overlaps most, if that overlap reaches the threshold.
                candidates = overlaps[index].masked_fill(taken, -1.0)
                best = int(torch.argmax(candidates))
                if float(candidates[best]) >= threshold:
                    taken[best] = True
                    hit = True
            scores.append(float(box_scores[index]))
            hits.append(hit)
    if total_truths == 0:
        return 0.0
    ranked = sorted(range(len(scores)), key=lambda i: -scores[i])
    hit_tensor = torch.tensor([hits[i] for i in ranked], dtype=torch.float64)
    true_positives = torch.cumsum(hit_tensor, 0)
    false_positives = torch.cumsum(1.0 - hit_tensor, 0)
    recall = true_positives / total_truths
    precision = true_positives / (true_positives + false_positives).clamp(min=1.0)
    # Precision at recall r is the best precision at any recall >= r (COCO's envelope).
    envelope = torch.flip(torch.cummax(torch.flip(precision, [0]), 0).values, [0])
    sampled = []
    for point in RECALL_POINTS.tolist():
        reached = torch.nonzero(recall >= point - 1e-12)
        sampled.append(float(envelope[int(reached[0])]) if len(reached) else 0.0)
    return sum(sampled) / len(sampled)


def _scores(found: ImageBoxes) -> torch.Tensor:
    return found.scores if found.scores is not None else torch.ones(len(found.boxes))
