"""Count error figures, best threshold and response matching, checked by hand and by property."""

from __future__ import annotations

import io
import itertools
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from counting_core.counts.predictions import Detection, Response
from counting_core.counts.responses import match_responses
from counting_core.datasets.manifest import parse_manifest
from counting_core.errors import InputError
from counting_core.imaging import tiling
from counting_core.models import evaluation
from counting_core.models.evaluation import LabeledImage, evaluate
from counting_core.models.evaluation_plot import plot
from tests.core.hand_checked_manifest import HAND_CHECKED

CLASS_MAP = {"0": "car", "1": "truck", "2": "bus"}


def image(name: str, *class_ids: int) -> LabeledImage:
    return LabeledImage(f"s3://data/labeling/images/{name}", class_ids)


def found(*pairs: tuple[int, float], cap: int | None = None) -> Response:
    """A response of detections of (class id, score) and cap; boxes do not matter to counting."""
    detections = [Detection(class_id, score, 0.1, 0.1, 0.2, 0.2) for class_id, score in pairs]
    return Response(detections, cap)


def test_figures_by_hand_with_an_image_without_objects():
    # a: 2 cars, b: nothing, c: 1 truck. At 0.5 the model finds 3 in a, 1 in b, 0 in c.
    images = [image("a.jpg", 0, 0), image("b.jpg"), image("c.jpg", 1)]
    detections = {
        images[0].source_ref: found((0, 0.9), (0, 0.8), (0, 0.6)),
        images[1].source_ref: found((0, 0.7)),
        images[2].source_ref: found((1, 0.3)),
    }
    result = evaluate(images, detections, class_map=CLASS_MAP, thresholds=[0.5])
    figures = result.to_dict()
    # errors: +1, +1, -1
    assert figures["images"] == 3
    assert figures["objects"] == 3
    assert figures["capped_images"] == 0  # no response says its cap
    assert figures["best_threshold"] == 0.5
    assert figures["mae"] == pytest.approx(1.0)  # (1 + 1 + 1) / 3
    assert figures["wape"] == pytest.approx(1.0)  # 3 / 3
    assert figures["mape"] == pytest.approx(0.75)  # (1/2 + 1/1) / 2: b has no objects
    assert figures["exact_accuracy"] == 0.0
    assert figures["bias"] == pytest.approx(0.3333)  # (1 + 1 - 1) / 3, rounded
    # Every class of the map is reported; bus is neither labeled nor predicted.
    assert figures["per_class"] == {
        "bus": {"mae": 0.0, "bias": 0.0},
        "car": {"mae": pytest.approx(0.6667), "bias": pytest.approx(0.6667)},  # +1, +1, 0
        "truck": {"mae": pytest.approx(0.3333), "bias": pytest.approx(-0.3333)},  # 0, 0, -1
    }


def test_images_whose_responses_reached_the_cap_are_counted():
    images = [image("a.jpg", 0, 0, 0), image("b.jpg", 0), image("c.jpg"), image("d.jpg", 0)]
    responses = {
        images[0].source_ref: found((0, 0.9), (0, 0.8), cap=2),  # 2 of 2: capped
        images[1].source_ref: found((0, 0.9), cap=2),  # 1 of 2: one below the cap
        images[2].source_ref: found((0, 0.9), (0, 0.8)),  # cap unknown: not flagged
        # 2 of 2, though none scores 0.5: the cap applies before any threshold.
        images[3].source_ref: found((0, 0.2), (0, 0.1), cap=2),
    }
    result = evaluate(images, responses, class_map=CLASS_MAP, thresholds=[0.5])

    assert result.capped_images == 2
    assert result.to_dict()["capped_images"] == 2
    # The figures themselves are unchanged by the flag: a is counted 2 of its 3 (error -1).
    assert result.image_counts[0].error == -1


def test_a_class_absent_from_the_predictions_counts_as_missed():
    images = [image("a.jpg", 0, 2, 2), image("b.jpg", 2)]
    detections = {images[0].source_ref: found((0, 0.9)), images[1].source_ref: found()}
    result = evaluate(images, detections, class_map=CLASS_MAP, thresholds=[0.2])
    assert result.per_class["bus"] == {"mae": 1.5, "bias": -1.5}  # -2 and -1
    assert result.per_class["car"] == {"mae": 0.0, "bias": 0.0}


