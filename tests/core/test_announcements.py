"""Result events: their detail, PutEvents' limits, and retrying refused entries."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from counting_core.contracts import published
from counting_core.contracts.published import CountedDocument
from counting_core.counts import announcements, results
from counting_core.errors import InputError
from counting_core.models.model_record import ActiveModel

SOURCE = "object-counting-dev.counting"
IMAGE = published.SourceObject(
    bucket="counting-data", key="incoming/street/cam1.png", version_id="v1", etag="e1"
)
MODEL = ActiveModel(
    endpoint_name="object-counting-dev-counter",
    endpoint_config_name="run-1",
    model_name="run-1",
    class_map={"0": "car"},
)
NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)


def counted(**extra: object) -> CountedDocument:
    """Two detections, one above the threshold; ``extra`` keys join the response."""
    response = {"prediction": [[0, 0.9, 0.1, 0.1, 0.4, 0.4], [0, 0.1, 0.5, 0.5, 0.6, 0.6]]}
    document, _ = results.count_response(
        IMAGE,
        json.dumps({**response, **extra}),
        model=MODEL,
        configured_threshold=0.2,
        image_size=(200, 100),
        counted_at=NOW,
        pipeline=results.PIPELINE_UPLOAD,
    )
    return document


def test_a_counted_image_is_announced_with_its_count_and_where_to_find_it():
    entry = announcements.entry(counted(), source=SOURCE, annotated=True)

    assert (entry["Source"], entry["DetailType"], entry["EventBusName"]) == (
        SOURCE,
        "Image Counted",
        "default",
    )
    assert json.loads(entry["Detail"]) == {
        "image": "s3://counting-data/incoming/street/cam1.png",
        "version": "v1",
        "pipeline": "upload",
        "count": 1,
        "capped": False,
        "by_class": {"car": 1},
        "threshold": 0.2,
        "threshold_origin": "configured",
        "model": {
            "endpoint_name": "object-counting-dev-counter",
            "endpoint_config_name": "run-1",
            "model_name": "run-1",
        },
        "result": "s3://counting-data/results/street/cam1.png.json",
        "annotated": "s3://counting-data/annotated/street/cam1.png.png",
        "counted_at": "2026-11-29T12:00:00+00:00",
    }


def test_a_models_calibrated_threshold_is_used_and_named_when_none_is_pinned():
    calibrated = MODEL.model_copy(update={"best_threshold": 0.05})
    document, _ = results.count_response(
        IMAGE,
        b'{"prediction": [[0, 0.1, 0.1, 0.1, 0.4, 0.4]]}',
        model=calibrated,
        configured_threshold=None,
        image_size=(200, 100),
        counted_at=NOW,
        pipeline=results.PIPELINE_BULK,
    )

    assert (document.count, document.threshold) == (1, 0.05)
    assert (document.threshold_origin, document.pipeline) == ("calibrated", "bulk")


@pytest.mark.parametrize(("cap", "capped"), [(2, True), (3, False)])
def test_the_counted_event_says_whether_the_count_is_capped(cap, capped):
    # Two detections: a cap of 2 was reached (though only one counts at 0.2), 3 was not.
    detail = json.loads(
        announcements.entry(counted(max_detections=cap), source=SOURCE, annotated=False)["Detail"]
    )

    assert (detail["count"], detail["capped"]) == (1, capped)


def test_a_rejected_image_is_announced_with_the_reason():
    document = results.rejected_document(
        IMAGE, "image is empty", NOW, pipeline=results.PIPELINE_BULK
    )

    entry = announcements.entry(document, source=SOURCE, annotated=False)

    assert entry["DetailType"] == "Image Rejected"
    assert json.loads(entry["Detail"]) == {
        "image": "s3://counting-data/incoming/street/cam1.png",
        "version": "v1",
        "pipeline": "bulk",
        "reason": "image is empty",
        "result": "s3://counting-data/results/street/cam1.png.json",
        "counted_at": "2026-11-29T12:00:00+00:00",
    }


def test_the_model_answer_that_is_not_json_is_an_input_error():
    with pytest.raises(InputError, match="response is not JSON"):
        results.count_response(
            IMAGE,
            b"<html>",
            model=MODEL,
            configured_threshold=0.2,
            image_size=(1, 1),
            counted_at=NOW,
            pipeline=results.PIPELINE_UPLOAD,
        )


def entries(count: int, detail_bytes: int = 10) -> list[dict]:
    return [
        {"Source": SOURCE, "DetailType": "Image Counted", "Detail": "x" * detail_bytes}
        for _ in range(count)
    ]


def test_requests_hold_at_most_ten_entries():
    assert [len(request) for request in announcements.requests(entries(23))] == [10, 10, 3]


def test_requests_stay_under_256_kb():
    # Each entry: 28 bytes of source and detail-type plus 100,000 of detail.
    sizes = [len(request) for request in announcements.requests(entries(5, 100_000))]

    assert sizes == [2, 2, 1]


def test_an_entry_too_large_for_any_request_is_an_error():
    with pytest.raises(ValueError, match="exceeds PutEvents"):
        list(announcements.requests(entries(1, 256 * 1024)))


class Bus:
    """put_events answering with the given per-entry error codes, call after call."""

    def __init__(self, *answers: list[str | None]) -> None:
        self.answers = list(answers)
        self.calls: list[list[str]] = []

    def put_events(self, Entries):
        self.calls.append([entry["Detail"] for entry in Entries])
        codes = self.answers.pop(0) if self.answers else [None] * len(Entries)
        return {
            "FailedEntryCount": sum(code is not None for code in codes),
            "Entries": [
                {"ErrorCode": code, "ErrorMessage": "no"} if code else {"EventId": "id"}
                for code in codes
            ],
        }


def numbered(count: int) -> list[dict]:
    return [
        {"Source": SOURCE, "DetailType": "Image Counted", "Detail": str(number)}
        for number in range(count)
    ]


def test_only_refused_entries_are_sent_again():
    bus = Bus([None, "ThrottlingException", None])
    waits = []

    refused = announcements.publish(numbered(3), bus.put_events, sleep=waits.append)

    assert refused == {}
    assert bus.calls == [["0", "1", "2"], ["1"]]
    assert waits == [0.2]  # one retry, after the first backoff: 0.2 s


def test_entries_still_refused_after_every_attempt_are_named_and_hold_back_no_other():
    # 12 entries: two requests. The 11th (index 10, the second request's first) is refused
    # every time; every other entry goes through on the first try.
    refusals = [[None] * 10, ["InternalFailure", None]] + [["InternalFailure"]] * 3
    bus = Bus(*refusals)

    refused = announcements.publish(numbered(12), bus.put_events, sleep=lambda _: None)

    assert refused == {10: "InternalFailure"}
    # Its three retries, after its first attempt (four in all).
    assert bus.calls[2:] == [["10"]] * 3


def test_an_event_of_many_classes_keeps_the_biggest_within_its_budget(monkeypatch):
    # 3 classes of 40-character names; a budget for 2 entries of the JSON
    # "<40 characters>":N plus a comma: 2 * (42 + 1 + 1 + 1) = 90 bytes. "b..." (3 objects)
    # and "c..." (2) are kept, "a..." (1) is left to the result document.
    document = counted().model_copy(
        update={"by_class": {"a" * 40: 1, "b" * 40: 3, "c" * 40: 2}, "count": 6}
    )
    monkeypatch.setattr(announcements, "BY_CLASS_EVENT_BYTES", 90)

    detail = announcements.event_detail(document, annotated=False)

    assert detail.by_class == {"b" * 40: 3, "c" * 40: 2}
    assert detail.classes_in_result_only == 1
