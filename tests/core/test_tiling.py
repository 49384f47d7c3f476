"""The tiler: layout, shifts, merging across borders, payload limits, orientation, and a
fake endpoint that only sees objects of a minimum size in what it receives."""

from __future__ import annotations

import io
import json
import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image, ImageOps

from counting_core.contracts.published import MergeMethod
from counting_core.counts.predictions import Detection, count_detections, parse_response
from counting_core.errors import InputError
from counting_core.imaging import detection, images, tiling
from tests.core.fake_detector import FakeDetector, grid, jpeg, scene

ORIENTATION = 0x0112  # the EXIF tag
MODEL_SIDE = 512


def detect(data: bytes, fake: FakeDetector, concurrency: int = 3, **policy: object):
    return detection.detect(
        data,
        invoke=fake,
        concurrency=concurrency,
        policy=tiling.TilingPolicy(**policy),  # type: ignore[arg-type]
        image_shape=MODEL_SIDE,
        payload_scale=2,
    )


# --- Layout ---


def test_a_12_mp_photo_is_80_tiles_of_512_px_evenly_spread():
    # 4,032 px: ceil((4032 - 102) / 410) = ceil(9.59) = 10 tiles, the last at 4032 - 512 =
    # 3520, the others at i * 3520 // 9: steps of 391 or 392 px, under the 410 px stride.
    assert tiling.axis_starts(4032, 512, 102) == [
        0, 391, 782, 1173, 1564, 1955, 2346, 2737, 3128, 3520,
    ]  # fmt: skip
    # 3,024 px: ceil(2922 / 410) = 8 tiles; 2512 / 7 = 358.9 apart.
    assert tiling.axis_starts(3024, 512, 102) == [0, 358, 717, 1076, 1435, 1794, 2153, 2512]
    assert len(tiling.tile_windows((4032, 3024), 512, 102)) == 80
    # 48 MP, 8,000 x 6,000: ceil(7898 / 410) = 20 by ceil(5898 / 410) = 15.
    assert len(tiling.tile_windows((8000, 6000), 512, 102)) == 300


def test_an_image_within_a_tile_is_one_tile_of_its_own_size():
    assert tiling.tile_windows((300, 200), 512, 102) == [(0, 0, 300, 200)]
    # Wider than a tile, shorter than one: one row of tiles as tall as the image.
    assert tiling.tile_windows((900, 100), 512, 102) == [(0, 0, 512, 100), (388, 0, 900, 100)]


@settings(max_examples=150, deadline=None)
@given(
    width=st.integers(1, 700),
    height=st.integers(1, 700),
    side=st.integers(tiling.MIN_TILE_SIDE, 300),
    overlap_fraction=st.floats(0.01, tiling.MAX_OVERLAP),
)
def test_every_pixel_is_in_a_tile_and_every_small_object_wholly_in_one(
    width, height, side, overlap_fraction
):
    overlap = max(1, int(overlap_fraction * side))
    windows = tiling.tile_windows((width, height), side, overlap)
    covered = np.zeros((height, width), dtype=np.int32)
    for left, top, right, bottom in windows:
        assert 0 <= left < right <= width
        assert 0 <= top < bottom <= height
        assert (right - left, bottom - top) == (min(side, width), min(side, height))
        covered[top:bottom, left:right] += 1
    assert covered.min() >= 1
    # Any span no longer than the overlap lies inside one tile, along each side.
    for length, starts in ((width, {w.left for w in windows}), (height, {w.top for w in windows})):
        tile = min(side, length)
        for start in range(length - min(overlap, length) + 1):
            end = start + min(overlap, length)
            assert any(first <= start and end <= first + tile for first in starts)


# --- Shifts ---


