"""The torchvision training path (the default): the PyTorch images, the script-mode training job
under network isolation, its channels and IAM, the served model and the record."""

from __future__ import annotations

import json
import tarfile
from pathlib import Path

import pytest
from aws_cdk.assertions import Template

from stacks.components.algorithms.images import PYTORCH_TABLE
from tests.infra.synth import build_app
from tests.stepfunctions.template import Templates

pytestmark = pytest.mark.synth  # every test here builds the CDK app

PREFIX = "object-counting-dev"
STACK = f"{PREFIX}-training"
BUCKET_URI = f"s3://{PREFIX}-data-123456789012-us-east-1/"
WEIGHTS = "fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth"
KNOWN_REGION = {"counting.account": "123456789012", "counting.region": "eu-west-1"}


def synthesized(**context) -> tuple[Template, Templates, Path]:
    app, stacks = build_app(rule_packs=False, **context)
    assembly = app.synth()
    templates = Templates(
        {s.stack_name: json.loads(Path(s.template_full_path).read_text()) for s in assembly.stacks}
    )
    return Template.from_stack(stacks["training"]), templates, Path(assembly.directory)


@pytest.fixture(scope="module")
def default() -> tuple[Template, Templates, Path]:
    return synthesized()


@pytest.fixture(scope="module")
def states(default) -> dict:
    return default[1].definition(STACK)["States"]


@pytest.fixture(scope="module")
def known_region() -> dict:
    _, templates, _ = synthesized(**KNOWN_REGION)
    return templates.definition(STACK)["States"]


def training_role(template: Template) -> dict[str, dict]:
    (policy,) = [
        body["Properties"]["PolicyDocument"]["Statement"]
        for body in template.find_resources("AWS::IAM::Policy").values()
        if body["Properties"]["Roles"][0]["Ref"].startswith("PipelineTrainTrainingRole")
    ]
    return {statement.get("Sid"): statement for statement in policy}


def code_key(states: dict) -> str:
    """The code asset's object key, from the code channel (``<hash>.gz``)."""
    channels = {c["ChannelName"]: c for c in states["Train"]["Parameters"]["InputDataConfig"]}
    uri = channels["code"]["DataSource"]["S3DataSource"]["S3Uri"]
    return uri.rsplit("/", 1)[1]


def test_the_job_runs_the_script_in_the_pytorch_training_image_without_network(known_region):
    job = known_region["Train"]["Parameters"]

    assert known_region["Train"]["Resource"] == (
        "arn:aws:states:::sagemaker:createTrainingJob.sync"
    )
    # The SDK's image_uris.retrieve("pytorch", "eu-west-1", "2.6.0", "py312",
    # instance_type="ml.g4dn.xlarge", image_scope="training").
    assert job["AlgorithmSpecification"] == {
        "TrainingImage": "763104351884.dkr.ecr.eu-west-1.amazonaws.com/"
        "pytorch-training:2.6.0-gpu-py312",
        "TrainingInputMode": "File",
        "MetricDefinitions": [
            {"Name": "validation:mAP", "Regex": "validation:mAP=([0-9.]+)"},
            {"Name": "validation:mAP_coco", "Regex": "validation:mAP_coco=([0-9.]+)"},
            {"Name": "train:loss", "Regex": "train:loss=([0-9.]+)"},
        ],
    }
    assert job["EnableNetworkIsolation"] is True
    # g4dn keeps the data on its NVMe storage: no volume key.
    assert job["ResourceConfig"] == {
        "InstanceCount": 1,
        "InstanceType": "ml.g4dn.xlarge",
        "VolumeSizeInGB": 50,
    }


def test_the_hyperparameters_are_the_contracts_and_script_modes(known_region):
    job = known_region["Train"]["Parameters"]

    assert job["HyperParameters"] == {
        # 24 hours of max_runtime_hours, less 30 minutes to evaluate, save and upload.
        "max_minutes": "1410",
        "image_size": "512",
        "epochs": "30",
        "batch_size": "8",
        "max_detections": "1000",
        "seed": "42",
        "detector": "fasterrcnn_mobilenet_v3_large_fpn",
        # The bucket's name is built with AWS::Region, resolved here as us-east-1.
        "image_prefix": f"{BUCKET_URI}labeling/images/",
        "num_classes.$": "$.prepared.hyperparameters.num_classes",
        "label_attribute.$": "$.prepared.labelAttribute",
        "sagemaker_program": "train.py",
        "sagemaker_submit_directory": f"/opt/ml/input/data/code/{code_key(known_region)}",
        "sagemaker_region": "eu-west-1",
    }


