"""Synthetic counting scenes, for tests and the benchmark: images whose counts are known.

Each scene is a noisy background with clutter (grey lines and blobs, never in a class's
colour) and 0 to ``max_objects`` shapes of a few classes, each class its own form and
colour, 16 px and up, overlapping a little. ``write_scenes`` saves JPEG images, a Ground
Truth bounding-box manifest (the form a labeling job writes) and the class map. The same
seed gives the same files.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

# Where the manifest says the images are: train-local looks them up below its --images.
SOURCE_PREFIX = "s3://counting-scenes/images/"
LABEL_ATTRIBUTE = "scenes"
CLASSES = ("circle", "square", "triangle", "diamond")
COLOURS = ((220, 40, 40), (40, 80, 220), (40, 180, 60), (200, 60, 200))
MIN_SIDE, MAX_SIDE = 16, 48
# Two shapes may overlap, but never more than this share of the smaller one's box: a person
# could still count them.
MAX_OVERLAP = 0.3
PLACEMENT_TRIES = 50
CLUTTER_PIECES = 25
JPEG_QUALITY = 90
_FIXED_DATE = "2026-01-01T00:00:00.000000"

Box = tuple[int, int, int, int, int]  # class id, left, top, width, height


@dataclass(frozen=True)
class SceneFiles:
    manifest: Path
    images: Path
    class_map: Path
    counts: tuple[int, ...]  # objects per scene, in manifest order


def draw_scene(
    rng: random.Random, size: tuple[int, int], max_objects: int
) -> tuple[Image.Image, list[Box]]:
    """One scene and its boxes; the number of objects is drawn uniformly from 0..max_objects
    (fewer only when no free place is found for a shape)."""
    width, height = size
    image = Image.new("RGB", size)
    draw = ImageDraw.Draw(image)
    shade = rng.randint(90, 170)
    for row in range(0, height, 4):
        tone = shade + rng.randint(-12, 12)
        draw.rectangle((0, row, width, row + 3), fill=(tone, tone, tone))
    for _ in range(CLUTTER_PIECES):
        tone = rng.randint(40, 230)
        x, y = rng.randrange(width), rng.randrange(height)
        if rng.random() < 0.5:
            end = (x + rng.randint(-80, 80), y + rng.randint(-80, 80))
            draw.line((x, y, *end), fill=(tone, tone, tone), width=rng.randint(1, 4))
        else:
            radius = rng.randint(3, 12)
            draw.ellipse((x - radius, y - radius, x + radius, y + radius), fill=(tone,) * 3)
    boxes: list[Box] = []
    for _ in range(rng.randint(0, max_objects)):
        placed = _place(rng, size, boxes)
        if placed is not None:
            class_id = rng.randrange(len(CLASSES))
            _draw_shape(draw, class_id, placed, _jittered(rng, COLOURS[class_id]))
            boxes.append((class_id, *placed))
    return image, boxes


def _place(
    rng: random.Random, size: tuple[int, int], boxes: list[Box]
) -> tuple[int, int, int, int] | None:
    for _ in range(PLACEMENT_TRIES):
        side = rng.randint(MIN_SIDE, MAX_SIDE)
        left, top = rng.randint(0, size[0] - side), rng.randint(0, size[1] - side)
        candidate = (left, top, side, side)
        if all(overlap(candidate, box[1:]) <= MAX_OVERLAP for box in boxes):
            return candidate
    return None


def overlap(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """The shared area as a share of the smaller box."""
    across = min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0])
    down = min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1])
    if across <= 0 or down <= 0:
        return 0.0
    return across * down / min(a[2] * a[3], b[2] * b[3])


def _jittered(rng: random.Random, colour: tuple[int, int, int]) -> tuple[int, int, int]:
    r, g, b = (min(255, max(0, channel + rng.randint(-25, 25))) for channel in colour)
    return r, g, b


def _draw_shape(
    draw: ImageDraw.ImageDraw,
    class_id: int,
    box: tuple[int, int, int, int],
    colour: tuple[int, int, int],
) -> None:
    left, top, side, _ = box
    right, bottom = left + side - 1, top + side - 1
    middle_x, middle_y = left + side // 2, top + side // 2
    outline = (20, 20, 20)
    name = CLASSES[class_id]
    if name == "circle":
        draw.ellipse((left, top, right, bottom), fill=colour, outline=outline)
    elif name == "square":
        draw.rectangle((left, top, right, bottom), fill=colour, outline=outline)
    elif name == "triangle":
        corners = [(middle_x, top), (right, bottom), (left, bottom)]
        draw.polygon(corners, fill=colour, outline=outline)
    else:
        corners = [(middle_x, top), (right, middle_y), (middle_x, bottom), (left, middle_y)]
        draw.polygon(corners, fill=colour, outline=outline)


def manifest_line(source_ref: str, size: tuple[int, int], boxes: list[Box]) -> dict[str, object]:
    """The line a Ground Truth bounding-box job writes for one image."""
    return {
        "source-ref": source_ref,
        LABEL_ATTRIBUTE: {
            "image_size": [{"width": size[0], "height": size[1], "depth": 3}],
            "annotations": [
                {"class_id": class_id, "left": left, "top": top, "width": width, "height": height}
                for class_id, left, top, width, height in boxes
            ],
        },
        f"{LABEL_ATTRIBUTE}-metadata": {
            "objects": [{"confidence": 1.0} for _ in boxes],
            "class-map": {str(class_id): name for class_id, name in enumerate(CLASSES)},
            "type": "groundtruth/object-detection",
            "human-annotated": "no",
            "creation-date": _FIXED_DATE,
            "job-name": "labeling-job/synthetic-scenes",
        },
    }


def write_scenes(
    out: Path,
    count: int,
    *,
    seed: int = 0,
    size: tuple[int, int] = (512, 512),
    max_objects: int = 60,
    first: int = 0,
) -> SceneFiles:
    """Write scenes ``first``..``first + count - 1`` (``images/scene-NNNNN.jpg``), their
    manifest ``scenes.manifest`` and ``class-map.json`` into ``out``."""
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    counts = []
    lines = []
    for number in range(first, first + count):
        # One generator per scene: scene N is the same whichever others are written.
        rng = random.Random(f"{seed}/{number}")  # noqa: S311 - synthetic pictures, not secrets
        image, boxes = draw_scene(rng, size, max_objects)
        name = f"scene-{number:05d}.jpg"
        image.save(images / name, format="JPEG", quality=JPEG_QUALITY)
        lines.append(json.dumps(manifest_line(SOURCE_PREFIX + name, size, boxes)))
        counts.append(len(boxes))
    manifest = out / "scenes.manifest"
    manifest.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    class_map = out / "class-map.json"
    class_map.write_text(json.dumps(dict(enumerate(CLASSES)), indent=2) + "\n", encoding="utf-8")
    return SceneFiles(manifest, images, class_map, tuple(counts))
