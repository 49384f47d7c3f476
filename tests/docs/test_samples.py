"""The sample documents in docs/pipelines.md are what the code writes.

Each sample is the expected value, written and checked by hand in the docs (the counts
and pixel boxes of `examples/predictions.json` on a 640 x 480 image are worked out in
docs/counting.md); the code under test only produces the actual value.
"""

from __future__ import annotations

import json
from datetime import datetime
from decimal import Decimal

import pytest

from counting_core.contracts import published
from counting_core.counts import predictions, results
from counting_core.datasets import labeling
from counting_core.errors import InputError
from counting_core.imaging import image_formats
from counting_core.models.model_record import ActiveModel
from tests.docs.pages import PAGES, ROOT, blocks, relative, sample, sample_text
from tools.docs_tables import with_failure_table

PIPELINES = ROOT / "docs" / "pipelines.md"
EXAMPLES = ROOT / "examples"


def _image(document: dict) -> published.SourceObject:
    return published.SourceObject(**document["source"])


def test_the_counted_document_is_what_the_counter_writes_for_the_example():
    shown = sample(PIPELINES, "counted-document")
    class_map = json.loads((EXAMPLES / "classes.json").read_text())
    response = predictions.parse_response((EXAMPLES / "predictions.json").read_bytes())
    counted = predictions.count_detections(
        response.detections,
        threshold=0.2,
        threshold_origin="default",
        class_map=class_map,
        image_size=(640, 480),
        capped=response.capped,
    )
    model = published.ModelUsed(**shown["model"])

    document = results.counted_document(
        _image(shown),
        counted,
        model,
        datetime.fromisoformat(shown["counted_at"]),
        pipeline=results.PIPELINE_UPLOAD,
    )

    # Byte for byte: the page shows the file a reader finds in S3, in its field order.
    assert results.document_json(document).decode() == sample_text(PIPELINES, "counted-document")


def test_the_rejected_document_gives_the_reason_a_pdf_gets():
    shown = sample(PIPELINES, "rejected-document")
    with pytest.raises(InputError) as refused:
        image_formats.detect_format(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")

    document = results.rejected_document(
        _image(shown),
        str(refused.value),
        datetime.fromisoformat(shown["counted_at"]),
        pipeline=results.PIPELINE_UPLOAD,
    )

    assert results.document_json(document).decode() == sample_text(PIPELINES, "rejected-document")


def test_the_table_item_is_the_counted_documents():
    shown = sample(PIPELINES, "table-item")
    document = published.RESULT_DOCUMENT.validate_json(sample_text(PIPELINES, "counted-document"))

    item = results.dynamodb_item(results.table_item(document))

    assert item == {**shown, "threshold": Decimal(str(shown["threshold"]))}
    # Read back as DynamoDB returns it (numbers as Decimal), the item is the contract's.
    assert published.TableItem.model_validate(item).model_dump(exclude_none=True) == shown


def test_the_active_model_record_is_one_the_counter_reads():
    shown = sample(PIPELINES, "active-model")

    record = ActiveModel.model_validate(shown)

    assert record.model_dump(include=set(shown)) == shown
    # Every field, the run's count evaluation included.
    assert set(ActiveModel.model_fields) == set(shown)


def test_the_labeling_request_is_one_the_launcher_accepts():
    shown = sample(ROOT / "docs" / "labeling.md", "labeling-request")

    request = labeling.parse_request(shown, bucket="amzn-s3-demo-bucket")

    assert request.model_dump(include=set(shown)) == shown


@pytest.mark.parametrize("page", PAGES, ids=relative)
def test_every_json_block_is_json(page):
    for block in blocks(page):
        if block.language == "json":
            json.loads("\n".join(block.lines))


def test_the_failure_table_in_the_docs_is_the_counters():
    page = (ROOT / "docs" / "counting.md").read_text()

    assert with_failure_table(page) == page, "docs/counting.md is out of date: run make docs"