def test_a_time_budget_given_in_the_hyperparameters_wins():
    _, templates, _ = synthesized(
        **{
            "counting.training.max_runtime_hours": "2",
            "counting.training.hyperparameters": '{"max_minutes": "60"}',
        }
    )
    job = templates.definition(STACK)["States"]["Train"]["Parameters"]

    assert job["HyperParameters"]["max_minutes"] == "60"
    _, templates, _ = synthesized(**{"counting.training.max_runtime_hours": "2"})
    job = templates.definition(STACK)["States"]["Train"]["Parameters"]

    assert job["HyperParameters"]["max_minutes"] == "90"  # 2 hours less 30 minutes


def test_every_channel_is_a_file_channel_of_the_runs_data_the_weights_and_the_code(
    known_region,
):
    job = known_region["Train"]["Parameters"]
    bucket = BUCKET_URI  # named with AWS::Region, resolved here as us-east-1

    channels = {c["ChannelName"]: c for c in job["InputDataConfig"]}
    assert list(channels) == ["train", "validation", "images", "weights", "code"]
    sources = {}
    for name, channel in channels.items():
        assert channel["InputMode"] == "File"
        assert channel["CompressionType"] == "None"
        assert "RecordWrapperType" not in channel
        source = dict(channel["DataSource"]["S3DataSource"])
        assert source.pop("S3DataDistributionType") == "FullyReplicated"
        sources[name] = source
    assert sources == {
        "train": {"S3DataType": "S3Prefix", "S3Uri.$": "$.prepared.trainManifestUri"},
        "validation": {"S3DataType": "S3Prefix", "S3Uri.$": "$.prepared.validationManifestUri"},
        "images": {"S3DataType": "ManifestFile", "S3Uri.$": "$.prepared.imagesUri"},
        "weights": {"S3DataType": "S3Prefix", "S3Uri": f"{bucket}training/weights/{WEIGHTS}"},
        "code": {
            "S3DataType": "S3Prefix",
            "S3Uri": f"s3://cdk-hnb659fds-assets-123456789012-eu-west-1/{code_key(known_region)}",
        },
    }


def test_training_from_scratch_has_no_weights_channel_nor_grant():
    template, templates, _ = synthesized(**{"counting.training.pretrained_weights": "none"})
    job = templates.definition(STACK)["States"]["Train"]["Parameters"]

    assert [c["ChannelName"] for c in job["InputDataConfig"]] == [
        "train",
        "validation",
        "images",
        "code",
    ]
    assert "training/weights/" not in json.dumps(training_role(template))


def test_the_code_asset_is_the_detector_package_and_its_entry_point(default, states):
    _, _, assembly = default
    key = code_key(states)
    (tarball,) = assembly.glob(f"asset.{key.removesuffix('.gz')}*")

    with tarfile.open(tarball, "r:gz") as archive:
        names = archive.getnames()
        entry = archive.extractfile("train.py").read()
        package_entry = archive.extractfile("detector/train.py").read()

    assert "train.py" in names
    assert "detector/__init__.py" in names
    assert "detector/source.py" in names
    assert not [name for name in names if "__pycache__" in name or name.endswith(".pyc")]
    assert entry == package_entry
    # The same code gives the same asset: the hash changes only when detector/ does.
    _, again, _ = synthesized()
    assert code_key(again.definition(STACK)["States"]) == key


def test_the_training_role_reads_only_the_runs_data_the_weights_and_its_code(default, states):
    template, templates, _ = default
    granted = training_role(template)
    key = code_key(states)

    reads = granted["ReadPreparedManifestsAndImages"]
    assert reads["Action"] == "s3:GetObject"
    assert sorted(templates.resolve(STACK, r) for r in reads["Resource"]) == [
        f"arn:aws:s3:::{PREFIX}-data-123456789012-us-east-1/labeling/images/*",
        f"arn:aws:s3:::{PREFIX}-data-123456789012-us-east-1/training/manifests/*",
    ]
    # The configured weights file only, by its key: no other file under training/weights/.
    weights = granted["ReadThePretrainedWeights"]
    assert weights["Action"] == "s3:GetObject"
    assert templates.resolve(STACK, weights["Resource"]) == (
        f"arn:aws:s3:::{PREFIX}-data-123456789012-us-east-1/training/weights/{WEIGHTS}"
    )
    assert granted["ListTheJobsData"]["Condition"] == {
        "StringLike": {
            "s3:prefix": [
                "training/manifests/*",
                "labeling/images/*",
                "training/models/checkpoints/*",
                f"training/weights/{WEIGHTS}",
            ]
        }
    }
    code = granted["ReadTheTrainingCode"]
    assert code["Action"] == "s3:GetObject"
    assert templates.resolve(STACK, code["Resource"]) == (
        f"arn:aws:s3:::cdk-hnb659fds-assets-123456789012-us-east-1/{key}"
    )
    assert granted["ListTheTrainingCode"]["Condition"] == {"StringEquals": {"s3:prefix": key}}
    # No volume key to grant on (g4dn): no kms:CreateGrant.
    assert sorted(granted["UseTheDataKey"]["Action"]) == [
        "kms:Decrypt",
        "kms:Encrypt",
        "kms:GenerateDataKey",
    ]
    # SageMaker pulls its own PyTorch images: no ECR permissions.
    assert "ecr:" not in json.dumps(granted)


