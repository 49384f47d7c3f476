"""Bulk counting with ``counter.tiling``: select cuts tiles, the manifest lists them, the count
merges their answers, against moto and a fake transform.

The fake transform answers every key of the run's manifest as Batch Transform does, one
``.out`` per input, in either output layout (``counting_core.counts.responses``), with the
fake detector of tests/core/fake_detector.py behind a model that resizes each input to its
512 x 512 input, as the built-in algorithm does. The scene: 2,048 x 1,600 px with 800 squares
of 20 px. Whole, the model sees them 5 px wide and finds none; in native 512 px tiles, 20 px,
and finds every one.
"""

from __future__ import annotations

import io
import json
from collections import Counter

import boto3
import pytest
from PIL import Image

from counting_core.counts import bulk
from lambdas.bulk_counter.handler import run_step
from tests.core.fake_detector import FakeDetector, grid, jpeg, scene
from tests.lambdas.bulk_harness import (
    BUCKET,
    MODEL,
    RESULTS_TABLE,
    RUN,
    build_bulk,
    prepare_aws,
    resizing_model,
)
from tests.lambdas.conftest import REGION, emitted

SCENE = (2048, 1600)
# A 20 px square every 64 px from (10, 10): 32 columns by 25 rows.
SQUARES = grid(SCENE, side=20, pitch=64, margin=10)
MODEL_SIDE = 512
# The fake sees squares at least 14 px wide in what the model receives.
MIN_WIDTH = 14
# x: ceil((2048 - 102) / (512 - 102)) = 5 tiles, y: ceil((1600 - 102) / 410) = 4.
TILES = 20
TILED = {"TILING": "on"}


@pytest.fixture(scope="module")
def big_scene() -> bytes:
    return jpeg(scene(SCENE, SQUARES))


@pytest.fixture
def bucket(aws, monkeypatch):
    prepare_aws(monkeypatch)


def s3():
    return boto3.client("s3", region_name=REGION)


def put(key: str, body: bytes) -> None:
    s3().put_object(Bucket=BUCKET, Key=key, Body=body)


def listing(prefix: str) -> list[dict]:
    """What the Distributed Map's S3 reader hands a batch: ListObjectsV2 Contents."""
    pages = s3().get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix)
    contents = [found for page in pages for found in page.get("Contents", ())]
    return json.loads(json.dumps(contents, default=str))


def keys_under(prefix: str) -> list[str]:
    return [found["Key"] for found in listing(prefix)]


def read_json(key: str):
    return json.loads(s3().get_object(Bucket=BUCKET, Key=key)["Body"].read())


def transform(detector: FakeDetector, *, folders: bool = True, skip: str = "") -> list[str]:
    """Answer every input of the run's manifest as Batch Transform does; ``folders``: whether
    the output keeps the input's folders; ``skip``: an input the job fails on. The inputs."""
    prefix, *inputs = read_json(bulk.manifest_key(RUN))
    assert prefix == {"prefix": f"s3://{BUCKET}/"}
    answer = resizing_model(detector, MODEL_SIDE)
    for key in inputs:
        if key == skip:
            continue
        body = s3().get_object(Bucket=BUCKET, Key=key)["Body"].read()
        name = key if folders else key.rsplit("/", 1)[-1]
        put(f"{bulk.outputs_prefix(RUN)}{name}{bulk.OUTPUT_SUFFIX}", answer(body))
    return inputs


def step(counter, action: str, **request) -> dict:
    return run_step(counter, {"run": RUN, "action": action, **request})


def select_and_write_manifest(counter, prefix: str = "archive/") -> dict:
    report = step(counter, "select", model=MODEL, items=listing(prefix))
    step(counter, "manifest")
    return report


def count_in_batches(counter, batches: int = 3) -> dict:
    """Count the run's outputs as the count map does, in ``batches`` interleaved batches, so
    a tiled image's outputs land in several; the reports' figures added up."""
    outputs = listing(bulk.outputs_prefix(RUN))
    reports = [
        step(counter, "count", model=MODEL, items=outputs[index::batches])
        for index in range(batches)
    ]
    by_class: Counter[str] = Counter()
    for report in reports:
        by_class.update(report["objects_by_class"])
    figures = ("counted", "capped", "rejected", "overwritten", "failed")
    return {
        **{figure: sum(report[figure] for report in reports) for figure in figures},
        "objects_by_class": dict(by_class),
    }


def summarize(counter) -> dict:
    return step(
        counter,
        "summarize",
        prefix="archive/",
        model_name=MODEL["model_name"],
        transform={"TransformJobStatus": "Completed"},
    )


