"""Studio project Lambda: keeps the stage's Label Studio project in step with its settings
(a CloudFormation custom resource) and puts review queues on its tasks (a review request
uploaded under ``labeling/studio/reviews/``); ``service.StudioProject`` says how.

It runs in the studio's VPC and calls Label Studio at its Cloud Map name: the load balancer
in front signs people in with Cognito, which an API call cannot pass, and nothing else
reaches the service. CloudFormation waits for an answer to each request, so every request
is answered, a failure with its reason (the deployment then fails and says it); deleting
the resource leaves the project and its annotations in the database.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.typing import LambdaContext
from pydantic import ValidationError

from adapters import clients
from counting_core.contracts.events import ObjectCreated
from counting_core.contracts.studio_project import Environment, ProjectProperties, ProjectRequest
from counting_core.errors import InputError, describe_validation_error
from lambdas.studio_project.cloudformation import respond
from lambdas.studio_project.service import StudioProject
from lambdas.studio_project.studio_api import StudioApi, StudioError

# How long a call waits for Label Studio to answer at all: on the first deployment the
# service may still be migrating its database when the project is set up.
STUDIO_PATIENCE_SECONDS = 420

logger = Logger()
tracer = Tracer()


@cache
def project() -> StudioProject:
    """The project of this function's environment, made on the first invocation."""
    environment = Environment.read(os.environ)
    secrets = clients.client("secretsmanager", clients.PIPELINE_STEP)
    token = secrets.get_secret_value(SecretId=environment.api_token_secret)["SecretString"]
    return StudioProject(
        environment,
        api=StudioApi(environment.studio_url, token, patience=STUDIO_PATIENCE_SECONDS),
        s3=clients.client("s3", clients.PIPELINE_STEP),
    )


def answer(event: dict[str, Any], studio: Callable[[], StudioProject]) -> dict[str, Any]:
    """Set the project up as a CloudFormation request asks, and answer it. ``studio`` makes
    the project's service: inside the answer, so that failing to (a secret not readable)
    is answered too."""
    request = ProjectRequest.model_validate(event)
    physical_id = request.physical_resource_id or request.logical_resource_id
    if request.request_type == "Delete":
        respond(request, status="SUCCESS", physical_resource_id=physical_id)
        return {"status": "SUCCESS", "deleted": physical_id}
    try:
        properties = ProjectProperties.model_validate(request.resource_properties)
        project_id = studio().set_up(properties.class_names)
    except ValidationError as error:
        reason = f"the studio project's properties: {describe_validation_error(error)[0]}"
    except (InputError, StudioError) as error:
        reason = str(error)
    except Exception as error:
        logger.exception("studio project setup failed")
        reason = f"{type(error).__name__}: {error}"
    else:
        physical_id = f"label-studio-project-{project_id}"
        respond(
            request,
            status="SUCCESS",
            physical_resource_id=physical_id,
            data={"ProjectId": str(project_id)},
        )
        logger.info("studio project in step", extra={"project": project_id})
        return {"status": "SUCCESS", "project": project_id}
    logger.warning("studio project not set up", extra={"reason": reason})
    respond(request, status="FAILED", physical_resource_id=physical_id, reason=reason)
    return {"status": "FAILED", "reason": reason}


def review(event: dict[str, Any], studio: StudioProject) -> dict[str, Any]:
    outcome = studio.review(ObjectCreated.model_validate(event))
    if "rejected" in outcome:
        logger.warning("review request rejected", extra=outcome)
    else:
        logger.info("review queue put on the project's tasks", extra=outcome)
    return outcome


@logger.inject_lambda_context
@tracer.capture_lambda_handler
def main(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    if "RequestType" in event:
        return answer(event, project)
    return review(event, project())
