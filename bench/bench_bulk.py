"""Bulk post-processing rate: images per second one worker turns into results, no AWS.

Run from the repository: ``.venv/bin/python bench/bench_bulk.py [COUNT]`` (``make bench``).
Writes COUNT (default 100,000) transform outputs as local files, shaped as Batch Transform
writes them for the built-in Object Detection model (``<key>.out`` holding the endpoint's
JSON), then times what the bulk Lambda does per output between its S3 calls: read the
output, name its image, read the image's size from its header, count
(``results.count_response``), serialize the result document, build the table item and
the event entry. S3, DynamoDB and EventBridge time is not in the figure: a worker
overlaps those calls (``lambdas/bulk_counter/service.WORKERS`` at once).
"""

from __future__ import annotations

import io
import json
import os
import platform
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # works from a checkout, installed or not

from PIL import Image  # noqa: E402

from counting_core.contracts import published  # noqa: E402
from counting_core.counts import announcements, bulk, results  # noqa: E402
from counting_core.imaging import images  # noqa: E402
from counting_core.models.model_record import ActiveModel  # noqa: E402

RUN = "object-counting-dev-bulk-1a2b3c4d"
BUCKET = "object-counting-dev-data-123456789012-eu-west-1"
SOURCE = "object-counting-dev.counting"
# Objects per image in the outputs: a busy street or shelf, most above the threshold.
DETECTIONS = (5, 60)
MODEL = ActiveModel(
    endpoint_name="object-counting-dev-counter",
    endpoint_config_name="object-counting-dev-20261101-090000-0f0f0f",
    model_name="object-counting-dev-20261101-090000-0f0f0f",
    class_map={"0": "car", "1": "person", "2": "bicycle"},
)


def camera_jpeg() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (1920, 1080), (90, 110, 130)).save(buffer, format="JPEG", quality=85)
    return buffer.getvalue()


def write_outputs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    rng = random.Random(seed)
    paths = []
    outputs = folder / "bulk" / RUN / "outputs" / "archive" / "2026"
    for number in range(count):
        camera = outputs / f"cam{number % 100:02d}"
        camera.mkdir(parents=True, exist_ok=True)
        boxes = []
        for _ in range(rng.randint(*DETECTIONS)):
            x, y = rng.random() * 0.9, rng.random() * 0.9
            boxes.append(
                [float(rng.randrange(3)), round(rng.random(), 4), x, y, x + 0.05, y + 0.08]
            )
        path = camera / f"frame-{number:07d}.jpg.out"
        path.write_text(json.dumps({"prediction": boxes}))
        paths.append(path)
    return paths


def post_process(root: Path, path: Path, image: bytes, now: datetime) -> int:
    """One output, as the bulk Lambda handles it between its S3 calls; returns the count."""
    key = bulk.image_key_of_output(RUN, path.relative_to(root).as_posix())
    size = images.image_size(image)
    ref = published.SourceObject(
        bucket=BUCKET, key=key, version_id="3HL4kqtJlcpXroDTDmJ.rDSs", etag="9b2cf535f27731c97434"
    )
    document, _ = results.count_response(
        ref,
        path.read_bytes(),
        model=MODEL,
        configured_threshold=0.2,
        image_size=size,
        counted_at=now,
        pipeline=results.PIPELINE_BULK,
    )
    results.document_json(document)
    results.dynamodb_item(results.table_item(document))
    announcements.entry(document, source=SOURCE, annotated=False)
    return document.count


def main(argv: list[str]) -> int:
    count = int(argv[0]) if argv else 100_000
    print(
        f"bulk post-processing benchmark: Python {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}"
    )
    image = camera_jpeg()
    now = datetime.now(UTC)
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        started = time.perf_counter()
        paths = write_outputs(root, count)
        written = time.perf_counter() - started
        print(f"{'transform outputs written':<60} {count:>10} files in {written:.1f} s")
        started = time.perf_counter()
        objects = sum(post_process(root, path, image, now) for path in paths)
        seconds = time.perf_counter() - started
    rate = count / seconds
    print(f"{'objects counted':<60} {objects:>10}")
    print(f"{'post-processing, one worker (one thread, no AWS calls)':<60} {rate:>10.0f} images/s")
    print(f"{'per image':<60} {seconds / count * 1e6:>10.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
