"""Bounded JSON for files people hand in: limits checked before parsing, errors that say why."""

from __future__ import annotations

import gzip
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


@pytest.mark.parametrize(
    ("data", "message"),
    [
        # gzip's header starts with ID1 31, ID2 139 (RFC 1952, section 2.3.1).
        (gzip.compress(b'{"a": 1}'), "not UTF-8 text but gzip-compressed data: decompress it"),
        # What Windows' Notepad saves as "Unicode" (UTF-16 LE) and "Unicode big endian":
        # the byte-order mark U+FEFF in that byte order, then the text.
        (b"\xff\xfe" + '{"a": 1}'.encode("utf-16-le"), "not UTF-8 text but UTF-16: save it as"),
        (b"\xfe\xff" + '{"a": 1}'.encode("utf-16-be"), "not UTF-8 text but UTF-16: save it as"),
        (b'{"a": "caf\xe9"}', "not UTF-8 text (byte 11)"),
    ],
    ids=["gzip", "utf-16-le", "utf-16-be", "latin-1"],
)
def test_text_that_is_not_utf_8_says_what_it_is_when_its_first_bytes_tell(data, message):
    with pytest.raises(json_input.JsonInputError) as refused:
        json_input.loads(data)

    assert str(refused.value).startswith(message)