@settings(max_examples=100, deadline=None)
@given(
    left=st.integers(0, 5000),
    top=st.integers(0, 5000),
    width=st.integers(1, 1024),
    height=st.integers(1, 1024),
    fractions=st.lists(st.floats(0, 1), min_size=4, max_size=4),
)
def test_boxes_shift_back_exactly(left, top, width, height, fractions):
    xmin, xmax = sorted(fractions[:2])
    ymin, ymax = sorted(fractions[2:])
    window = tiling.Window(left, top, left + width, top + height)
    image_size = (left + width + 7, top + height + 7)
    (placed,) = tiling.place(
        [Detection(3, 0.5, xmin, ymin, xmax, ymax)], window, image_size, source=0, margin=0
    )
    x0, x1 = left + xmin * width, left + xmax * width
    y0, y1 = top + ymin * height, top + ymax * height
    assert placed[:6] == pytest.approx((3, 0.5, x0, y0, x1, y1), abs=1e-9)


def test_a_box_is_cut_only_by_tile_edges_inside_the_image():
    # The last 512 px tile, at (400, 0), of a 912 x 512 image: its left edge is inside the image,
    # its top, right and bottom edges are the image's.
    window = tiling.Window(400, 0, 912, 512)
    boxes = [
        Detection(0, 0.9, 0.0, 0.4, 0.1, 0.5),  # touches the inner left edge: cut
        Detection(0, 0.9, 0.5, 0.0, 0.6, 0.1),  # touches the image's top: not cut
        Detection(0, 0.9, 0.9, 0.9, 1.0, 1.0),  # image's right and bottom: not cut
        Detection(0, 0.9, 0.015, 0.4, 0.1, 0.5),  # 7.7 px in, within the 10.24 px margin
        Detection(0, 0.9, 0.025, 0.4, 0.1, 0.5),  # 12.8 px in: whole
    ]
    placed = tiling.place(boxes, window, (912, 512), source=0, margin=0.02 * 512)
    assert [box.cut for box in placed] == [True, False, False, True, False]


# --- Merging ---


def pieces(
    objects: list[tuple[int, tuple[int, int, int, int]]],
    windows: list[tiling.Window],
    image_size: tuple[int, int],
    seed: int = 0,
) -> list[tiling.PlacedBox]:
    """What a perfect detector answers for each tile: the visible piece of every object
    (class, box), at a random score, placed back into the image."""
    scores = random.Random(seed)
    placed = []
    for index, window in enumerate(windows):
        answer = []
        for class_id, (x0, y0, x1, y1) in objects:
            left, top = max(x0, window.left), max(y0, window.top)
            right, bottom = min(x1, window.right), min(y1, window.bottom)
            if left < right and top < bottom:
                answer.append(Detection(
                    class_id, scores.uniform(0.3, 1.0),
                    (left - window.left) / window.width, (top - window.top) / window.height,
                    (right - window.left) / window.width, (bottom - window.top) / window.height,
                ))  # fmt: skip
        placed += tiling.place(answer, window, image_size, source=index, margin=0.02 * 512)
    return placed


def merged(placed: list[tiling.PlacedBox], method: MergeMethod = "merge"):
    return [
        (box.class_id, round(box.left, 6), round(box.top, 6), round(box.right, 6),
         round(box.bottom, 6))
        for box in tiling.merge_boxes(placed, method, cell=128)
    ]  # fmt: skip


# 1,500 x 1,000 px in 512 px tiles overlapping 102 px: along x, ceil(1398 / 410) = 4 tiles
# at 0, 329, 658, 988; along y, 3 at 0, 244, 488.
IMAGE = (1500, 1000)
WINDOWS = [tiling.Window(x, y, x + 512, y + 512) for y in (0, 244, 488) for x in (0, 329, 658, 988)]


def test_the_example_layout_is_the_tilers():
    assert tiling.tile_windows(IMAGE, 512, 102) == WINDOWS


def test_an_object_cut_by_one_border_is_merged_once_and_whole():
    # x 480-540: tile 1 (0-512) sees x 480-512, a 32 px sliver of 60; tile 2 (329-841)
    # sees it whole. Both tiles of the row below see it too (y 100-140 is in 0-512 only).
    car = (0, (480, 100, 540, 140))
    assert merged(pieces([car], WINDOWS, IMAGE)) == [(0, 480, 100, 540, 140)]


