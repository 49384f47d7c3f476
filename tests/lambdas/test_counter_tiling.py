"""The counter with ``counter.tiling``: the real handler, moto, and the fake endpoint of
tests/core/fake_detector.py, which finds only squares at least ``min_width`` pixels wide in
what it is sent.

The scene: a 2048 x 1536 photo with 20 px white squares every 100 px from 40 px in, so
20 columns (40, 140, ..., 1940) by 15 rows (40, ..., 1440): 300 squares. Sent whole, the
counter scales it to 1024 px (payload_scale 2 x image_shape 512): the squares shrink to 10 px
and a detector that needs 12 sees none. Tiled at 512 px with 102 px of overlap (20 %),
each square is whole in some tile at native size. The tiles: ceil((2048 - 102) / 410) = 5
columns and ceil((1536 - 102) / 410) = 4 rows, 20 tiles; with the whole-image pass, 21 calls.
"""

from __future__ import annotations

import io
import json
from typing import Any

import boto3
import pytest
from PIL import Image

from counting_core.uploads import cold_start
from tests.core.fake_detector import FakeDetector, grid, jpeg, scene
from tests.lambdas.conftest import REGION, emitted
from tests.lambdas.counter_harness import (
    ACTIVE_MODEL,
    BUCKET,
    EVENT_SOURCE,
    PARAMETER,
    FakeTime,
    TimedContext,
    build_counter,
    keys_under,
    read_json,
    sqs_event,
    table_items,
    upload,
)
from tests.schema_checks import assert_valid, capture_result_events, sqs_events

SIZE = (2048, 1536)
SQUARES = 300  # 20 x 15, worked out above
TILES = 20
CALLS = TILES + 1
# The fake misses squares narrower than this in what it receives: 20 px at native size is
# seen, 10 px once the whole photo is halved is not.
MIN_WIDTH = 12


class FakeRuntime:
    """The SageMaker Runtime client, answered by the fake detector."""

    def __init__(self, detector: Any) -> None:
        self.detector = detector

    def invoke_endpoint(self, **request: Any) -> dict[str, Any]:
        return {"Body": io.BytesIO(self.detector(request["Body"]))}


@pytest.fixture(autouse=True)
def no_waits(monkeypatch) -> None:
    monkeypatch.setattr(cold_start, "time", FakeTime())


@pytest.fixture
def photo() -> bytes:
    return jpeg(scene(SIZE, grid(SIZE, side=20, pitch=100, margin=40)))


@pytest.fixture
def result_events(counter):
    sqs = boto3.client("sqs", region_name=REGION)
    url = capture_result_events(boto3.client("events", region_name=REGION), sqs, EVENT_SOURCE)
    return lambda: sqs_events(sqs, url)


def count(photo: bytes, detector: Any, **environment: str) -> tuple[dict, Any]:
    """The result document of ``photo`` counted by a counter with ``environment``; its
    recorded sends."""
    handler, sent = build_counter(sagemaker_runtime=FakeRuntime(detector), **environment)
    body = json.dumps(upload("incoming/lot.jpg", photo))
    assert handler.process(sqs_event(body), TimedContext()) == {"batchItemFailures": []}
    return read_json("results/lot.jpg.json"), sent


def test_a_scene_of_small_objects_is_missed_whole_and_counted_exactly_in_tiles(
    photo, result_events
):
    whole, _ = count(photo, FakeDetector(MIN_WIDTH), TILING="off")
    assert whole["count"] == 0
    assert "tiling" not in whole  # sent whole, as before tiling

    detector = FakeDetector(MIN_WIDTH)
    document, _ = count(photo, detector, TILING="on")

    assert document["count"] == SQUARES
    assert document["tiling"] == {
        "tiles": TILES,
        "tile_side": 512,
        "overlap": 102,
        "merge": "merge",
        "whole_image_pass": True,
        "endpoint_calls": CALLS,
        "capped_calls": 0,
    }
    assert document["capped"] is False
    assert detector.calls == CALLS
    # The tiles of one image share the function's three endpoint slots (IMAGES_IN_FLIGHT).
    assert detector.most_in_flight <= 3
    (item,) = [item for item in table_items() if item["count"] == SQUARES]
    assert (item["tiles"], item["endpoint_calls"]) == (TILES, CALLS)
    events = {event["detail"]["count"]: event for event in result_events()}
    assert events[SQUARES]["detail"]["tiles"] == TILES
    assert "tiles" not in events[0]["detail"]
    untiled_item = next(item for item in table_items() if item["count"] == 0)
    assert "tiles" not in untiled_item
    assert_valid("result-document.json", document)
    assert_valid("result-table-item.json", item)
    for event in events.values():
        assert_valid("image-counted-event.json", event)