def test_a_predicted_class_missing_from_the_map_is_named_by_its_id():
    images = [image("a.jpg", 0)]
    detections = {images[0].source_ref: found((0, 0.9), (7, 0.9))}
    result = evaluate(images, detections, class_map={"0": "car"}, thresholds=[0.5])
    assert result.per_class == {"7": {"mae": 1.0, "bias": 1.0}, "car": {"mae": 0.0, "bias": 0.0}}


def test_a_score_equal_to_the_threshold_counts():
    images = [image("a.jpg", 0)]
    result = evaluate(images, {images[0].source_ref: found((0, 0.3))}, class_map=CLASS_MAP,
                      thresholds=[0.3])  # fmt: skip
    assert result.image_counts[0].predicted_count == 1


def test_the_lowest_mae_wins():
    # a has 2 objects, b has 2. Scores: a 0.9, 0.8, 0.7, 0.6; b 0.9.
    # t=0.55: a 4 (+2), b 1 (-1): mae 1.5.  t=0.65: a 3 (+1), b 1 (-1): mae 1.
    # t=0.75: a 2 (0), b 1 (-1): mae 0.5.
    images = [image("a.jpg", 0, 0), image("b.jpg", 0, 0)]
    detections = {
        images[0].source_ref: found((0, 0.9), (0, 0.8), (0, 0.7), (0, 0.6)),
        images[1].source_ref: found((0, 0.9)),
    }
    result = evaluate(images, detections, class_map=CLASS_MAP, thresholds=[0.55, 0.65, 0.75])
    assert [row.mae for row in result.per_threshold] == [1.5, 1.0, 0.5]
    assert result.best.threshold == 0.75


def test_ties_on_mae_go_to_the_lowest_absolute_bias_even_at_a_higher_threshold():
    # a: no object, a detection at 0.8. b: 1 object, 0.9 and 0.3. c: 1 object, 0.4.
    # t=0.2: a +1, b +1, c 0: mae 2/3, bias +2/3.   t=0.5: a +1, b 0, c -1: mae 2/3, bias 0.
    images = [image("a.jpg"), image("b.jpg", 0), image("c.jpg", 0)]
    detections = {
        images[0].source_ref: found((0, 0.8)),
        images[1].source_ref: found((0, 0.9), (0, 0.3)),
        images[2].source_ref: found((0, 0.4)),
    }
    result = evaluate(images, detections, class_map=CLASS_MAP, thresholds=[0.2, 0.5])
    low, high = result.per_threshold
    assert low.mae == high.mae
    assert (low.bias, high.bias) == (pytest.approx(2 / 3), 0)
    assert result.best.threshold == 0.5


def test_full_ties_go_to_the_lowest_threshold():
    images = [image("a.jpg", 0)]
    detections = {images[0].source_ref: found((0, 0.9))}
    result = evaluate(images, detections, class_map=CLASS_MAP, thresholds=[0.4, 0.2, 0.6])
    assert [row.threshold for row in result.per_threshold] == [0.2, 0.4, 0.6]
    assert result.best.threshold == 0.2


def test_no_objects_anywhere_leaves_wape_and_mape_undefined():
    images = [image("a.jpg"), image("b.jpg")]
    detections = {images[0].source_ref: found((0, 0.9)), images[1].source_ref: found()}
    figures = evaluate(images, detections, class_map=CLASS_MAP, thresholds=[0.5]).to_dict()
    assert figures["wape"] is None
    assert figures["mape"] is None
    assert figures["mae"] == 0.5
    assert json.loads(json.dumps(figures))["wape"] is None


def test_default_thresholds_are_005_to_095():
    assert evaluation.DEFAULT_THRESHOLDS[0] == 0.05
    assert evaluation.DEFAULT_THRESHOLDS[-1] == 0.95
    assert len(evaluation.DEFAULT_THRESHOLDS) == 19
    assert evaluation.DEFAULT_THRESHOLDS[5] == 0.3


def test_review_queue_lists_the_largest_errors_first_and_skips_exact_counts():
    images = [image("a.jpg", 0), image("b.jpg", 0, 0, 0), image("c.jpg"), image("d.jpg", 0)]
    detections = {
        images[0].source_ref: found((0, 0.9)),  # exact
        images[1].source_ref: found(),  # -3
        images[2].source_ref: found((0, 0.9), (0, 0.9)),  # +2
        images[3].source_ref: found(),  # -1
    }
    result = evaluate(images, detections, class_map=CLASS_MAP, thresholds=[0.5])
    queue = [(entry.source_ref.rsplit("/", 1)[1], entry.error) for entry in result.review_queue()]
    assert queue == [("b.jpg", -3), ("c.jpg", 2), ("d.jpg", -1)]
    assert [entry["error"] for entry in result.to_dict()["review_queue"]] == [-3, 2, -1]
    assert len(result.review_queue(length=1)) == 1


