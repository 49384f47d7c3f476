"""Result keys within S3's limit and table items within DynamoDB's."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from counting_core.contracts import published
from counting_core.counts import results
from counting_core.counts.predictions import Detection, count_detections
from counting_core.errors import InputError
from counting_core.models.model_record import ActiveModel

WHEN = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
MODEL = published.ModelUsed(
    endpoint_name="endpoint", endpoint_config_name="config-1", model_name="model-1"
)


def key_of_bytes(total: int, suffix: str = ".jpg") -> str:
    """An incoming key whose UTF-8 encoding is exactly ``total`` bytes (with 2-byte letters)."""
    stem = total - len("incoming/") - len(suffix)
    return "incoming/" + "é" * (stem // 2) + "a" * (stem % 2) + suffix


def test_the_longest_countable_key_leaves_its_annotated_key_at_1024_bytes():
    # annotated/<rest>.png is 14 bytes longer than <rest> and 5 longer than incoming/<rest>.
    longest = key_of_bytes(1024 - 5)
    assert len(results.annotated_key(longest).encode()) == 1024
    results.check_derived_keys(longest)

    with pytest.raises(InputError, match="annotated/ key would be 1025 bytes"):
        results.check_derived_keys(key_of_bytes(1024 - 4))


def counted_item(by_class_ids: int) -> dict:
    """The item as it is sent to DynamoDB."""
    detections = [Detection(class_id, 0.9, 0.1, 0.1, 0.2, 0.2) for class_id in range(by_class_ids)]
    class_map = {str(class_id): f"class-{class_id:06d}" for class_id in range(by_class_ids)}
    result = count_detections(detections, class_map=class_map, threshold_origin="default")
    image = published.SourceObject(
        bucket="bucket", key="incoming/a.jpg", version_id="v1", etag="etag"
    )
    document = results.counted_document(
        image, result, MODEL, WHEN, pipeline=results.PIPELINE_UPLOAD
    )
    return results.dynamodb_item(results.table_item(document))


def test_an_item_with_100000_classes_stays_under_400_kb():
    item = counted_item(100_000)

    assert results.item_size_bytes(item) < results.MAX_ITEM_BYTES
    assert results.item_size_bytes(item["by_class"], "by_class") <= results.BY_CLASS_ITEM_BYTES + 20
    assert item["classes_in_result_only"] == 100_000 - len(item["by_class"])
    assert item["count"] == 100_000


def test_an_ordinary_item_keeps_every_class():
    item = counted_item(3)

    assert item["by_class"] == {"class-000000": 1, "class-000001": 1, "class-000002": 1}
    assert "classes_in_result_only" not in item


def test_the_biggest_classes_are_kept():
    detections = [Detection(0, 0.9, 0, 0, 1, 1)] * 5 + [Detection(1, 0.9, 0, 0, 1, 1)]
    by_class = count_detections(detections, class_map={"0": "car", "1": "bus"}).by_class
    one_entry = results.item_size_bytes(5, "car") + 1

    kept = results.largest_classes(by_class, one_entry, results.item_size_bytes)

    assert kept == {"car": 5}


@pytest.mark.parametrize(
    ("value", "name", "size"),
    [
        # Examples worked from the DynamoDB developer guide's rules.
        ("abc", "s", 4),
        ("é", "", 2),
        (12345, "n", 1 + 3 + 1),
        (True, "flag", 5),
        ({"a": 1}, "m", 1 + 3 + (1 + 2) + 1),
        (["x", "y"], "l", 1 + 3 + 2 * (1 + 1)),
    ],
)
def test_item_sizes_follow_the_documented_rules(value, name, size):
    assert results.item_size_bytes(value, name) == size


def test_a_long_rejection_reason_is_cut_in_the_item_only():
    image = published.SourceObject(
        bucket="bucket", key="incoming/a.jpg", version_id=None, etag="etag"
    )
    document = results.rejected_document(image, "x" * 5000, WHEN, pipeline=results.PIPELINE_UPLOAD)

    # REASON_ITEM_CHARACTERS: reasons are cut to 1,000 characters in the item.
    assert len(results.table_item(document).reason or "") == 1000
    assert len(document.reason) == 5000


def test_a_capped_count_is_flagged_in_the_document_and_the_item():
    # Three detections and a cap of 3: the model may have dropped more.
    response = '{"prediction": [[0, 0.9, 0, 0, 1, 1], [0, 0.5, 0, 0, 1, 1], [0, 0.1, 0, 0, 1, 1]], '
    document, result = results.count_response(
        published.SourceObject(bucket="bucket", key="incoming/a.jpg", version_id="v1", etag="etag"),
        response + '"max_detections": 3}',
        model=ActiveModel(endpoint_name="e", endpoint_config_name="c", model_name="m"),
        configured_threshold=0.2,
        image_size=(10, 10),
        counted_at=WHEN,
        pipeline=results.PIPELINE_UPLOAD,
    )

    # 0.9 and 0.5 count at 0.2; the cap counts all three.
    assert (result.count, result.capped, document.count, document.capped) == (2, True, 2, True)
    assert b'"capped": true' in results.document_json(document)
    assert results.dynamodb_item(results.table_item(document))["capped"] is True


def test_a_document_written_before_the_flag_reads_as_not_capped():
    # A counted document as the counter wrote it before `capped` existed.
    old = {
        "status": "counted",
        "pipeline": "upload",
        "source": {"bucket": "bucket", "key": "incoming/a.jpg", "version_id": None, "etag": "e"},
        "image_size": {"width": 10, "height": 10},
        "model": {"endpoint_name": "e", "endpoint_config_name": "c", "model_name": "m"},
        "counted_at": "2026-11-29T12:00:00+00:00",
        "count": 0,
        "by_class": {},
        "threshold": 0.2,
        "threshold_origin": "default",
        "detections": [],
    }

    document = published.RESULT_DOCUMENT.validate_python(old)

    assert document.capped is False
    assert results.dynamodb_item(results.table_item(document))["capped"] is False


def test_a_rejected_item_holds_no_count_fields():
    image = published.SourceObject(
        bucket="bucket", key="incoming/a.jpg", version_id=None, etag=None
    )
    document = results.rejected_document(image, "image is empty", WHEN, pipeline="bulk")

    assert results.dynamodb_item(results.table_item(document)) == {
        "image": "s3://bucket/incoming/a.jpg",
        "version": "-",
        "status": "rejected",
        "pipeline": "bulk",
        "counted_at": "2026-11-29T12:00:00+00:00",
        "reason": "image is empty",
    }


def test_a_document_outside_the_contract_is_refused():
    image = published.SourceObject(
        bucket="bucket", key="incoming/a.jpg", version_id=None, etag=None
    )

    with pytest.raises(ValidationError, match="pipeline"):
        results.rejected_document(image, "image is empty", WHEN, pipeline="cli")  # type: ignore[arg-type]
