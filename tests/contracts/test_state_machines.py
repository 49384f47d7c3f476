"""Every Task state of every synthesized state machine sends a request its API accepts.

The request is checked against botocore's model of the API the Resource names (member
names, nesting, required members, types, lengths, ranges, enums and patterns), in every
configuration of ``tests/infra/configurations.py``. A state another step adds is
checked the moment it is synthesized; an integration this file cannot resolve fails.
"""

from __future__ import annotations

import copy

import pytest

from tests.contracts.conftest import synthesized
from tests.contracts.model import UNKNOWN, operation, problems
from tests.contracts.state_machines import TaskCall, api_of, definitions, task_calls
from tests.stepfunctions.template import Templates


def calls(templates: Templates) -> list[TaskCall]:
    return [
        call
        for machine, definition in definitions(templates)
        for call in task_calls(machine, definition)
    ]


def refusals(call: TaskCall) -> list[str]:
    shape = operation(call.service, call.operation).input_shape
    return [str(problem) for problem in problems(call.request, shape)]


@pytest.mark.synth
def test_every_task_state_sends_a_request_its_api_accepts(templates):
    found = calls(templates)
    assert {call.operation for call in found} >= {"CreateTrainingJob", "CreateEndpointConfig"}
    refused = {str(call): refusals(call) for call in found}
    assert {call: why for call, why in refused.items() if why} == {}


@pytest.mark.parametrize(
    ("resource", "api"),
    [
        ("arn:aws:states:::sagemaker:createTrainingJob.sync", ("sagemaker", "CreateTrainingJob")),
        ("arn:aws:states:::sagemaker:createTransformJob.sync", ("sagemaker", "CreateTransformJob")),
        ("arn:aws:states:::aws-sdk:sagemaker:listEndpoints", ("sagemaker", "ListEndpoints")),
        ("arn:aws-us-gov:states:::aws-sdk:sfn:startExecution", ("stepfunctions", "StartExecution")),
        ("arn:aws:states:::states:startExecution.sync:2", ("stepfunctions", "StartExecution")),
        (
            "arn:aws:states:::aws-sdk:sagemakerruntime:invokeEndpoint",
            ("sagemaker-runtime", "InvokeEndpoint"),
        ),
        ("arn:aws:states:::lambda:invoke", ("lambda", "Invoke")),
        ("arn:aws:states:::sns:publish", ("sns", "Publish")),
        ("arn:aws:lambda:us-east-1:123456789012:function:f", None),
    ],
)
def test_a_resource_names_its_api(resource, api):
    assert api_of(resource) == api


# Deliberate mistakes in the synthesized training job request, and what each must be called.
BROKEN = {
    "misspelt member": (
        lambda job: job["ResourceConfig"].update(
            InstanceTyp=job["ResourceConfig"].pop("InstanceType")
        ),
        ["CreateTrainingJobRequest.ResourceConfig: unknown member InstanceTyp"],
    ),
    "required member left out": (
        lambda job: job.pop("RoleArn"),
        ["CreateTrainingJobRequest: missing required member RoleArn"],
    ),
    "misspelt run-time member": (
        lambda job: job.update(TrainingJobNam=job.pop("TrainingJobName")),
        [
            "CreateTrainingJobRequest: missing required member TrainingJobName",
            "CreateTrainingJobRequest: unknown member TrainingJobNam",
        ],
    ),
    "value outside the enum": (
        lambda job: job["AlgorithmSpecification"].update(TrainingInputMode="Pipes"),
        ["AlgorithmSpecification.TrainingInputMode: 'Pipes' is not one of"],
    ),
    "instance type that does not exist": (
        lambda job: job["ResourceConfig"].update(InstanceType="ml.p3.xlarge"),
        ["CreateTrainingJobRequest.ResourceConfig.InstanceType: 'ml.p3.xlarge' is not one of"],
    ),
    "number out of range": (
        lambda job: job["StoppingCondition"].update(MaxRuntimeInSeconds=0),
        ["MaxRuntimeInSeconds: 0 is below the minimum 1"],
    ),
    "pattern broken": (
        lambda job: job["OutputDataConfig"].update(S3OutputPath="s3:/no-bucket"),
        ["S3OutputPath: 's3:/no-bucket' does not match the pattern"],
    ),
    "wrong type": (
        lambda job: job["ResourceConfig"].update(InstanceCount="1"),
        ["InstanceCount: must be an integer, not '1'"],
    ),
    "list too long": (
        lambda job: job.update(InputDataConfig=[job["InputDataConfig"][0]] * 21),
        ["InputDataConfig: 21 items is above the maximum 20"],
    ),
}


@pytest.mark.parametrize("mistake", BROKEN.values(), ids=BROKEN.keys())
@pytest.mark.synth
def test_a_broken_definition_is_refused_with_its_mistake_named(mistake):
    break_it, expected = mistake
    (train,) = [call for call in calls(synthesized("defaults")) if call.state == "Train"]
    job = copy.deepcopy(train.request)
    assert refusals(train) == []

    break_it(job)

    found = refusals(TaskCall(train.machine, train.state, train.service, train.operation, job))
    assert len(found) == len(expected), found
    for problem, start in zip(sorted(found), sorted(expected), strict=True):
        assert start in problem, (start, found)


@pytest.mark.synth
def test_run_time_values_are_checked_by_name_only():
    # A ".$" parameter's value is a path, known only at run time: its name still counts.
    (train,) = [call for call in calls(synthesized("defaults")) if call.state == "Train"]
    assert train.request["TrainingJobName"] is UNKNOWN


# cdk.json's tags (cost-centre) and the two every stage has: what cost allocation groups by.
STAGE_TAGS = [
    {"Key": "cost-centre", "Value": "object-counting"},
    {"Key": "project", "Value": "object-counting"},
    {"Key": "stage", "Value": "dev"},
]
# SageMaker's Create* calls that take Tags, as the state machines make them.
TAGGED = {
    "CreateTrainingJob",
    "CreateModel",
    "CreateEndpointConfig",
    "CreateEndpoint",
    "CreateTransformJob",
}


@pytest.mark.synth
def test_what_the_state_machines_create_in_sagemaker_carries_the_stages_tags():
    # Jobs, models and endpoints are made by the state machines, not CloudFormation, so
    # cdk.Tags never reaches them: without these, SageMaker's costs fall outside cost-centre.
    found = [
        call
        for call in calls(synthesized("defaults"))
        if call.service == "sagemaker" and call.operation in TAGGED
    ]

    # Training: the job, the model, its config and endpoint, the run's and the champion's
    # transforms; bulk: the run's model copy and its transform.
    assert {call.operation for call in found} == TAGGED
    assert {str(call): call.request.get("Tags") for call in found} == {
        str(call): STAGE_TAGS for call in found
    }