def test_the_review_queue_shows_the_detections_counted_at_the_best_threshold():
    # At 0.5 the truck (0.8) and the car (0.6) count, highest first; the car at 0.3 does not.
    images = [image("a.jpg", 0)]
    detections = {images[0].source_ref: found((0, 0.6), (1, 0.8), (0, 0.3))}

    (entry,) = evaluate(images, detections, class_map=CLASS_MAP, thresholds=[0.5]).to_dict()[
        "review_queue"
    ]

    box = {"xmin": 0.1, "ymin": 0.1, "xmax": 0.2, "ymax": 0.2}
    assert (entry["predicted_count"], entry["detections"]) == (
        2,
        [
            {"number": 1, "class_id": 1, "class_name": "truck", "score": 0.8, "box": box},
            {"number": 2, "class_id": 0, "class_name": "car", "score": 0.6, "box": box},
        ],
    )


def test_missing_detections_name_the_image():
    images = [image("a.jpg", 0)]
    with pytest.raises(InputError, match=r"no detections for image s3://data/labeling/images/a"):
        evaluate(images, {}, class_map=CLASS_MAP)


@pytest.mark.parametrize(
    ("text", "message"),
    [("0.1,x", "'x' is not a number"), ("0.1,1.5", r"must be in \[0, 1\]"), ("", "not a number")],
)
def test_bad_thresholds_are_refused(text, message):
    with pytest.raises(InputError, match=message):
        evaluation.parse_thresholds(text)


def test_thresholds_are_sorted_without_repeats():
    assert evaluation.parse_thresholds("0.3, 0.1,0.3") == (0.1, 0.3)


def test_labeled_images_skip_failed_items_and_keep_empty_ones():
    lines = HAND_CHECKED.read_text().split("\n")
    images, class_map, _ = evaluation.labeled_images(parse_manifest(lines))
    assert class_map == {"0": "car", "1": "truck"}
    counts = {entry.file_name: entry.true_count for entry in images}
    assert counts["a.jpg"] == 2
    assert counts["d.jpg"] == 0  # labeled with no boxes
    assert "c.jpg" not in counts  # failed
    assert len(images) == 6  # 8 lines, 2 failed
    assert sum(counts.values()) == 9


def at(*centres: tuple[float, float], score: float = 0.9) -> list[Detection]:
    """Detections whose boxes are centred on ``centres`` (fractions of the image)."""
    return [Detection(0, score, x - 0.01, y - 0.01, x + 0.01, y + 0.01) for x, y in centres]


def test_rmse_weighs_large_errors_more_than_mae():
    # Errors +2, -1, 0, 0: mae 3/4; rmse sqrt((4 + 1) / 4) = sqrt(1.25) = 1.1180.
    images = [image("a.jpg", 0), image("b.jpg", 0), image("c.jpg"), image("d.jpg", 0)]
    responses = {
        images[0].source_ref: found((0, 0.9), (0, 0.9), (0, 0.9)),
        images[1].source_ref: found(),
        images[2].source_ref: found(),
        images[3].source_ref: found((0, 0.9)),
    }
    figures = evaluate(images, responses, class_map=CLASS_MAP, thresholds=[0.5]).to_dict()
    assert figures["mae"] == 0.75
    assert figures["rmse"] == 1.118
    assert figures["per_threshold"][0]["rmse"] == 1.118