def test_a_scene_missed_whole_is_counted_whole_when_tiling_is_off(bucket, big_scene):
    put("archive/scene.jpg", big_scene)
    counter = build_bulk()

    select_and_write_manifest(counter)
    inputs = transform(FakeDetector(MIN_WIDTH))
    count_in_batches(counter)

    assert inputs == ["archive/scene.jpg"]
    document = read_json("results/archive/scene.jpg.json")
    assert document["count"] == 0
    assert "tiling" not in document
    assert keys_under(bulk.TILES) == []


@pytest.mark.parametrize("folders", [True, False], ids=["folders-kept", "file-names"])
def test_small_objects_missed_whole_are_counted_exactly_in_tiles(
    bucket, big_scene, capsys, folders
):
    put("archive/scene.jpg", big_scene)
    counter = build_bulk(**TILED)

    selected = select_and_write_manifest(counter)
    detector = FakeDetector(MIN_WIDTH)
    inputs = transform(detector, folders=folders)
    counted = count_in_batches(counter)

    assert selected["selected"] == 1
    digest = bulk.image_digest("archive/scene.jpg")
    tiles = [f"bulk/tiles/{RUN}/{digest}-{source}.jpg" for source in range(TILES)]
    # The image itself is the whole-image pass.
    assert inputs == ["archive/scene.jpg", *tiles]
    assert detector.calls == TILES + 1
    # Every tile went at native resolution: none needed resizing to the model's side.
    for key in tiles:
        tile = s3().get_object(Bucket=BUCKET, Key=key)
        assert tile["ContentType"] == "image/jpeg"
        assert Image.open(io.BytesIO(tile["Body"].read())).size == (512, 512)
    recorded = read_json(bulk.tile_set_key(RUN, digest))["tile_set"]
    assert (recorded["width"], recorded["height"], recorded["side"], recorded["overlap"]) == (
        2048, 1600, 512, 102,
    )  # fmt: skip

    assert (counted["counted"], counted["failed"]) == (1, 0)
    assert counted["objects_by_class"] == {"car": 800}
    document = read_json("results/archive/scene.jpg.json")
    assert document["count"] == 800
    assert document["tiling"] == {
        "tiles": 20, "tile_side": 512, "overlap": 102, "merge": "merge",
        "whole_image_pass": True, "endpoint_calls": 21, "capped_calls": 0,
    }  # fmt: skip
    assert document["image_size"] == {"width": 2048, "height": 1600}
    item = boto3.resource("dynamodb", region_name=REGION).Table(RESULTS_TABLE).scan()["Items"]
    assert [(found["count"], found["tiles"], found["endpoint_calls"]) for found in item] == [
        (800, 20, 21)
    ]
    assert emitted(capsys, "ImagesCounted") == 1
    assert emitted(capsys, "ImagesCapped") == 0


def test_auto_tiles_the_large_image_and_sends_the_small_one_whole(bucket, big_scene):
    # auto without a measured choice: tiled when the shorter side exceeds 3 x 512 = 1,536 px.
    put("archive/scene.jpg", big_scene)
    put("archive/small.jpg", jpeg(scene((640, 480), [(100, 100, 40)])))
    counter = build_bulk(TILING="auto")

    select_and_write_manifest(counter)
    inputs = transform(FakeDetector(MIN_WIDTH))
    counted = count_in_batches(counter)

    digest = bulk.image_digest("archive/scene.jpg")
    tiles = [bulk.tile_key(RUN, digest, source) for source in range(TILES)]
    assert inputs == ["archive/scene.jpg", *tiles, "archive/small.jpg"]
    assert counted["counted"] == 2
    assert read_json("results/archive/scene.jpg.json")["count"] == 800
    small = read_json("results/archive/small.jpg.json")
    # 40 px at 640 x 480 resized to 512 x 512: 32 px wide, seen whole.
    assert (small["count"], "tiling" in small) == (1, False)


def test_a_rerun_skips_tiled_images_already_counted(bucket, big_scene):
    put("archive/scene.jpg", big_scene)
    counter = build_bulk(**TILED)
    select_and_write_manifest(counter)
    transform(FakeDetector(MIN_WIDTH))
    count_in_batches(counter)
    tiles_before = keys_under(bulk.TILES)

    again = select_and_write_manifest(counter)

    assert (again["skipped"], again["selected"]) == (1, 0)
    assert keys_under(bulk.TILES) == tiles_before


