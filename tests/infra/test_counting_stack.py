"""The counting pipeline: rule -> queue (+DLQs) -> counter Lambda -> tables.

The counting stack is built beside the storage stack only, whose key and bucket it uses.
"""

from __future__ import annotations

import json

import pytest
from aws_cdk.assertions import Match, Template

from stacks.config import ConfigError, load_config
from stacks.counting_stack import CountingStack
from tests.conftest import cdk_context
from tests.infra.synth import app_with_storage

pytestmark = pytest.mark.synth  # every test here synthesizes templates


@pytest.fixture(scope="module")
def template() -> Template:
    # The setting's default, which prod keeps (cdk.json's dev stage destroys its data).
    app, config, storage, env = app_with_storage(**{"counting.storage.removal_policy": "retain"})
    counting = CountingStack(
        app, f"{config.prefix}-counting", config=config, storage=storage, env=env
    )
    return Template.from_stack(counting)


TILING_VARIABLES = (
    "TILING",
    "TILE_OVERLAP",
    "TILING_AUTO_MULTIPLE",
    "TILE_MERGE",
    "WHOLE_IMAGE_PASS",
    "MARK_TILES",
)


def counter_function(template: Template) -> dict:
    functions = template.find_resources(
        "AWS::Lambda::Function",
        {"Properties": {"Handler": "lambdas.counter.handler.main"}},
    )
    assert len(functions) == 1
    return next(iter(functions.values()))


def test_uploads_under_incoming_go_through_eventbridge_to_the_queue(template):
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": {
                "source": ["aws.s3"],
                "detail-type": ["Object Created"],
                "detail": {
                    "bucket": {"name": [Match.any_value()]},
                    "object": {"key": [{"prefix": "incoming/"}]},
                },
            },
            "Targets": [
                Match.object_like(
                    {
                        "DeadLetterConfig": {"Arn": Match.any_value()},
                        "RetryPolicy": {
                            "MaximumEventAgeInSeconds": 86400,
                            "MaximumRetryAttempts": 185,
                        },
                    }
                )
            ],
        },
    )


def test_queues_are_encrypted_and_the_intake_redrives_after_five_receives(template):
    queues = template.find_resources("AWS::SQS::Queue")
    assert len(queues) == 3
    for queue in queues.values():
        assert "KmsMasterKeyId" in queue["Properties"]
    template.has_resource_properties(
        "AWS::SQS::Queue",
        {
            # 6 x the 600 s function timeout.
            "VisibilityTimeout": 3600,
            "RedrivePolicy": {"deadLetterTargetArn": Match.any_value(), "maxReceiveCount": 5},
        },
    )
    policies = template.find_resources("AWS::SQS::QueuePolicy")
    denies_plain_http = [
        statement
        for policy in policies.values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Deny"
        and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    ]
    assert len(denies_plain_http) == 3


