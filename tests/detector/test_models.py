"""detector.models: detectors built by name, and COCO weights loaded without their class head."""

from __future__ import annotations

import pytest

from tests.detector.torch_required import require_torch

require_torch()

import torch  # noqa: E402

from detector import models  # noqa: E402

# torchvision's COCO models have 91 outputs: 90 category ids and the background.
COCO_CLASSES = 90


def test_faster_rcnn_is_built_for_the_classes_plus_background_and_the_cap():
    model = models.build(
        "fasterrcnn_mobilenet_v3_large_fpn", num_classes=3, image_size=512, max_detections=1000
    )

    assert model.roi_heads.box_predictor.cls_score.out_features == 4
    assert model.roi_heads.detections_per_img == 1000
    assert (model.transform.min_size, model.transform.max_size) == ((512,), 512)


def test_ssdlite_is_resized_to_the_image_size_and_capped():
    model = models.build(
        "ssdlite320_mobilenet_v3_large", num_classes=2, image_size=256, max_detections=700
    )

    assert model.detections_per_img == 700
    assert model.transform.fixed_size == (256, 256)
    assert model.head.classification_head.num_columns == 3


def test_the_320_px_faster_rcnn_keeps_enough_proposals_for_its_cap():
    model = models.build(
        "fasterrcnn_mobilenet_v3_large_320_fpn", num_classes=1, image_size=320, max_detections=1500
    )

    # torchvision's default for this model is 150 proposals: 150 objects at most.
    assert model.rpn._pre_nms_top_n["testing"] == 1500
    assert model.rpn._post_nms_top_n["testing"] == 1500
    assert model.roi_heads.detections_per_img == 1500


def test_ssdlite_keeps_at_least_1000_candidates_per_class():
    model = models.build(
        "ssdlite320_mobilenet_v3_large", num_classes=1, image_size=320, max_detections=500
    )

    # torchvision's default is 300 per class, below this cap of 500.
    assert model.topk_candidates == 1000


def test_an_unknown_detector_is_named_with_the_choices():
    with pytest.raises(ValueError, match="unknown detector 'yolo': one of fasterrcnn_mobilenet"):
        models.build("yolo", num_classes=1, image_size=320, max_detections=10)


def test_coco_weights_load_except_the_class_specific_head(tmp_path):
    coco = models.build(
        "fasterrcnn_mobilenet_v3_large_fpn",
        num_classes=COCO_CLASSES,
        image_size=320,
        max_detections=100,
    )
    state = coco.state_dict()
    marker = "backbone.body.0.0.weight"
    state[marker] = torch.full_like(state[marker], 0.25)
    path = tmp_path / "coco.pth"
    torch.save(state, path)
    model = models.build(
        "fasterrcnn_mobilenet_v3_large_fpn", num_classes=3, image_size=320, max_detections=100
    )

    fresh = models.load_pretrained(model, path)

    # Faster R-CNN's class-specific tensors: the box predictor's class scores and its
    # per-class box regression (4 numbers per class).
    assert fresh == [
        "roi_heads.box_predictor.bbox_pred.bias",
        "roi_heads.box_predictor.bbox_pred.weight",
        "roi_heads.box_predictor.cls_score.bias",
        "roi_heads.box_predictor.cls_score.weight",
    ]
    assert torch.all(model.state_dict()[marker] == 0.25)


def test_another_detectors_weights_are_refused(tmp_path):
    ssd = models.build(
        "ssdlite320_mobilenet_v3_large", num_classes=3, image_size=320, max_detections=10
    )
    path = tmp_path / "ssdlite.pth"
    torch.save(ssd.state_dict(), path)
    model = models.build(
        "fasterrcnn_mobilenet_v3_large_fpn", num_classes=3, image_size=320, max_detections=10
    )

    with pytest.raises(ValueError, match=r"^ssdlite.pth does not fit this detector: \d+ tensor"):
        models.load_pretrained(model, path)


def test_the_weights_table_is_torchvisions_own():
    from torchvision.models import detection

    from detector.weights import COCO_WEIGHTS

    published = {
        "fasterrcnn_mobilenet_v3_large_fpn": detection.FasterRCNN_MobileNet_V3_Large_FPN_Weights,
        "fasterrcnn_mobilenet_v3_large_320_fpn": (
            detection.FasterRCNN_MobileNet_V3_Large_320_FPN_Weights
        ),
        "ssdlite320_mobilenet_v3_large": detection.SSDLite320_MobileNet_V3_Large_Weights,
    }
    assert {name: entry.url for name, entry in COCO_WEIGHTS.items()} == {
        name: weights.COCO_V1.url for name, weights in published.items()
    }
    # must agree: weights are published for exactly the detectors the package builds
    assert set(COCO_WEIGHTS) == set(models.DETECTORS)


def test_the_configuration_offers_exactly_the_detectors_the_package_builds():
    # training.detector is checked at synth against counting_core.models.detectors, which cannot
    # import this package (torch stays out of synth): the two lists are kept alike here.
    from counting_core.models import detectors

    # must agree: the two lists cannot import each other
    assert set(detectors.DETECTORS) == set(models.DETECTORS)
    assert detectors.DEFAULT == models.DEFAULT_DETECTOR == "fasterrcnn_mobilenet_v3_large_fpn"
