"""JSON from files people hand in: bounded before it is parsed, and errors that say what is wrong.

Every JSON document this project reads from outside (a manifest line, a COCO export, a
labeling request) goes through ``loads``. Before the parser runs it refuses documents
nested deeper than ``MAX_DEPTH`` and numbers longer than ``MAX_NUMBER_LENGTH`` characters,
so that no input can exhaust the stack or spend the CPU converting a 5,000-digit integer.
Neither limit is near what a real document needs: a manifest line nests 5 levels deep, a
COCO export 5 (polygons), a request 3; a number written by any JSON encoder from a double
has at most 24 characters ("-2.2250738585072014e-308").

Parsing is pydantic_core's ``from_json`` (installed with pydantic, which every part of
this project uses): it reads a manifest line about twice as fast as the json module.
Messages carry no location prefix: callers add theirs ("line 7: ").
"""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic_core import from_json

from counting_core.errors import InputError

MAX_DEPTH = 32
#: Editors on Windows save UTF-8 with this mark; JSON parsers "MAY ignore" it (RFC 8259,
#: section 8.1), and people cannot see it, so a whole document may start with it.
UTF8_BOM = b"\xef\xbb\xbf"
MAX_NUMBER_LENGTH = 40

# Every byte a JSON number can hold becomes "0": a run of MAX_NUMBER_LENGTH + 1 of them may
# be a number too long (or only a long string of such characters: the exact check decides).
_NUMBER_BYTES = bytes.maketrans(b"123456789+-.eE", b"0" * 14)
_LONG_RUN = b"0" * (MAX_NUMBER_LENGTH + 1)
# Strings (skipped whole, escapes included) and brackets: enough to measure nesting.
_STRING_OR_BRACKET = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)
# First bytes that say what a file that is not UTF-8 is instead: gzip's header (ID1 31,
# ID2 139; RFC 1952, section 2.3.1) and UTF-16's byte-order mark U+FEFF in either byte order
# (what Windows editors save as "Unicode").
_UTF16 = "UTF-16: save it as UTF-8"
_NOT_UTF8_STARTS = (
    (b"\x1f\x8b", "gzip-compressed data: decompress it first"),
    (b"\xff\xfe", _UTF16),
    (b"\xfe\xff", _UTF16),
)
# Where pydantic_core's messages place a problem.
_LOCATION = re.compile(r" at line (\d+) column (\d+)$")


class JsonInputError(InputError):
    """A document that is not JSON, or exceeds this module's bounds; the message says which."""


def loads(data: bytes, *, within: str = "file") -> Any:
    """Parse ``data`` (UTF-8 JSON) within ``MAX_DEPTH`` and ``MAX_NUMBER_LENGTH``.

    NaN and Infinity are refused (they are not JSON); a number beyond a double's range
    reads as infinity, as with the json module: callers check the numbers they use.

    ``within`` names the text in messages ("file", "line", "request"); for "line" a
    problem's place is given by column only. A whole document may start with ``UTF8_BOM``;
    a line may not (manifest readers strip it from a file's first line themselves).
    """
    if within != "line":
        data = data.removeprefix(UTF8_BOM)
    _check_depth(data)
    if _LONG_RUN in data.translate(_NUMBER_BYTES):
        return _loads_checking_numbers(data, within)
    try:
        return from_json(data, allow_inf_nan=False, cache_strings="keys")
    except ValueError as error:
        raise JsonInputError(_describe(str(error), data, within)) from None


def lone_surrogate(value: Any, path: str = "") -> str | None:
    """Where in parsed JSON a string holds a lone surrogate (``"\\ud800"`` is valid JSON but
    no Unicode text: it cannot be written as UTF-8), or None."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "the document"
        return None
    items = (
        value.items()
        if isinstance(value, dict)
        else enumerate(value)
        if isinstance(value, list)
        else ()
    )
    for name, item in items:
        where = f"{path}[{name}]" if isinstance(name, int) else f"{path}.{name}" if path else name
        if isinstance(name, str) and lone_surrogate(name) is not None:
            return where
        if (found := lone_surrogate(item, where)) is not None:
            return found
    return None


def json_type(value: object) -> str:
    """``value``'s JSON type with its article, for messages: "an array", "null"."""
    names = {dict: "an object", list: "an array", str: "a string", bool: "true or false"}
    if value is None:
        return "null"
    return names.get(type(value), "a number")


def _describe(message: str, data: bytes, within: str) -> str:
    location = _LOCATION.search(message)
    problem = message[: location.start()] if location else message
    line, column = (int(location[1]), int(location[2])) if location else (1, 1)
    where = f"column {column}" if within == "line" else f"line {line} column {column}"
    if not data.strip():
        return f"the {within} is empty"
    if problem.startswith("trailing characters") and within == "line":
        return f"two JSON values on one line: the second starts at {where}"
    if problem.startswith("trailing characters"):
        return (
            f"more than one JSON value: another one starts at {where} (JSON Lines, or a "
            f"second document after the first? A {within} here is one JSON object)"
        )
    if problem.startswith("EOF while parsing"):
        return (
            f"the {within} ends at {where} before its JSON is complete: it looks cut off "
            "(an interrupted download or copy?)"
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as error:
        return _not_utf8(data, error)
    if "hex escape" in problem:
        problem = "a \\u escape that is half of a character (a lone surrogate: broken Unicode)"
    return f"not valid JSON: {problem} at {where}"


def _not_utf8(data: bytes, error: UnicodeDecodeError) -> str:
    for start, kind in _NOT_UTF8_STARTS:
        if data.startswith(start):
            return f"not UTF-8 text but {kind}"
    return f"not UTF-8 text (byte {error.start + 1})"


def _check_depth(data: bytes) -> None:
    # Nesting cannot exceed the number of opening brackets: most documents stop here.
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return
    depth = 0
    for match in _STRING_OR_BRACKET.finditer(data):
        token = match.group()
        if token in (b"[", b"{"):
            depth += 1
            if depth > MAX_DEPTH:
                raise JsonInputError(
                    f"JSON nested more than {MAX_DEPTH} levels deep (at byte {match.start() + 1})"
                )
        elif token in (b"]", b"}"):
            depth -= 1


def _loads_checking_numbers(data: bytes, within: str) -> Any:
    """The json module, whose hooks see each number's text before it is converted."""
    try:
        return json.loads(
            data, parse_int=_bounded_int, parse_float=_bounded_float, parse_constant=_no_constant
        )
    except json.JSONDecodeError as error:
        message = {"Extra data": "trailing characters"}.get(error.msg, error.msg)
        if error.pos >= len(error.doc.rstrip()):
            message = "EOF while parsing"
        raise JsonInputError(
            _describe(f"{message} at line {error.lineno} column {error.colno}", data, within)
        ) from None
    except UnicodeDecodeError as error:
        raise JsonInputError(_not_utf8(data, error)) from None
    except ValueError as error:  # raised by the hooks below
        raise JsonInputError(str(error)) from None


def _check_length(text: str) -> None:
    if len(text) > MAX_NUMBER_LENGTH:
        raise ValueError(
            f"a number of {len(text):,} characters ({text[:12]}...): "
            f"numbers have at most {MAX_NUMBER_LENGTH} here"
        )


def _bounded_int(text: str) -> int:
    _check_length(text)
    return int(text)


def _bounded_float(text: str) -> float:
    _check_length(text)
    return float(text)


def _no_constant(name: str) -> float:
    raise ValueError(f"{name} is not a JSON number")
