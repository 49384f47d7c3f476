"""The validation images cut into tiles (the cut-tiles Lambda), answered as Batch Transform
would answer them, and counted in tiles by the evaluate-counts Lambda, against moto's S3.

The model is ``FakeDetector``: it finds white squares at least 14 px wide in what it sees.
Sent whole, a 1,024 px image reaches it scaled to its 512 px input (halved), as the model
scales it; a 512 px tile reaches it at native resolution. Each case is worked out by hand
from the tile layout: 1,024 px with 512 px tiles and a 102 px overlap (20 %) gives tiles
starting at 0, 256 and 512 along each side, nine in all.
"""

from __future__ import annotations

import io
import json

import pytest
from PIL import Image

from counting_core.contracts.cut_tiles import CutResponse
from counting_core.contracts.cut_tiles import Environment as CutEnvironment
from counting_core.contracts.evaluate_counts import Environment as EvaluateEnvironment
from counting_core.imaging.tiling import TileSet
from counting_core.models.model_record import TilingChoice
from lambdas.cut_tiles import handler as cut_handler
from lambdas.cut_tiles.service import TIME_RESERVE_MS, CutFailed, TileCutter
from lambdas.evaluate_counts import handler as evaluate_handler
from lambdas.evaluate_counts.service import EvaluationFailed, RunEvaluator
from tests.core.fake_detector import FakeDetector, jpeg, scene

# The evaluation's own tests' bucket, run and S3 helpers.
from tests.lambdas.test_evaluate_counts import BUCKET, RUN, put, read, s3

MODEL = f"training/models/{RUN}/"
MANIFEST_KEY = f"training/manifests/{RUN}/validation.manifest"
MODEL_SIDE = 512
SIZE = (1024, 1024)
# What the training stack gives each function (counter.tiling's defaults).
CUT_ENVIRONMENT = {
    "BUCKET": BUCKET,
    "IMAGE_SHAPE": str(MODEL_SIDE),
    # counter.tiling as the stack sets it: the mode does not matter to the cut.
    "TILING": "auto",
    "TILING_AUTO_MULTIPLE": "3.0",
    "TILE_OVERLAP": "0.2",
    "TILE_MERGE": "merge",
    "WHOLE_IMAGE_PASS": "true",
    "POWERTOOLS_SERVICE_NAME": "cut-tiles",
    "POWERTOOLS_METRICS_NAMESPACE": "ObjectCounting",
}
EVALUATE_ENVIRONMENT = {
    "BUCKET": BUCKET,
    "POWERTOOLS_SERVICE_NAME": "evaluate-counts",
    "POWERTOOLS_METRICS_NAMESPACE": "ObjectCounting",
}
# Three 20 px squares: 10 px whole (missed), 20 px in tiles (found). (600, 300) lies whole in
# four tiles and (300, 800) in two: each is one object after the merge.
SMALL = [(100, 100, 20), (600, 300, 20), (300, 800, 20)]
# One 240 px square across the first tile border (x 300-540, y 10-250): the second column's
# tile sees it whole, the first a 212 px piece, the third a 28 px sliver (found: over 14 px).
# Sent whole it is 120 px: found once.
LARGE = [(300, 10, 240)]


def label_line(name: str, squares: list[tuple[int, int, int]]) -> str:
    return json.dumps(
        {
            "source-ref": f"s3://{BUCKET}/labeling/images/{name}",
            "objects": {
                "image_size": [{"width": SIZE[0], "height": SIZE[1], "depth": 3}],
                "annotations": [
                    {"class_id": 0, "left": left, "top": top, "width": side, "height": side}
                    for left, top, side in squares
                ],
            },
            "objects-metadata": {
                "class-map": {"0": "square"},
                "type": "groundtruth/object-detection",
                "human-annotated": "yes",
            },
        }
    )


def upload_images(images: dict[str, list[tuple[int, int, int]]]) -> None:
    """The images, the validation manifest labeling every square, and the whole images'
    answers as Batch Transform writes them (the model sees each scaled to its input)."""
    fake = FakeDetector(min_width=14)
    lines = []
    for name, squares in images.items():
        picture = scene(SIZE, squares)
        put(f"labeling/images/{name}", jpeg(picture))
        put(f"{MODEL}predictions/{name}.out", fake(jpeg(picture.resize((MODEL_SIDE,) * 2))))
        lines.append(label_line(name, squares))
    put(MANIFEST_KEY, "\n".join(lines).encode())


