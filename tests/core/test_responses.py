"""Matching Batch Transform outputs to images, as the evaluation and bulk counting share it."""

from __future__ import annotations

import pytest

from counting_core.counts import bulk, responses
from counting_core.errors import InputError


def selected(*keys: str) -> list[bulk.Selected]:
    return [bulk.Selected(key=key, etag=None) for key in keys]


def test_images_without_a_response_are_handed_back_not_refused():
    east, west = selected("archive/east/a.png", "archive/west/b.png")

    matched, unanswered, left_over = responses.pair_responses(
        [east, west], ["archive/east/a.png.out", "other.png.out"]
    )

    assert matched == {"archive/east/a.png": "archive/east/a.png.out"}
    assert unanswered == [west]
    assert left_over == ["other.png.out"]


def test_the_response_whose_folders_match_more_of_the_key_wins():
    images = selected("archive/2026/east/a.png")

    matched, _, left_over = responses.pair_responses(
        images, ["west/a.png.out", "2026/east/a.png.out"]
    )

    # "2026/east" shares two folders with the key, "west" none.
    assert matched == {"archive/2026/east/a.png": "2026/east/a.png.out"}
    assert left_over == ["west/a.png.out"]


def test_one_response_for_two_images_named_alike_is_refused():
    with pytest.raises(InputError, match=r"share the file name a\.png"):
        responses.pair_responses(
            selected("archive/east/a.png", "archive/west/a.png"), ["a.png.out"]
        )


def test_match_responses_still_refuses_an_image_without_a_response():
    with pytest.raises(
        InputError, match=r"no response for image archive/a\.png: expected a\.png\.out"
    ):
        responses.match_responses(selected("archive/a.png"), [])
