"""``counting count`` on files and ``counting invoke`` against moto's SageMaker Runtime."""

from __future__ import annotations

import base64
import io
import json
import random
import socket

import boto3
import pytest
import requests
from botocore.response import StreamingBody
from botocore.stub import ANY, Stubber
from moto import mock_aws
from PIL import Image

from counting_core.imaging.image_formats import detect_format
from counting_core.imaging.images import image_size
from counting_core.uploads import cold_start
from tests.core.fake_detector import FakeDetector, grid, jpeg, scene

REGION = "us-east-1"
RESPONSE = {
    "prediction": [
        [0.0, 0.95, 0.1, 0.2, 0.3, 0.6],
        [1.0, 0.5, 0.5, 0.5, 1.0, 1.0],
        [0.0, 0.1, 0.0, 0.0, 0.5, 0.5],
    ]
}
CLASS_MAP = {"0": "car", "1": "truck"}


@pytest.fixture
def files(tmp_path, png_200x100):
    (tmp_path / "predictions.json").write_text(json.dumps(RESPONSE))
    (tmp_path / "classes.json").write_text(json.dumps(CLASS_MAP))
    (tmp_path / "image.png").write_bytes(png_200x100)
    return tmp_path


def one_error_line(stderr: str) -> str:
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    assert lines[0].startswith("counting: error: ")
    return lines[0].removeprefix("counting: error: ")


def test_count_prints_the_count_with_pixel_boxes(cli, files):
    status, out, err = cli(
        "count",
        files / "predictions.json",
        "--image",
        files / "image.png",
        "--class-map",
        files / "classes.json",
    )

    assert (status, err) == (0, "")
    document = json.loads(out)
    assert document["count"] == 2
    assert document["by_class"] == {"car": 1, "truck": 1}
    assert document["threshold"] == 0.2
    assert [d["box_pixels"] for d in document["detections"]] == [
        {"left": 20, "top": 20, "right": 60, "bottom": 60},
        {"left": 100, "top": 50, "right": 199, "bottom": 99},
    ]
    assert out.startswith('{\n  "by_class"')  # indented, keys sorted


def test_count_without_image_has_no_pixel_boxes_and_takes_a_threshold(cli, files):
    status, out, _ = cli("count", files / "predictions.json", "--threshold", "0.05")

    document = json.loads(out)
    assert status == 0
    assert document["count"] == 3
    assert document["by_class"] == {"0": 2, "1": 1}
    assert all("box_pixels" not in d for d in document["detections"])


def test_ground_truth_style_class_map(cli, files):
    ground_truth = {"class-map": {"0": "car", "1": "truck"}, "human-annotated": "yes"}
    (files / "metadata.json").write_text(json.dumps(ground_truth))

    status, out, _ = cli(
        "count", files / "predictions.json", "--class-map", files / "metadata.json"
    )

    assert status == 0
    assert json.loads(out)["by_class"] == {"car": 1, "truck": 1}


# RESPONSE counts car (0.95) and truck (0.5) at 0.2: a class map naming only car leaves
# class id 1 unnamed.
@pytest.mark.parametrize(
    ("option", "named", "unnamed"),
    [
        ("--class-map", {"0": "car"}, [1]),
        ("--model-record", {"0": "car"}, [1]),
        ("--class-map", {"0": "car", "1": "truck"}, []),
        (None, None, []),  # no class map: every class is called by its id, nothing to check
    ],
    ids=["class map", "model record", "every id named", "no class map"],
)
def test_class_ids_the_class_map_does_not_name_are_flagged(cli, files, option, named, unnamed):
    options = []
    if option == "--class-map":
        (files / "named.json").write_text(json.dumps(named))
        options = [option, files / "named.json"]
    elif option == "--model-record":
        (files / "named.json").write_text(json.dumps({**RECORD, "class_map": named}))
        options = [option, files / "named.json", "--threshold", "0.2"]

    status, out, err = cli("count", files / "predictions.json", *options)

    assert status == 0
    assert json.loads(out)["unnamed_class_ids"] == unnamed
    if unnamed:
        source = files / "named.json"
        if option == "--model-record":
            source = f"the class map of {source}"
        assert err == (
            f"counting: warning: {source} does not name class id 1 (it names 1 class): "
            "counted under its number; is it this model's class map?\n"
        )
    else:
        assert err == ""


