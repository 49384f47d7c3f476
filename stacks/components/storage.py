"""The project's data at rest: one customer-managed KMS key, the data bucket, its access logs."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_events as events
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_s3 as s3
from constructs import Construct

from counting_core import stage_names
from counting_core.counts import bulk
from stacks.config import StorageSettings

REMOVAL_POLICIES = {"retain": cdk.RemovalPolicy.RETAIN, "destroy": cdk.RemovalPolicy.DESTROY}


def data_bucket_name(prefix: str) -> str:
    """Globally unique and predictable: the same name renders the same ARN in every stack."""
    return stage_names.data_bucket(prefix, cdk.Aws.ACCOUNT_ID, cdk.Aws.REGION)


def objects_created(bucket_name: str, key: dict[str, str]) -> events.EventPattern:
    """EventBridge pattern of the data bucket's "Object Created" events whose key matches ``key``
    (an EventBridge filter such as ``{"prefix": "incoming/"}`` or ``{"wildcard": "a/*.json"}``).

    https://docs.aws.amazon.com/AmazonS3/latest/userguide/ev-events.html
    """
    return events.EventPattern(
        source=["aws.s3"],
        detail_type=["Object Created"],
        detail={"bucket": {"name": [bucket_name]}, "object": {"key": [key]}},
    )


class DataStorage(Construct):
    """KMS key with rotation, an access-log bucket, and the data bucket.

    Attributes:
        key: encrypts the data bucket, queues, tables, logs and training volumes.
        bucket: every image, manifest, model and result, laid out by ``counting_core.layout``.
            Other stacks use ``bucket_in(scope)`` instead, so that the IAM policies they
            write name the bucket by its name, not by a cross-stack import.
        access_logs: S3 server access logs of ``bucket``.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        settings: StorageSettings,
        tiles_kept_days: int,
    ) -> None:
        super().__init__(scope, construct_id)
        removal_policy = REMOVAL_POLICIES[settings.removal_policy]
        destroyed = removal_policy == cdk.RemovalPolicy.DESTROY

        self.key = kms.Key(
            self,
            "DataKey",
            alias=f"alias/{prefix}/data",
            description=f"Encrypts {prefix} images, manifests, models, results and logs",
            enable_key_rotation=True,
            removal_policy=removal_policy,
            # A destroyed stage's key waits the shortest window KMS allows before deletion.
            pending_window=cdk.Duration.days(7) if destroyed else None,
        )
        self._allow_service_principals()

        self.access_logs = s3.Bucket(
            self,
            "AccessLogs",
            # S3 log delivery writes only to buckets with S3-managed encryption.
            # https://docs.aws.amazon.com/AmazonS3/latest/userguide/enable-server-access-logging.html
            encryption=s3.BucketEncryption.S3_MANAGED,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-access-logs",
                    expiration=cdk.Duration.days(settings.access_log_days),
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(
                        settings.incomplete_upload_days
                    ),
                )
            ],
            removal_policy=removal_policy,
            auto_delete_objects=destroyed,
        )

        self.bucket_name = data_bucket_name(prefix)
        self.bucket = s3.Bucket(
            self,
            "Data",
            bucket_name=self.bucket_name,
            encryption=s3.BucketEncryption.KMS,
            encryption_key=self.key,
            # One data key per bucket instead of one KMS call per object: cheaper, same key.
            bucket_key_enabled=True,
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            enforce_ssl=True,
            versioned=True,
            object_ownership=s3.ObjectOwnership.BUCKET_OWNER_ENFORCED,
            server_access_logs_bucket=self.access_logs,
            server_access_logs_prefix="data-bucket/",
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-old-versions",
                    noncurrent_version_expiration=cdk.Duration.days(
                        settings.noncurrent_version_days
                    ),
                    abort_incomplete_multipart_upload_after=cdk.Duration.days(
                        settings.incomplete_upload_days
                    ),
                    expired_object_delete_marker=True,
                ),
                # The tiles bulk runs cut (counting_core.counts.bulk.TILES) serve only their
                # run's transform: expired once no run can still need them; the noncurrent
                # versions this leaves go by the rule above.
                s3.LifecycleRule(
                    id="expire-bulk-tiles",
                    prefix=bulk.TILES,
                    expiration=cdk.Duration.days(tiles_kept_days),
                ),
            ],
            # The Ground Truth worker UI loads images from the browser.
            # https://docs.aws.amazon.com/sagemaker/latest/dg/sms-cors-update.html
            cors=[
                s3.CorsRule(
                    allowed_methods=[s3.HttpMethods.GET],
                    allowed_origins=list(settings.labeling_cors_origins),
                    exposed_headers=["Access-Control-Allow-Origin"],
                )
            ],
            removal_policy=removal_policy,
            # A stage that is destroyed is emptied first (every object version): a bucket
            # that still holds objects cannot be deleted, and its fixed name would collide
            # with the next deployment of the stage.
            auto_delete_objects=destroyed,
        )
        # EventBridge delivery set on the L1 bucket: `event_bridge_enabled=True` would add
        # CDK's BucketNotificationsHandler Lambda with s3:PutBucketNotification on `*`.
        cfn_bucket = self.bucket.node.default_child
        assert isinstance(cfn_bucket, s3.CfnBucket)
        cfn_bucket.notification_configuration = s3.CfnBucket.NotificationConfigurationProperty(
            event_bridge_configuration=s3.CfnBucket.EventBridgeConfigurationProperty(
                event_bridge_enabled=True
            )
        )

    def _allow_service_principals(self) -> None:
        """Services that encrypt on this account's behalf with the key.

        CloudWatch Logs encrypts log groups; EventBridge and CloudWatch alarms
        deliver to encrypted queues and topics. Each is limited to this account where
        the service supports it (EventBridge does not: its queues' policies do it).
        https://docs.aws.amazon.com/AmazonCloudWatch/latest/logs/encrypt-log-data-kms.html
        https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html
        """
        stack = cdk.Stack.of(self)
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="CloudWatchLogsOfThisAccount",
                principals=[iam.ServicePrincipal(f"logs.{stack.region}.amazonaws.com")],
                actions=[
                    "kms:Encrypt*",
                    "kms:Decrypt*",
                    "kms:ReEncrypt*",
                    "kms:GenerateDataKey*",
                    "kms:Describe*",
                ],
                resources=["*"],
                conditions={
                    "ArnLike": {
                        "kms:EncryptionContext:aws:logs:arn": stack.format_arn(
                            service="logs",
                            resource="log-group",
                            resource_name="*",
                            arn_format=cdk.ArnFormat.COLON_RESOURCE_NAME,
                        )
                    }
                },
            )
        )
        # EventBridge delivers to encrypted queues (intake, dead letters). AWS does not
        # support aws:SourceAccount or aws:SourceArn in key policies for EventBridge's
        # requests, so this statement has none; each queue's policy admits only this
        # account's rules.
        # https://docs.aws.amazon.com/sns/latest/dg/sns-key-management.html#compatibility-with-aws-services
        # https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-key-management.html
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="EventBridgeDeliveries",
                principals=[iam.ServicePrincipal("events.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey"],
                resources=["*"],
            )
        )
        # CloudWatch alarms publish to the encrypted alerts topic.
        self.key.add_to_resource_policy(
            iam.PolicyStatement(
                sid="AlarmsOfThisAccount",
                principals=[iam.ServicePrincipal("cloudwatch.amazonaws.com")],
                actions=["kms:Decrypt", "kms:GenerateDataKey*"],
                resources=["*"],
                conditions={"StringEquals": {"aws:SourceAccount": stack.account}},
            )
        )

    def bucket_in(self, scope: Construct) -> s3.IBucket:
        """The data bucket as seen from another stack (by name, with its key)."""
        existing = cdk.Stack.of(scope).node.try_find_child("DataBucket")
        if existing is not None:
            # The bucket an earlier call imported below: a jsii interface proxy, which no
            # isinstance check can narrow from IConstruct.
            return existing  # type: ignore[return-value]
        return s3.Bucket.from_bucket_attributes(
            cdk.Stack.of(scope), "DataBucket", bucket_name=self.bucket_name, encryption_key=self.key
        )
