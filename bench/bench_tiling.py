"""Tiled counting of large photos: tiles, endpoint calls, tiles per second and peak memory.

Run from the repository: ``.venv/bin/python bench/bench_tiling.py`` (``make bench``). For a
12, 48 and 100 MP camera JPEG, counts at the default settings (512 px tiles overlapping
102 px, the whole-image pass, merging) against an endpoint that answers at once with 20
boxes per request, so the figures are the tiler's own work: reading and decoding the upload,
cutting and encoding tiles, shifting and merging boxes. Each photo is counted in two fresh
processes: one timed, one measured with tracemalloc (which slows Python code down).

Memory, two figures: ``tracemalloc`` traces what Python allocates (encoded tiles, answers,
boxes), which the tiler keeps bounded whatever the photo's size; Pillow allocates pixel
buffers outside it, so the process's peak resident memory (VmHWM) is given too, the decoded
photo included (4 bytes per pixel).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # works from a checkout, installed or not

import PIL  # noqa: E402
from bench_counting import COUNTER_ENVIRONMENT, Figure, photo_file, show  # noqa: E402

# (name, width, height, EXIF orientation): a phone photo stored sideways (turned upright
# tile by tile), a 48 MP phone or drone photo, and a 100 MP medium-format photo.
PHOTOS = (
    ("12 MP phone photo", 4032, 3024, 6),
    ("48 MP photo", 8000, 6000, 1),
    ("100 MP photo", 11547, 8660, 1),
)
# Tiles in flight: a counter function's share of the endpoint (counter.images_in_flight).
CONCURRENCY = int(COUNTER_ENVIRONMENT["IMAGES_IN_FLIGHT"])
# Python's own allocations must not grow with the photo: a few encoded tiles (100 kB or so
# each) and the boxes of every tile (20 per request here, 100 bytes each as tuples).
PYTHON_PEAK_GOAL_MB = 30
# The counter Lambda has 1,024 MB: the decoded 100 MP photo (400 MB) and the process must fit.
PROCESS_PEAK_GOAL_MB = 700

COUNT = """
import json, os, random, sys, time, tracemalloc
from counting_core.imaging import detection, images, tiling

path, concurrency, traced = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "traced"
rng = random.Random(0)
boxes = []
for _ in range(20):
    x, y = rng.random() * 0.9, rng.random() * 0.9
    boxes.append([0, round(rng.uniform(0.3, 1), 3), x, y, x + 0.05, y + 0.05])
answer = json.dumps({"prediction": boxes}).encode()
sent = []

def invoke(payload):
    sent.append(len(payload))
    return answer

def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM"):
            return int(line.split()[1]) / 1024

if traced:
    tracemalloc.start()
start = time.perf_counter()
with open(path, "rb") as body:
    upload = images.read_upload(body, os.path.getsize(path))
with upload:
    found = detection.detect(
        upload, invoke=invoke, concurrency=concurrency,
        policy=tiling.TilingPolicy(mode="on"), image_shape=512, payload_scale=2,
    )
seconds = time.perf_counter() - start
python_peak = tracemalloc.get_traced_memory()[1] / 1e6 if traced else 0.0
record = found.tiling
print(record.tiles, record.endpoint_calls, seconds, python_peak, peak_mb(), sum(sent))
"""


def _count(path: Path, traced: bool) -> list[float]:
    output = subprocess.run(
        [sys.executable, "-c", COUNT, str(path), str(CONCURRENCY), "traced" if traced else "-"],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return [float(number) for number in output]


def tiled_counting() -> list[Figure]:
    figures = []
    with tempfile.TemporaryDirectory() as folder:
        for name, width, height, orientation in PHOTOS:
            path = photo_file(Path(folder), width, height, orientation)
            tiles, calls, seconds, _, _, sent = _count(path, traced=False)
            _, _, _, python_peak, process_peak, _ = _count(path, traced=True)
            size_mb = path.stat().st_size / 1e6
            figures += [
                Figure(f"tiling: {name} ({size_mb:.1f} MB JPEG), 512 px tiles", tiles, ""),
                Figure("  endpoint calls (tiles and the whole-image pass)", calls, ""),
                Figure("  bytes sent to the endpoint (JPEG tiles and whole image)", sent / 1e6,
                       "MB"),
                Figure("  tiles per second (read, decode, cut, encode, merge)",
                       tiles / seconds, "/s"),
                Figure("  seconds per photo, endpoint time not included", seconds, "s"),
                Figure("  peak Python allocations (tracemalloc)", python_peak, "MB",
                       f"<= {PYTHON_PEAK_GOAL_MB} MB", python_peak <= PYTHON_PEAK_GOAL_MB),
                Figure("  peak of the process, decoded pixels included (VmHWM)", process_peak,
                       "MB", f"<= {PROCESS_PEAK_GOAL_MB} MB",
                       process_peak <= PROCESS_PEAK_GOAL_MB),
            ]  # fmt: skip
    return figures


def main() -> int:
    print(
        f"tiling benchmarks: Python {platform.python_version()}, Pillow {PIL.__version__}, "
        f"{os.cpu_count()} CPUs, {platform.machine()}, {CONCURRENCY} tiles in flight"
    )
    for figure in tiled_counting():
        show(figure)
    return 0


if __name__ == "__main__":
    sys.exit(main())
