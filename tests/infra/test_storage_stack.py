"""Security properties of the data at rest: the storage component in a stack of its own."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match, Template

from counting_core.counts import bulk
from stacks.components.storage import DataStorage
from tests.infra.synth import component_stack

pytestmark = pytest.mark.synth  # every test here synthesizes a template


def storage_template(**context) -> Template:
    stack, config = component_stack(**context)
    DataStorage(
        stack,
        "Storage",
        prefix=config.prefix,
        settings=config.storage,
        tiles_kept_days=bulk.tiles_kept_days(config.bulk.timeout_hours),
    )
    return Template.from_stack(stack)


@pytest.fixture(scope="module")
def template() -> Template:
    # The setting's default, which prod keeps (cdk.json's dev stage destroys its data).
    return storage_template(**{"counting.storage.removal_policy": "retain"})


def test_customer_managed_key_rotates_and_is_retained(template):
    template.has_resource(
        "AWS::KMS::Key",
        {
            "Properties": {"EnableKeyRotation": True},
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
        },
    )
    template.has_resource_properties(
        "AWS::KMS::Alias", {"AliasName": "alias/object-counting-dev/data"}
    )


def test_services_may_use_the_key_only_as_far_as_they_need(template):
    ((key,),) = [list(template.find_resources("AWS::KMS::Key").values())]
    by_sid = {
        statement.get("Sid"): statement for statement in key["Properties"]["KeyPolicy"]["Statement"]
    }
    # EventBridge's KMS requests carry no aws:SourceAccount: a condition on it would drop
    # every delivery to an encrypted queue. The queues' own policies limit the senders.
    events = by_sid["EventBridgeDeliveries"]
    assert events["Principal"] == {"Service": "events.amazonaws.com"}
    assert sorted(events["Action"]) == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert "Condition" not in events
    alarms = by_sid["AlarmsOfThisAccount"]
    assert alarms["Condition"] == {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
    logs = by_sid["CloudWatchLogsOfThisAccount"]
    assert "kms:EncryptionContext:aws:logs:arn" in logs["Condition"]["ArnLike"]


def test_data_bucket_is_private_encrypted_versioned_and_logged(template):
    template.has_resource_properties(
        "AWS::S3::Bucket",
        {
            "BucketEncryption": {
                "ServerSideEncryptionConfiguration": [
                    {
                        "BucketKeyEnabled": True,
                        "ServerSideEncryptionByDefault": {
                            "SSEAlgorithm": "aws:kms",
                            "KMSMasterKeyID": Match.any_value(),
                        },
                    }
                ]
            },
            "PublicAccessBlockConfiguration": {
                "BlockPublicAcls": True,
                "BlockPublicPolicy": True,
                "IgnorePublicAcls": True,
                "RestrictPublicBuckets": True,
            },
            "VersioningConfiguration": {"Status": "Enabled"},
            "LoggingConfiguration": {
                "DestinationBucketName": Match.any_value(),
                "LogFilePrefix": "data-bucket/",
            },
            "NotificationConfiguration": {"EventBridgeConfiguration": {"EventBridgeEnabled": True}},
            "LifecycleConfiguration": {
                "Rules": [
                    Match.object_like(
                        {
                            "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": 7},
                            "NoncurrentVersionExpiration": {"NoncurrentDays": 30},
                            "Status": "Enabled",
                        }
                    ),
                    # Bulk runs' tiles, past the longest run (bulk.timeout_hours 48: 2 days)
                    # and the midnight S3 waits for.
                    {
                        "Id": "expire-bulk-tiles",
                        "Prefix": "bulk/tiles/",
                        "ExpirationInDays": 3,
                        "Status": "Enabled",
                    },
                ]
            },
            "CorsConfiguration": {
                "CorsRules": [
                    {
                        "AllowedMethods": ["GET"],
                        "AllowedOrigins": ["*"],
                        "ExposedHeaders": ["Access-Control-Allow-Origin"],
                    }
                ]
            },
        },
    )


def test_every_bucket_is_retained_and_refuses_plain_http(template):
    buckets = template.find_resources("AWS::S3::Bucket")
    assert len(buckets) == 2
    for bucket in buckets.values():
        assert bucket["DeletionPolicy"] == "Retain"
    policies = template.find_resources("AWS::S3::BucketPolicy")
    assert len(policies) == 2
    for policy in policies.values():
        statements = policy["Properties"]["PolicyDocument"]["Statement"]
        assert any(
            statement["Effect"] == "Deny"
            and statement["Action"] == "s3:*"
            and statement["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
            for statement in statements
        )


def test_no_bucket_notifications_handler_lambda(template):
    template.resource_count_is("AWS::Lambda::Function", 0)
    template.resource_count_is("Custom::S3BucketNotifications", 0)


def test_destroy_removal_policy_is_an_explicit_setting():
    template = storage_template(**{"counting.storage.removal_policy": "destroy"})
    for bucket in template.find_resources("AWS::S3::Bucket").values():
        assert bucket["DeletionPolicy"] == "Delete"