def test_game_by_hand_on_a_small_grid():
    # Image a counts 4 of 4, but two in the wrong place:
    #   true (0.10, 0.10) (0.60, 0.10) (0.60, 0.60) (0.30, 0.90)
    #   seen (0.10, 0.10) (0.40, 0.10) (0.60, 0.60) (0.40, 0.90)
    # Level 1 (cuts at 0.5): 0.60 -> 0.40 moves a box from region x 1 to x 0, error 2;
    #   0.30 and 0.40 share region x 0.
    # Level 2 (cuts every 0.25): 0.60 (x 2) -> 0.40 (x 1), error 2; 0.30 and 0.40 share x 1.
    # Level 3 (cuts every 0.125): 0.60 (x 4) -> 0.40 (x 3), and 0.30 (x 2) -> 0.40 (x 3):
    #   error 4.
    # Image b misses one of 2, at (0.5, 0.5): error 1 at every level (on the lines it belongs
    # to the region right of and below them).
    a = LabeledImage(
        "s3://data/labeling/images/a.jpg", (0, 0, 0, 0),
        ((0.10, 0.10), (0.60, 0.10), (0.60, 0.60), (0.30, 0.90)),
    )  # fmt: skip
    b = LabeledImage("s3://data/labeling/images/b.jpg", (0, 0), ((0.5, 0.5), (0.2, 0.2)))
    responses = {
        a.source_ref: Response(at((0.10, 0.10), (0.40, 0.10), (0.60, 0.60), (0.40, 0.90))),
        b.source_ref: Response(at((0.2, 0.2)) + at((0.7, 0.7), score=0.1)),  # 0.1: not counted
    }
    figures = evaluate([a, b], responses, class_map=CLASS_MAP, thresholds=[0.5]).to_dict()
    assert figures["mae"] == 0.5  # (0 + 1) / 2: the count alone hides a's misplaced boxes
    # (2 + 1) / 2, (2 + 1) / 2, (4 + 1) / 2
    assert figures["game"] == {"1": 1.5, "2": 1.5, "3": 2.5}


def test_a_centre_on_a_region_line_belongs_to_the_region_right_of_and_below_it():
    # (0.5, 0.5) is in region (1, 1) at level 1; (0.49, 0.49) in (0, 0): two regions wrong.
    assert evaluation.grid_error([(0.5, 0.5)], [(0.49, 0.49)], 1) == 2
    assert evaluation.grid_error([(0.5, 0.5)], [(0.51, 0.99)], 1) == 0
    # 1.0, the far edge, is in the last region, not past it.
    assert evaluation.grid_error([(1.0, 1.0)], [(0.9, 0.9)], 3) == 0


def test_game_is_unknown_without_the_labeled_boxes():
    images = [image("a.jpg", 0)]
    result = evaluate(images, {images[0].source_ref: found((0, 0.9))}, class_map=CLASS_MAP)
    assert result.to_dict()["game"] is None


def test_labeled_images_carry_box_centres_from_the_manifest():
    lines = HAND_CHECKED.read_text().split("\n")
    images, _, _ = evaluation.labeled_images(parse_manifest(lines))
    by_name = {entry.file_name: entry for entry in images}
    assert by_name["d.jpg"].centres == ()
    # a.jpg, 640 x 480: boxes at (10, 20) 30 x 40 and (100, 120) 50 x 60, centred on
    # (25, 40) and (125, 150) pixels.
    assert by_name["a.jpg"].centres == ((25 / 640, 40 / 480), (125 / 640, 150 / 480))


class TestMatchResponses:
    images = (image("street/a.jpg", 0), image("street/b.jpg"))

    def test_by_file_name_with_either_suffix(self):
        matched, left_over = match_responses(self.images, ["a.jpg.out", "b.jpg.json", "notes.txt"])
        assert matched == {self.images[0].source_ref: "a.jpg.out",
                           self.images[1].source_ref: "b.jpg.json"}  # fmt: skip
        assert left_over == ["notes.txt"]

    def test_in_folders_as_batch_transform_may_keep_them(self):
        images = [image("one/a.jpg"), image("two/a.jpg")]
        matched, _ = match_responses(images, ["two/a.jpg.out", "one/a.jpg.out"])
        assert matched == {images[0].source_ref: "one/a.jpg.out",
                           images[1].source_ref: "two/a.jpg.out"}  # fmt: skip

    def test_a_missing_response_names_the_image_and_the_file_expected(self):
        with pytest.raises(
            InputError, match=r"no response for image .*street/b.jpg: expected b.jpg.out or b.jpg"
        ):
            match_responses(self.images, ["a.jpg.out"])

    def test_two_images_cannot_share_one_response(self):
        images = [image("one/a.jpg"), image("two/a.jpg")]
        with pytest.raises(InputError, match=r"share the file name a\.jpg"):
            match_responses(images, ["a.jpg.out"])

    def test_an_image_listed_twice_shares_its_response(self):
        images = [image("street/a.jpg", 0), image("street/a.jpg", 0, 0)]
        matched, left_over = match_responses(images, ["a.jpg.out"])
        assert matched == {images[0].source_ref: "a.jpg.out"}
        assert left_over == []

    def test_two_equally_good_responses_are_ambiguous(self):
        with pytest.raises(InputError, match="several responses could be for image"):
            match_responses(self.images[:1], ["a.jpg.out", "a.jpg.json"])


