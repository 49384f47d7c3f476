"""Manifests at scale: time and peak memory of ``counting manifest stats`` and ``split``, and of
the Prepare Lambda's code path, at 100,000 and 1,000,000 lines, each beside its goal.

Run from the repository: ``.venv/bin/python bench/bench_manifest.py`` (``make bench`` runs
it). Each figure is one run in a fresh interpreter, so its peak resident memory is that of
the whole process (interpreter and imports included), as a user or Lambda would see it.
Wall time depends on what else the machine runs (several engineers share its two CPUs), so
the time goal is judged on the process's CPU time, printed beside the wall time.

The manifests are Ground Truth bounding-box output as a labeling job writes it (about 690
bytes a line): 1-7 boxes per image, one line in 50 failed, one in 50 without boxes, and
one image in 100 listed a second time, alike (two labeling batches concatenated).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIZES = (100_000, 1_000_000)
GOAL_SECONDS = 30.0
GOAL_MB = 256.0

_BOX = '{{"class_id":{},"left":{},"top":{},"width":{},"height":{}}}'
_LINE = (
    '{{"source-ref":"s3://counting-data/labeling/images/street/img-{:07d}.jpg",'
    '"vehicles":{{"image_size":[{{"width":640,"height":480,"depth":3}}],"annotations":[{}]}},'
    '"vehicles-metadata":{{"objects":[{}],"class-map":{{"0":"car","1":"truck","2":"bus"}},'
    '"type":"groundtruth/object-detection","human-annotated":"yes",'
    '"creation-date":"2026-11-26T17:30:00.123456","job-name":"labeling-job/vehicles"}}}}\n'
)
_FAILED = (
    '{{"source-ref":"s3://counting-data/labeling/images/street/img-{:07d}.jpg",'
    '"vehicles-metadata":{{"retry-count":1,"failure-reason":"ClientError: The image could not '
    'be loaded.","human-annotated":"true"}}}}\n'
)

# Runs in a fresh interpreter: one command, then its time and the process's peak memory.
_MEASURE = """
import contextlib, io, resource, sys, time
sys.argv = ["counting"]
start, cpu = time.perf_counter(), time.process_time()
{body}
print(time.perf_counter() - start, time.process_time() - cpu,
      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
"""
_CLI = """
import counting
printed = io.StringIO()
with contextlib.redirect_stdout(printed):
    assert counting.main({argv!r}) == 0
print(" ".join(printed.getvalue().split()))
"""
# The Prepare Lambda's work once the manifest is in /tmp (S3 transfers left out).
_PREPARE = """
from counting_core.datasets import manifest
with open({path!r}, "rb") as file:
    split = manifest.split(file, validation_fraction=0.2, seed=42,
                           image_source="s3://counting-data/labeling/images/")
    with open({out!r} + "/train.manifest", "wb") as train, \\
            open({out!r} + "/validation.manifest", "wb") as validation:
        split.write(train, validation)
"""


@dataclass(frozen=True)
class Run:
    seconds: float
    cpu_seconds: float
    peak_mb: float
    printed: str  # what the command printed, on one line


def write_manifest(path: Path, lines: int) -> None:
    written = 0
    with path.open("w", encoding="utf-8") as file:
        for index in range(lines):
            if written == lines:
                return
            written += 1
            if index % 50 == 7:
                file.write(_FAILED.format(index))
                continue
            count = 0 if index % 50 == 11 else 1 + index % 7
            boxes = ",".join(
                _BOX.format(box % 3, (index * 7 + box * 61) % 560, (index * 5 + box * 37) % 400,
                            20 + box, 30 + box)
                for box in range(count)
            )  # fmt: skip
            confidences = ",".join(
                f'{{"confidence":0.{(index + box) % 100:02d}}}' for box in range(count)
            )
            line = _LINE.format(index, boxes, confidences)
            file.write(line)
            if index % 100 == 3 and written < lines:
                file.write(line)
                written += 1


def measure(body: str) -> Run:
    code = _MEASURE.format(body=body)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, check=True, capture_output=True, text=True
    )
    *printed, figures = result.stdout.strip().split("\n")
    seconds, cpu_seconds, peak_mb = map(float, figures.split())
    return Run(seconds, cpu_seconds, peak_mb, "".join(printed))


def print_run(name: str, run: Run, *, goal: bool) -> None:
    verdict = ""
    if goal:
        met = run.cpu_seconds <= GOAL_SECONDS and run.peak_mb <= GOAL_MB
        verdict = (
            f"goal CPU <= {GOAL_SECONDS:.0f} s, <= {GOAL_MB:.0f} MB {'PASS' if met else 'MISS'}"
        )
    print(
        f"{name:<44} {run.seconds:>7.1f} s  (CPU {run.cpu_seconds:>5.1f} s) "
        f"{run.peak_mb:>7.1f} MB peak  {verdict}"
    )


def main() -> int:
    print(
        f"manifest benchmarks: Python {platform.python_version()}, {os.cpu_count()} CPUs, "
        f"{platform.machine()}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        for lines in SIZES:
            path = folder / f"{lines}.manifest"
            write_manifest(path, lines)
            out = folder / f"split-{lines}"
            out.mkdir()
            size_mb = path.stat().st_size / 1e6
            goal = lines == max(SIZES)
            print(f"{lines:,} lines ({size_mb:,.0f} MB):")
            stats = measure(_CLI.format(argv=["manifest", "stats", str(path)]))
            print_run("  counting manifest stats", stats, goal=goal)
            split_argv = ["manifest", "split", str(path), "--validation-fraction", "0.2",
                          "--seed", "42", "--out-dir", str(out)]  # fmt: skip
            print_run("  counting manifest split", measure(_CLI.format(argv=split_argv)), goal=goal)
            prepare = measure(_PREPARE.format(path=str(path), out=str(out)))
            print_run("  Prepare Lambda code path (split + write)", prepare, goal=False)
            figures = json.loads(stats.printed)
            print(
                f"  {figures['images']:,} images, {figures['duplicates']:,} duplicate lines, "
                f"{figures['failed']:,} failed, {figures['empty']:,} without boxes"
            )
            path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