def test_an_object_cut_by_two_borders_is_merged_once_and_whole():
    # Around the corner of tiles 1, 2, 5, 6: x 500-560 crosses x 512 (tile 1's right edge),
    # y 230-290 crosses y 244 (tile 5's top) and 512 is not reached.
    car = (0, (500, 230, 560, 290))
    assert merged(pieces([car], WINDOWS, IMAGE)) == [(0, 500, 230, 560, 290)]


def test_suppression_on_iou_keeps_the_sliver_of_a_cut_object():
    # The 32 x 40 px piece in tile 1 overlaps the whole 60 x 40 box with IoU 32/60 = 0.53,
    # kept; cut at x 500-560, tile 1 sees a 12 px piece: IoU 12/60 = 0.2, counted twice.
    assert len(merged(pieces([(0, (480, 100, 540, 140))], WINDOWS, IMAGE), "nms")) == 1
    assert len(merged(pieces([(0, (500, 100, 560, 140))], WINDOWS, IMAGE), "nms")) == 2


# 1,332 x 922 px: 512 + 2 x 410 by 512 + 410, so neighbours overlap by exactly 102 px.
TIGHT = (1332, 922)
TIGHT_WINDOWS = [tiling.Window(x, y, x + 512, y + 512) for y in (0, 410) for x in (0, 410, 820)]


def test_the_tight_layout_is_the_tilers():
    assert tiling.tile_windows(TIGHT, 512, 102) == TIGHT_WINDOWS


@settings(max_examples=300, deadline=None)
@given(
    x=st.integers(0, TIGHT[0] - 1),
    y=st.integers(0, TIGHT[1] - 1),
    width=st.integers(4, 306),
    height=st.integers(4, 306),
    seed=st.integers(0, 1000),
)
def test_any_object_up_to_three_overlaps_is_counted_once_wherever_borders_cut_it(
    x, y, width, height, seed
):
    # Up to the overlap (102 px), some tile sees the object whole and every piece lies inside
    # that view. Wider, w, two neighbouring tiles each see a piece: the pieces add up to
    # w + 102 and share the 102 px overlap, so the smaller is at most (w + 102) / 2 and their
    # intersection over the smaller box is at least 102 / ((w + 102) / 2), 0.5 or more up to
    # w = 3 x 102 = 306.
    box = (x, y, min(x + width, TIGHT[0]), min(y + height, TIGHT[1]))
    assert merged(pieces([(0, box)], TIGHT_WINDOWS, TIGHT, seed)) == [(0, *box)]


def test_an_object_wider_than_three_overlaps_comes_apart_without_the_whole_image_pass():
    # 330 px at x 285-615: tile 1 sees 285-512 (227 px), tile 2 sees 410-615 (205 px);
    # they share 102 px, 102 / 205 = 0.498 of the smaller: two objects. The whole-image pass
    # is what finds such objects whole (test_objects_larger_than_a_tile_...).
    assert len(merged(pieces([(0, (285, 0, 615, 4))], TIGHT_WINDOWS, TIGHT))) == 2


@settings(max_examples=100, deadline=None)
@given(
    corners=st.lists(
        st.tuples(st.integers(0, 14), st.integers(0, 9)), min_size=1, max_size=40, unique=True
    ),
    sides=st.lists(st.integers(4, 90), min_size=40, max_size=40),
    seed=st.integers(0, 1000),
)
def test_many_objects_anywhere_are_each_counted_once(corners, sides, seed):
    # Objects up to 90 px in cells of a 100 px grid over the 1,500 x 1,000 image: never
    # touching each other, cut by whatever tile borders pass through them.
    objects = [
        (0, (100 * column + 5, 100 * row + 5, 100 * column + 5 + side, 100 * row + 5 + side))
        for (column, row), side in zip(corners, sides, strict=False)
    ]
    assert sorted(merged(pieces(objects, WINDOWS, IMAGE, seed))) == sorted(
        (class_id, *box) for class_id, box in objects
    )


def test_objects_of_two_classes_in_one_place_stay_two():
    truck, car = (1, (480, 100, 540, 140)), (0, (480, 100, 540, 140))
    assert sorted(merged(pieces([truck, car], WINDOWS, IMAGE))) == [
        (0, 480, 100, 540, 140),
        (1, 480, 100, 540, 140),
    ]