def test_annotate_writes_a_png(cli, files):
    out_png = files / "out.png"
    status, _, _ = cli(
        "count", files / "predictions.json", "--image", files / "image.png", "--annotate", out_png
    )

    assert status == 0
    data = out_png.read_bytes()
    assert detect_format(data) == "png"
    assert image_size(data) == (200, 100)


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--threshold", "1.5"], "threshold must be in [0, 1], got 1.5"),
        (["--threshold", "nan"], "threshold must be in [0, 1], got nan"),
        (["--annotate", "out.png"], "--annotate needs --image: the boxes are drawn on that image"),
    ],
)
def test_bad_options_end_with_one_line_and_status_2(cli, files, extra, message):
    status, out, err = cli("count", files / "predictions.json", *extra)

    assert (status, out) == (2, "")
    assert one_error_line(err) == message


@pytest.mark.parametrize(
    ("class_map", "message"),
    [
        ("[1, 2]", 'expected a class map object like {"0": "car"}'),
        ("{}", 'expected a class map object like {"0": "car"}'),
        ('{"car": "0"}', "class id 'car' is not a whole number like \"0\""),
        ('{"01": "car"}', "class id '01' is not a whole number like \"0\""),
        ('{"0": 7}', "the name of class 0 must be text, got 7"),
        ("{oops", "not JSON"),
    ],
)
def test_bad_class_maps_are_named(cli, files, class_map, message):
    (files / "bad.json").write_text(class_map)

    status, _, err = cli("count", files / "predictions.json", "--class-map", files / "bad.json")

    assert status == 2
    assert message in one_error_line(err)


def test_bad_predictions_and_images_are_named(cli, files):
    (files / "bad.json").write_text('{"prediction": [[0, 0.5, 0, 0, 1, 1], [0, 2, 0, 0, 1, 1]]}')
    (files / "doc.pdf").write_bytes(b"%PDF-1.7\n")

    status, _, err = cli("count", files / "bad.json")
    assert status == 2
    assert one_error_line(err) == "prediction[1]: score 2 is outside [0, 1]"

    status, _, err = cli("count", files / "predictions.json", "--image", files / "doc.pdf")
    assert status == 2
    assert one_error_line(err).startswith("not a JPEG or PNG image")

    status, _, err = cli("count", files / "missing.json")
    assert status == 2
    assert "missing.json" in one_error_line(err)


CAPPED_WARNING = (
    "counting: warning: capped: the model returned 3 detections and its cap is 3 "
    "(max_detections), so the image may hold more objects than counted; raise "
    "max_detections or count it in tiles\n"
)


@pytest.mark.parametrize(
    ("cap", "capped", "warning"),
    [(3, True, CAPPED_WARNING), (4, False, ""), (None, False, "")],
    ids=["at cap", "one below", "cap unknown"],
)
def test_count_flags_a_response_at_its_cap_and_warns(cli, files, cap, capped, warning):
    # RESPONSE holds 3 detections, 2 of them at or above 0.2.
    extra = {} if cap is None else {"max_detections": cap}
    (files / "capped.json").write_text(json.dumps({**RESPONSE, **extra}))

    status, out, err = cli("count", files / "capped.json")

    assert (status, err) == (0, warning)
    assert (json.loads(out)["count"], json.loads(out)["capped"]) == (2, capped)


def test_a_cap_that_is_not_a_positive_integer_is_named(cli, files):
    (files / "bad-cap.json").write_text(json.dumps({**RESPONSE, "max_detections": 0}))

    status, out, err = cli("count", files / "bad-cap.json")

    assert (status, out) == (2, "")
    assert one_error_line(err) == "max_detections: expected a positive integer, got 0"


