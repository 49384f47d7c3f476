"""The training state machine: Prepare -> Train -> quality gate -> CreateModel -> Evaluate
(Batch Transform of the new and of the active model, and of the new model over tiles when
counter.tiling is not off, + count errors) -> count gate ->
champion gate -> endpoint -> Record.

Each step is its own construct (this package's modules); this one wires them in order,
gives the state machine its role, an encrypted log group at level ALL and X-Ray tracing.
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_lambda as lambda_
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sns as sns
from aws_cdk import aws_stepfunctions as sfn
from constructs import Construct

from stacks.components.algorithms.images import (
    PYTORCH_INFERENCE,
    PYTORCH_TRAINING,
    algorithm_image,
    pytorch_image,
)
from stacks.components.storage import DataStorage
from stacks.components.training.champion_gate import ChampionGate
from stacks.components.training.count_gate import CountGate
from stacks.components.training.deploy import DeployStep
from stacks.components.training.evaluate import EvaluationStep
from stacks.components.training.prepare import PrepareStep
from stacks.components.training.quality_gate import QualityGate
from stacks.components.training.record import RecordStep
from stacks.components.training.train import TrainStep
from stacks.components.workflow.notify import RunNotifications
from stacks.config import AppConfig
from stacks.nag import acknowledge, arn_finding

# Time for Prepare, waiting for training quota (retry_policies.TRAINING_CAPACITY, under an
# hour), the deployment and its checks, on top of the training job's own limit and the
# count evaluation's (EvaluationStep.time_limit).
OVERHEAD = cdk.Duration.hours(3)


class TrainingPipeline(Construct):
    """Attributes:
    state_machine: ``<prefix>-training``.
    log_group: its execution log (KMS-encrypted).
    prepare, train, gate, deploy, evaluation, count_gate, champion_gate, record: the steps.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        storage: DataStorage,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        prefix, settings = config.prefix, config.training
        if settings.algorithm == "torchvision":
            training_image = pytorch_image(self, PYTORCH_TRAINING)
            serving_image = pytorch_image(self, PYTORCH_INFERENCE)
        else:
            training_image = serving_image = algorithm_image(self, settings.image_uri)
        notifications = RunNotifications(self, "Notifications", prefix=prefix, topic=topic)

        self.prepare = PrepareStep(
            self,
            "Prepare",
            prefix=prefix,
            settings=settings,
            storage=storage,
            notifications=notifications,
        )
        self.train = TrainStep(
            self,
            "Train",
            prefix=prefix,
            settings=settings,
            storage=storage,
            image=training_image,
            tags=config.sagemaker_tags,
            notifications=notifications,
        )
        self.record = RecordStep(
            self,
            "Record",
            endpoint_name=config.endpoint_name,
            parameter_name=config.active_model_parameter,
            settings=settings,
            notifications=notifications,
        )
        self.deploy = DeployStep(
            self,
            "Deploy",
            prefix=prefix,
            endpoint_name=config.endpoint_name,
            settings=config.inference,
            storage=storage,
            image=serving_image,
            image_uri=settings.image_uri,
            algorithm=settings.algorithm,
            tags=config.sagemaker_tags,
            notifications=notifications,
            then=self.record.start,
        )
        self.champion_gate = ChampionGate(
            self,
            "ChampionGate",
            force_deploy=settings.force_deploy,
            notifications=notifications,
            then=self.deploy.endpoint,
        )
        self.count_gate = CountGate(
            self,
            "CountGate",
            max_count_wape=settings.max_count_wape,
            notifications=notifications,
            then=self.champion_gate.start,
        )
        self.evaluation = EvaluationStep(
            self,
            "Evaluate",
            prefix=prefix,
            instance_type=settings.evaluation_instance_type,
            storage=storage,
            model_role=self.deploy.model_role,
            active_model_parameter=config.active_model_parameter,
            max_count_wape=settings.max_count_wape,
            tags=config.sagemaker_tags,
            notifications=notifications,
            tiling=config.counter.tiling,
            image_shape=settings.image_shape,
            then=self.count_gate.start,
        )
        self.deploy.create_model.next(self.evaluation.start)
        self.gate = QualityGate(
            self,
            "QualityGate",
            min_validation_map=settings.min_validation_map,
            notifications=notifications,
            then=self.deploy.create_model,
        )

        self.log_group = logs.LogGroup(
            self,
            "Logs",
            # The prefix CloudWatch Logs recommends for vended logs keeps the resource
            # policy Step Functions needs short.
            # https://docs.aws.amazon.com/step-functions/latest/dg/cw-logs.html
            log_group_name=f"/aws/vendedlogs/states/{prefix}-training",
            encryption_key=storage.key,
            retention=logs.RetentionDays.SIX_MONTHS,
        )
        training_hours = (
            settings.max_wait_hours if settings.use_spot else settings.max_runtime_hours
        )
        self.state_machine = sfn.StateMachine(
            self,
            "StateMachine",
            state_machine_name=f"{prefix}-training",
            comment="A labeled manifest to a live serverless endpoint, checked at each step",
            definition_body=sfn.DefinitionBody.from_chainable(
                self.prepare.state.next(self.train.state).next(self.gate.start)
            ),
            timeout=cdk.Duration.hours(training_hours)
            .plus(OVERHEAD)
            .plus(self.evaluation.time_limit),
            logs=sfn.LogOptions(
                destination=self.log_group, level=sfn.LogLevel.ALL, include_execution_data=True
            ),
            tracing_enabled=True,
        )
        role = self.state_machine.role
        for statement in (*self.train.statements, *self.evaluation.statements):
            role.add_to_principal_policy(statement)
        notifications.grant_publish(role)
        self._acknowledge(prefix, config.endpoint_name)

    def _acknowledge(self, prefix: str, endpoint_name: str) -> None:
        stack = cdk.Stack.of(self)
        policy = self.state_machine.role.node.find_child("DefaultPolicy")
        for resource, why in (
            ("training-job", "starts, watches and stops one training job per run"),
            (
                "transform-job",
                "starts, watches and stops the Batch Transform jobs of each run's evaluation",
            ),
            ("model", "creates one model per run"),
            (
                "endpoint-config",
                f"creates one endpoint config per run and puts {endpoint_name} on it",
            ),
        ):
            acknowledge(
                policy,
                arn_finding(stack, "sagemaker", f"{resource}/{prefix}-*"),
                f"The training state machine {why}; names are generated per run, so access is "
                f"limited to names starting with {prefix}-.",
            )
        handlers = [
            (self.prepare.handler, "training data preparation"),
            (self.evaluation.handler, "count evaluation"),
        ]
        if self.evaluation.cutter is not None:
            handlers.append((self.evaluation.cutter, "tile cutting"))
        for handler, what in handlers:
            cfn_function = handler.function.node.default_child
            assert isinstance(cfn_function, lambda_.CfnFunction)  # a Function's L1 resource
            function = stack.get_logical_id(cfn_function)
            acknowledge(
                policy,
                f"AwsSolutions-IAM5[Resource::<{function}.Arn>:*]",
                f"CDK's Lambda task grants invoking any version of the {what} function; the "
                "state machine invokes only its own functions.",
            )
        acknowledge(
            policy,
            "AwsSolutions-IAM5[Resource::*]",
            "The training state machine delivers its execution logs and X-Ray traces: "
            "logs:*LogDelivery*, logs:Describe* and xray:Put* have no resource-level permissions.",
        )
