"""Serving: the handler functions SageMaker's PyTorch inference container calls.

The container loads ``code/inference.py`` from the model (SAGEMAKER_PROGRAM) and calls
``model_fn`` once, then per request ``input_fn`` -> ``predict_fn`` -> ``output_fn``. The
answer is the built-in Object Detection algorithm's JSON, so every counter reads it
unchanged: ``{"prediction": [[class_id, score, xmin, ymin, xmax, ymax], ...]}``, class ids
from 0 as in the class map, corners as fractions of the image, best score first; plus
``max_detections``, the cap on boxes per image: a response holding that many may have
been cut.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from detector import models
from detector.imaging import load_image
from detector.targets import LABEL_OFFSET

MODEL_FORMAT = 1
WEIGHTS_FILE = "model.pth"
DESCRIPTION_FILE = "model.json"
IMAGE_CONTENT_TYPES = frozenset(("image/jpeg", "image/png", "application/x-image"))
JSON_CONTENT_TYPE = "application/json"
ANY_CONTENT_TYPE = "*/*"
# Scores and corners to 6 decimals: far finer than a pixel, and a 1,000-box answer stays small.
DECIMALS = 6


@dataclass(frozen=True)
class LoadedModel:
    network: nn.Module
    image_size: int
    max_detections: int


def model_fn(model_dir: str) -> LoadedModel:
    folder = Path(model_dir)
    description = json.loads((folder / DESCRIPTION_FILE).read_text(encoding="utf-8"))
    if description.get("format") != MODEL_FORMAT:
        raise ValueError(f"{DESCRIPTION_FILE}: format {description.get('format')!r} is unknown")
    network = models.build(
        description["detector"],
        num_classes=description["num_classes"],
        image_size=description["image_size"],
        max_detections=description["max_detections"],
    )
    state = torch.load(folder / WEIGHTS_FILE, map_location="cpu", weights_only=True)
    network.load_state_dict(state)
    network.eval()
    return LoadedModel(network, description["image_size"], description["max_detections"])


def _media_type(header: str | None) -> str:
    # "image/jpeg; charset=binary" is image/jpeg: parameters change nothing here. A request
    # without the header (None) is refused as any other type is.
    return (header or "").split(";", 1)[0].strip().lower()


def input_fn(body: bytes, content_type: str | None) -> bytes:
    """The image as sent: it is decoded in ``predict_fn``, straight to the model's size."""
    if _media_type(content_type) not in IMAGE_CONTENT_TYPES:
        served = ", ".join(sorted(IMAGE_CONTENT_TYPES))
        raise ValueError(f"content type {content_type!r} is not served: send {served}")
    return bytes(body)


def predict_fn(image: bytes, model: LoadedModel) -> dict[str, Any]:
    pixels, _ = load_image(image, model.image_size)
    height, width = pixels.shape[1:]
    with torch.inference_mode():
        found = model.network([pixels])[0]
    order = torch.argsort(found["scores"], descending=True, stable=True)
    rows = [
        [
            label - LABEL_OFFSET,
            round(score, DECIMALS),
            _fraction(xmin, width),
            _fraction(ymin, height),
            _fraction(xmax, width),
            _fraction(ymax, height),
        ]
        for (xmin, ymin, xmax, ymax), label, score in zip(
            found["boxes"][order].tolist(),
            found["labels"][order].tolist(),
            found["scores"][order].tolist(),
            strict=True,
        )
    ]
    return {"prediction": rows, "max_detections": model.max_detections}


def _fraction(pixels: float, side: int) -> float:
    return round(min(max(pixels / side, 0.0), 1.0), DECIMALS)


def output_fn(prediction: dict[str, Any], accept: str | None) -> str:
    if _media_type(accept) not in (JSON_CONTENT_TYPE, ANY_CONTENT_TYPE, ""):
        raise ValueError(f"accept {accept!r} is not served: ask for {JSON_CONTENT_TYPE}")
    return json.dumps(prediction, separators=(",", ":"))