# invoke, against moto.


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Fake credentials and no shared AWS files, so nothing can reach a real account."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    # boto3's default session keeps the credentials it found first; start from a new one.
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)


@pytest.fixture
def runtime(aws_env, monkeypatch):
    """moto's SageMaker Runtime; yields the requests it received (headers and raw body)."""
    from moto.sagemakerruntime.responses import SageMakerRuntimeResponse

    received: list[dict] = []
    setup_class = SageMakerRuntimeResponse.setup_class

    def keep_raw_body(self, request, full_url=None, headers=None, use_raw_body=None):
        # moto 5.2.5 decodes every request body as UTF-8, which image bytes are not. Keep
        # the bytes, and hand moto Latin-1 text (any byte decodes) for its result cache key.
        setup_class(self, request, full_url, headers, use_raw_body=True)
        received.append({"headers": dict(self.headers), "body": self.raw_body})
        self.body = self.raw_body.decode("latin-1")

    monkeypatch.setattr(SageMakerRuntimeResponse, "setup_class", keep_raw_body)
    with mock_aws():
        yield received


def queue_endpoint_response(body: dict) -> None:
    """moto answers the next invoke_endpoint with ``body`` (its documented test hook)."""
    result = {"Body": json.dumps(body), "ContentType": "application/json"}
    response = requests.post(
        "http://motoapi.amazonaws.com/moto-api/static/sagemaker/endpoint-results",
        json={"results": [result], "region": REGION},
        timeout=5,
    )
    response.raise_for_status()


def test_invoke_sends_the_image_and_prints_the_count(cli, files, runtime):
    queue_endpoint_response(RESPONSE)

    status, out, err = cli(
        "invoke",
        "--endpoint",
        "counter",
        files / "image.png",
        "--region",
        REGION,
        "--class-map",
        files / "classes.json",
    )

    assert (status, err) == (0, "")
    document = json.loads(out)
    assert document["count"] == 2
    assert document["by_class"] == {"car": 1, "truck": 1}
    assert document["detections"][1]["box_pixels"] == {
        "left": 100,
        "top": 50,
        "right": 199,
        "bottom": 99,
    }
    (request,) = runtime
    # Sent re-encoded as a JPEG of the same size (under the 1,024 px the model needs).
    assert detect_format(request["body"]) == "jpeg"
    assert Image.open(io.BytesIO(request["body"])).size == (200, 100)
    assert request["headers"]["Content-Type"] == "application/x-image"
    assert request["headers"]["Accept"] == "application/json"


def test_invoke_sends_large_images_at_twice_the_models_input_side(cli, files, runtime):
    noise = Image.frombytes("RGB", (3000, 1500), random.Random(0).randbytes(3000 * 1500 * 3))
    noise.save(files / "noise.png")
    queue_endpoint_response(RESPONSE)

    status, out, _ = cli("invoke", "--endpoint", "counter", files / "noise.png")

    assert status == 0
    (request,) = runtime
    assert detect_format(request["body"]) == "jpeg"
    assert Image.open(io.BytesIO(request["body"])).size == (1024, 512)
    # Boxes are fractions, so pixels still refer to the original 3000 x 1500 image.
    assert json.loads(out)["detections"][1]["box_pixels"]["right"] == 2999


def test_invoke_flags_a_capped_answer_and_warns(cli, files, runtime):
    queue_endpoint_response({**RESPONSE, "max_detections": 3})

    status, out, err = cli("invoke", "--endpoint", "counter", files / "image.png")

    assert (status, err) == (0, CAPPED_WARNING)
    assert (json.loads(out)["count"], json.loads(out)["capped"]) == (2, True)


def test_invoke_rejects_a_bad_image_before_calling(cli, files, runtime):
    (files / "doc.pdf").write_bytes(b"%PDF-1.7\n")

    status, _, err = cli("invoke", "--endpoint", "counter", files / "doc.pdf")

    assert status == 2
    assert one_error_line(err).startswith("not a JPEG or PNG image")
    assert runtime == []


