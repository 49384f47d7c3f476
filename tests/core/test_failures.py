"""The counter's failure table: each row against the function that applies it."""

from __future__ import annotations

from collections import Counter

import pytest

from counting_core.uploads import failures
from counting_core.uploads.failures import Fate
from tools.docs_tables import failure_table

REJECTED, RETRIED = Fate.REJECTED, Fate.RETRIED


@pytest.mark.parametrize(
    ("code", "original_status", "fate"),
    [
        # The model's container refused this input: never countable.
        ("ModelError", 400, REJECTED),
        ("ModelError", 413, REJECTED),
        ("ModelError", 415, REJECTED),
        ("ModelError", 422, REJECTED),
        # "Later", not "never".
        ("ModelError", 408, RETRIED),
        ("ModelError", 429, RETRIED),
        ("ModelError", 500, RETRIED),
        ("ModelError", 503, RETRIED),
        ("ModelError", None, RETRIED),
        # SageMaker Runtime's own errors (botocore service model) and throttling.
        ("ModelNotReadyException", None, RETRIED),
        ("ThrottlingException", None, RETRIED),
        ("InternalFailure", None, RETRIED),
        ("ServiceUnavailable", None, RETRIED),
        ("InternalDependencyException", None, RETRIED),
        ("ValidationError", None, RETRIED),
        # A 4xx status on anything but ModelError is not the container's verdict.
        ("ValidationError", 400, RETRIED),
    ],
)
def test_endpoint_errors(code, original_status, fate):
    assert failures.endpoint_error(code, original_status) is fate


@pytest.mark.parametrize(
    ("code", "fate"),
    [
        ("NoSuchKey", REJECTED),
        ("NoSuchVersion", REJECTED),
        ("AccessDenied", RETRIED),
        ("KMS.DisabledException", RETRIED),
        ("SlowDown", RETRIED),
        ("InternalError", RETRIED),
    ],
)
def test_read_errors(code, fate):
    assert failures.read_error(code) is fate


def test_the_table_has_every_fate_but_counted_and_no_repeated_row():
    assert {rule.fate for rule in failures.RULES} == set(Fate) - {Fate.COUNTED}
    repeated = Counter(rule.failure for rule in failures.RULES)
    assert [failure for failure, rows in repeated.items() if rows > 1] == []


def test_the_markdown_table_has_one_line_per_rule():
    lines = failure_table().splitlines()

    assert lines[0] == "| Failure | What the counter does |"
    # The header and its rule line, then 3 messages dead-lettered or ignored, 9 rejected,
    # 8 retried and 2 handed back: 2 + 3 + 9 + 8 + 2 = 24 lines.
    assert len(lines) == 24
    assert "| Corrupt or truncated image | rejected |" in lines
