"""A contract's fields as a stack fills them in: checked by name and value, keyed by alias.

A stack writes what a function reads (its environment, a Step Functions payload) from the
function's model in ``counting_core.contracts``, so the names cannot drift apart. Some values
exist only at deploy or run time (a CDK token standing for a bucket's name, a JsonPath into
the execution's state): the stack says which (``deferred``), and those pass unchecked; the
synthesized templates are held to the same models by tests/infra/test_environments.py.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from pydantic import BaseModel, ValidationError

from counting_core.errors import describe_validation_error


class ContractMismatch(ValueError):
    """What a stack gives does not fit the function's contract: the message names the field."""


#: Whether a value is known only later (``aws_cdk.Token.is_unresolved`` in the stacks).
Deferred = Callable[[object], bool]


def by_alias(
    model: type[BaseModel], values: Mapping[str, object], *, deferred: Deferred
) -> dict[str, object]:
    """``values`` (by field name, in their order) keyed by the names ``model`` reads them
    under (its aliases). Every required field must be given and no other; each value known
    now is validated as ``model`` validates that field (type, constraints, field validators).

    Raises ContractMismatch naming the model and the first field unknown, missing or refused.
    """
    where = f"{model.__module__}.{model.__qualname__}"
    fields = model.model_fields
    if unknown := [name for name in values if name not in fields]:
        raise ContractMismatch(f"{where} has no field {unknown[0]!r}")
    if missing := [
        name for name, field in fields.items() if field.is_required() and name not in values
    ]:
        raise ContractMismatch(f"{where}.{missing[0]} is required")
    for name, value in values.items():
        if deferred(value):
            continue
        try:
            # One field at a time, on an empty instance: the others may be deferred.
            model.__pydantic_validator__.validate_assignment(model.model_construct(), name, value)
        except ValidationError as error:
            raise ContractMismatch(f"{where}.{describe_validation_error(error)[0]}") from None
    return {fields[name].alias or name: value for name, value in values.items()}