def test_invoke_reports_an_unexpected_endpoint_body(cli, files, runtime):
    queue_endpoint_response({"error": "model not loaded"})

    status, _, err = cli("invoke", "--endpoint", "counter", files / "image.png")

    assert status == 2
    assert one_error_line(err) == "missing 'prediction' list in the response"


@pytest.fixture
def seeing_runtime(runtime, monkeypatch):
    """moto's SageMaker Runtime answering each request with what a fake detector finds in
    its body: white squares at least 14 px wide in the JPEG received."""
    from moto.sagemakerruntime.models import SageMakerRuntimeBackend

    fake = FakeDetector(min_width=14)

    def invoke_endpoint(self, endpoint_name, unique_repr):
        # moto keys its answers by the request; the raw body is in it as Latin-1 text (above).
        body = json.loads(base64.b64decode(unique_repr))["Body"].encode("latin-1")
        return fake(body).decode(), "application/json", "AllTraffic", ""

    monkeypatch.setattr(SageMakerRuntimeBackend, "invoke_endpoint", invoke_endpoint)
    return fake


@pytest.fixture
def parking_lot(files):
    # 2,048 x 1,600 px, a 20 px square every 64 px from (10, 10): 32 x 25 = 800. Sent whole at
    # 1,024 px they are 10 px wide, below the fake's 14.
    path = files / "lot.jpg"
    path.write_bytes(jpeg(scene((2048, 1600), grid((2048, 1600), side=20, pitch=64, margin=10))))
    return path


def test_invoke_in_tiles_counts_the_small_objects_the_whole_image_loses(
    cli, parking_lot, seeing_runtime
):
    status, out, err = cli("invoke", "--endpoint", "counter", parking_lot, "--tiling", "off")
    assert (status, err) == (0, "")
    assert json.loads(out)["count"] == 0
    assert json.loads(out)["tiling"]["endpoint_calls"] == 1

    status, out, err = cli("invoke", "--endpoint", "counter", parking_lot, "--tiling", "on")

    assert (status, err) == (0, "")
    document = json.loads(out)
    assert document["count"] == 800
    # 5 x 4 tiles of 512 px overlapping by 102 (0.2 x 512), and the whole image.
    assert document["tiling"] == {
        "tiles": 20, "tile_side": 512, "overlap": 102, "merge": "merge",
        "whole_image_pass": True, "endpoint_calls": 21, "capped_calls": 0,
        "max_detections": None,
    }  # fmt: skip
    assert seeing_runtime.calls == 22  # 1 untiled, then 21


def test_invoke_takes_the_tile_size_and_overlap(cli, parking_lot, seeing_runtime):
    status, out, _ = cli(
        "invoke", "--endpoint", "counter", parking_lot, "--tiling", "auto",
        "--tile-size", "1024", "--tile-overlap", "0.25", "--concurrency", "3",
    )  # fmt: skip

    assert status == 0
    document = json.loads(out)
    assert document["count"] == 800
    # auto: the short side, 1,600, exceeds 3 x 512. Overlap 256 px: along 2,048,
    # ceil(1792 / 768) = 3 tiles; along 1,600, ceil(1344 / 768) = 2.
    assert (document["tiling"]["tiles"], document["tiling"]["overlap"]) == (6, 256)
    assert seeing_runtime.most_in_flight <= 3


def test_invoke_in_tiles_warns_when_tiles_reach_the_cap(cli, parking_lot, seeing_runtime):
    seeing_runtime.max_detections = 65
    # Tiles start at x 0, 384, ... 1536 (multiples of the 64 px pitch): 8 whole columns each.
    # Rows: tiles at y 0, 362 and 1088 hold 8 whole rows, 64 squares, under the cap of 65;
    # the tile at y 725 holds 7 whole rows and pieces of 2 more (9 and 11 px tall, found: the
    # fake goes by width), 72 squares, over it. The whole image shows none: 5 of 21 capped.
    status, out, err = cli("invoke", "--endpoint", "counter", parking_lot, "--tiling", "on")

    assert status == 0
    assert json.loads(out)["capped"] is True
    assert err == (
        "counting: warning: capped: 5 of 21 requests returned as many detections as the "
        "model's cap (65, max_detections), so the image may hold more objects than counted; "
        "raise max_detections or use smaller tiles (--tile-size)\n"
    )


