"""Errors that carry a message meant for a person, not a traceback."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # only annotated: `counting --help` need not import pydantic
    from pydantic import ValidationError

# A refused value longer than this is cut in messages (a whole instructions text is noise).
SHOWN_VALUE_CHARACTERS = 60


class InputError(ValueError):
    """Input that cannot be used, with a message naming what is wrong and where.

    The CLI prints the message on one line and exits non-zero; Lambda handlers
    record it as a rejection instead of retrying.
    """


def describe_validation_error(
    error: ValidationError, *, unknown: str = "unknown key", whole: str = ""
) -> list[str]:
    """One ``where: what is wrong`` per problem pydantic found, in its order.

    ``where`` is the field's path (``labels[3]``, ``storage.removal_policy``), or ``whole``
    for a problem with the input as a whole; ``unknown`` says what a field the model does
    not know is called ("unknown key", "unknown setting"). A value a rule refused is
    named in the message (``(got 'keep')``); a rule's own message names it itself.
    """
    lines = []
    for problem in error.errors(include_url=False):
        kind, message = problem["type"], problem["msg"].removeprefix("Value error, ")
        if kind == "extra_forbidden":
            message = unknown
        elif kind == "missing":
            message = "missing"
        elif kind in ("model_type", "dict_type"):
            message = "must be a JSON object"
        elif kind != "value_error" and problem["loc"]:
            message = f"{message} (got {_shown(problem['input'])})"
        where = _location(problem["loc"]) or whole
        lines.append(f"{where}: {message}" if where else message)
    return lines


def _shown(value: object) -> str:
    text = repr(value)
    return (
        text if len(text) <= SHOWN_VALUE_CHARACTERS else text[: SHOWN_VALUE_CHARACTERS - 3] + "..."
    )


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text