def test_auto_tiles_only_photos_much_larger_than_the_model(photo, counter):
    # auto tiles when the shorter side passes 3 x 512 = 1536 px: this photo's is 1536.
    document, _ = count(photo, FakeDetector(MIN_WIDTH), TILING="auto")
    assert document["count"] == 0
    assert "tiling" not in document


def test_auto_follows_the_evaluations_choice_and_its_tiled_threshold(photo, counter):
    # The run measured tiles better on its validation images: this photo, below the size
    # rule, is tiled all the same, and counted at the threshold calibrated on tiled counts
    # (no threshold configured). The fake scores every square 0.9.
    measured = {"tile": True, "images": 40, "bestThreshold": 0.95, "mae": 1.5,
                "untiledMae": 12.25}  # fmt: skip

    def counted(tiling: dict) -> dict:
        boto3.client("ssm", region_name=REGION).put_parameter(
            Name=PARAMETER, Value=json.dumps({**ACTIVE_MODEL, "tiling": tiling}), Overwrite=True
        )
        return count(photo, FakeDetector(MIN_WIDTH), TILING="auto", SCORE_THRESHOLD=None)[0]

    strict = counted(measured)
    assert strict["tiling"]["tiles"] == TILES
    assert (strict["count"], strict["threshold"], strict["threshold_origin"]) == (
        0, 0.95, "calibrated",
    )  # fmt: skip
    assert counted({**measured, "bestThreshold": 0.5})["count"] == SQUARES
    assert "tiling" not in counted({**measured, "tile": False})


def test_a_dense_scene_is_flagged_capped(photo, counter, capsys):
    # Every 512 px tile holds at least 4 x 4 whole squares, above a cap of 10; the whole
    # image pass sees no square at all, so it is not at the cap.
    document, _ = count(photo, FakeDetector(MIN_WIDTH, max_detections=10), TILING="on")

    assert document["capped"] is True
    assert document["tiling"]["capped_calls"] == TILES
    (item,) = table_items()
    assert item["capped"] is True
    assert emitted(capsys, "ImagesCapped") == 1


def test_a_malformed_tile_answer_is_retried_not_rejected(photo, counter):
    detector = FakeDetector(MIN_WIDTH)

    def one_bad_answer(payload: bytes) -> bytes:
        with Image.open(io.BytesIO(payload)) as request:
            whole = request.width > 512  # the whole-image pass: tiles are at most 512 px
        return b'{"prediction": [[0, 0.9, 0.1]]}' if whole else detector(payload)

    handler, sent = build_counter(sagemaker_runtime=FakeRuntime(one_bad_answer), TILING="on")
    body = json.dumps(upload("incoming/lot.jpg", photo))

    assert handler.process(sqs_event(body), TimedContext()) == {"batchItemFailures": []}

    assert keys_under("results/") == set()
    (again,) = sent.to("intake")
    assert again.attributes["counter-failures"] == "1"


def test_tile_borders_are_drawn_on_request(photo, counter):
    # The second tile column starts at 1536 x 1 // 4 = 384 px; at y = 700 no square, box or
    # number tag is near (squares span y 640-660 and 740-760).
    def pixel(mark: str) -> tuple[int, int, int]:
        count(photo, FakeDetector(MIN_WIDTH), TILING="on", MARK_TILES=mark)
        s3 = boto3.client("s3", region_name=REGION)
        png = s3.get_object(Bucket=BUCKET, Key="annotated/lot.jpg.png")["Body"].read()
        with Image.open(io.BytesIO(png)) as annotated:
            value: tuple[int, int, int] = annotated.convert("RGB").getpixel((384, 700))
        return value

    assert pixel("false") == (0, 0, 0)
    assert pixel("true") == (128, 128, 128)