@pytest.mark.parametrize(
    ("options", "line"),
    [
        (
            ["--tile-overlap", "0.7"],
            "tile overlap must be a fraction of the tile above 0 and at most 0.5, got 0.7",
        ),
        (["--tile-size", "8"], "tile size must be 32 to 4096 pixels, got 8"),
        (["--concurrency", "0"], "--concurrency must be at least 1, got 0"),
    ],
)
def test_invoke_refuses_bad_tiling_options_before_calling(cli, files, runtime, options, line):
    status, _, err = cli("invoke", "--endpoint", "counter", files / "image.png", *options)

    assert status == 2
    assert one_error_line(err) == line
    assert runtime == []


INVOKE_REQUEST = {
    "EndpointName": "counter",
    "ContentType": "application/x-image",
    "Accept": "application/json",
    "Body": ANY,
}


@pytest.fixture
def stubbed_runtime(aws_env, monkeypatch):
    """Make boto3.client hand out one stubbed sagemaker-runtime client.

    Returns (stubber, made): made lists the boto3.client calls, so their arguments can be
    checked.
    """
    client = boto3.client("sagemaker-runtime", region_name=REGION)
    stubber = Stubber(client)
    stubber.activate()
    made: list[dict] = []

    def fake_client(service, **kwargs):
        made.append({"service": service, **kwargs})
        return client

    monkeypatch.setattr(boto3, "client", fake_client)
    return stubber, made


@pytest.fixture
def failing_runtime(stubbed_runtime):
    """Returns (fail, made): fail(code, message) makes the next invoke_endpoint fail so."""
    stubber, made = stubbed_runtime

    def fail(code: str, message: str) -> None:
        stubber.add_client_error(
            "invoke_endpoint",
            service_error_code=code,
            service_message=message,
            expected_params=INVOKE_REQUEST,
        )

    return fail, made


@pytest.mark.parametrize(
    ("error", "line"),
    [
        (
            ("ValidationException", "Endpoint counter of account 123456789012 not found."),
            "endpoint counter: ValidationException: Endpoint counter of account 123456789012 "
            "not found.",
        ),
        (
            ("ModelError", "Received server error (500) from primary:\n  out of memory\n"),
            "endpoint counter: ModelError: Received server error (500) from primary: out of memory",
        ),
    ],
    ids=["service error", "model error over several lines"],
)
def test_invoke_maps_service_errors_to_one_line(cli, files, failing_runtime, error, line):
    fail, made = failing_runtime
    fail(*error)  # (code, message)

    status, _, err = cli("invoke", "--endpoint", "counter", files / "image.png")

    assert status == 3  # an AWS failure, not bad input
    assert one_error_line(err) == line
    (kwargs,) = made
    assert kwargs["service"] == "sagemaker-runtime"
    assert kwargs["config"].retries == {"mode": "standard"}


