"""The torchvision detectors the app can train, by their torchvision model-builder names.

One list, shared by the configuration (``training.detector`` is checked against it) and the
detector package's own helpers. Names only: the package maps each to its builder and its
published weights, and imports no counting_core (it runs inside SageMaker's containers).
https://pytorch.org/vision/stable/models.html#object-detection
"""

from __future__ import annotations

from typing import Final

#: Faster R-CNN with a MobileNetV3-Large FPN backbone (BSD-3, about 19 M parameters): the
#: default, accurate enough on small objects and still cheap to serve on CPU.
DEFAULT: Final = "fasterrcnn_mobilenet_v3_large_fpn"

#: What detector/models.py builds (its DETECTORS): the default, its 320-pixel variant, and
#: SSDlite 320 (CPU-cheap training and serving); tests/detector/test_models.py holds the two
#: lists alike.
DETECTORS: Final = (
    DEFAULT,
    "fasterrcnn_mobilenet_v3_large_320_fpn",
    "ssdlite320_mobilenet_v3_large",
)