# --- Properties ---------------------------------------------------------------------------

scores = st.floats(min_value=0, max_value=1, allow_nan=False)
cases = st.lists(
    st.tuples(
        st.lists(st.integers(min_value=0, max_value=2), max_size=6),  # true class ids
        st.lists(st.tuples(st.integers(min_value=0, max_value=2), scores), max_size=8),
    ),
    min_size=1,
    max_size=8,
)
threshold_lists = st.lists(scores, min_size=1, max_size=6)


def build(case):
    images = [image(f"{index}.jpg", *ids) for index, (ids, _) in enumerate(case)]
    detections = {
        entry.source_ref: found(*pairs) for entry, (_, pairs) in zip(images, case, strict=True)
    }
    return images, detections


@given(cases, threshold_lists)
def test_no_tried_threshold_has_a_lower_mae_than_the_best(case, thresholds):
    images, detections = build(case)
    result = evaluate(images, detections, class_map=CLASS_MAP, thresholds=thresholds)
    assert all(row.mae >= result.best.mae for row in result.per_threshold)
    assert result.best.threshold in {row.threshold for row in result.per_threshold}


@given(cases, threshold_lists)
def test_errors_are_never_negative_and_shares_stay_in_range(case, thresholds):
    images, detections = build(case)
    for row in evaluate(
        images, detections, class_map=CLASS_MAP, thresholds=thresholds
    ).per_threshold:
        assert row.mae >= 0
        assert row.wape is None or row.wape >= 0
        assert row.mape is None or row.mape >= 0
        assert 0 <= row.exact_accuracy <= 1
        assert abs(row.bias) <= row.mae


@given(st.lists(st.lists(st.integers(min_value=0, max_value=2), max_size=6), min_size=1))
def test_perfect_predictions_have_no_error(labels):
    # Every labeled box is predicted with score 1.0, nothing else: exact at every threshold.
    images = [image(f"{index}.jpg", *ids) for index, ids in enumerate(labels)]
    detections = {
        entry.source_ref: found(*((class_id, 1.0) for class_id in entry.class_ids))
        for entry in images
    }
    result = evaluate(images, detections, class_map=CLASS_MAP)
    for row in result.per_threshold:
        assert row.mae == 0
        assert row.bias == 0
        assert row.exact_accuracy == 1
        assert row.wape in (0, None)
    assert all(figures == {"mae": 0.0, "bias": 0.0} for figures in result.per_class.values())
    assert result.review_queue() == []


@pytest.mark.parametrize(
    "thresholds", [[0.5], evaluation.DEFAULT_THRESHOLDS], ids=["one threshold", "default"]
)
def test_the_plot_is_a_png_even_for_degenerate_evaluations(thresholds):
    # No objects anywhere (wape undefined), nothing predicted: axes must still have a range.
    images = [image("a.jpg"), image("b.jpg")]
    result = evaluate(
        images, {entry.source_ref: found() for entry in images}, class_map=CLASS_MAP,
        thresholds=thresholds,
    )  # fmt: skip
    with Image.open(io.BytesIO(plot(result))) as drawn:
        assert (drawn.format, drawn.size) == ("PNG", (1200, 1000))
        # Something besides the white background was drawn.
        assert drawn.convert("L").getextrema()[0] < 128


def plotted(result, **options) -> Image.Image:
    with Image.open(io.BytesIO(plot(result, **options))) as drawn:
        return drawn.convert("RGB")


def test_the_plot_draws_the_count_gate_on_the_wape_scale_only_when_set():
    from counting_core.models import evaluation_plot as drawing

    # Two images, 2 and 2 objects; predicted 2 and 1 at every threshold: WAPE 1/4.
    images = [image("a.jpg", 0, 0), image("b.jpg", 0, 0)]
    responses = {
        images[0].source_ref: found((0, 0.9), (0, 0.9)),
        images[1].source_ref: found((0, 0.9)),
    }
    result = evaluate(images, responses, class_map=CLASS_MAP, thresholds=[0.5])

    gate = 0.2
    # The WAPE scale runs from 0 to 1.05 x max(0.1, 0.25, gate) = 0.2625 over the panel's
    # 390 px (y 480 at the bottom, 90 at the top): 0.2 sits 0.2 / 0.2625 x 390 = 297.1 px up.
    gate_y = round(480 - 0.2 / 0.2625 * 390)
    with_gate = plotted(result, max_wape=gate)
    without = plotted(result)

    row = [with_gate.getpixel((x, gate_y)) for x in range(90, 500)]
    assert row.count(drawing.GATE_COLOUR) > 150  # dashed: about half the panel's width
    assert drawing.GATE_COLOUR not in [without.getpixel((x, gate_y)) for x in range(90, 500)]