def test_invoke_waits_for_a_cold_endpoint_and_says_so(cli, files, stubbed_runtime, monkeypatch):
    stubber, _ = stubbed_runtime
    waits: list[float] = []
    monkeypatch.setattr(cold_start.time, "sleep", waits.append)
    for _ in range(2):
        stubber.add_client_error(
            "invoke_endpoint",
            service_error_code="ModelNotReadyException",
            service_message="Model is not ready to serve inference requests.",
            http_status_code=429,
            expected_params=INVOKE_REQUEST,
        )
    answer = json.dumps(RESPONSE).encode()
    stubber.add_response(
        "invoke_endpoint",
        {"Body": StreamingBody(io.BytesIO(answer), len(answer)), "ContentType": "application/json"},
        expected_params=INVOKE_REQUEST,
    )

    status, out, err = cli("invoke", "--endpoint", "counter", files / "image.png")

    assert status == 0
    assert json.loads(out)["count"] == 2
    assert waits == [5, 10]
    assert err.splitlines() == [
        "endpoint counter is starting (ModelNotReadyException): asking again in 5 s",
        "endpoint counter is starting (ModelNotReadyException): asking again in 10 s",
    ]
    stubber.assert_no_pending_responses()


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def test_invoke_without_a_region_says_so(cli, files, aws_env, monkeypatch):
    monkeypatch.delenv("AWS_DEFAULT_REGION")
    monkeypatch.delenv("AWS_REGION", raising=False)

    status, _, err = cli("invoke", "--endpoint", "counter", files / "image.png")

    assert status == 3  # an AWS failure, not bad input
    assert one_error_line(err) == "cannot call sagemaker-runtime: You must specify a region."


def test_invoke_without_credentials_says_so(cli, files, aws_env, monkeypatch):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    # Should credentials turn up after all, the request still goes nowhere.
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", closed_port_url())

    status, _, err = cli("invoke", "--endpoint", "counter", files / "image.png")

    assert status == 3  # an AWS failure, not bad input
    assert one_error_line(err) == "cannot call endpoint counter: Unable to locate credentials"


def test_invoke_without_network_says_so(cli, files, aws_env, monkeypatch):
    url = closed_port_url()
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", url)
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")

    status, _, err = cli("invoke", "--endpoint", "counter", files / "image.png")

    assert status == 3  # an AWS failure, not bad input
    assert one_error_line(err).startswith(
        f'cannot call endpoint counter: Could not connect to the endpoint URL: "{url}/'
    )


RECORD = {
    "endpoint_name": "object-counting-dev-counter",
    "endpoint_config_name": "object-counting-dev-20261126-173000-a1b2c3",
    "model_name": "object-counting-dev-20261126-173000-a1b2c3",
    "class_map": {"0": "car", "1": "truck"},
    "best_threshold": 0.4,
}


@pytest.mark.parametrize(
    ("record", "options", "expected"),
    [
        # RESPONSE's scores: 0.95 (car), 0.5 (truck), 0.1 (car).
        (RECORD, [], (0.4, "calibrated", 2)),
        (RECORD, ["--threshold", "0.05"], (0.05, "configured", 3)),
        ({**RECORD, "best_threshold": None}, [], (0.2, "default", 2)),
        (None, [], (0.2, "default", 2)),
        (None, ["--threshold", "0.6"], (0.6, "configured", 1)),
    ],
    ids=["calibrated", "pinned", "record without one", "no record", "no record, pinned"],
)
def test_the_threshold_comes_from_the_model_record_unless_pinned(
    cli, files, record, options, expected
):
    if record is not None:
        (files / "model.json").write_text(json.dumps(record))
        options = [*options, "--model-record", files / "model.json"]

    status, out, _ = cli("count", files / "predictions.json", *options)

    document = json.loads(out)
    assert status == 0
    assert (document["threshold"], document["threshold_origin"], document["count"]) == expected
    # The record's class names apply without --class-map.
    assert set(document["by_class"]) <= ({"car", "truck"} if record else {"0", "1"})


def test_a_broken_model_record_is_one_line(cli, files):
    (files / "model.json").write_text(json.dumps({"endpoint_name": "e"}))

    status, out, err = cli(
        "count", files / "predictions.json", "--model-record", files / "model.json"
    )

    assert (status, out) == (2, "")
    assert err == (
        f"counting: error: {files / 'model.json'}: not an active-model record: "
        "endpoint_config_name: missing\n"
    )


def test_invoke_needs_an_endpoint_or_a_record(cli, files):
    status, _, err = cli("invoke", files / "image.png")

    assert status == 2
    assert (
        err == "counting: error: name the endpoint: --endpoint NAME or --model-record MODEL.json\n"
    )