def test_a_tile_the_transform_failed_fails_its_image_alone(bucket, big_scene, caplog):
    put("archive/scene.jpg", big_scene)
    put("archive/other.jpg", big_scene)
    counter = build_bulk(**TILED)
    select_and_write_manifest(counter)
    failing = bulk.tile_key(RUN, bulk.image_digest("archive/scene.jpg"), 7)

    transform(FakeDetector(MIN_WIDTH), skip=failing)
    counted = count_in_batches(counter)
    summary = summarize(counter)

    assert (counted["counted"], counted["failed"]) == (1, 1)
    assert read_json("results/archive/other.jpg.json")["count"] == 800
    assert keys_under("results/") == ["results/archive/other.jpg.json"]
    assert (summary["counted"], summary["failed"], summary["outcome"]) == (1, 1, "partial")
    (failure,) = [record.error for record in caplog.records if hasattr(record, "error")]
    assert failure == "InputError: the transform answered 19 of the image's 20 tiles (not tile 8)"


def test_an_image_that_cannot_be_cut_is_rejected(bucket, big_scene):
    # Its header (and size) intact, its image data cut short.
    put("archive/truncated.jpg", big_scene[: len(big_scene) // 3])
    counter = build_bulk(**TILED)

    report = select_and_write_manifest(counter)

    assert (report["selected"], report["rejected"]) == (0, 1)
    assert read_json("results/archive/truncated.jpg.json")["status"] == "rejected"
    assert keys_under(bulk.TILES) == []


def test_tiled_answers_at_the_models_cap_flag_the_image_capped(bucket, big_scene, capsys):
    put("archive/scene.jpg", big_scene)
    counter = build_bulk(**TILED)
    select_and_write_manifest(counter)

    # Each 512 px tile holds at least 7 x 7 squares: a cap of 10 cuts every tile's answer.
    transform(FakeDetector(MIN_WIDTH, max_detections=10))
    counted = count_in_batches(counter)

    assert (counted["counted"], counted["capped"]) == (1, 1)
    document = read_json("results/archive/scene.jpg.json")
    assert document["capped"] is True
    assert document["tiling"]["capped_calls"] == TILES
    assert emitted(capsys, "ImagesCapped") == 1


def test_an_image_overwritten_before_it_is_cut_is_reported_overwritten(bucket, big_scene):
    put("archive/scene.jpg", big_scene)
    items = listing("archive/")
    # A new version lands between the listing and the select step: its tiles would not be
    # the listed version's.
    put("archive/scene.jpg", jpeg(scene(SCENE, SQUARES[:10])))
    counter = build_bulk(**TILED)

    report = step(counter, "select", model=MODEL, items=items)
    summary = summarize(counter)

    assert (report["selected"], report["overwritten"], report["failed"]) == (0, 1, 0)
    assert (summary["overwritten"], summary["outcome"]) == (1, "failed")
    assert keys_under(bulk.TILES) == []
    assert keys_under("results/") == []


def test_auto_reads_an_image_whose_size_lies_past_the_header_whole(bucket):
    # A 150 kB colour profile before the frame header: the size is not in the first 64 kB.
    profile = bytes(150_000)
    put("archive/scene.jpg", jpeg(scene(SCENE, SQUARES), icc_profile=profile))
    put("archive/small.jpg", jpeg(scene((640, 480), [(100, 100, 40)]), icc_profile=profile))
    counter = build_bulk(TILING="auto")

    select_and_write_manifest(counter)
    inputs = transform(FakeDetector(MIN_WIDTH))
    counted = count_in_batches(counter)

    assert len(inputs) == 2 + TILES
    assert counted["counted"] == 2
    assert read_json("results/archive/scene.jpg.json")["tiling"]["tiles"] == TILES
    assert "tiling" not in read_json("results/archive/small.jpg.json")


def test_a_tile_answer_larger_than_an_endpoint_may_answer_fails_its_image(
    bucket, big_scene, caplog
):
    put("archive/scene.jpg", big_scene)
    counter = build_bulk(**TILED)
    select_and_write_manifest(counter)
    transform(FakeDetector(MIN_WIDTH))
    tile = bulk.tile_key(RUN, bulk.image_digest("archive/scene.jpg"), 3)
    answer = f"{bulk.outputs_prefix(RUN)}{tile}{bulk.OUTPUT_SUFFIX}"
    put(answer, b" " * 4_000_001)

    counted = count_in_batches(counter)

    assert (counted["counted"], counted["failed"]) == (0, 1)
    (failure,) = [record.error for record in caplog.records if hasattr(record, "error")]
    assert failure == (
        f"InputError: s3://{BUCKET}/{answer}: the model's answer is 4000001 bytes, more than "
        "the 4000000 a bulk run turns into a result"
    )