def test_the_model_is_served_by_inference_py_in_the_pytorch_cpu_image(known_region):
    model = known_region["CreateModel"]["Parameters"]

    # Serverless endpoints do not support network isolation (their feature exclusions): the
    # model the endpoint serves cannot ask for it.
    assert "EnableNetworkIsolation" not in model
    assert model["PrimaryContainer"] == {
        "Image": "763104351884.dkr.ecr.eu-west-1.amazonaws.com/pytorch-inference:2.6.0-cpu-py312",
        "ModelDataUrl.$": "$.training.ModelArtifacts.S3ModelArtifacts",
        "Environment": {
            "SAGEMAKER_PROGRAM": "inference.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": "/opt/ml/model/code",
            "SAGEMAKER_CONTAINER_LOG_LEVEL": "20",
            "SAGEMAKER_REGION": "eu-west-1",
            # TorchServe takes a whole 50 MB photo (50 * 1024 * 1024 bytes), not its own
            # 6,553,500, and loads the model once.
            "TS_MAX_REQUEST_SIZE": "52428800",
            "TS_MAX_RESPONSE_SIZE": "52428800",
            "SAGEMAKER_MODEL_SERVER_WORKERS": "1",
        },
    }
    # The same model serves the evaluation's Batch Transform and the serverless endpoint.
    assert known_region["PredictValidationImages"]["Parameters"]["ModelName.$"] == (
        "$.prepared.runName"
    )
    (variant,) = known_region["CreateEndpointConfig"]["Parameters"]["ProductionVariants"]
    assert variant["ModelName.$"] == "$.prepared.runName"
    assert variant["ServerlessConfig"]["MemorySizeInMB"] == 4096


def test_the_images_come_from_the_sdk_table_by_region(default):
    template, _, _ = default
    mapping = template.to_json()["Mappings"]["PyTorchRegistry"]

    # The vendored table, read here: PyTorch 2.6.0's training and inference registries, in
    # the regions that have both.
    table = json.loads(PYTORCH_TABLE.read_text())
    training = table["training"]["versions"]["2.6.0"]["registries"]
    inference = table["inference"]["versions"]["2.6.0"]["registries"]
    assert mapping == {
        region: {"training": training[region], "inference": inference[region]}
        for region in set(training) & set(inference)
    }
    # Spot checks against the DLC registry table in the SageMaker documentation.
    assert mapping["us-east-1"] == {"training": "763104351884", "inference": "763104351884"}
    assert mapping["ap-east-1"] == {"training": "871362719292", "inference": "871362719292"}
    assert "ObjectDetectionRegistry" not in template.to_json()["Mappings"]


def test_the_record_says_which_algorithm_and_detector_it_holds(states):
    record = states["DescribeActiveModel"]["Parameters"]

    assert record["algorithm"] == "torchvision"
    assert record["detector"] == "fasterrcnn_mobilenet_v3_large_fpn"
    assert record["image_shape"] == 512


def test_the_code_is_named_by_its_base_name_whatever_prefix_the_assets_bucket_uses():
    # A synthesizer that files assets under a folder: the code channel drops the folder, so
    # sagemaker_submit_directory must name the tarball alone.
    import aws_cdk as cdk

    from stacks.components.training.source import code_file_name, source_asset

    stack = cdk.Stack(
        cdk.App(), "Code", synthesizer=cdk.DefaultStackSynthesizer(bucket_prefix="assets/")
    )
    asset = source_asset(stack, "Code")

    assert asset.s3_object_key.startswith("assets/")
    assert code_file_name(asset) == asset.s3_object_key.removeprefix("assets/")
    assert code_file_name(asset).endswith(".gz")
    assert "/" not in code_file_name(asset)