def test_a_small_object_on_a_larger_one_of_its_class_stays_two():
    # Both whole in tiles 2 and 3 (x 700-800 lies in 329-841 and 658-1170): the small box is
    # inside the large one (intersection over smaller 1), but neither was cut.
    large, small = (0, (700, 100, 800, 200)), (0, (720, 120, 740, 140))
    assert sorted(merged(pieces([large, small], WINDOWS, IMAGE))) == [
        (0, 700, 100, 800, 200),
        (0, 720, 120, 740, 140),
    ]


def test_two_boxes_of_one_request_are_two_objects_however_they_overlap():
    # The model already kept one box per object within a request.
    one_tile = [
        tiling.PlacedBox(0, 0.9, 10, 10, 50, 50, source=0, cut=False),
        tiling.PlacedBox(0, 0.8, 12, 12, 52, 52, source=0, cut=False),
    ]
    assert len(merged(one_tile)) == 2
    assert len(merged(one_tile, "nms")) == 2


def test_a_group_keeps_the_best_score():
    seen_twice = [
        tiling.PlacedBox(0, 0.4, 10, 10, 50, 50, source=0, cut=False),
        tiling.PlacedBox(0, 0.9, 10, 10, 50, 50, source=1, cut=False),
    ]
    assert [box.score for box in tiling.merge_boxes(seen_twice, "merge", cell=128)] == [0.9]


# --- Payloads, orientation, memory ---


def noise(size: tuple[int, int], seed: int = 0) -> Image.Image:
    width, height = size
    return Image.frombytes("RGB", size, random.Random(seed).randbytes(width * height * 3))


