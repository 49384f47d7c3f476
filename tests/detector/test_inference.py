"""detector.inference: the handlers the PyTorch inference container calls, their answer read
by the counters' own parser."""

from __future__ import annotations

import io
import json

import pytest

from tests.detector.torch_required import require_torch

require_torch()

import torch  # noqa: E402
from torch import nn  # noqa: E402

from counting_core.counts.predictions import Detection, count_detections, parse_response  # noqa: E402
from detector import inference  # noqa: E402
from detector.inference import LoadedModel  # noqa: E402
from tests.conftest import MakeImage  # noqa: E402


class FixedAnswer(nn.Module):
    """Stands in for a detector: answers the same boxes, in pixels of the image it got."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: list[tuple[int, int]] = []

    def forward(self, images: list[torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        height, width = images[0].shape[1:]
        self.sizes.append((width, height))
        scale = width / 200
        return [
            {
                # Unsorted, as a model may give them; labels from 1 (0 is the background).
                "boxes": torch.tensor([[10.0, 20, 110, 70], [0, 0, 200, 100]]) * scale,
                "labels": torch.tensor([2, 1]),
                "scores": torch.tensor([0.5, 0.9]),
            }
        ]


def answer(image: bytes, content_type: str, image_size: int) -> tuple[dict, FixedAnswer]:
    network = FixedAnswer()
    model = LoadedModel(network, image_size=image_size, max_detections=1000)
    request = inference.input_fn(image, content_type)
    body = inference.output_fn(inference.predict_fn(request, model), "application/json")
    return json.loads(body), network


def test_boxes_become_fractions_with_class_ids_from_zero_best_score_first(make_image: MakeImage):
    response, _ = answer(make_image("JPEG", (200, 100)), "image/jpeg", image_size=512)

    # [10, 20, 110, 70] on 200 x 100 -> x 0.05..0.55, y 0.2..0.7; label 2 -> class id 1.
    assert response == {
        "prediction": [[0, 0.9, 0.0, 0.0, 1.0, 1.0], [1, 0.5, 0.05, 0.2, 0.55, 0.7]],
        "max_detections": 1000,
    }


def test_an_image_larger_than_the_model_size_is_shrunk_first(make_image: MakeImage):
    response, network = answer(make_image("PNG", (800, 400)), "image/png", image_size=200)

    # 800 x 400 shrunk to 200 on its longest side: 200 x 100; fractions as before.
    assert network.sizes == [(200, 100)]
    assert response["prediction"][1] == [1, 0.5, 0.05, 0.2, 0.55, 0.7]


def test_a_photo_stored_sideways_is_seen_upright_as_the_counter_sends_it():
    # Stored 100 x 200 with EXIF orientation 6 (turn a quarter clockwise to show it):
    # upright it is 200 x 100, the size the counter would send after applying the tag.
    from PIL import Image

    stored = io.BytesIO()
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.new("RGB", (100, 200), (128, 128, 128)).save(stored, "JPEG", exif=exif)

    response, network = answer(stored.getvalue(), "image/jpeg", image_size=512)

    assert network.sizes == [(200, 100)]
    assert response["prediction"][1] == [1, 0.5, 0.05, 0.2, 0.55, 0.7]


def test_the_counters_parser_reads_the_answer(make_image: MakeImage):
    response, _ = answer(make_image("PNG", (200, 100)), "application/x-image", image_size=512)

    parsed = parse_response(json.dumps(response))

    assert parsed.detections == [
        Detection(0, 0.9, 0.0, 0.0, 1.0, 1.0),
        Detection(1, 0.5, 0.05, 0.2, 0.55, 0.7),
    ]
    # Two boxes under a cap of 1,000: not capped.
    assert (parsed.max_detections, parsed.capped) == (1000, False)
    assert count_detections(parsed.detections, threshold=0.6).count == 1


def test_a_content_type_with_parameters_is_still_an_image(make_image: MakeImage):
    response, _ = answer(make_image("JPEG", (200, 100)), "Image/JPEG; q=1", image_size=512)

    assert response["prediction"][1] == [1, 0.5, 0.05, 0.2, 0.55, 0.7]


def test_other_content_types_are_refused_by_name():
    with pytest.raises(ValueError, match=r"^content type 'text/csv' is not served: send "):
        inference.input_fn(b"1,2,3", "text/csv")


def test_a_request_without_a_content_type_is_refused_by_name():
    with pytest.raises(ValueError, match=r"^content type None is not served: send "):
        inference.input_fn(b"\xff\xd8", None)


def test_only_json_is_answered():
    with pytest.raises(ValueError, match=r"^accept 'text/csv' is not served"):
        inference.output_fn({"prediction": []}, "text/csv")


@pytest.mark.parametrize("accept", ["application/json; charset=utf-8", "*/*", None])
def test_json_is_answered_to_any_way_of_asking_for_it(accept):
    assert inference.output_fn({"prediction": []}, accept) == '{"prediction":[]}'
