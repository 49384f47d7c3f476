"""What every Lambda function's environment holds, and the kinds of value its variables name.

Each ``counting_core.contracts.<function>`` module (one per folder under ``lambdas/``) defines
that function's ``Environment``, a ``FunctionEnvironment`` whose field aliases are the variable
names. The stack builds the variables from it (``variables``); the handler reads it on first
use (``read``). An optional field's variable is set only when it has a value; nothing else is
set (tests/infra/test_environments.py holds every synthesized function to its model).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from counting_core.contracts.fields import Deferred, by_alias
from counting_core.errors import describe_validation_error

# The names of what the stacks hand a function, as the AWS APIs it calls accept them.
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html
BucketName = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")]
# DynamoDB's TableName (botocore's model: 3 to 255 of these characters).
TableName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9_.-]{3,255}$")]
# What CloudFormation's Ref gives for an AWS::SQS::Queue: https://sqs.<region>.<domain>/
# <account>/<name>, a name of at most 80 letters, digits, hyphens and underscores (.fifo too).
QueueUrl = Annotated[str, Field(pattern=r"^https://[^/\s]+/\d{12}/[\w-]{1,80}(\.fifo)?$")]
# Systems Manager's PSParameterName: 1 to 2,048 of these characters ("/" separates a path).
ParameterName = Annotated[str, Field(pattern=r"^[a-zA-Z0-9_.\-/]{1,2048}$")]
# SageMaker's RoleArn, the role a job runs as.
RoleArn = Annotated[str, Field(pattern=r"^arn:aws[a-z\-]*:iam::\d{12}:role/[\w+=,.@\-/]+$")]
# The ``source`` of the events a function puts on the default bus.
EventSource = Annotated[str, Field(min_length=1, max_length=256)]


class MisconfiguredFunction(Exception):
    """The function's environment is not what its stack sets: the message names the variable."""


class FunctionEnvironment(BaseModel):
    """The variables every function gets (``stacks.components.python_function``); Powertools
    reads these two itself. A subclass adds the function's own."""

    # Lambda adds variables of its own (AWS_REGION, ...): read past them.
    model_config = ConfigDict(frozen=True, extra="ignore")

    service: str = Field(alias="POWERTOOLS_SERVICE_NAME", min_length=1)
    metrics_namespace: str = Field(alias="POWERTOOLS_METRICS_NAMESPACE", min_length=1)

    @classmethod
    def read(cls, environ: Mapping[str, str]) -> Self:
        """The function's configuration from its environment (``os.environ``)."""
        try:
            return cls.model_validate(environ)
        except ValidationError as error:
            problem = describe_validation_error(error)[0]
            raise MisconfiguredFunction(f"{cls.__module__}: {problem}") from None

    @classmethod
    def variables(cls, values: Mapping[str, object], *, deferred: Deferred) -> dict[str, str]:
        """The variables that give the fields ``values`` (by field name; see
        ``fields.by_alias``): name -> text, booleans as ``true``/``false`` (as pydantic reads
        them back), an optional field left unset without its variable."""
        return {
            name: _text(value)
            for name, value in by_alias(cls, values, deferred=deferred).items()
            if value is not None
        }


def _text(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
