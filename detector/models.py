"""Build a torchvision detector by name, and start it from torchvision's COCO weights.

The model is always built without downloading anything (``weights=None``): the training
job runs under network isolation, and COCO weights arrive as a file in the ``weights``
channel, loaded by ``load_pretrained``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torchvision.models import detection

DEFAULT_DETECTOR = "fasterrcnn_mobilenet_v3_large_fpn"
# Candidates a model keeps before its final selection: never fewer than the detections it
# may return, or dense scenes would be capped below max_detections without saying so (the
# 320 px Faster R-CNN keeps 150 region proposals by default, SSDlite 300 boxes per class).
MIN_CANDIDATES = 1000


@dataclass(frozen=True)
class DetectorKind:
    builder: Callable[..., nn.Module]
    # torchvision fine-tunes its Faster R-CNN backbones with frozen batch-norm statistics
    # (FrozenBatchNorm2d when built with weights); SSDlite trains them.
    freeze_norm_when_pretrained: bool


DETECTORS: dict[str, DetectorKind] = {
    "fasterrcnn_mobilenet_v3_large_fpn": DetectorKind(
        detection.fasterrcnn_mobilenet_v3_large_fpn, freeze_norm_when_pretrained=True
    ),
    "fasterrcnn_mobilenet_v3_large_320_fpn": DetectorKind(
        detection.fasterrcnn_mobilenet_v3_large_320_fpn, freeze_norm_when_pretrained=True
    ),
    "ssdlite320_mobilenet_v3_large": DetectorKind(
        detection.ssdlite320_mobilenet_v3_large, freeze_norm_when_pretrained=False
    ),
}


def build(name: str, *, num_classes: int, image_size: int, max_detections: int) -> nn.Module:
    """The detector ``name`` for ``num_classes`` classes (plus torchvision's background),
    resizing images to ``image_size`` pixels and returning up to ``max_detections`` boxes."""
    kind = DETECTORS.get(name)
    if kind is None:
        raise ValueError(f"unknown detector {name!r}: one of {', '.join(sorted(DETECTORS))}")
    common: dict[str, Any] = {
        "weights": None,
        "weights_backbone": None,
        "num_classes": num_classes + 1,
    }
    candidates = max(MIN_CANDIDATES, max_detections)
    if name.startswith("ssdlite"):
        model = kind.builder(
            **common, detections_per_img=max_detections, topk_candidates=candidates
        )
        # SSDlite is built for 320 x 320 inputs; its anchors are fractions of the image, so
        # another square size only changes the resolution it sees.
        transform: Any = model.transform  # a GeneralizedRCNNTransform (torchvision is untyped)
        transform.min_size = (image_size,)
        transform.max_size = image_size
        transform.fixed_size = (image_size, image_size)
        return model
    return kind.builder(
        **common,
        box_detections_per_img=max_detections,
        min_size=image_size,
        max_size=image_size,
        rpn_pre_nms_top_n_test=candidates,
        rpn_post_nms_top_n_test=candidates,
    )


def load_pretrained(model: nn.Module, path: Path) -> list[str]:
    """Load torchvision's COCO weights from ``path`` into ``model``, except the tensors
    whose shape depends on the number of classes (the class-specific head), which keep
    their fresh initialisation. Returns the names of the tensors left out.

    Raises ValueError if the file holds tensors the model does not have: weights of
    another detector.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    unknown = sorted(set(state) - set(own))
    if unknown:
        raise ValueError(
            f"{path.name} does not fit this detector: {len(unknown)} tensor(s) it does not "
            f"have, such as {unknown[0]}"
        )
    class_specific = sorted(key for key, tensor in state.items() if tensor.shape != own[key].shape)
    kept = {key: tensor for key, tensor in state.items() if key not in class_specific}
    # strict=False: batch norm's num_batches_tracked is absent from files saved with frozen
    # batch norm, and the class-specific tensors were left out above.
    model.load_state_dict(kept, strict=False)
    return class_specific


def freeze_batch_norm(model: nn.Module) -> None:
    """Keep every batch-norm layer's statistics and affine parameters as loaded."""
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d):
            module.eval()
            module.requires_grad_(False)


def parameter_count(model: nn.Module) -> int:
    return sum(parameter.numel() for parameter in model.parameters())
