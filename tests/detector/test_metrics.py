"""detector.metrics: mAP at IoU 0.5 and mAP@[0.5:0.95] on cases worked out by hand."""

from __future__ import annotations

import pytest

from tests.detector.torch_required import require_torch

require_torch()

import torch  # noqa: E402

from detector.metrics import ImageBoxes, mean_average_precision  # noqa: E402

TRUTH = ImageBoxes(torch.tensor([[0.0, 0.0, 10.0, 10.0]]), torch.tensor([1]))


def found(boxes: list[list[float]], labels: list[int], scores: list[float]) -> ImageBoxes:
    return ImageBoxes(
        torch.tensor(boxes).reshape(-1, 4), torch.tensor(labels), torch.tensor(scores)
    )


def test_a_perfect_detection_scores_one():
    result = mean_average_precision([found([[0, 0, 10, 10]], [1], [0.9])], [TRUTH])

    assert (result.at_50, result.coco) == (1.0, 1.0)


def test_a_detection_overlapping_by_iou_0_6_counts_at_three_of_ten_thresholds():
    # [0,0,10,6] inside [0,0,10,10]: IoU 60/100 = 0.6, a hit at 0.50, 0.55, 0.60 only.
    result = mean_average_precision([found([[0, 0, 10, 6]], [1], [0.9])], [TRUTH])

    assert result.coco == pytest.approx(0.3)
    # At IoU 0.5 alone it is a hit: AP 1.
    assert result.at_50 == pytest.approx(1.0)


def test_half_the_objects_found_scores_51_of_101_recall_points():
    truths = ImageBoxes(torch.tensor([[0.0, 0, 10, 10], [20.0, 20, 30, 30]]), torch.tensor([1, 1]))

    result = mean_average_precision([found([[0, 0, 10, 10]], [1], [0.9])], [truths])

    # Recall 0.5 at precision 1: the points 0.00, 0.01, ... 0.50 (51 of 101) have precision 1.
    assert (result.at_50, result.coco) == pytest.approx((51 / 101, 51 / 101))


def test_a_false_alarm_scored_above_the_hit_halves_precision():
    detections = found([[50, 50, 60, 60], [0, 0, 10, 10]], [1, 1], [0.9, 0.8])

    # Recall 1 is reached at the second detection with precision 1/2; every recall point
    # takes that (the envelope's best precision at recall >= r).
    assert mean_average_precision([detections], [TRUTH]).coco == pytest.approx(0.5)


def test_a_box_of_the_wrong_class_is_no_hit_and_classes_are_averaged():
    truths = ImageBoxes(torch.tensor([[0.0, 0, 10, 10], [20.0, 20, 30, 30]]), torch.tensor([1, 2]))
    detections = found([[0, 0, 10, 10], [20, 20, 30, 30]], [1, 1], [0.9, 0.8])

    # Class 1: its box found (AP 1; the second label-1 box is a false alarm ranked below).
    # Class 2: nothing found (AP 0). Mean over the two classes: 0.5.
    assert mean_average_precision([detections], [truths]).coco == pytest.approx(0.5)


def test_one_detection_matches_one_true_box_only():
    truths = ImageBoxes(torch.tensor([[0.0, 0, 10, 10], [0.0, 0, 10, 10]]), torch.tensor([1, 1]))

    # Two identical true boxes, one detection: recall 1/2, as in the half-found case.
    result = mean_average_precision([found([[0, 0, 10, 10]], [1], [0.9])], [truths])

    assert result.coco == pytest.approx(51 / 101)


def test_no_true_box_anywhere_scores_zero():
    empty = ImageBoxes(torch.zeros((0, 4)), torch.zeros(0, dtype=torch.int64))

    result = mean_average_precision([found([[0, 0, 1, 1]], [1], [0.5])], [empty])

    assert (result.at_50, result.coco) == (0.0, 0.0)


def test_a_recall_reached_exactly_counts_at_its_own_recall_point():
    # Ten objects, six found exactly (best scores first), nothing else returned: precision 1
    # up to recall 6/10 = 0.6, none beyond. Recall points 0.00, 0.01, ... 0.60 are reached:
    # 61 of 101, as COCO's float64 points give. In single precision the point 0.60 is
    # 0.60000002, above 0.6, and would be missed (60 of 101).
    truths = ImageBoxes(
        torch.tensor([[20.0 * i, 0, 20.0 * i + 10, 10] for i in range(10)]), torch.tensor([1] * 10)
    )
    detections = found(
        [[20.0 * i, 0, 20.0 * i + 10, 10] for i in range(6)],
        [1] * 6,
        [0.9 - 0.1 * i for i in range(6)],
    )

    result = mean_average_precision([detections], [truths])

    assert result.at_50 == pytest.approx(61 / 101)
    assert result.coco == pytest.approx(61 / 101)