def test_the_plot_has_a_wape_curve_and_a_bar_per_class():
    from counting_core.models import evaluation_plot as drawing

    images = [image("a.jpg", 0, 1), image("b.jpg", 0)]
    responses = {images[0].source_ref: found((0, 0.9)), images[1].source_ref: found((1, 0.9))}
    result = evaluate(images, responses, class_map=CLASS_MAP, thresholds=[0.3, 0.6])
    drawn = plotted(result)

    colours = {colour for _, colour in drawn.getcolors(maxcolors=1_000_000)}
    assert drawing.WAPE_COLOUR in colours
    # The class panel's bars: one per class of the map (car MAE 0.5, truck 1.0, and the third,
    # never labeled nor predicted, 0: a bar one pixel wide), in MAE's colour, at x = 301.
    column = [drawn.getpixel((301, y)) for y in range(drawing.CLASS_ROW[0], drawing.CLASS_ROW[1])]
    bars = sum(
        1
        for before, pixel in itertools.pairwise(column)
        if pixel == drawing.MAE_COLOUR and before != drawing.MAE_COLOUR
    )
    assert bars == 3


def test_images_at_one_point_darken_their_dot_instead_of_merging():
    one = [image("a.jpg", 0)]
    three = [image(name, 0) for name in ("a.jpg", "b.jpg", "c.jpg")]

    def dot_centre(images):
        responses = {entry.source_ref: found((0, 0.9)) for entry in images}
        result = evaluate(images, responses, class_map=CLASS_MAP, thresholds=[0.5])
        drawn = plotted(result)
        # true 1, predicted 1 on axes from 0 to 1.05: x = 700 + 450 / 1.05, y = 480 - 390 / 1.05.
        return drawn.getpixel((round(700 + 450 / 1.05), round(480 - 390 / 1.05)))

    assert sum(dot_centre(three)) < sum(dot_centre(one)) < 3 * 255


# --- Tiled or whole: the choice the count evaluation records ---


def scored(counts: list[int], truths: list[int]) -> evaluation.Evaluation:
    """An evaluation of images whose responses hold ``counts`` detections scoring 0.9."""
    images = [LabeledImage(f"s3://b/{i}.jpg", (0,) * true) for i, true in enumerate(truths)]
    responses = {
        image.source_ref: Response([Detection(0, 0.9, 0.1, 0.1, 0.2, 0.2)] * count)
        for image, count in zip(images, counts, strict=True)
    }
    return evaluate(images, responses, class_map={"0": "car"})


def test_tiles_are_chosen_only_for_a_strictly_lower_mae():
    truths = [4, 2]
    whole = scored([1, 2], truths)  # errors -3, 0: MAE 1.5
    better = scored([4, 1], truths)  # errors 0, -1: MAE 0.5
    same = scored([4, 5], truths)  # errors 0, +3: MAE 1.5, a tie

    chosen = evaluation.tiling_choice(whole, better)
    assert (chosen.tile, chosen.mae, chosen.untiled_mae, chosen.images) == (True, 0.5, 1.5, 2)
    # Of the tiled errors' thresholds (every one up to 0.9 counts alike), the lowest.
    assert chosen.best_threshold == 0.05
    assert chosen.wape == 0.1667  # 1 of 6 objects
    assert evaluation.tiling_choice(whole, same).tile is False


def test_tiled_and_whole_counts_of_different_images_are_not_compared():
    with pytest.raises(InputError, match=r"1 images counted in tiles, 2 whole"):
        evaluation.tiling_choice(scored([1, 2], [1, 2]), scored([1], [1]))


def test_a_tile_set_line_that_is_not_one_is_named():
    # A blank first line, then a tile set without its size and tiles.
    with pytest.raises(InputError, match=r"^tile set line 2: width: missing"):
        tiling.read_tile_sets([b'\n{"image": "s3://b/a.jpg"}\n'])
