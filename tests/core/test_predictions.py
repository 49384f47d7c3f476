"""Endpoint response parsing and counting: hand-checked figures, error messages, properties."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from counting_core.counts.predictions import (
    Detection,
    Response,
    check_threshold,
    count_detections,
    parse_response,
    pixel_box,
)
from counting_core.errors import InputError

CLASS_MAP = {"0": "car", "1": "truck"}

# Five detections on a 200 x 100 image, checked by hand (pixel = floor(fraction * side + 0.5),
# then held inside the image):
#   [0] car   0.50  (0.5, 0.5, 1.02, 1.0) -> xmax clamped to 1.0 -> (100, 50, 199, 99)
#   [1] car   0.20  (0, 0, 0.25, 0.25)    -> exactly at the threshold: kept -> (0, 0, 50, 25)
#   [2] truck 0.95  (0.1, 0.2, 0.3, 0.6)  -> (20, 20, 60, 60)
#   [3] "2"   0.70  (0.6, 0.1, 0.7, 0.3)  -> not in the class map, named by its id
#                                          -> (120, 10, 140, 30)
#   [4] truck 0.10                        -> below the threshold: not counted
HAND_CHECKED = {
    "prediction": [
        [0.0, 0.5, 0.5, 0.5, 1.02, 1.0],
        [0.0, 0.2, 0.0, 0.0, 0.25, 0.25],
        [1.0, 0.95, 0.1, 0.2, 0.3, 0.6],
        [2.0, 0.7, 0.6, 0.1, 0.7, 0.3],
        [1.0, 0.1, 0.4, 0.4, 0.5, 0.5],
    ]
}

# The example response in the Object Detection request and response formats page.
DOCUMENTED_EXAMPLE = """{"prediction":[
  [4.0, 0.86419455409049988, 0.3088374733924866, 0.07030484080314636, 0.7110607028007507,
   0.9345266819000244],
  [0.0, 0.73376623392105103, 0.5714187026023865, 0.40427327156066895, 0.827075183391571,
   0.9712159633636475],
  [4.0, 0.32643985450267792, 0.3677481412887573, 0.034883320331573486, 0.6318609714508057,
   0.5967587828636169],
  [8.0, 0.22552496790885925, 0.6152569651603699, 0.5722782611846924, 0.882301390171051,
   0.8985623121261597],
  [3.0, 0.42260299175977707, 0.019305512309074402, 0.08386176824569702, 0.39093565940856934,
   0.9574796557426453]
]}"""


def test_hand_checked_count_on_a_200x100_image():
    detections = parse_response(json.dumps(HAND_CHECKED).encode()).detections
    result = count_detections(detections, threshold=0.2, class_map=CLASS_MAP, image_size=(200, 100))

    assert result.count == 4
    assert result.by_class == {"2": 1, "car": 2, "truck": 1}
    assert list(result.by_class) == ["2", "car", "truck"]
    assert result.image_size == (200, 100)
    assert [(d.number, d.class_name, d.score, d.box_pixels) for d in result.detections] == [
        (1, "truck", 0.95, (20, 20, 60, 60)),
        (2, "2", 0.7, (120, 10, 140, 30)),
        (3, "car", 0.5, (100, 50, 199, 99)),
        (4, "car", 0.2, (0, 0, 50, 25)),
    ]
    assert result.detections[2].box == (0.5, 0.5, 1.0, 1.0)


def test_hand_checked_to_dict_is_the_printed_shape():
    result = count_detections(
        parse_response(HAND_CHECKED).detections, class_map=CLASS_MAP, image_size=(200, 100)
    )
    document = json.loads(json.dumps(result.to_dict()))

    assert document["count"] == 4
    assert document["capped"] is False
    assert document["threshold"] == 0.2
    assert document["detections"][0] == {
        "number": 1,
        "class_id": 1,
        "class_name": "truck",
        "score": 0.95,
        "box": {"xmin": 0.1, "ymin": 0.2, "xmax": 0.3, "ymax": 0.6},
        "box_pixels": {"left": 20, "top": 20, "right": 60, "bottom": 60},
    }


def test_without_an_image_size_there_are_no_pixel_boxes():
    result = count_detections(parse_response(HAND_CHECKED).detections)

    assert result.image_size is None
    assert all(d.box_pixels is None for d in result.detections)
    assert "box_pixels" not in result.to_dict()["detections"][0]
    assert result.by_class == {"0": 2, "1": 1, "2": 1}


def test_documented_example_response():
    response = parse_response(DOCUMENTED_EXAMPLE)
    detections = response.detections

    # The built-in algorithm does not say its cap: nothing is flagged.
    assert (response.max_detections, response.capped) == (None, False)

    assert [d.class_id for d in detections] == [4, 0, 4, 8, 3]
    assert all(type(d.class_id) is int for d in detections)
    result = count_detections(detections, threshold=0.3)
    assert result.count == 4
    assert [d.class_id for d in result.detections] == [4, 0, 3, 4]
    assert result.by_class == {"0": 1, "3": 1, "4": 2}


def test_threshold_is_inclusive():
    just_below = math.nextafter(0.2, 0.0)
    response = {"prediction": [[0, 0.2, 0, 0, 1, 1], [0, just_below, 0, 0, 1, 1]]}
    detections = parse_response(response).detections

    assert count_detections(detections, threshold=0.2).count == 1
    assert count_detections(detections, threshold=just_below).count == 2


def test_equal_scores_keep_the_response_order():
    detections = parse_response(
        {"prediction": [[c, 0.5, 0, 0, 1, 1] for c in (3, 1, 2)] + [[0, 0.9, 0, 0, 1, 1]]}
    ).detections

    assert [d.class_id for d in count_detections(detections).detections] == [0, 3, 1, 2]


def test_bytes_text_and_decoded_responses_parse_alike():
    text = json.dumps(HAND_CHECKED)
    # The response above, read by hand: xmax 1.02 of [0] is clamped to 1.0.
    expected = [
        Detection(0, 0.5, 0.5, 0.5, 1.0, 1.0),
        Detection(0, 0.2, 0.0, 0.0, 0.25, 0.25),
        Detection(1, 0.95, 0.1, 0.2, 0.3, 0.6),
        Detection(2, 0.7, 0.6, 0.1, 0.7, 0.3),
        Detection(1, 0.1, 0.4, 0.4, 0.5, 0.5),
    ]

    assert parse_response(text) == parse_response(text.encode()) == Response(expected, None)
    assert parse_response(HAND_CHECKED) == Response(expected, None)


def test_corners_slightly_outside_the_image_are_clamped():
    (detection,) = parse_response({"prediction": [[0, 0.5, -0.01, -0.2, 1.3, 1.0001]]}).detections

    assert detection == Detection(0, 0.5, 0.0, 0.0, 1.0, 1.0)


def test_empty_prediction_list_counts_zero():
    result = count_detections(parse_response(b'{"prediction": []}').detections, image_size=(10, 10))

    assert (result.count, result.by_class, result.detections) == (0, {}, ())


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "response is not JSON"),
        (b"<html>busy</html>", "response is not JSON"),
        (b"\xff\xd8\xff\xe0", "response is not JSON"),
        (b'{"predictions": []}', "missing 'prediction' list in the response"),
        (b"[[0, 0.5, 0, 0, 1, 1]]", "missing 'prediction' list in the response"),
        (b'{"prediction": {"0": 1}}', "missing 'prediction' list in the response"),
        (b'{"prediction": [[0, 0.5, 0.1, 0.1, 0.2]]}', "prediction[0]: expected 6 numbers, got 5"),
        (
            b'{"prediction": [[0, 0.5, 0, 0, 1, 1], [0, 0.5, 0, 0, 1, 1], [0, 0.5, 0, 0, 1, 1],'
            b" [0, 0.5, 0, 0, 1, 1, 7]]}",
            "prediction[3]: expected 6 numbers, got 7",
        ),
        (
            b'{"prediction": [{"class": 0}]}',
            "prediction[0]: expected a list of 6 numbers, got an object",
        ),
        (
            b'{"prediction": ["abcdef"]}',
            "prediction[0]: expected a list of 6 numbers, got a string",
        ),
        (b'{"prediction": [[0, 1.5, 0, 0, 1, 1]]}', "prediction[0]: score 1.5 is outside [0, 1]"),
        (b'{"prediction": [[0, -0.1, 0, 0, 1, 1]]}', "prediction[0]: score -0.1 is outside [0, 1]"),
        (
            b'{"prediction": [[0, NaN, 0, 0, 1, 1]]}',
            "prediction[0]: score must be a finite number, got nan",
        ),
        (
            b'{"prediction": [[0, 0.5, 0, 0, Infinity, 1]]}',
            "prediction[0]: xmax must be a finite number, got inf",
        ),
        (
            b'{"prediction": [[-1, 0.5, 0, 0, 1, 1]]}',
            "prediction[0]: class id must be a non-negative integer, got -1",
        ),
        (
            b'{"prediction": [[1.5, 0.5, 0, 0, 1, 1]]}',
            "prediction[0]: class id must be a non-negative integer, got 1.5",
        ),
        (
            b'{"prediction": [[0, 0.5, 0.6, 0, 0.4, 1]]}',
            "prediction[0]: xmax 0.4 is less than xmin 0.6",
        ),
        (
            b'{"prediction": [[0, 0.5, 0, 0.9, 1, 0.1]]}',
            "prediction[0]: ymax 0.1 is less than ymin 0.9",
        ),
        (
            b'{"prediction": [[0, 0.5, 10, 20, 300, 400]]}',
            "prediction[0]: xmin 10 is far outside [0, 1]: corners must be fractions of the image",
        ),
        (
            b'{"prediction": [[0, true, 0, 0, 1, 1]]}',
            "prediction[0]: score must be a number, got a boolean",
        ),
        (
            b'{"prediction": [[false, 0.5, 0, 0, 1, 1]]}',
            "prediction[0]: class id must be a number, got a boolean",
        ),
        (
            b'{"prediction": [[0, "0.5", 0, 0, 1, 1]]}',
            "prediction[0]: score must be a number, got a string",
        ),
        (
            b'{"prediction": [[0, 0.5, null, 0, 1, 1]]}',
            "prediction[0]: xmin must be a number, got null",
        ),
    ],
)
def test_bad_responses_are_named(body, message):
    with pytest.raises(InputError) as caught:
        parse_response(body)

    assert str(caught.value).startswith(message)


def a_response(boxes: int, **extra: object) -> dict[str, object]:
    """``boxes`` detections scoring 0.9, 0.8, ... (at least 0.1), plus ``extra`` keys."""
    scores = [max(0.9 - 0.1 * index, 0.1) for index in range(boxes)]
    return {"prediction": [[0, score, 0.1, 0.1, 0.2, 0.2] for score in scores], **extra}


@pytest.mark.parametrize(
    ("boxes", "cap", "capped"),
    [
        (2, 3, False),  # one below the cap
        (3, 3, True),  # exactly at the cap: the model may have dropped more
        (4, 3, True),  # past it (a model that keeps one extra): still flagged
        (0, 1, False),
        (1000, 1000, True),  # the torchvision detector's default cap
    ],
)
def test_a_response_at_its_cap_is_capped(boxes, cap, capped):
    response = parse_response(json.dumps(a_response(boxes, max_detections=cap)))

    assert (len(response.detections), response.max_detections) == (boxes, cap)
    assert response.capped is capped


def test_without_max_detections_the_cap_is_unknown_and_nothing_is_flagged():
    response = parse_response(json.dumps(a_response(1000)))

    assert (response.max_detections, response.capped) == (None, False)


def test_the_cap_is_counted_before_the_threshold():
    # Three detections scoring 0.9, 0.8, 0.7 and a cap of 3: at threshold 0.85 one is
    # counted, but the model still returned its cap's worth, so the count is flagged.
    response = parse_response(a_response(3, max_detections=3))
    result = count_detections(response.detections, threshold=0.85, capped=response.capped)

    assert (result.count, result.capped) == (1, True)
    assert result.to_dict()["capped"] is True


@pytest.mark.parametrize(
    ("cap", "shown"),
    [
        ("0", "0"),
        ("-5", "-5"),
        ("1000.0", "1000.0"),
        ("1e3", "1000.0"),
        ("2.5", "2.5"),
        ('"1000"', "a string"),
        ("true", "a boolean"),
        ("null", "null"),
        ("[1000]", "a list"),
        ('{"n": 1000}', "an object"),
    ],
)
def test_a_max_detections_that_is_not_a_positive_integer_is_named(cap, shown):
    body = b'{"prediction": [[0, 0.5, 0, 0, 1, 1]], "max_detections": ' + cap.encode() + b"}"
    expected = f"max_detections: expected a positive integer, got {shown}"
    for form in (body, body.decode(), json.loads(body)):
        with pytest.raises(InputError) as caught:
            parse_response(form)

        assert str(caught.value) == expected


def test_booleans_are_refused_in_decoded_responses_too():
    with pytest.raises(InputError, match=r"prediction\[0\]: xmax must be a number, got a boolean"):
        parse_response({"prediction": [[0, 0.5, 0, 0, True, 1]]})


@pytest.mark.parametrize("threshold", [-0.1, 1.01, math.nan, math.inf, True, "0.5", None])
def test_thresholds_outside_0_1_are_refused(threshold):
    with pytest.raises(InputError, match="threshold must be"):
        check_threshold(threshold)
    with pytest.raises(InputError, match="threshold must be"):
        count_detections([], threshold=threshold)


@pytest.mark.parametrize("size", [(0, 10), (10, -1), (10.5, 10), ("10", 10)])
def test_bad_image_sizes_are_refused(size):
    with pytest.raises(InputError, match="image size must be two positive whole numbers"):
        count_detections([], image_size=size)


def test_pixel_box_rounds_half_up_and_stays_inside():
    assert pixel_box((0.0025, 0.0, 0.9975, 1.0), 200, 100) == (1, 0, 199, 99)
    assert pixel_box((0.0, 0.0, 0.0, 0.0), 1, 1) == (0, 0, 0, 0)
    assert pixel_box((-0.5, -0.5, 1.5, 1.5), 7, 5) == (0, 0, 6, 4)


# Property tests.

json_leaves = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats()
    | st.text(max_size=6)
)
json_values = st.recursive(
    json_leaves,
    lambda inner: st.lists(inner, max_size=7) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=30,
)
number_like = st.one_of(
    st.floats(min_value=-2, max_value=2),
    st.floats(),
    st.integers(min_value=-3, max_value=3),
    st.booleans(),
    st.none(),
    st.text(max_size=3),
)
almost_responses = st.fixed_dictionaries(
    {
        "prediction": st.lists(
            st.lists(number_like, min_size=5, max_size=7) | json_values, max_size=6
        )
    },
    optional={"max_detections": number_like | json_values},
)
fractions = st.floats(min_value=0.0, max_value=1.0)


@st.composite
def valid_items(draw) -> list[float]:
    xmin, xmax = sorted(draw(st.tuples(fractions, fractions)))
    ymin, ymax = sorted(draw(st.tuples(fractions, fractions)))
    return [float(draw(st.integers(0, 20))), draw(fractions), xmin, ymin, xmax, ymax]


valid_responses = st.fixed_dictionaries(
    {"prediction": st.lists(valid_items(), max_size=40)},
    optional={"max_detections": st.integers(1, 50)},
)


def parse_or_message(body: object) -> Response | str:
    try:
        return parse_response(body)
    except InputError as error:
        return str(error)


def check_outcome(outcome: Response | str) -> None:
    """A one-line message, or detections that all hold the documented ranges and a cap that
    is a positive integer or absent."""
    if isinstance(outcome, str):
        assert outcome
        assert "\n" not in outcome  # the CLI prints it as one line
        return
    cap = outcome.max_detections
    assert cap is None or (type(cap) is int and cap >= 1)
    assert outcome.capped == (cap is not None and len(outcome.detections) >= cap)
    for d in outcome.detections:
        assert type(d.class_id) is int
        assert d.class_id >= 0
        assert 0.0 <= d.score <= 1.0
        assert 0.0 <= d.xmin <= d.xmax <= 1.0
        assert 0.0 <= d.ymin <= d.ymax <= 1.0


@given(json_values | almost_responses)
def test_parse_raises_only_input_error(value):
    for body in (value, json.dumps(value), json.dumps(value).encode()):
        check_outcome(parse_or_message(body))


@given(st.binary(max_size=64) | st.text(max_size=64))
def test_parse_of_arbitrary_bytes_raises_only_input_error(body):
    check_outcome(parse_or_message(body))


@given(valid_responses)
def test_fast_and_strict_paths_agree(response):
    # Text without "true"/"false" skips the per-number type checks that decoded input gets.
    assert parse_response(json.dumps(response)) == parse_response(response)


@given(valid_responses, fractions)
def test_count_is_the_number_of_scores_at_or_above_threshold(response, threshold):
    detections = parse_response(response).detections
    result = count_detections(detections, threshold=threshold)

    expected = sum(1 for item in response["prediction"] if item[1] >= threshold)
    assert result.count == expected == len(result.detections) == sum(result.by_class.values())
    assert [d.number for d in result.detections] == list(range(1, expected + 1))
    scores = [d.score for d in result.detections]
    assert scores == sorted(scores, reverse=True)
    assert list(result.by_class) == sorted(result.by_class)


@given(valid_responses, st.integers(1, 5000), st.integers(1, 5000))
def test_pixel_boxes_are_always_inside_the_image(response, width, height):
    result = count_detections(
        parse_response(response).detections, threshold=0.0, image_size=(width, height)
    )

    for d in result.detections:
        left, top, right, bottom = d.box_pixels
        assert 0 <= left <= right <= width - 1
        assert 0 <= top <= bottom <= height - 1
        xmin, ymin, xmax, ymax = d.box
        assert d.box_pixels == (
            nearest_pixel(xmin, width),
            nearest_pixel(ymin, height),
            nearest_pixel(xmax, width),
            nearest_pixel(ymax, height),
        )


def nearest_pixel(fraction: float, side: int) -> int:
    """The rule pixel_box documents, restated here: round half up, then keep inside."""
    return min(max(math.floor(fraction * side + 0.5), 0), side - 1)


@given(valid_responses)
def test_to_dict_is_plain_json(response):
    result = count_detections(parse_response(response).detections, image_size=(640, 480))
    document = result.to_dict()

    assert json.loads(json.dumps(document, allow_nan=False)) == document