def cutter(**environment: str) -> TileCutter:
    return TileCutter(CutEnvironment.model_validate({**CUT_ENVIRONMENT, **environment}), s3=s3())


def cut_event(start: int = 0) -> dict:
    """What the CutValidationTiles state sends."""
    return {
        "runName": RUN,
        "validationManifestUri": f"s3://{BUCKET}/{MANIFEST_KEY}",
        "labelAttribute": "objects",
        "next": start,
    }


def plenty() -> int:
    return 15 * 60 * 1000


def cut_all(tile_cutter: TileCutter) -> CutResponse:
    response = CutResponse.model_validate(cut_handler.cut(cut_event(), tile_cutter, plenty))
    assert response.done
    return response


def answer_tiles(manifest_uri: str, kept: str = "") -> None:
    """What Batch Transform writes for the tiles' manifest: ``<name>.out`` per tile, under
    ``kept`` folders if it keeps some of the input's path (not clearly documented)."""
    prefix, *names = json.loads(read(manifest_uri.removeprefix(f"s3://{BUCKET}/")))
    folder = prefix["prefix"].removeprefix(f"s3://{BUCKET}/")
    fake = FakeDetector(min_width=14)
    for name in names:
        put(f"{MODEL}tile-predictions/{kept}{name}.out", fake(read(folder + name)))


def evaluate(cut: CutResponse) -> tuple[TilingChoice | None, dict]:
    evaluator = RunEvaluator(EvaluateEnvironment.model_validate(EVALUATE_ENVIRONMENT), s3=s3())
    payload = evaluate_handler.evaluate(
        {
            "runName": RUN,
            "validationManifestUri": f"s3://{BUCKET}/{MANIFEST_KEY}",
            "labelAttribute": "objects",
            "predictionsUri": f"s3://{BUCKET}/{MODEL}predictions/",
            "tiles": {
                "tileSetsUri": cut.tile_sets_uri,
                "predictionsUri": f"s3://{BUCKET}/{MODEL}tile-predictions/",
            },
        },
        evaluator,
    )
    tiling = payload["tiling"]
    report = json.loads(read(f"{MODEL}evaluation.json"))
    return (None if tiling is None else TilingChoice.model_validate(tiling)), report


@pytest.fixture
def bucket(aws) -> None:
    s3().create_bucket(Bucket=BUCKET)


def test_every_tile_is_written_with_its_tile_set_and_listed_in_the_manifest(bucket):
    upload_images({"small.jpg": SMALL})

    cut = cut_all(cutter())

    assert (cut.next, cut.images) == (1, 1)
    assert cut.tile_sets_uri == f"s3://{BUCKET}/{MODEL}tiles/tile-sets/"
    assert cut.manifest_uri == f"s3://{BUCKET}/{MODEL}tiles/tiles.manifest"
    manifest = json.loads(read(f"{MODEL}tiles/tiles.manifest"))
    names = [f"0-{source}.jpg" for source in range(9)]  # 3 x 3 tiles of image 0
    assert manifest == [{"prefix": f"s3://{BUCKET}/{MODEL}tiles/images/"}, *names]
    (line,) = read(f"{MODEL}tiles/tile-sets/000000000.jsonl").splitlines()
    tile_set = TileSet.model_validate_json(line)
    assert tile_set == TileSet(
        image=f"s3://{BUCKET}/labeling/images/small.jpg",
        width=1024,
        height=1024,
        side=512,
        overlap=102,  # 20 % of 512, whole pixels
        merge="merge",
        whole_image_pass=True,
        tiles=[f"{MODEL}tiles/images/{name}" for name in names],
    )
    with Image.open(io.BytesIO(read(f"{MODEL}tiles/images/0-4.jpg"))) as tile:
        assert (tile.format, tile.size) == ("JPEG", (512, 512))


@pytest.mark.parametrize("kept", ["", "images/", f"{MODEL}tiles/images/"])
def test_tiling_is_chosen_where_it_finds_what_whole_images_miss(bucket, kept):
    upload_images({"small.jpg": SMALL})
    cut = cut_all(cutter())
    answer_tiles(cut.manifest_uri, kept)

    choice, report = evaluate(cut)

    # Whole: 0 of 3 found, error 3 at every threshold. Tiled: 3 of 3 (score 0.9) at
    # thresholds to 0.9; the lowest of the tied thresholds is the best.
    assert choice == TilingChoice(
        tile=True, images=1, best_threshold=0.05, mae=0.0, wape=0.0, untiled_mae=3.0
    )
    assert report["tiling"]["tile"] is True
    assert report["tiling"]["untiled"]["mae"] == 3.0
    assert report["tiling"]["untiled"]["rmse"] == 3.0
    assert report["tiling"]["tiled"]["mae"] == 0.0
    assert report["tiling"]["tiled"]["rmse"] == 0.0
    assert report["tiling"]["tiled"]["game"] == {"1": 0.0, "2": 0.0, "3": 0.0}
    # The untiled figures stay where they were.
    assert report["mae"] == 3.0


