"""Requests held to botocore's model of an AWS API, the way the service itself holds them.

botocore's own ``ParamValidator`` checks member names, nesting, required members, types
and minimums, and skips the rest: maximums, enums and patterns. ``problems`` checks all of
them, so a request it passes is one the service's input validation accepts too.

Patterns: AWS's models write them as Java regular expressions, and SageMaker validates a
whole value against one (a ``TaskDescription`` of ``.+`` refuses a line break). So a value
must match in full, and ``.`` matches no line terminator, as in Java. The ``regex`` module
reads the Unicode classes (``\\p{L}``) the models use.
https://docs.oracle.com/javase/8/docs/api/java/util/regex/Pattern.html#lt
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

import botocore.session
import regex
from botocore.model import OperationModel, Shape
from botocore.validate import ParamValidator


class _Unknown:
    """A value known only at run time (a ``.$`` parameter, a JSONata expression)."""

    def __repr__(self) -> str:
        return "<known at run time>"

    def __deepcopy__(self, _memo: dict) -> _Unknown:
        return self  # one sentinel, even in copies of a request


UNKNOWN = _Unknown()

# Java's line terminators, which its "." does not match (Pattern: "Line terminators").
_JAVA_DOT = r"[^\n\r\u0085\u2028\u2029]"
_SINGLE_DOT = re.compile(r"(\\.|\[(?:\\.|[^\]])*\]|\.)")


@cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


@cache
def operation(service: str, name: str) -> OperationModel:
    """``operation("sagemaker", "CreateTrainingJob")``: botocore's model of that API call."""
    return _session().get_service_model(service).operation_model(name)


@cache
def java_pattern(pattern: str) -> regex.Pattern[str]:
    """A model's pattern as Java reads it: every unescaped "." outside a class is Java's."""
    translated = _SINGLE_DOT.sub(lambda m: _JAVA_DOT if m.group(0) == "." else m.group(0), pattern)
    return regex.compile(translated)


def matches(pattern: str, value: str) -> bool:
    """Whether the whole of ``value`` matches the model's ``pattern``."""
    return java_pattern(pattern).fullmatch(value) is not None


@dataclass(frozen=True)
class Problem:
    path: str
    what: str

    def __str__(self) -> str:
        return f"{self.path}: {self.what}"


def problems(value: Any, shape: Shape, path: str = "") -> list[Problem]:
    """Everything in ``value`` that ``shape`` refuses; ``UNKNOWN`` values pass (run time)."""
    return list(_problems(value, shape, path or shape.name))


def _problems(value: Any, shape: Shape, path: str) -> Iterator[Problem]:
    if value is UNKNOWN:
        return
    kind = shape.type_name
    checks = {
        "structure": _structure,
        "list": _list,
        "map": _map,
        "string": _string,
        "integer": _number,
        "long": _number,
        "double": _number,
        "float": _number,
        "boolean": _boolean,
    }
    if kind in checks:
        yield from checks[kind](value, shape, path)
    # blob, timestamp, document: Step Functions passes JSON through (a Lambda Payload).


def _structure(value: Any, shape: Shape, path: str) -> Iterator[Problem]:
    if not isinstance(value, Mapping):
        yield Problem(path, f"must be an object, not {value!r}")
        return
    for name in shape.metadata.get("required", []):
        if name not in value:
            yield Problem(path, f"missing required member {name}")
    for name, member in value.items():
        if name not in shape.members:
            yield Problem(path, f"unknown member {name} (known: {', '.join(shape.members)})")
        else:
            yield from _problems(member, shape.members[name], f"{path}.{name}")


def _list(value: Any, shape: Shape, path: str) -> Iterator[Problem]:
    if not isinstance(value, list):
        yield Problem(path, f"must be a list, not {value!r}")
        return
    yield from _bounds(len(value), shape, path, "items")
    for index, item in enumerate(value):
        yield from _problems(item, shape.member, f"{path}[{index}]")


def _map(value: Any, shape: Shape, path: str) -> Iterator[Problem]:
    if not isinstance(value, Mapping):
        yield Problem(path, f"must be an object, not {value!r}")
        return
    yield from _bounds(len(value), shape, path, "entries")
    for key, item in value.items():
        yield from _problems(key, shape.key, f"{path} (key {key!r})")
        yield from _problems(item, shape.value, f"{path}.{key}")


def _string(value: Any, shape: Shape, path: str) -> Iterator[Problem]:
    if not isinstance(value, str):
        yield Problem(path, f"must be a string, not {value!r}")
        return
    yield from _bounds(len(value), shape, path, "characters")
    if shape.enum and value not in shape.enum:
        yield Problem(path, f"{value!r} is not one of {', '.join(shape.enum)}")
    pattern = shape.metadata.get("pattern")
    if pattern is not None and not matches(pattern, value):
        yield Problem(path, f"{value!r} does not match the pattern {pattern}")


def _number(value: Any, shape: Shape, path: str) -> Iterator[Problem]:
    whole = shape.type_name in ("integer", "long")
    if isinstance(value, bool) or not isinstance(value, int if whole else (int, float)):
        yield Problem(path, f"must be {'an integer' if whole else 'a number'}, not {value!r}")
        return
    yield from _bounds(value, shape, path, None)


def _boolean(value: Any, shape: Shape, path: str) -> Iterator[Problem]:
    if not isinstance(value, bool):
        yield Problem(path, f"must be true or false, not {value!r}")


def _bounds(amount: float, shape: Shape, path: str, unit: str | None) -> Iterator[Problem]:
    least, most = shape.metadata.get("min"), shape.metadata.get("max")
    of = f" {unit}" if unit else ""
    if least is not None and amount < least:
        yield Problem(path, f"{amount}{of} is below the minimum {least}")
    if most is not None and amount > most:
        yield Problem(path, f"{amount}{of} is above the maximum {most}")


def request_problems(service: str, operation_name: str, request: Mapping[str, Any]) -> list[str]:
    """A boto3 request (keyword arguments) checked by botocore's validator and ``problems``."""
    model = operation(service, operation_name)
    report = ParamValidator().validate(dict(request), model.input_shape)
    found = [report.generate_report()] if report.has_errors() else []
    return found + [str(problem) for problem in problems(request, model.input_shape)]


def shape_at(shape: Shape, path: str) -> Shape:
    """The shape at ``path`` ("HumanTaskConfig.TaskKeywords[]") inside ``shape``."""
    for part in path.split("."):
        name, is_item = part.removesuffix("[]"), part.endswith("[]")
        shape = shape.members[name]
        if is_item:
            shape = shape.member
    return shape
