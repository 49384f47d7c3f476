"""The training stack: the training job's parameters, IAM, logging, starts and the gates.

The built-in algorithm's training job and image are checked here (``builtin``); the torchvision
job, its images, channels and IAM in test_torchvision_training.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from aws_cdk.assertions import Annotations, Match, Template

from stacks.components.algorithms.images import registry_accounts
from stacks.config import load_config
from tests.conftest import cdk_context
from tests.infra.configurations import OWN_TRAINING_IMAGE
from tests.infra.synth import build_app
from tests.stepfunctions.template import Templates

pytestmark = pytest.mark.synth  # every test here builds the CDK app

PREFIX = "object-counting-dev"
STACK = f"{PREFIX}-training"
SAGEMAKER = "arn:aws:sagemaker:us-east-1:123456789012"
BUCKET_URI = f"s3://{PREFIX}-data-123456789012-us-east-1/"
PASSED_TO_SAGEMAKER = {"StringEquals": {"iam:PassedToService": "sagemaker.amazonaws.com"}}
BUILTIN = {"counting.training.algorithm": "builtin"}


def synthesized(**context) -> tuple[Template, Templates]:
    app, stacks = build_app(rule_packs=False, **context)
    assembly = app.synth()
    templates = Templates(
        {s.stack_name: json.loads(Path(s.template_full_path).read_text()) for s in assembly.stacks}
    )
    return Template.from_stack(stacks["training"]), templates


@pytest.fixture(scope="module")
def default() -> tuple[Template, Templates]:
    return synthesized()


@pytest.fixture(scope="module")
def template(default) -> Template:
    return default[0]


@pytest.fixture(scope="module")
def builtin() -> tuple[Template, Templates]:
    return synthesized(**BUILTIN)


@pytest.fixture(scope="module")
def builtin_states(builtin) -> dict:
    return builtin[1].definition(STACK)["States"]


@pytest.fixture(scope="module")
def states(default) -> dict:
    return default[1].definition(STACK)["States"]


def statements(template: Template, role: str) -> list[dict]:
    """The statements of the default policy of the role whose logical id starts with ``role``."""
    (policy,) = [
        body["Properties"]["PolicyDocument"]["Statement"]
        for body in template.find_resources("AWS::IAM::Policy").values()
        if body["Properties"]["Roles"][0]["Ref"].startswith(role)
    ]
    return policy


def as_list(value) -> list:
    return value if isinstance(value, list) else [value]


def test_the_builtin_training_job_reads_augmented_manifests_in_pipe_mode(builtin_states):
    states = builtin_states
    assert states["Train"]["Resource"] == "arn:aws:states:::sagemaker:createTrainingJob.sync"
    job = states["Train"]["Parameters"]
    assert job["AlgorithmSpecification"]["TrainingInputMode"] == "Pipe"
    channels = {channel["ChannelName"]: channel for channel in job["InputDataConfig"]}
    assert sorted(channels) == ["train", "validation"]
    for name, channel in channels.items():
        assert channel["InputMode"] == "Pipe"
        assert channel["RecordWrapperType"] == "RecordIO"
        assert channel["ContentType"] == "application/x-recordio"
        source = channel["DataSource"]["S3DataSource"]
        assert source["S3DataType"] == "AugmentedManifestFile"
        # ["source-ref", <the label attribute Prepare found>]
        assert source["AttributeNames.$"] == "$.prepared.attributeNames"
        assert source["S3Uri.$"] == f"$.prepared.{name}ManifestUri"


def test_the_builtin_training_job_runs_on_a_gpu_with_spot_checkpoints_and_kms(
    builtin, builtin_states
):
    _, templates = builtin
    states = builtin_states
    storage = f"{PREFIX}-storage"
    (key,) = templates.resources(storage, "AWS::KMS::Key")
    key_arn = templates.resolve(storage, {"Fn::GetAtt": [key, "Arn"]})
    job = states["Train"]["Parameters"]

    assert job["TrainingJobName.$"] == "$.prepared.runName"
    assert job["ResourceConfig"] == {
        "InstanceCount": 1,
        "InstanceType": "ml.p3.2xlarge",
        "VolumeSizeInGB": 50,
        "VolumeKmsKeyId": key_arn,
    }
    assert job["OutputDataConfig"] == {
        "S3OutputPath": f"{BUCKET_URI}training/models/",
        "KmsKeyId": key_arn,
    }
    assert job["EnableManagedSpotTraining"] is True
    assert job["StoppingCondition"] == {
        "MaxRuntimeInSeconds": 24 * 3600,
        "MaxWaitTimeInSeconds": 48 * 3600,
    }
    assert job["CheckpointConfig"] == {
        "S3Uri.$": (
            f"States.Format('{BUCKET_URI}training/models/checkpoints/{{}}/', $.prepared.runName)"
        )
    }


def test_without_spot_there_is_no_wait_and_no_checkpoint():
    _, templates = synthesized(**{"counting.training.use_spot": "false"})
    job = templates.definition(STACK)["States"]["Train"]["Parameters"]

    assert job["EnableManagedSpotTraining"] is False
    assert job["StoppingCondition"] == {"MaxRuntimeInSeconds": 24 * 3600}
    assert "CheckpointConfig" not in job


def test_builtin_hyperparameters_are_the_configured_ones_plus_the_data_ones(builtin_states):
    states = builtin_states
    configured = load_config(cdk_context(**BUILTIN)).training.hyperparameters
    assert configured  # else only the data ones would be checked

    assert states["Train"]["Parameters"]["HyperParameters"] == {
        **configured,
        "num_classes.$": "$.prepared.hyperparameters.num_classes",
        "num_training_samples.$": "$.prepared.hyperparameters.num_training_samples",
        "label_width.$": "$.prepared.hyperparameters.label_width",
    }


def test_the_built_in_image_comes_from_the_sdk_table_by_region(builtin):
    template, _ = builtin
    mapping = template.to_json()["Mappings"]["ObjectDetectionRegistry"]
    assert mapping == {
        region: {"account": account} for region, account in registry_accounts().items()
    }
    # Spot checks against the registry table in the SageMaker documentation.
    assert mapping["us-east-1"] == {"account": "811284229777"}
    assert mapping["eu-west-1"] == {"account": "685385470294"}
    assert mapping["ap-southeast-2"] == {"account": "544295431143"}
    (machine,) = template.find_resources("AWS::StepFunctions::StateMachine").values()
    definition = machine["Properties"]["DefinitionString"]["Fn::Join"][1]
    lookup = {"Fn::FindInMap": ["ObjectDetectionRegistry", {"Ref": "AWS::Region"}, "account"]}
    assert definition.count(lookup) == 2  # the training job and the model


def test_a_known_region_gets_its_image_without_a_mapping():
    template, templates = synthesized(
        **BUILTIN, **{"counting.account": "123456789012", "counting.region": "eu-west-1"}
    )
    job = templates.definition(STACK)["States"]["Train"]["Parameters"]

    assert "Mappings" not in template.to_json()
    assert job["AlgorithmSpecification"]["TrainingImage"] == (
        "685385470294.dkr.ecr.eu-west-1.amazonaws.com/object-detection:1"
    )


def test_a_configured_image_is_used_and_may_be_pulled():
    template, templates = synthesized(
        **BUILTIN, **{"counting.training.image_uri": OWN_TRAINING_IMAGE}
    )
    states = templates.definition(STACK)["States"]

    train, create_model = states["Train"]["Parameters"], states["CreateModel"]["Parameters"]

    assert train["AlgorithmSpecification"]["TrainingImage"] == OWN_TRAINING_IMAGE
    assert create_model["PrimaryContainer"]["Image"] == OWN_TRAINING_IMAGE
    repository = "arn:aws:ecr:eu-west-1:123456789012:repository/my-detector"
    for role in ("PipelineTrainTrainingRole", "PipelineDeployModelRole"):
        (pull,) = [
            s for s in statements(template, role) if s.get("Sid") == "PullTheConfiguredImage"
        ]
        assert templates.resolve(STACK, pull["Resource"]) == repository


def test_an_image_outside_ecr_stops_synth():
    _, stacks = build_app(**BUILTIN, **{"counting.training.image_uri": "docker.io/library/x:1"})

    Annotations.from_stack(stacks["training"]).has_error(
        "*", Match.string_like_regexp("training.image_uri: .* is not an Amazon ECR image URI")
    )


def test_the_state_machine_passes_each_role_only_to_sagemaker(template):
    passes = {
        statement["Sid"]: statement
        for statement in statements(template, "PipelineStateMachineRole")
        if statement["Action"] == "iam:PassRole"
    }

    assert sorted(passes) == ["PassTheModelRole", "PassTheTrainingRole"]
    for sid, role in (
        ("PassTheModelRole", "PipelineDeployModelRole"),
        ("PassTheTrainingRole", "PipelineTrainTrainingRole"),
    ):
        assert passes[sid]["Resource"]["Fn::GetAtt"][0].startswith(role)
        assert passes[sid]["Condition"] == PASSED_TO_SAGEMAKER


def test_the_state_machine_reaches_only_this_projects_resources(default):
    template, templates = default
    granted: dict[str, set[str]] = {}
    for statement in statements(template, "PipelineStateMachineRole"):
        for action in as_list(statement["Action"]):
            granted.setdefault(action, set()).update(
                templates.resolve(STACK, resource) for resource in as_list(statement["Resource"])
            )

    jobs = {f"{SAGEMAKER}:training-job/{PREFIX}-*"}
    transforms = {f"{SAGEMAKER}:transform-job/{PREFIX}-*"}
    for action in ("Create", "Describe", "Stop"):
        assert granted[f"sagemaker:{action}TrainingJob"] == jobs
        assert granted[f"sagemaker:{action}TransformJob"] == transforms
    assert granted["sagemaker:ListTags"] == jobs | transforms
    assert granted["events:PutRule"] == {
        "arn:aws:events:us-east-1:123456789012:rule/"
        f"StepFunctionsGetEventsForSageMaker{kind}JobsRule"
        for kind in ("Training", "Transform")
    }
    configs = f"{SAGEMAKER}:endpoint-config/{PREFIX}-*"
    endpoint = f"{SAGEMAKER}:endpoint/{PREFIX}-counter"
    assert granted["sagemaker:CreateModel"] == {f"{SAGEMAKER}:model/{PREFIX}-*"}
    assert granted["sagemaker:CreateEndpointConfig"] == {configs}
    assert granted["sagemaker:DescribeEndpoint"] == {endpoint}
    assert granted["sagemaker:CreateEndpoint"] == {endpoint, configs}
    assert granted["sagemaker:UpdateEndpoint"] == {endpoint, configs}
    # The run deletes only a Failed endpoint; IAM limits it to this project's one.
    assert granted["sagemaker:DeleteEndpoint"] == {endpoint}
    assert granted["ssm:PutParameter"] == {
        f"arn:aws:ssm:us-east-1:123456789012:parameter/{PREFIX}/active-model"
    }
    # The champion: the active model named in the record.
    assert granted["ssm:GetParameters"] == granted["ssm:PutParameter"]
    wildcard = sorted(action for action, resources in granted.items() if "*" in resources)
    assert all(action.startswith(("logs:", "xray:")) for action in wildcard), wildcard


def test_logs_at_level_all_to_an_encrypted_log_group_with_tracing(template):
    template.has_resource_properties(
        "AWS::StepFunctions::StateMachine",
        {
            "StateMachineName": f"{PREFIX}-training",
            "LoggingConfiguration": {
                "Level": "ALL",
                "IncludeExecutionData": True,
                "Destinations": [Match.any_value()],
            },
            "TracingConfiguration": {"Enabled": True},
        },
    )
    template.has_resource_properties(
        "AWS::Logs::LogGroup",
        {
            "LogGroupName": f"/aws/vendedlogs/states/{PREFIX}-training",
            "KmsKeyId": Match.any_value(),
        },
    )


def test_uploads_and_completed_labeling_jobs_start_runs(template):
    rules = {
        rule["Properties"]["EventPattern"]["detail-type"][0]: rule["Properties"]
        for rule in template.find_resources("AWS::Events::Rule").values()
    }
    upload, labeling = rules["Object Created"], rules["Labeling Job Completed"]

    assert upload["EventPattern"]["detail"]["object"] == {
        "key": [{"wildcard": "training/requests/*.manifest"}]
    }
    assert upload["Targets"][0]["InputTransformer"] == {
        "InputPathsMap": {
            "detail-bucket-name": "$.detail.bucket.name",
            "detail-object-key": "$.detail.object.key",
        },
        "InputTemplate": '{"manifestUri":"s3://<detail-bucket-name>/<detail-object-key>"}',
    }
    assert labeling["EventPattern"]["source"] == [f"{PREFIX}.labeling"]
    assert labeling["Targets"][0]["InputPath"] == "$.detail"
    (dead_letters,) = template.find_resources("AWS::SQS::Queue")
    for (target,) in (upload["Targets"], labeling["Targets"]):
        assert target["DeadLetterConfig"] == {"Arn": {"Fn::GetAtt": [dead_letters, "Arn"]}}
        assert target["RetryPolicy"] == {
            "MaximumEventAgeInSeconds": 86400,
            "MaximumRetryAttempts": 185,
        }


def test_outputs_name_what_operators_use(template):
    outputs = template.to_json()["Outputs"]

    assert outputs["EndpointName"]["Value"] == f"{PREFIX}-counter"
    assert outputs["ActiveModelParameterName"]["Value"] == f"/{PREFIX}/active-model"
    assert {"StateMachineArn", "TrainingRequestsUri", "DeadLetterQueueUrl"} <= set(outputs)


# --- Count evaluation: the Batch Transform task, its IAM, the evaluation and the gate ------


def data_key_arn(templates: Templates) -> str:
    storage = f"{PREFIX}-storage"
    (key,) = templates.resources(storage, "AWS::KMS::Key")
    return templates.resolve(storage, {"Fn::GetAtt": [key, "Arn"]})


def test_after_create_model_the_validation_images_are_counted_on_a_cpu_with_kms(default, states):
    _, templates = default
    key_arn = data_key_arn(templates)
    task = states["PredictValidationImages"]

    assert task["Resource"] == "arn:aws:states:::sagemaker:createTransformJob.sync"
    assert task["Parameters"] == {
        "TransformJobName.$": "$.prepared.runName",
        "ModelName.$": "$.prepared.runName",
        "BatchStrategy": "SingleRecord",
        "MaxPayloadInMB": 50,
        "MaxConcurrentTransforms": 1,
        "TransformInput": {
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "ManifestFile",
                    "S3Uri.$": "$.prepared.validationImagesUri",
                }
            },
            "ContentType": "application/x-image",
            "CompressionType": "None",
            "SplitType": "None",
        },
        "TransformOutput": {
            "S3OutputPath.$": (
                f"States.Format('{BUCKET_URI}training/models/{{}}/predictions/', "
                "$.prepared.runName)"
            ),
            "Accept": "application/json",
            "AssembleWith": "None",
            "KmsKeyId": key_arn,
        },
        "TransformResources": {
            "InstanceType": "ml.m5.xlarge",
            "InstanceCount": 1,
            "VolumeKmsKeyId": key_arn,
        },
        # cdk.json's cost-centre and every stage's project and stage.
        "Tags": [
            {"Key": "cost-centre", "Value": "object-counting"},
            {"Key": "project", "Value": "object-counting"},
            {"Key": "stage", "Value": "dev"},
        ],
    }
    assert task["TimeoutSeconds"] == 3600
    retries = {tuple(retry["ErrorEquals"]): retry for retry in task["Retry"]}
    api = retries[("SageMaker.AmazonSageMakerException",)]
    capacity = retries[("SageMaker.ResourceLimitExceededException",)]
    assert (api["IntervalSeconds"], api["MaxAttempts"]) == (60, 3)
    assert (capacity["IntervalSeconds"], capacity["MaxAttempts"]) == (300, 5)
    assert len(retries) == 2  # a job that ran and failed (States.TaskFailed) is not retried
    (catch,) = task["Catch"]
    assert catch["Next"] == "PredictValidationImagesFailed"
    # Order: mAP gate -> CreateModel -> transform -> the active model's transform (if there
    # is one) -> evaluation -> count gate -> champion gate -> endpoint.
    assert states["CreateModel"]["Next"] == "PredictValidationImages"
    assert task["Next"] == "FindChampion"
    assert states["FindChampion"]["Next"] == "ChampionFound"
    (found,) = states["ChampionFound"]["Choices"]
    assert found == {
        "Variable": "$.championLookup.values[0]",
        "IsPresent": True,
        "Next": "ReadChampion",
    }
    assert states["ChampionFound"]["Default"] == "NoChampion"
    assert states["ReadChampion"]["Next"] == "PredictWithChampion"
    assert states["PredictWithChampion"]["Next"] == "CompareWithChampion"
    assert states["CompareWithChampion"]["Next"] == "EvaluateCounts"
    assert states["NoChampion"]["Next"] == "EvaluateCounts"
    assert states["EvaluateCounts"]["Next"] == "CountGate"


def test_the_active_model_counts_the_same_images_in_a_job_of_its_own(states):
    task = states["PredictWithChampion"]
    challenger = states["PredictValidationImages"]["Parameters"]

    # The same request but for the job's name, the model and the output folder.
    assert task["Parameters"] == {
        **challenger,
        "TransformJobName.$": "States.Format('{}-champion', $.prepared.runName)",
        "ModelName.$": "$.champion.record.model_name",
        "TransformOutput": {
            **challenger["TransformOutput"],
            "S3OutputPath.$": (
                f"States.Format('{BUCKET_URI}training/models/{{}}/champion-predictions/', "
                "$.prepared.runName)"
            ),
        },
    }
    # A champion that cannot run leaves the run to its count gate, its error kept.
    assert task["Catch"] == [
        {
            "ErrorEquals": ["States.ALL"],
            "ResultPath": "$.championFailure",
            "Next": "ChampionUnavailable",
        }
    ]
    assert states["ChampionUnavailable"]["Next"] == "EvaluateCounts"
    # The active-model record, read with GetParameters: a missing one is no error.
    find = states["FindChampion"]
    assert find["Resource"] == "arn:aws:states:::aws-sdk:ssm:getParameters"
    assert find["Parameters"] == {"Names": [f"/{PREFIX}/active-model"]}
    assert find["ResultSelector"] == {"values.$": "$.Parameters[*].Value"}


def test_the_champion_gate_deploys_a_first_model_or_one_no_worse(states):
    gate = states["ChampionGate"]

    assert gate["Choices"] == [
        {"Variable": "$.evaluation.champion", "IsNull": True, "Next": "CreateEndpointConfig"},
        {
            "Variable": "$.evaluation.champion.challengerMae",
            "NumericLessThanEqualsPath": "$.evaluation.champion.mae",
            "Next": "CreateEndpointConfig",
        },
    ]
    assert gate["Default"] == "ChampionNotBeaten"
    assert states["DescribeActiveModel"]["Parameters"]["champion.$"] == "$.evaluation.champion"
    assert "forced_deploy" not in states["DescribeActiveModel"]["Parameters"]


def test_force_deploy_skips_the_champion_gate_and_is_recorded():
    reason = "the active model was trained on mislabeled images"
    _, templates = synthesized(**{"counting.training.force_deploy": reason})
    states = templates.definition(STACK)["States"]

    assert "ChampionGate" not in states
    assert states["CountGate"]["Choices"][0]["Next"] == "CreateEndpointConfig"
    assert states["DescribeActiveModel"]["Parameters"]["forced_deploy"] == reason
    # The active model is still measured, its figures recorded.
    assert "PredictWithChampion" in states


def resolved_parameters(parameters: dict, values: dict[str, str]) -> dict:
    """``parameters`` as Step Functions sends them: each ``Name.$`` replaced by its value."""
    resolved = {}
    for name, value in parameters.items():
        if name.endswith(".$"):
            resolved[name.removesuffix(".$")] = values[value]
        elif isinstance(value, dict):
            resolved[name] = resolved_parameters(value, values)
        else:
            resolved[name] = value
    return resolved


def test_the_transform_task_matches_botocores_create_transform_job(states):
    import botocore.session
    from botocore.validate import ParamValidator

    run = f"{PREFIX}-20261126-173000-a1b2c3"
    request = resolved_parameters(
        states["PredictValidationImages"]["Parameters"],
        {
            "$.prepared.runName": run,
            "$.prepared.validationImagesUri": (
                f"{BUCKET_URI}training/manifests/{run}/validation-images.manifest"
            ),
            states["PredictValidationImages"]["Parameters"]["TransformOutput"]["S3OutputPath.$"]: (
                f"{BUCKET_URI}training/models/{run}/predictions/"
            ),
        },
    )
    operation = (
        botocore.session.get_session()
        .get_service_model("sagemaker")
        .operation_model("CreateTransformJob")
    )

    report = ParamValidator().validate(request, operation.input_shape)

    assert not report.has_errors(), report.generate_report()
    transform_types = operation.input_shape.members["TransformResources"].members["InstanceType"]
    assert request["TransformResources"]["InstanceType"] in transform_types.enum


def test_the_count_gate_refuses_above_the_maximum_by_default(states):
    gate = states["CountGate"]
    (choice,) = gate["Choices"]
    assert choice["Next"] == "ChampionGate"
    assert choice["And"] == [
        {"Variable": "$.evaluation.wape", "IsNumeric": True},
        {"Variable": "$.evaluation.wape", "NumericLessThanEquals": 0.25},
    ]
    assert gate["Default"] == "CountGateNotMet"


def test_without_a_maximum_the_count_gate_is_off():
    _, templates = synthesized(**{"counting.training.max_count_wape": "null"})
    states = templates.definition(STACK)["States"]

    assert states["EvaluateCounts"]["Next"] == "ChampionGate"
    assert "CountGate" not in states
    assert "CountGateNotMet" not in states


def test_the_model_role_reads_the_validation_images_and_writes_the_predictions(template):
    granted = {s.get("Sid"): s for s in statements(template, "PipelineDeployModelRole")}

    def objects(statement: dict) -> list[str]:
        return [resource["Fn::Join"][1][-1] for resource in as_list(statement["Resource"])]

    assert granted["ReadTransformInputs"]["Action"] == "s3:GetObject"
    assert objects(granted["ReadTransformInputs"]) == [
        "/labeling/images/*",
        "/training/manifests/*",
    ]
    assert granted["WriteTransformResults"]["Action"] == "s3:PutObject"
    assert sorted(objects(granted["WriteTransformResults"])) == [
        "/training/models/*/champion-predictions/*",
        "/training/models/*/predictions/*",
    ]
    assert sorted(granted["UseTheDataKeyForTransforms"]["Action"]) == [
        "kms:CreateGrant",
        "kms:Decrypt",
        "kms:GenerateDataKey",
    ]
    assert granted["PutTransformMetrics"]["Condition"] == {
        "StringEquals": {"cloudwatch:namespace": "/aws/sagemaker/TransformJobs"}
    }
    # A transform job runs as its model's role: the state machine passes no other role.
    assert "iam:PassRole" not in json.dumps(granted)


def test_the_evaluation_function_has_pillow_and_reads_only_run_folders(template):
    (function,) = [
        body
        for body in template.find_resources("AWS::Lambda::Function").values()
        if body["Properties"]["Handler"] == "lambdas.evaluate_counts.handler.main"
    ]
    properties = function["Properties"]
    assert properties["Runtime"] == "python3.13"
    assert len(properties["Layers"]) == 2  # Powertools and Pillow (the plot)
    granted = {s.get("Sid"): s for s in statements(template, "PipelineEvaluateFunctionRole")}
    assert granted["ListPredictions"]["Condition"] == {
        "StringLike": {"s3:prefix": "training/models/*"}
    }
    assert granted["ReadPredictions"]["Action"] == "s3:GetObject"
    assert sorted(r["Fn::Join"][1][-1] for r in granted["ReadPredictions"]["Resource"]) == [
        "/training/models/*/champion-predictions/*",
        "/training/models/*/predictions/*",
    ]
    assert granted["WriteEvaluations"]["Action"] == "s3:PutObject"
    # evaluation.json and evaluation.png, nothing else.
    assert granted["WriteEvaluations"]["Resource"]["Fn::Join"][1][-1] == (
        "/training/models/*/evaluation.*"
    )


def test_prepare_has_the_memory_and_storage_the_manifest_benchmark_sizes(template):
    # bench/bench_manifest.py: a 1,000,000-line manifest peaks at about 130 MB; /tmp holds
    # the manifest and both channels (see stacks/components/training/prepare.py).
    template.has_resource_properties(
        "AWS::Lambda::Function",
        {
            "Handler": "lambdas.prepare_training_data.handler.main",
            "MemorySize": 1024,
            "EphemeralStorage": {"Size": 4096},
            "Timeout": 300,
        },
    )


# --- Tiling measured: the validation images cut into tiles and counted in a third job ---

TILED = {"counting.counter.tiling.mode": "auto"}
TILE_STATES = ("StartCuttingTiles", "CutValidationTiles", "TilesCut", "PredictValidationTiles")


@pytest.fixture(scope="module")
def tiled() -> tuple[Template, Templates]:
    return synthesized(**TILED)


@pytest.fixture(scope="module")
def tiled_states(tiled) -> dict:
    return tiled[1].definition(STACK)["States"]


def test_with_tiling_off_there_are_no_tile_states_and_the_record_holds_null(states):
    assert load_config(cdk_context()).counter.tiling.mode == "off"
    assert not set(TILE_STATES) & set(states)
    assert states["PredictValidationImages"]["Next"] == "FindChampion"
    assert "tiles" not in json.dumps(states["EvaluateCounts"]["Parameters"])
    # The evaluation returns tiling null then; the record keeps whatever it returned.
    assert states["DescribeActiveModel"]["Parameters"]["tiling.$"] == "$.evaluation.tiling"
    assert states["EvaluateCounts"]["ResultSelector"]["tiling.$"] == "$.Payload.tiling"


def test_with_tiling_on_or_auto_the_tiles_are_cut_in_a_loop_and_counted(tiled_states):
    states = tiled_states
    assert states["PredictValidationImages"]["Next"] == "StartCuttingTiles"
    assert states["StartCuttingTiles"]["Result"] == {"next": 0}
    assert states["StartCuttingTiles"]["ResultPath"] == "$.tileCut"
    cut = states["CutValidationTiles"]
    assert cut["Parameters"]["Payload"] == {
        "runName.$": "$.prepared.runName",
        "validationManifestUri.$": "$.prepared.validationManifestUri",
        "labelAttribute.$": "$.prepared.labelAttribute",
        "next.$": "$.tileCut.next",
    }
    assert cut["ResultPath"] == "$.tileCut"
    assert cut["Next"] == "TilesCut"
    assert [c["Next"] for c in cut["Catch"]] == ["CutValidationTilesFailed"]
    assert {e for r in cut["Retry"] for e in r["ErrorEquals"]} >= {"Lambda.ServiceException"}
    assert states["TilesCut"]["Choices"] == [
        {"Variable": "$.tileCut.done", "BooleanEquals": True, "Next": "PredictValidationTiles"}
    ]
    assert states["TilesCut"]["Default"] == "CutValidationTiles"
    tiles = states["PredictValidationTiles"]
    whole = states["PredictValidationImages"]
    # The new model, the same instance type, over the tiles' manifest, for six hours at most.
    assert tiles["Parameters"] == {
        **whole["Parameters"],
        "TransformJobName.$": "States.Format('{}-tiles', $.prepared.runName)",
        "TransformInput": {
            **whole["Parameters"]["TransformInput"],
            "DataSource": {
                "S3DataSource": {"S3DataType": "ManifestFile", "S3Uri.$": "$.tileCut.manifestUri"}
            },
        },
        "TransformOutput": {
            **whole["Parameters"]["TransformOutput"],
            "S3OutputPath.$": (
                f"States.Format('{BUCKET_URI}training/models/{{}}/tile-predictions/', "
                "$.prepared.runName)"
            ),
        },
    }
    assert tiles["TimeoutSeconds"] == 6 * 3600
    assert [c["Next"] for c in tiles["Catch"]] == ["PredictValidationTilesFailed"]
    assert tiles["Next"] == "FindChampion"
    assert states["EvaluateCounts"]["Parameters"]["Payload"]["tiles"] == {
        "tileSetsUri.$": "$.tileCut.tileSetsUri",
        "predictionsUri.$": "$.tileTransform.TransformOutput.S3OutputPath",
    }
    # The active model is not counted in tiles.
    assert "tile" not in json.dumps(states["PredictWithChampion"])


def test_the_tile_cutter_gets_the_counters_tiling_and_only_the_run_folders(tiled):
    template, _ = tiled
    (function,) = [
        body
        for body in template.find_resources("AWS::Lambda::Function").values()
        if body["Properties"]["Handler"] == "lambdas.cut_tiles.handler.main"
    ]
    properties = function["Properties"]
    assert (properties["Timeout"], properties["MemorySize"]) == (900, 3072)
    assert len(properties["Layers"]) == 2  # Powertools and Pillow
    variables = properties["Environment"]["Variables"]
    # counter.tiling's variables, as the counting functions get them.
    assert {name: variables.get(name) for name in (
        "IMAGE_SHAPE", "TILING", "TILE_SIDE", "TILE_OVERLAP", "TILING_AUTO_MULTIPLE",
        "TILE_MERGE", "WHOLE_IMAGE_PASS"
    )} == {
        "IMAGE_SHAPE": "512", "TILING": "auto", "TILE_SIDE": None, "TILE_OVERLAP": "0.2",
        "TILING_AUTO_MULTIPLE": "3.0", "TILE_MERGE": "merge", "WHOLE_IMAGE_PASS": "true",
    }  # fmt: skip
    granted = {s.get("Sid"): s for s in statements(template, "PipelineEvaluateCutTilesFunction")}

    def objects(statement: dict) -> list[str]:
        return sorted(r["Fn::Join"][1][-1] for r in as_list(statement["Resource"]))

    assert objects(granted["ReadValidationImages"]) == [
        "/labeling/images/*",
        "/training/manifests/*",
        "/training/models/*/tiles/tile-sets/*",
    ]
    assert sorted(granted["WriteTiles"]["Action"]) == ["s3:AbortMultipartUpload", "s3:PutObject"]
    assert objects(granted["WriteTiles"]) == ["/training/models/*/tiles/*"]
    assert granted["ListTileSets"]["Condition"] == {
        "StringLike": {"s3:prefix": "training/models/*/tiles/tile-sets/*"}
    }
    model = {s.get("Sid"): s for s in statements(template, "PipelineDeployModelRole")}
    assert "/training/models/*/tiles/*" in objects(model["ReadTransformInputs"])
    assert "/training/models/*/tile-predictions/*" in objects(model["WriteTransformResults"])
    # The evaluation reads an answer per tile too: 15 minutes rather than 5.
    (evaluate,) = [
        body["Properties"]
        for body in template.find_resources("AWS::Lambda::Function").values()
        if body["Properties"]["Handler"] == "lambdas.evaluate_counts.handler.main"
    ]
    assert evaluate["Timeout"] == 900
    evaluation = {s.get("Sid"): s for s in statements(template, "PipelineEvaluateFunctionRole")}
    assert objects(evaluation["ReadPredictions"]) == [
        "/training/models/*/champion-predictions/*",
        "/training/models/*/predictions/*",
        "/training/models/*/tile-predictions/*",
        "/training/models/*/tiles/tile-sets/*",
    ]


def test_the_run_may_last_as_long_as_its_steps_and_measuring_tiling_adds_its_own(default, tiled):
    # Spot training waits at most 48 h (training.max_wait_hours): 172,800 s; Prepare, quota
    # and deployment 3 h: 10,800 s; the evaluation two jobs of 1 h 25 min and 5 min of the
    # Lambda: 10,500 s. In all 194,100 s.
    assert default[1].definition(STACK)["TimeoutSeconds"] == 194_100
    # Measuring tiling adds the tiles' job (6 h 25 min), the cutting loop (1 h) and the
    # evaluation's 10 more minutes: 23,100 + 3,600 + 600 = 27,300 s.
    assert tiled[1].definition(STACK)["TimeoutSeconds"] == 221_400