def test_only_this_accounts_eventbridge_rules_may_send_to_the_queues(template):
    # Without a condition any EventBridge rule, in any account, could fill the intake
    # queue with forged uploads (cdk.json: @aws-cdk/aws-events:eventsTargetQueueSameAccount).
    allowed = [
        statement
        for policy in template.find_resources("AWS::SQS::QueuePolicy").values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
        if statement["Effect"] == "Allow"
    ]
    conditions = sorted(
        (json.dumps(statement["Principal"]), json.dumps(statement["Condition"], sort_keys=True))
        for statement in allowed
    )
    rule = template.find_resources("AWS::Events::Rule")
    (rule_id,) = rule
    events = json.dumps({"Service": "events.amazonaws.com"})
    assert conditions == [
        (events, json.dumps({"ArnEquals": {"aws:SourceArn": {"Fn::GetAtt": [rule_id, "Arn"]}}})),
        (events, json.dumps({"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}})),
    ]


def test_event_source_reports_item_failures_within_the_endpoint_concurrency(template):
    template.has_resource_properties(
        "AWS::Lambda::EventSourceMapping",
        {
            "BatchSize": 9,
            "FunctionResponseTypes": ["ReportBatchItemFailures"],
            "ScalingConfig": {"MaximumConcurrency": 2},
        },
    )


def test_counter_function_is_traced_logged_and_configured(template):
    properties = counter_function(template)["Properties"]
    assert properties["Runtime"] == "python3.13"
    assert properties["Timeout"] == 600
    assert properties["TracingConfig"] == {"Mode": "Active"}
    assert properties["LoggingConfig"]["LogFormat"] == "JSON"
    assert "KmsKeyArn" in properties
    environment = properties["Environment"]["Variables"]
    assert environment["ACTIVE_MODEL_PARAMETER"] == "/object-counting-dev/active-model"
    # No threshold pinned by default: the active model's calibrated one applies.
    assert "SCORE_THRESHOLD" not in environment
    assert environment["ANNOTATE"] == "true"
    # 2 functions x 3 images each = the endpoint's MaxConcurrency of 6.
    assert environment["IMAGES_IN_FLIGHT"] == "3"
    assert environment["PAYLOAD_SCALE"] == "2"
    # Tiling off by default, at the default tiler settings, and the untiled memory.
    assert {name: environment[name] for name in TILING_VARIABLES} == {
        "TILING": "off",
        "TILE_OVERLAP": "0.2",
        "TILING_AUTO_MULTIPLE": "3.0",
        "TILE_MERGE": "merge",
        "WHOLE_IMAGE_PASS": "true",
        "MARK_TILES": "false",
    }
    assert "TILE_SIDE" not in environment  # the model's image_shape
    assert properties["MemorySize"] == 1024
    assert environment["DATA_BUCKET"]["Fn::Join"][1][0] == "object-counting-dev-data-"
    assert set(environment) >= {"QUEUE_URL", "DEAD_LETTER_QUEUE_URL"}
    assert len(properties["Layers"]) == 2  # Powertools (public) and Pillow
    template.has_resource_properties(
        "AWS::Logs::LogGroup", {"KmsKeyId": Match.any_value(), "RetentionInDays": 90}
    )


def test_counter_may_only_do_what_it_needs(template):
    policies = template.find_resources("AWS::IAM::Policy")
    statements = {
        statement.get("Sid"): statement
        for policy in policies.values()
        for statement in policy["Properties"]["PolicyDocument"]["Statement"]
    }
    assert statements["ReadIncomingImages"]["Action"] == ["s3:GetObject", "s3:GetObjectVersion"]
    assert statements["WriteResultsAndAnnotatedImages"]["Action"] == [
        "s3:GetObject",
        "s3:PutObject",
    ]
    assert statements["InvokeTheEndpoint"]["Action"] == "sagemaker:InvokeEndpoint"
    # Sends a message again or dead-letters it itself: the intake queue and its DLQ only.
    assert statements["SendAgainOrDeadLetter"]["Action"] == "sqs:SendMessage"
    assert len(statements["SendAgainOrDeadLetter"]["Resource"]) == 2
    assert statements["InvokeTheEndpoint"]["Resource"]["Fn::Join"][1][-1] == (
        ":endpoint/object-counting-dev-counter"
    )
    for statement in statements.values():
        assert statement["Action"] != "*"
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        assert not any(action.endswith(":*") for action in actions), statement
    template.resource_properties_count_is(
        "AWS::IAM::Role",
        {"ManagedPolicyArns": Match.any_value()},
        0,
    )


def test_tables_are_encrypted_with_the_data_key_and_results_are_protected(template):
    template.has_resource(
        "AWS::DynamoDB::Table",
        {
            "Properties": {
                "KeySchema": [
                    {"AttributeName": "image", "KeyType": "HASH"},
                    {"AttributeName": "version", "KeyType": "RANGE"},
                ],
                "SSESpecification": Match.object_like({"SSEEnabled": True, "SSEType": "KMS"}),
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            },
        },
    )
    template.has_resource_properties(
        "AWS::DynamoDB::Table",
        {
            "KeySchema": [{"AttributeName": "id", "KeyType": "HASH"}],
            "TimeToLiveSpecification": {"AttributeName": "expiration", "Enabled": True},
        },
    )


@pytest.mark.parametrize(
    ("overrides", "product"),
    [
        ({"counting.counter.max_concurrency": "3"}, "3 x 3 = 9"),
        ({"counting.counter.images_in_flight": "2"}, "2 x 2 = 4"),
        ({"counting.inference.max_concurrency": "5"}, "2 x 3 = 6"),
    ],
)
def test_counter_concurrency_must_match_the_endpoint(overrides, product):
    with pytest.raises(ConfigError, match=rf"images_in_flight \({product}\) must equal"):
        load_config(cdk_context(**overrides))


def test_a_matching_product_is_accepted():
    config = load_config(
        cdk_context(
            **{
                "counting.counter.max_concurrency": "4",
                "counting.counter.images_in_flight": "5",
                "counting.inference.max_concurrency": "20",
            }
        )
    )
    assert config.counter.max_concurrency * config.counter.images_in_flight == 20


def test_a_tiling_counter_gets_its_settings_and_memory_for_native_decoding():
    app, config, storage, env = app_with_storage(
        **{
            "counting.counter.tiling.mode": "auto",
            "counting.counter.tiling.tile_side": "640",
            "counting.counter.tiling.merge": "nms",
            "counting.counter.mark_tiles": "true",
        }
    )
    counting = CountingStack(
        app, f"{config.prefix}-counting", config=config, storage=storage, env=env
    )
    properties = counter_function(Template.from_stack(counting))["Properties"]
    environment = properties["Environment"]["Variables"]
    assert {name: environment[name] for name in ("TILING", "TILE_SIDE", "TILE_MERGE")} == {
        "TILING": "auto",
        "TILE_SIDE": "640",
        "TILE_MERGE": "nms",
    }
    assert environment["MARK_TILES"] == "true"
    # A 160 MP JPEG decoded natively is 640 MB (4 bytes a pixel): 2,048 MB, not 1,024.
    assert properties["MemorySize"] == 2048