def test_a_tie_goes_to_whole_images(bucket):
    # The large square: whole, found once; in tiles, its piece and sliver join the tile that
    # sees it whole (cut by a border: intersection over the smaller box is 1). Both count 1.
    upload_images({"large.jpg": LARGE})
    cut = cut_all(cutter())
    answer_tiles(cut.manifest_uri)

    choice, _ = evaluate(cut)

    assert choice == TilingChoice(
        tile=False, images=1, best_threshold=0.05, mae=0.0, wape=0.0, untiled_mae=0.0
    )


def test_tiling_that_counts_worse_is_not_chosen(bucket):
    # Suppression on IoU (merge nms) keeps the sliver (28 x 240 against 240 x 240: IoU
    # 0.12), while the 212 px piece (IoU 0.88) and the whole pass join the first box: 2.
    upload_images({"large.jpg": LARGE})
    cut = cut_all(cutter(TILE_MERGE="nms"))
    answer_tiles(cut.manifest_uri)

    choice, report = evaluate(cut)

    # Tiled: 2 at thresholds to 0.9 (error 1), 0 at 0.95 (error 1): a tie, the lowest wins.
    assert choice == TilingChoice(
        tile=False, images=1, best_threshold=0.05, mae=1.0, wape=1.0, untiled_mae=0.0
    )
    assert report["tiling"]["tiled"]["bias"] == 1.0


def test_cutting_stops_before_the_time_is_out_and_resumes_where_it_stopped(bucket):
    upload_images({"a.jpg": SMALL, "b.jpg": LARGE, "c.jpg": SMALL})
    # The first batch (two images) is cut whatever the time; after it, less than the
    # reserve is left. (With plenty of time, three images are cut at once: the tests above.)
    first = CutResponse.model_validate(
        cut_handler.cut(cut_event(), cutter(), lambda: TIME_RESERVE_MS - 1)
    )
    assert (first.done, first.next, first.images, first.manifest_uri) == (False, 2, 3, None)

    # The next invocation always cuts one batch, however little time is left.
    second = CutResponse.model_validate(cut_handler.cut(cut_event(first.next), cutter(), lambda: 0))

    assert (second.done, second.next) == (True, 3)
    parts = [f"{MODEL}tiles/tile-sets/{start:09d}.jsonl" for start in (0, 2)]
    assert [len(read(part).splitlines()) for part in parts] == [2, 1]
    manifest = json.loads(read(f"{MODEL}tiles/tiles.manifest"))
    assert len(manifest) == 1 + 27  # three images of nine tiles
    assert manifest[-1] == "2-8.jpg"
    answer_tiles(second.manifest_uri)
    choice, _ = evaluate(second)
    # a and c: 3 found in tiles, none whole; b: 1 either way. Whole MAE 6 / 3 = 2.
    assert choice == TilingChoice(
        tile=True, images=3, best_threshold=0.05, mae=0.0, wape=0.0, untiled_mae=2.0
    )


def test_an_image_that_cannot_be_decoded_fails_the_cut_naming_it(bucket):
    upload_images({"small.jpg": SMALL})
    put("labeling/images/small.jpg", b"not an image")

    with pytest.raises(CutFailed, match=rf"run {RUN}: s3://{BUCKET}/labeling/images/small.jpg: "):
        cut_handler.cut(cut_event(), cutter(), plenty)


def test_a_request_past_the_last_image_is_refused(bucket):
    upload_images({"small.jpg": SMALL})

    with pytest.raises(CutFailed, match=r"cannot resume at image 2: there are 1"):
        cut_handler.cut(cut_event(2), cutter(), plenty)


def test_tiles_without_answers_fail_the_evaluation_naming_the_tile(bucket):
    upload_images({"small.jpg": SMALL})
    cut = cut_all(cutter())
    answer_tiles(cut.manifest_uri)
    s3().delete_object(Bucket=BUCKET, Key=f"{MODEL}tile-predictions/0-4.jpg.out")

    with pytest.raises(EvaluationFailed, match=r"no response for image .*tiles/images/0-4\.jpg"):
        evaluate(cut)
