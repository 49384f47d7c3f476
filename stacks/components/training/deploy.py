"""Step 4 (and 7), Deploy: the trained model, then the endpoint once the model passed its checks.

Endpoint configs are immutable, so every run creates its own model and endpoint config
(both named after the run), then creates the endpoint with its stable name the first
time and updates it afterwards. While an update is in progress the previous config
keeps serving; if the update fails, SageMaker leaves the endpoint on the previous config.
An endpoint whose creation failed (status ``Failed``) accepts nothing but DeleteEndpoint:
the run deletes it, waits until it is gone, and creates it again.
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_UpdateEndpoint.html
https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints-update.html

Whether the endpoint exists is decided without any undocumented error name: DescribeEndpoint
documents no error for a name that does not exist, so a DescribeEndpoint that still fails
after its retries (``States.TaskFailed``, whatever the cause) leads to CreateEndpoint. Had
the endpoint existed after all, CreateEndpoint refuses the name and the run is reported;
nothing is ever created twice. The first deployment pays the retries, about 30 s.
https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeEndpoint.html

CDK's SageMakerCreateEndpointConfig task has no ServerlessConfig, so these calls are
``CallAwsService`` (AWS SDK integrations), each granted only this project's resources.
"""

from __future__ import annotations

from functools import partial

import aws_cdk as cdk
from aws_cdk import aws_iam as iam
from aws_cdk import aws_stepfunctions as sfn
from aws_cdk import aws_stepfunctions_tasks as tasks
from constructs import Construct

from counting_core import layout
from stacks.components.permissions import SageMakerExecutionRole, allow, tagging_on_create
from stacks.components.storage import DataStorage
from stacks.components.training.prepare import PREPARED
from stacks.components.training.train import TRAINING
from stacks.components.workflow import retry_policies
from stacks.components.workflow.batch_transform import MAX_PAYLOAD_MB, model_server_environment
from stacks.components.workflow.notify import FAILED, RunNotifications
from stacks.config import InferenceSettings
from stacks.nag import acknowledge, object_prefix_finding

#: The one production variant of every endpoint config (serverless allows only one).
VARIANT = "AllTraffic"
#: Where the state machine keeps the endpoint's last DescribeEndpoint response.
ENDPOINT = "$.endpoint"
# How often a deployment in progress is checked; serverless endpoints take minutes.
POLL_INTERVAL = cdk.Duration.seconds(60)
# Where a DescribeEndpoint failure that leads to CreateEndpoint is kept, for the record.
LOOKUP_FAILURE = "$.endpointLookupFailure"
# Statuses of an endpoint on its way to InService; anything else ends the wait.
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeEndpoint.html
IN_PROGRESS = ("Creating", "Updating", "SystemUpdating", "RollingBack")
RUN_NAME = f"{PREPARED}.runName"
# The PyTorch inference container runs the handlers in model.tar.gz's code/ folder
# (detector/inference.py, packed there by the training job), as the SageMaker Python SDK
# configures a network-isolated PyTorchModel: SAGEMAKER_PROGRAM names the script,
# SAGEMAKER_SUBMIT_DIRECTORY is where the model's code was unpacked.
# https://github.com/aws/sagemaker-python-sdk/blob/master/src/sagemaker/model.py
# https://github.com/aws/sagemaker-pytorch-inference-toolkit
INFERENCE_PROGRAM = "inference.py"
MODEL_CODE_DIRECTORY = "/opt/ml/model/code"
# The SDK's default container log level (logging.INFO).
CONTAINER_LOG_LEVEL = "20"


