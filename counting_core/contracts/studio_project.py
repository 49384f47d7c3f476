"""The ``studio_project`` Lambda's contract: what its stack (``stacks/components/studio.py``)
configures it with, and the CloudFormation requests it answers.

Two things invoke it. CloudFormation, for the custom resource that keeps the stage's Label
Studio project in step with the settings (``ProjectRequest``, its properties
``ProjectProperties``); and an EventBridge rule, for each review request uploaded under
``labeling/studio/reviews/`` (``contracts.events.ObjectCreated``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from counting_core.contracts.environment import BucketName, FunctionEnvironment

# Secrets Manager's secret ARN: the name, a hyphen and six random characters.
SecretArn = Annotated[
    str,
    Field(pattern=r"^arn:aws[a-z\-]*:secretsmanager:[a-z0-9\-]+:\d{12}:secret:[\w/+=.@-]+$"),
]
# Label Studio inside the VPC: http://<Cloud Map name>:<port>, no path.
ServiceUrl = Annotated[str, Field(pattern=r"^http://[a-z0-9.-]+(:\d{1,5})?$")]


class Environment(FunctionEnvironment):
    bucket: BucketName = Field(alias="BUCKET")
    # Where the function reaches Label Studio, past the load balancer and its sign-in.
    studio_url: ServiceUrl = Field(alias="STUDIO_URL")
    # The administrator's API token (sent as "Authorization: Token <token>").
    api_token_secret: SecretArn = Field(alias="API_TOKEN_SECRET")
    # Label Studio takes project titles of 3 to 50 characters (PROJECT_TITLE_MIN_LEN, _MAX_LEN).
    project_title: str = Field(alias="PROJECT_TITLE", min_length=3, max_length=50)


class ProjectProperties(BaseModel):
    """The custom resource's properties: a change to any of them updates the project."""

    model_config = ConfigDict(frozen=True, extra="ignore")  # ServiceToken, ServiceTimeout

    class_names: tuple[str, ...] = Field(alias="ClassNames", min_length=1)


class ProjectRequest(BaseModel):
    """A CloudFormation custom resource request (the fields this function uses).

    https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-requesttypes-create.html
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    request_type: Literal["Create", "Update", "Delete"] = Field(alias="RequestType")
    response_url: str = Field(alias="ResponseURL", min_length=1)
    stack_id: str = Field(alias="StackId")
    request_id: str = Field(alias="RequestId")
    logical_resource_id: str = Field(alias="LogicalResourceId")
    # Given on Update and Delete: what the function answered before.
    physical_resource_id: str | None = Field(None, alias="PhysicalResourceId")
    # Read as ProjectProperties when the project is set up, so that properties it refuses are
    # answered as a failure like any other.
    resource_properties: dict[str, Any] = Field(alias="ResourceProperties")
