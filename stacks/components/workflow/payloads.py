"""Step Functions payloads built from the models the functions read them with
(``counting_core.contracts``), by field name, so the state machines and the handlers cannot
drift apart (``HandlerFunction`` builds environments alike). JsonPath and other CDK tokens
pass through unchecked; every other value is checked against its field at synth.
"""

from __future__ import annotations

from typing import Any

import aws_cdk as cdk
from pydantic import BaseModel

from counting_core.contracts.fields import by_alias


def payload(request: type[BaseModel], /, **values: object) -> dict[str, Any]:
    """What a state sends a function that reads it as ``request``, from the values of its
    fields (by name): JSON keys as the function reads them."""
    return by_alias(request, values, deferred=cdk.Token.is_unresolved)


def result_selector(response: type[BaseModel]) -> dict[str, str]:
    """A LambdaInvoke's ``result_selector`` keeping exactly the fields of the function's
    answer, ``response``, one by one."""
    names = [field.alias or name for name, field in response.model_fields.items()]
    return {f"{name}.$": f"$.Payload.{name}" for name in names}