class DeployStep(Construct):
    """Create the model and endpoint config, create or update the endpoint, wait for it.

    The model is created first and evaluated before any endpoint changes: the pipeline
    chains ``create_model`` to the evaluation and the count gate, then on to ``endpoint``.

    Attributes:
        model_role: what the run's model runs as, behind the endpoint and in the run's
            Batch Transform job: reads model artifacts, logs.
        create_model: the first state (CreateModel); what follows it is the caller's.
        endpoint: the first state of the endpoint's part (CreateEndpointConfig onwards).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        endpoint_name: str,
        settings: InferenceSettings,
        storage: DataStorage,
        image: str,
        image_uri: str | None,
        algorithm: str,
        tags: list[dict[str, str]],
        notifications: RunNotifications,
        then: sfn.IChainable,
    ) -> None:
        super().__init__(scope, construct_id)
        self._storage = storage
        self._endpoint_name = endpoint_name
        stack = cdk.Stack.of(self)
        models = stack.format_arn(
            service="sagemaker", resource="model", resource_name=f"{prefix}-*"
        )
        configs = stack.format_arn(
            service="sagemaker", resource="endpoint-config", resource_name=f"{prefix}-*"
        )
        endpoint = stack.format_arn(
            service="sagemaker", resource="endpoint", resource_name=endpoint_name
        )
        self.model_role = self._model_role(image_uri)

        container: dict = {
            "Image": image,
            "ModelDataUrl": sfn.JsonPath.string_at(f"{TRAINING}.ModelArtifacts.S3ModelArtifacts"),
        }
        model: dict = {
            "ModelName": sfn.JsonPath.string_at(RUN_NAME),
            "ExecutionRoleArn": self.model_role.role_arn,
            "PrimaryContainer": container,
            "Tags": tags,
        }
        if algorithm == "torchvision":
            container["Environment"] = {
                "SAGEMAKER_PROGRAM": INFERENCE_PROGRAM,
                "SAGEMAKER_SUBMIT_DIRECTORY": MODEL_CODE_DIRECTORY,
                "SAGEMAKER_CONTAINER_LOG_LEVEL": CONTAINER_LOG_LEVEL,
                "SAGEMAKER_REGION": stack.region,
                **model_server_environment(MAX_PAYLOAD_MB),
            }
            # No EnableNetworkIsolation, although the model needs no network: the serverless
            # endpoint this model goes behind does not support network isolation (its
            # feature exclusions), and one model serves it and the evaluation alike.
            # https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints.html

        create_model = self._call(
            "CreateModel",
            "createModel",
            model,
            [models],
            additional_iam_statements=[
                iam.PolicyStatement(
                    sid="PassTheModelRole",
                    actions=["iam:PassRole"],
                    resources=[self.model_role.role_arn],
                    conditions={"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}},
                ),
                tagging_on_create(models),
            ],
        )
        serverless = {
            "MemorySizeInMB": settings.memory_size_mb,
            "MaxConcurrency": settings.max_concurrency,
        }
        if settings.provisioned_concurrency is not None:
            serverless["ProvisionedConcurrency"] = settings.provisioned_concurrency
        create_config = self._call(
            "CreateEndpointConfig",
            "createEndpointConfig",
            {
                "EndpointConfigName": sfn.JsonPath.string_at(RUN_NAME),
                "ProductionVariants": [
                    {
                        "VariantName": VARIANT,
                        "ModelName": sfn.JsonPath.string_at(RUN_NAME),
                        "ServerlessConfig": serverless,
                    }
                ],
                "Tags": tags,
            },
            [configs],
            additional_iam_statements=[tagging_on_create(configs)],
        )
        find_endpoint = self._call(
            "FindEndpoint",
            "describeEndpoint",
            {"EndpointName": endpoint_name},
            [endpoint],
            result_path=ENDPOINT,
        )
        switch_to_run = {
            "EndpointName": endpoint_name,
            "EndpointConfigName": sfn.JsonPath.string_at(RUN_NAME),
        }
        create_endpoint = self._call(
            "CreateEndpoint",
            "createEndpoint",
            {**switch_to_run, "Tags": tags},
            [endpoint, configs],
            additional_iam_statements=[tagging_on_create(endpoint)],
        )
        update_endpoint = self._call(
            "UpdateEndpoint", "updateEndpoint", switch_to_run, [endpoint, configs]
        )
        check_endpoint = self._call(
            "CheckEndpoint",
            "describeEndpoint",
            {"EndpointName": endpoint_name},
            [endpoint],
            result_path=ENDPOINT,
        )

        # A Failed endpoint accepts only DeleteEndpoint, so no later run could update it:
        # delete it (it serves nothing, so nothing is lost) and create it anew.
        # https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_DescribeEndpoint.html
        delete_failed = self._call(
            "DeleteFailedEndpoint", "deleteEndpoint", {"EndpointName": endpoint_name}, [endpoint]
        )
        check_deletion = self._call(
            "CheckDeletion",
            "describeEndpoint",
            {"EndpointName": endpoint_name},
            [endpoint],
            result_path=ENDPOINT,
        )

        # No endpoint to describe: the first deployment, or a finished deletion. Any other
        # failure is found out by CreateEndpoint, which refuses a name that exists.
        for task in (find_endpoint, check_deletion):
            task.add_catch(
                create_endpoint, errors=["States.TaskFailed"], result_path=LOOKUP_FAILURE
            )
        for task in (
            create_model,
            create_config,
            find_endpoint,
            create_endpoint,
            update_endpoint,
            check_endpoint,
            delete_failed,
            check_deletion,
        ):
            notifications.catch(task)

        wait = sfn.Wait(self, "WaitForEndpoint", time=sfn.WaitTime.duration(POLL_INTERVAL))

        def endpoint_report(error: str, state: tasks.CallAwsService) -> sfn.Pass:
            """The run stops with ``error``; the cause is the endpoint as ``state`` saw it."""
            return notifications.report(
                self,
                error,
                outcome=FAILED,
                state=state.state_id,
                error=error,
                cause=sfn.JsonPath.json_to_string(sfn.JsonPath.object_at(ENDPOINT)),
            )

        not_deployed = endpoint_report("EndpointNotDeployed", check_endpoint)
        status_is = partial(sfn.Condition.string_equals, f"{ENDPOINT}.EndpointStatus")
        in_service = sfn.Condition.and_(
            status_is("InService"),
            # An update that failed leaves the endpoint InService on the previous config.
            sfn.Condition.string_equals_json_path(f"{ENDPOINT}.EndpointConfigName", RUN_NAME),
        )
        in_progress = sfn.Condition.or_(*(status_is(value) for value in IN_PROGRESS))
        create_endpoint.next(wait)
        update_endpoint.next(wait)
        wait_for_deletion = sfn.Wait(
            self, "WaitForDeletion", time=sfn.WaitTime.duration(POLL_INTERVAL)
        )
        not_deleted = endpoint_report("EndpointNotDeleted", check_deletion)
        delete_failed.next(wait_for_deletion).next(check_deletion).next(
            sfn.Choice(self, "StillDeleting")
            .when(status_is("Deleting"), wait_for_deletion)
            .otherwise(not_deleted)
        )
        wait.next(check_endpoint).next(
            sfn.Choice(self, "EndpointReady")
            .when(in_service, then)
            .when(in_progress, wait)
            .otherwise(not_deployed)
        )
        self.create_model = create_model
        self.endpoint = create_config.next(find_endpoint)
        find_endpoint.next(
            sfn.Choice(self, "EndpointUsable")
            .when(status_is("Failed"), delete_failed)
            .otherwise(update_endpoint)
        )

    def _call(
        self,
        state: str,
        action: str,
        parameters: dict,
        resources: list[str],
        *,
        result_path: str = sfn.JsonPath.DISCARD,
        additional_iam_statements: list[iam.PolicyStatement] | None = None,
    ) -> tasks.CallAwsService:
        task = tasks.CallAwsService(
            self,
            state,
            service="sagemaker",
            action=action,
            parameters=parameters,
            iam_resources=resources,
            iam_action=f"sagemaker:{action[0].upper()}{action[1:]}",
            additional_iam_statements=additional_iam_statements,
            result_path=result_path,
        )
        retry_policies.SAGEMAKER_API.apply(task)
        return task

    def _model_role(self, image_uri: str | None) -> iam.Role:
        execution = SageMakerExecutionRole(
            self,
            "ModelRole",
            description="Runs this app's models behind the serverless endpoint",
            # The endpoint's containers log to one group named after the endpoint.
            log_group_name=f"/aws/sagemaker/Endpoints/{self._endpoint_name}",
            metrics_namespace="/aws/sagemaker/Endpoints",
            runs=f"models behind endpoint {self._endpoint_name}",
            image_uri=image_uri,
        )
        policy = allow(
            execution.role,
            {
                "ReadModelArtifacts": (
                    ["s3:GetObject"],
                    [self._storage.bucket_in(self).arn_for_objects(f"{layout.MODEL_ARTIFACTS}*")],
                ),
                "UseTheDataKey": (["kms:Decrypt"], [self._storage.key.key_arn]),
            },
        )
        acknowledge(
            policy,
            object_prefix_finding(self._storage.bucket_name, layout.MODEL_ARTIFACTS),
            "The endpoint's model reads the model.tar.gz of whichever training job the run "
            f"deployed, under {layout.MODEL_ARTIFACTS}<job>/output/.",
        )
        return execution.role