@settings(max_examples=25, deadline=None)
@given(
    side=st.integers(64, 256),
    max_bytes=st.integers(3_000, 40_000),
    seed=st.integers(0, 100),
)
def test_no_tile_is_sent_over_the_payload_limit(side, max_bytes, seed):
    # Noise barely compresses: a 256 px tile is about 100 kB as JPEG, so most limits here
    # force a tile to be scaled down to fit.
    data = jpeg(noise((600, 400), seed))
    with images.decode_native(data) as image:
        windows = tiling.tile_windows(image.size, side, side // 5)
        for window, payload in detection.encoded_tiles(image, windows, max_bytes):
            assert len(payload) <= max_bytes
            with Image.open(io.BytesIO(payload)) as sent:
                assert sent.width <= window.width
                assert sent.height <= window.height


def test_tiles_are_cut_one_at_a_time_as_asked_for(monkeypatch):
    data = jpeg(noise((600, 400)))
    cut = []
    with images.decode_native(data) as image:
        crop = image.crop
        monkeypatch.setattr(image, "crop", lambda box: cut.append(box) or crop(box))
        windows = tiling.tile_windows(image.size, 128, 25)
        tiles = detection.encoded_tiles(image, windows, 4_000_000)
        assert cut == []
        next(tiles)
        next(tiles)
        # Along 600 px: ceil((600 - 25) / 103) = 6 tiles, the second at 472 // 5 = 94.
        assert cut == [(0, 0, 128, 128), (94, 0, 222, 128)]


def test_a_png_with_transparency_is_sent_as_rgb_jpeg_tiles():
    buffer = io.BytesIO()
    Image.new("RGBA", (700, 300), (200, 10, 10, 128)).save(buffer, format="PNG")
    with images.decode_native(buffer.getvalue()) as image:
        windows = tiling.tile_windows(image.size, 512, 102)
        sent = [payload for _, payload in detection.encoded_tiles(image, windows, 4_000_000)]
    # Along 700 px: ceil(598 / 410) = 2 tiles, at 0 and 188; 300 px tall: one row.
    assert len(sent) == 2
    for payload in sent:
        with Image.open(io.BytesIO(payload)) as tile:
            assert (tile.format, tile.mode, tile.size) == ("JPEG", "RGB", (512, 300))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiles_are_cut_from_the_upright_image(orientation):
    # A stored 60 x 40 photo; orientations 5 to 8 turn it a quarter, to 40 x 60 upright.
    stored = noise((60, 40), orientation)
    exif = Image.Exif()
    exif[ORIENTATION] = orientation
    data = jpeg(stored, exif=exif)
    upright = ImageOps.exif_transpose(Image.open(io.BytesIO(data)))
    with images.decode_native(data) as image:
        assert image.size == ((40, 60) if orientation >= 5 else (60, 40))
        width, height = image.size
        for left, top, right, bottom in ((0, 0, 25, 30), (7, 11, 40, 40), (13, 2, 40, 60)):
            box = (left, top, min(right, width), min(bottom, height))
            assert image.crop(box).tobytes() == upright.crop(box).tobytes()
        assert image.scaled(60).size == upright.size


# --- Counting with a fake endpoint ---

# 2,048 x 1,600 px with a 20 px square every 64 px: 32 columns (10, 74, ... 1994) by 25 rows
# (10, ... 1546) = 800 squares. Sent whole at 1,024 px, a square is 10 px wide.
BIG_SCENE = (2048, 1600)
SQUARES = grid(BIG_SCENE, side=20, pitch=64, margin=10)


@pytest.fixture(scope="module")
def big_scene() -> bytes:
    return jpeg(scene(BIG_SCENE, SQUARES))


def test_the_scene_holds_800_squares():
    assert len(SQUARES) == 800


def test_small_objects_missed_whole_are_counted_exactly_in_tiles(big_scene):
    # The fake sees squares 14 px wide or more: 10 px whole, 20 px in native tiles.
    untiled = detect(big_scene, FakeDetector(min_width=14), mode="off")
    assert len(untiled.detections) == 0
    assert untiled.tiling.to_dict() == {
        "tiles": 0, "tile_side": None, "overlap": None, "merge": None,
        "whole_image_pass": False, "endpoint_calls": 1, "capped_calls": 0,
        "max_detections": None,
    }  # fmt: skip

    fake = FakeDetector(min_width=14)
    tiled = detect(big_scene, fake, mode="on")
    counted = count_detections(tiled.detections, image_size=tiled.image_size)
    assert counted.count == 800
    # x: ceil((2048 - 102) / 410) = 5; y: ceil((1600 - 102) / 410) = 4; 20 tiles and the
    # whole-image pass.
    assert tiled.tiling.to_dict() == {
        "tiles": 20, "tile_side": 512, "overlap": 102, "merge": "merge",
        "whole_image_pass": True, "endpoint_calls": 21, "capped_calls": 0,
        "max_detections": None,  # the fake does not say its cap
    }  # fmt: skip
    assert fake.calls == 21
    assert tiled.image_size == (2048, 1600)
    # Every tile went at native resolution: 512 x 512 (the image is a multiple of neither).
    assert sorted(fake.payload_sizes)[:20] == [(512, 512)] * 20


def test_every_counted_square_is_where_a_square_is(big_scene):
    tiled = detect(big_scene, FakeDetector(min_width=14), mode="on")
    width, height = BIG_SCENE
    found = sorted(
        (round(d.xmin * width), round(d.ymin * height), round((d.xmax - d.xmin) * width))
        for d in tiled.detections
    )
    assert found == sorted(SQUARES)


def test_at_most_concurrency_tiles_are_in_flight(big_scene):
    fake = FakeDetector(min_width=14)
    detect(big_scene, fake, concurrency=2, mode="on")
    assert fake.most_in_flight <= 2
    assert fake.calls == 21


def test_auto_tiles_when_the_short_side_passes_three_model_inputs(big_scene):
    policy = tiling.TilingPolicy(mode="auto")
    # 3 x 512 = 1,536: a short side of 1,536 is sent whole, 1,537 is tiled.
    assert not tiling.should_tile(policy, (4000, 1536), 512)
    assert tiling.should_tile(policy, (4000, 1537), 512)
    assert tiling.should_tile(tiling.TilingPolicy(mode="auto", auto_multiple=1.5), (900, 800), 512)
    assert not tiling.should_tile(tiling.TilingPolicy(mode="off"), (9000, 9000), 512)
    assert tiling.should_tile(tiling.TilingPolicy(mode="on"), (100, 100), 512)
    assert detect(big_scene, FakeDetector(min_width=14), mode="auto").tiling.tiles == 20
    # What the count evaluation measured for the model decides instead, for every image.
    assert not tiling.should_tile(policy, (9000, 9000), 512, measured=False)
    assert tiling.should_tile(policy, (600, 400), 512, measured=True)
    assert not tiling.should_tile(tiling.TilingPolicy(mode="off"), (600, 400), 512, True)
    assert tiling.should_tile(tiling.TilingPolicy(mode="on"), (9000, 9000), 512, False)


def test_objects_larger_than_a_tile_are_found_by_the_whole_image_pass():
    # Two 900 px squares: every tile sees a piece; the whole-image pass sees them whole at
    # 1,024 / 2,048 = half size.
    data = jpeg(scene((2048, 1000), [(50, 50, 900), (1050, 50, 900)]))
    assert len(detect(data, FakeDetector(min_width=8), mode="on").detections) == 2
    # Without it, pieces overlapping by 102 px of 400+ px do not match: counted several times.
    pieces_only = detect(data, FakeDetector(min_width=8), mode="on", whole_image_pass=False)
    assert len(pieces_only.detections) > 2


def test_an_image_sent_whole_at_its_own_size_is_still_tiled_and_drawn_on():
    # 1,000 x 600: ceil(898 / 410) = 3 tile columns and ceil(498 / 410) = 2 rows at 512 px,
    # and within the 1,024 px of the whole image pass and the 4,096 px picture, so both are
    # the decoded image at its own size: each must be a copy, or closing one closes the image
    # the tiles are cut from.
    data = jpeg(scene((1000, 600), [(100, 100, 40), (700, 400, 40)]))
    found = detection.detect(
        data,
        invoke=FakeDetector(min_width=8),
        concurrency=2,
        policy=tiling.TilingPolicy(mode="on"),
        image_shape=MODEL_SIDE,
        payload_scale=2,
        picture_side=4096,
    )
    assert (len(found.detections), found.tiling.tiles, found.tiling.endpoint_calls) == (2, 6, 7)
    assert found.picture is not None
    assert found.picture.getpixel((120, 120)) == (255, 255, 255)


def test_a_dense_scene_beyond_the_cap_is_flagged(big_scene):
    # Every 512 px tile holds 8 columns of squares, and 8 rows, or 9 counting pieces of cut
    # rows (test_invoke_in_tiles_warns_when_tiles_reach_the_cap works them out): 64 or 72
    # squares, all over a cap of 50.
    capped = detect(big_scene, FakeDetector(min_width=14, max_detections=50), mode="on")
    assert capped.capped
    assert capped.tiling.capped_calls == 20
    assert capped.tiling.max_detections == 50
    # A cap of 100 is never reached by a tile, nor by the whole-image pass (0 seen there).
    fine = detect(big_scene, FakeDetector(min_width=14, max_detections=100), mode="on")
    assert not fine.capped
    assert fine.tiling.capped_calls == 0
    # Sent whole, a 12 x 12 scene of 40 px squares reaches a cap of 100.
    dense = jpeg(scene((1000, 1000), grid((1000, 1000), 40, 80, margin=20)))
    assert detect(dense, FakeDetector(min_width=14, max_detections=100), mode="off").capped


def test_a_failing_call_stops_the_tiles_not_yet_sent(big_scene):
    calls = []

    def invoke(payload: bytes) -> bytes:
        calls.append(len(payload))
        if len(calls) == 3:
            raise TimeoutError("endpoint timed out")
        return b'{"prediction": []}'

    with pytest.raises(TimeoutError, match="endpoint timed out"):
        detect(big_scene, invoke, concurrency=1, mode="on")  # type: ignore[arg-type]
    assert len(calls) == 3


def test_an_answer_not_in_the_documented_shape_names_its_tile(big_scene):
    answers = iter([b'{"prediction": []}', b'{"prediction": []}', b'{"boxes": []}'])

    def invoke(payload: bytes) -> bytes:
        return next(answers)

    # Requests go whole image first, then tiles row by row: the third is tile 2 of the first
    # row, at x 1 * 1536 // 4 = 384 (5 tiles along 2,048 px, the last at 2048 - 512 = 1536).
    with pytest.raises(detection.UnexpectedAnswer) as error:
        detect(big_scene, invoke, concurrency=1, mode="on")  # type: ignore[arg-type]
    assert str(error.value) == (
        "tile 2 of 20 (x 384-896, y 0-512): missing 'prediction' list in the response"
    )
    assert isinstance(error.value, InputError)


def test_the_untiled_path_sends_what_the_counter_sends(big_scene):
    fake = FakeDetector(min_width=1)
    detect(big_scene, fake, mode="off")
    # Longest side 2 x 512: 1,024 x 800.
    assert fake.payload_sizes == [(1024, 800)]


def test_a_picture_comes_from_the_same_decode(big_scene):
    found = detection.detect(
        big_scene,
        invoke=lambda payload: json.dumps({"prediction": []}).encode(),
        concurrency=1,
        policy=tiling.TilingPolicy(mode="on"),
        image_shape=MODEL_SIDE,
        payload_scale=2,
        picture_side=1000,
    )
    assert found.picture is not None
    assert found.picture.size == (1000, 781)  # 1600 * 1000 / 2048 = 781.25


@pytest.mark.parametrize(
    ("policy", "message"),
    [
        ({"mode": "sometimes"}, "tiling must be one of off, on, auto, got 'sometimes'"),
        ({"tile_side": 16}, "tile size must be 32 to 4096 pixels, got 16"),
        (
            {"overlap": 0.0},
            "tile overlap must be a fraction of the tile above 0 and at most 0.5, got 0.0",
        ),
        ({"overlap": 0.6}, "at most 0.5, got 0.6"),
        ({"auto_multiple": 0.5}, "auto multiple must be at least 1, got 0.5"),
        ({"merge": "wbf"}, "merge must be one of merge, nms, got 'wbf'"),
    ],
)
def test_a_bad_policy_is_refused_naming_the_setting(policy, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(")):
        tiling.TilingPolicy(**policy)


# --- Tiles written for Batch Transform, answers merged back ---


def test_tiles_answered_offline_merge_to_the_online_count(big_scene):
    # What Batch Transform does with tiles written to S3: each tile answered on its own, in
    # any order, and the whole image answered as sent untiled. The merge is the endpoint's.
    fake = FakeDetector(min_width=14)
    # The mode is the caller's decision: the cut tiles whatever it says.
    policy = tiling.TilingPolicy(mode="off")
    with detection.cut_for_transform(big_scene, policy=policy, image_shape=MODEL_SIDE) as cut:
        plan, tiles = cut
        answers = [
            (source, parse_response(fake(payload))) for source, (_, payload) in enumerate(tiles)
        ]
    stored = tiling.TileSet.of("s3://b/big.jpg", plan, [f"t/{i}.jpg" for i in range(20)])
    restored = tiling.TileSet.model_validate_json(stored.model_dump_json())
    whole = parse_response(FakeDetector(min_width=14)(big_scene))
    merged, record = tiling.merge_answers(
        restored.plan(), [*reversed(answers), (restored.plan().whole_image_source, whole)]
    )
    online = detect(big_scene, FakeDetector(min_width=14), mode="on")
    assert len(merged) == 800
    assert sorted(merged) == sorted(online.detections)
    assert record == online.tiling


def test_a_tile_set_whose_tiles_do_not_match_its_layout_is_refused():
    plan = tiling.plan_tiles(tiling.TilingPolicy(mode="on"), (2048, 1600), MODEL_SIDE)
    stored = tiling.TileSet.of("s3://b/big.jpg", plan, ["t/0.jpg"])
    with pytest.raises(InputError, match=r"s3://b/big.jpg: 1 tiles recorded .* lay out 20"):
        stored.plan()
