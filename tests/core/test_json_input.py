"""Bounded JSON for files people hand in: limits checked before parsing, errors that say why."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from counting_core import json_input
from tests.core.manifest_fixtures import json_values


@given(json_values)
def test_json_within_the_bounds_reads_as_the_json_module_reads_it(value):
    text = json.dumps(value, allow_nan=False) if _finite(value) else "null"

    assert json_input.loads(text.encode()) == json.loads(text)


@given(st.binary(max_size=64) | st.text(max_size=64).map(str.encode))
def test_any_bytes_give_a_value_or_one_json_input_error(data):
    message = ""
    try:
        json_input.loads(data)
    except json_input.JsonInputError as error:
        message = str(error)

    assert "\n" not in message


@pytest.mark.parametrize(
    ("depth", "refused"),
    [(json_input.MAX_DEPTH, False), (json_input.MAX_DEPTH + 1, True)],
)
def test_depth_is_bounded_at_the_limit(depth, refused):
    # Brackets inside a string do not count.
    text = b'{"a": "' + b"[" * 100 + b'", "b": ' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"

    if refused:
        with pytest.raises(json_input.JsonInputError, match="nested more than 32 levels deep"):
            json_input.loads(text)
    else:
        assert json_input.loads(text)["a"] == "[" * 100


@pytest.mark.parametrize(
    ("number", "refused"),
    [
        (b"1" * json_input.MAX_NUMBER_LENGTH, False),
        (b"1" * (json_input.MAX_NUMBER_LENGTH + 1), True),
        (b"0." + b"5" * 39, True),
        (b"1e308", False),
        (b"1e309", False),  # infinity, as json reads it: callers check what they use
    ],
)
def test_numbers_are_bounded_before_they_are_converted(number, refused):
    text = b'{"n": ' + number + b', "s": "' + b"9" * 100 + b'"}'

    if refused:
        with pytest.raises(json_input.JsonInputError, match=r"^a number of 4\d characters"):
            json_input.loads(text)
    else:
        assert json_input.loads(text)["n"] == json.loads(number)


def _finite(value) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return False
    return True


def test_a_document_may_start_with_a_byte_order_mark_and_a_line_may_not():
    saved_on_windows = b'\xef\xbb\xbf{"batch_name": "street"}'

    assert json_input.loads(saved_on_windows) == {"batch_name": "street"}
    with pytest.raises(json_input.JsonInputError, match="not valid JSON"):
        json_input.loads(saved_on_windows, within="line")
