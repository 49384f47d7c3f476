"""Synthetic counting scenes (detector.scenes, ``counting detector scenes``)."""

from __future__ import annotations

import json
import random

from PIL import Image

from detector import scenes


def test_the_same_seed_writes_the_same_files(tmp_path):
    first = scenes.write_scenes(tmp_path / "a", 3, seed=5, size=(256, 256))
    second = scenes.write_scenes(tmp_path / "b", 3, seed=5, size=(256, 256))

    assert first.manifest.read_bytes() == second.manifest.read_bytes()  # same code: determinism
    for name in ("scene-00000.jpg", "scene-00001.jpg", "scene-00002.jpg"):
        assert (first.images / name).read_bytes() == (second.images / name).read_bytes()


def test_a_scene_is_the_same_whichever_others_are_written(tmp_path):
    alone = scenes.write_scenes(tmp_path / "alone", 1, seed=5, size=(256, 256), first=2)
    among = scenes.write_scenes(tmp_path / "among", 3, seed=5, size=(256, 256))

    # same code: scene 2 drawn alone or after scenes 0 and 1
    assert (alone.images / "scene-00002.jpg").read_bytes() == (
        among.images / "scene-00002.jpg"
    ).read_bytes()


def test_boxes_are_at_least_16_px_inside_the_image_and_overlap_little():
    rng = random.Random("boxes")
    for _ in range(20):
        image, boxes = scenes.draw_scene(rng, (320, 240), max_objects=60)
        assert image.size == (320, 240)
        assert len(boxes) <= 60
        for class_id, left, top, width, height in boxes:
            assert class_id in (0, 1, 2, 3)
            assert 16 <= width == height <= 48
            assert 0 <= left <= left + width <= 320
            assert 0 <= top <= top + height <= 240
        for index, a in enumerate(boxes):
            for b in boxes[index + 1 :]:
                assert scenes.overlap(a[1:], b[1:]) <= 0.3


def test_overlap_is_the_shared_area_over_the_smaller_box():
    # 10 x 10 at (0, 0) and 20 x 20 at (5, 5) share 5 x 5 = 25 of the smaller 100 px.
    assert scenes.overlap((0, 0, 10, 10), (5, 5, 20, 20)) == 0.25
    assert scenes.overlap((0, 0, 10, 10), (10, 0, 10, 10)) == 0.0


def test_a_shape_is_drawn_in_its_class_colour_where_its_box_says():
    rng = random.Random("colour")
    image, boxes = scenes.draw_scene(rng, (256, 256), max_objects=60)
    rgb = image.convert("RGB")
    # The middle pixel of a square lies inside the shape: its class colour, give or take the
    # jitter (25 per channel); another shape may cover it where two overlap.
    squares = [box for box in boxes if box[0] == 1]
    inside = [
        rgb.getpixel((left + width // 2, top + height // 2))
        for _, left, top, width, height in squares
    ]
    near_blue = [pixel for pixel in inside if abs(pixel[2] - 220) <= 25 and pixel[0] <= 65]
    assert len(squares) >= 3
    assert 2 * len(near_blue) >= len(squares)


def test_the_command_writes_scenes_a_manifest_and_a_class_map(cli, tmp_path):
    status, out, err = cli(
        "detector", "scenes", "--out-dir", tmp_path, "--count", 4, "--seed", 2, "--size", 256
    )

    assert (status, err) == (0, "")
    summary = json.loads(out)
    assert summary["scenes"] == 4
    lines = (tmp_path / "scenes.manifest").read_text().splitlines()
    assert len(lines) == 4
    assert (
        sum(len(json.loads(line)["scenes"]["annotations"]) for line in lines) == summary["objects"]
    )
    with Image.open(tmp_path / "images" / "scene-00003.jpg") as image:
        assert (image.format, image.size) == ("JPEG", (256, 256))


def test_the_command_refuses_a_count_below_one(cli, tmp_path):
    status, _, err = cli("detector", "scenes", "--out-dir", tmp_path, "--count", 0)

    assert status == 2
    assert err == "counting: error: --count must be at least 1, got 0\n"
