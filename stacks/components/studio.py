"""Label Studio, self-hosted: the labeling tool for accounts Ground Truth does not accept.

Label Studio's official image (pinned by digest) runs on ECS Fargate in private subnets,
on PostgreSQL (RDS, encrypted with the stage's key). The only way in is an internet-facing
HTTPS load balancer whose listener signs people in with the studio's Cognito user pool
before any request is forwarded; Label Studio's own sign-up is off, and its first
administrator, API token and Django secret are generated into Secrets Manager.

Label Studio reaches the data bucket with its task role, never with keys: its S3 storages
build a boto3 session from the keys a storage holds, else from ``AWS_ACCESS_KEY_ID`` and its
kin, and with none the session falls back to boto3's default credential chain, which on
Fargate is the task role (label-studio 1.23.2, ``label_studio/io_storages/s3/utils.py``,
``get_client_and_resource``, lines 27-44). The role may read the labeling images and write
the export prefix, nothing else. Variable names below are Label Studio's settings
(``core/settings/base.py``, read through ``core.utils.params.get_env``, which also accepts
the ``LABEL_STUDIO_`` prefix).
"""

from __future__ import annotations

import json

import aws_cdk as cdk
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_cloudwatch as cloudwatch
from aws_cdk import aws_cloudwatch_actions as cloudwatch_actions
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_elasticloadbalancingv2_actions as elbv2_actions
from aws_cdk import aws_events as events
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_secretsmanager as secretsmanager
from aws_cdk import aws_servicediscovery as servicediscovery
from aws_cdk import aws_sns as sns
from constructs import Construct

from counting_core import layout
from counting_core.contracts import studio_exports, studio_project
from counting_core.datasets.label_studio_project import PLACEHOLDER_KEY, REVIEW_REQUEST_SUFFIX
from stacks.components.delivery import (
    dead_letter_failed_invocations,
    dead_letter_queue,
    retried_lambda_target,
)
from stacks.components.permissions import acknowledge_object_prefixes, allow
from stacks.components.python_function import HandlerFunction, Network
from stacks.components.storage import DataStorage, objects_created
from stacks.components.workforce import labelers_user_pool
from stacks.config import StudioSettings
from stacks.nag import acknowledge, skip_checkov

IMAGE_REPOSITORY = "heartexlabs/label-studio"
#: The Label Studio release whose code the settings and storage facts here were checked against.
CHECKED_VERSION = "1.23.2"
# The image's nginx serves Label Studio on 8080; /health/ answers without signing in
# (core/urls.py).
CONTAINER_PORT = 8080
HEALTH_PATH = "/health/"
# The service's name inside the VPC: <SERVICE_NAME>.<prefix>.<NAMESPACE_SUFFIX>.
SERVICE_NAME = "label-studio"
NAMESPACE_SUFFIX = "studio.internal"
DATABASE_NAME = "labelstudio"
DATABASE_USER = "labelstudio"
DATABASE_ENGINE = rds.PostgresEngineVersion.VER_17_9
# The PostgreSQL logs RDS exports to CloudWatch Logs.
DATABASE_LOGS = ("postgresql", "upgrade")
# Where the load balancer's access logs go in the access-log bucket.
ACCESS_LOG_PREFIX = "studio-load-balancer"
# Alarms: any unhealthy target for 5 minutes; 5xx answers (Label Studio's or the load
# balancer's) in 5 minutes.
ALARM_PERIOD = cdk.Duration.minutes(5)
SERVER_ERRORS_THRESHOLD = 10
# The project function waits up to 7 minutes for Label Studio to answer (a first start
# migrates its database); CloudFormation waits a little longer for its answer.
PROJECT_FUNCTION_TIMEOUT = cdk.Duration.minutes(10)
PROJECT_SETUP_TIMEOUT = cdk.Duration.minutes(15)
# A Django secret key and an API token: letters and digits (the token is an HTTP header).
SECRET_LENGTH = 50
TOKEN_LENGTH = 40


class LabelStudio(Construct):
    """The studio's network, sign-in, database, service and load balancer.

    Attributes:
        url: ``https://<domain_name>``, where people open the studio.
        load_balancer: point ``domain_name`` at its DNS name.
        user_pool: who may pass the sign-in.
        database: the PostgreSQL instance.
        service: the Fargate service running Label Studio.
        task_role: what Label Studio may do in AWS (the labeling images, the export prefix).
        admin_secret: the administrator's email, password and API token.
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        settings: StudioSettings,
        storage: DataStorage,
        topic: sns.ITopic,
    ) -> None:
        super().__init__(scope, construct_id)
        # The configuration refuses an enabled studio without these (AppConfig).
        assert settings.domain_name is not None
        assert settings.certificate_arn is not None
        assert settings.image_digest is not None
        self._prefix = prefix
        self._settings = settings
        self._storage = storage
        # Imported by ARN: grants then go into this stack's role policies (the key's policy
        # lets the account's IAM decide), never into the storage stack's key policy.
        self._key = kms.Key.from_key_arn(self, "DataKey", storage.key.key_arn)
        self.url = f"https://{settings.domain_name}"
        self._network()
        self._sign_in()
        self._database()
        self._service(settings.image_digest)
        self._load_balancer(settings.certificate_arn)
        self._alarms(topic)
        self._exports_to_manifest()
        self._project()

    def _network(self) -> None:
        flow_logs = logs.LogGroup(
            self,
            "FlowLogs",
            retention=logs.RetentionDays.THREE_MONTHS,
            encryption_key=self._key,
        )
        self.vpc = ec2.Vpc(
            self,
            "Network",
            max_azs=2,
            # One NAT gateway: Fargate pulls the image from Docker Hub; nothing else leaves.
            nat_gateways=1,
            subnet_configuration=[
                ec2.SubnetConfiguration(
                    name="LoadBalancer", subnet_type=ec2.SubnetType.PUBLIC, cidr_mask=24
                ),
                ec2.SubnetConfiguration(
                    name="Service", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS, cidr_mask=22
                ),
                ec2.SubnetConfiguration(
                    name="Database", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED, cidr_mask=24
                ),
            ],
            flow_logs={
                "All": ec2.FlowLogOptions(
                    destination=ec2.FlowLogDestination.to_cloud_watch_logs(flow_logs),
                    traffic_type=ec2.FlowLogTrafficType.ALL,
                )
            },
            # CDK's rule-removing custom resource would add a Lambda function; no resource
            # here uses the default security group.
            restrict_default_security_group=False,
        )
        # S3 (the images, the exports) without the NAT gateway.
        self.vpc.add_gateway_endpoint("S3", service=ec2.GatewayVpcEndpointAwsService.S3)

    def _sign_in(self) -> None:
        settings = self._settings
        self.user_pool = labelers_user_pool(
            self,
            "UserPool",
            name=f"{self._prefix}-studio",
            mfa=settings.mfa,
            mfa_setting="labeling.studio.mfa",
            invitation=cognito.UserInvitationConfig(
                email_subject=f"You are invited to label images for {self._prefix}",
                email_body=(
                    f"You are invited to label images for {self._prefix} in Label Studio at "
                    f"{self.url}. Your user name is {{username}} and your temporary password "
                    "is {####}; you will be asked to choose a new one. Label Studio then asks "
                    "for its own account: use the invitation link your project team sends."
                ),
            ),
        )
        # Sign-in is case-insensitive: one user per address, whatever its letter case.
        for email in dict.fromkeys(email.lower() for email in settings.invite_emails):
            cognito.CfnUserPoolUser(
                self,
                f"Labeler-{email}",
                user_pool_id=self.user_pool.user_pool_id,
                username=email,
                desired_delivery_mediums=["EMAIL"],
                user_attributes=[
                    cognito.CfnUserPoolUser.AttributeTypeProperty(name="email", value=email),
                    cognito.CfnUserPoolUser.AttributeTypeProperty(
                        name="email_verified", value="true"
                    ),
                ],
            )
        self.domain = self.user_pool.add_domain(
            "Domain",
            cognito_domain=cognito.CognitoDomainOptions(
                domain_prefix=f"{self._prefix}-studio-{cdk.Stack.of(self).account}"
            ),
        )
        # The load balancer signs people in with the authorization code grant; the
        # callback is its fixed /oauth2/idpresponse path.
        # https://docs.aws.amazon.com/elasticloadbalancing/latest/application/listener-authenticate-users.html
        self.app_client = self.user_pool.add_client(
            "LoadBalancerClient",
            user_pool_client_name=f"{self._prefix}-studio",
            generate_secret=True,
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[cognito.OAuthScope.OPENID, cognito.OAuthScope.EMAIL],
                callback_urls=[f"{self.url}/oauth2/idpresponse"],
                logout_urls=[self.url],
            ),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            prevent_user_existence_errors=True,
            enable_token_revocation=True,
        )

    def _database(self) -> None:
        self.database_security_group = ec2.SecurityGroup(
            self,
            "DatabaseSecurity",
            vpc=self.vpc,
            description="Label Studio database: PostgreSQL from the studio tasks only",
            allow_all_outbound=False,
        )
        # The database's log groups, made here to be encrypted and kept for a set time (the
        # instance's own retention setting would add CDK's log-retention Lambda function).
        identifier = f"{self._prefix}-studio"
        log_groups = [
            logs.LogGroup(
                self,
                f"DatabaseLogs-{kind}",
                log_group_name=f"/aws/rds/instance/{identifier}/{kind}",
                retention=logs.RetentionDays.THREE_MONTHS,
                encryption_key=self._key,
            )
            for kind in DATABASE_LOGS
        ]
        self.database = rds.DatabaseInstance(
            self,
            "Database",
            instance_identifier=identifier,
            engine=rds.DatabaseInstanceEngine.postgres(version=DATABASE_ENGINE),
            instance_type=ec2.InstanceType(self._settings.database_instance_type),
            vpc=self.vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            security_groups=[self.database_security_group],
            database_name=DATABASE_NAME,
            credentials=rds.Credentials.from_generated_secret(
                DATABASE_USER, encryption_key=self._key
            ),
            storage_encrypted=True,
            storage_encryption_key=self._key,
            allocated_storage=20,
            max_allocated_storage=100,
            multi_az=self._settings.database_multi_az,
            backup_retention=cdk.Duration.days(self._settings.database_backup_days),
            deletion_protection=self._settings.deletion_protection,
            auto_minor_version_upgrade=True,
            cloudwatch_logs_exports=list(DATABASE_LOGS),
            enable_performance_insights=False,
            removal_policy=cdk.RemovalPolicy.SNAPSHOT,
            publicly_accessible=False,
        )
        for log_group in log_groups:
            self.database.node.add_dependency(log_group)
        assert self.database.secret is not None
        self.database_secret = self.database.secret
        acknowledge(
            self.database.node.find_child("Secret"),
            "AwsSolutions-SMG4",
            "Label Studio reads the database password once, when its task starts; rotating it "
            "would cut off the running task. Replace it by redeploying (see docs/labeling.md).",
        )
        skip_checkov(
            self.database,
            "CKV_AWS_161",
            "Label Studio (Django) signs in to PostgreSQL with a password only.",
        )
        skip_checkov(
            self.database,
            "CKV_AWS_118",
            "CloudWatch's instance metrics and the exported PostgreSQL logs watch a labeling "
            "tool's small database; enhanced monitoring would add a role with a managed policy.",
        )
        acknowledge(
            self.database,
            "AwsSolutions-RDS11",
            "The database's only security group admits the studio's tasks alone, in "
            "isolated subnets: a non-default port would hide nothing more.",
        )
        if not self._settings.database_multi_az:
            single_zone = (
                "labeling.studio.database_multi_az is off: a labeling tool may be down while "
                "RDS replaces its instance; backups keep the annotations."
            )
            acknowledge(self.database, "AwsSolutions-RDS3", single_zone)
            skip_checkov(self.database, "CKV_AWS_157", single_zone)
        if not self._settings.deletion_protection:
            acknowledge(
                self.database,
                "AwsSolutions-RDS10",
                "labeling.studio.deletion_protection is off for this throwaway stage.",
            )

    def _service(self, digest: str) -> None:
        key = self._key
        self.admin_secret = secretsmanager.Secret(
            self,
            "Administrator",
            description=f"Label Studio's first administrator in {self._prefix}: email, "
            "password and API token",
            encryption_key=key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                secret_string_template=cdk.Stack.of(self).to_json_string(
                    {"email": self._settings.admin_email}
                ),
                generate_string_key="password",
                exclude_punctuation=True,
                password_length=SECRET_LENGTH,
            ),
        )
        self.api_token = secretsmanager.Secret(
            self,
            "ApiToken",
            description=f"The administrator's Label Studio API token in {self._prefix}",
            encryption_key=key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                exclude_punctuation=True, password_length=TOKEN_LENGTH
            ),
        )
        django_key = secretsmanager.Secret(
            self,
            "DjangoSecretKey",
            description=f"Label Studio's Django SECRET_KEY in {self._prefix} (signs sessions)",
            encryption_key=key,
            generate_secret_string=secretsmanager.SecretStringGenerator(
                exclude_punctuation=True, password_length=SECRET_LENGTH
            ),
        )
        for secret, what in (
            (self.admin_secret, "the administrator's password"),
            (self.api_token, "the administrator's API token"),
            (django_key, "the key Django signs sessions with"),
        ):
            acknowledge(
                secret,
                "AwsSolutions-SMG4",
                f"Label Studio reads {what} once, when its task starts (the administrator is "
                "created on the first start); rotation would not reach it.",
            )

        cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=self.vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )
        task = ecs.FargateTaskDefinition(
            self,
            "Task",
            cpu=self._settings.cpu,
            memory_limit_mib=self._settings.memory_mib,
            runtime_platform=ecs.RuntimePlatform(
                cpu_architecture=ecs.CpuArchitecture.X86_64,
                operating_system_family=ecs.OperatingSystemFamily.LINUX,
            ),
        )
        self.task_role = task.task_role
        log_group = logs.LogGroup(
            self, "Logs", retention=logs.RetentionDays.THREE_MONTHS, encryption_key=key
        )
        environment = {
            # PostgreSQL (core/settings/base.py, DATABASES_ALL).
            "DJANGO_DB": "default",
            "POSTGRE_HOST": self.database.db_instance_endpoint_address,
            "POSTGRE_PORT": self.database.db_instance_endpoint_port,
            "POSTGRE_NAME": DATABASE_NAME,
            # Only people with an invitation link sign up (DISABLE_SIGNUP_WITHOUT_LINK).
            "LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK": "true",
            "LABEL_STUDIO_HOST": self.url,
            "CSRF_TRUSTED_ORIGINS": self.url,
            "SESSION_COOKIE_SECURE": "1",
            "CSRF_COOKIE_SECURE": "1",
            # The first start creates this administrator (server.py, _create_user).
            "LABEL_STUDIO_USERNAME": self._settings.admin_email,
            # Storages in the stage's Region (io_storages/s3/utils.py reads S3_region).
            "LABEL_STUDIO_S3_region": cdk.Stack.of(self).region,
            # The target storage writes each task with its annotations, as <task id>.json:
            # what the export converter reads (io_storages/base_models.py, get_key).
            "FUTURE_SAVE_TASK_TO_STORAGE": "true",
        }
        container = task.add_container(
            "LabelStudio",
            image=ecs.ContainerImage.from_registry(f"{IMAGE_REPOSITORY}@{digest}"),
            # The image's own command, with the API token accepted as "Token <key>": the
            # organization is created on the first start with legacy tokens allowed.
            command=["label-studio", "start", "--enable-legacy-api-token"],
            environment=environment,
            secrets={
                "POSTGRE_USER": ecs.Secret.from_secrets_manager(self.database_secret, "username"),
                "POSTGRE_PASSWORD": ecs.Secret.from_secrets_manager(
                    self.database_secret, "password"
                ),
                "LABEL_STUDIO_PASSWORD": ecs.Secret.from_secrets_manager(
                    self.admin_secret, "password"
                ),
                "LABEL_STUDIO_USER_TOKEN": ecs.Secret.from_secrets_manager(self.api_token),
                "SECRET_KEY": ecs.Secret.from_secrets_manager(django_key),
            },
            logging=ecs.LogDrivers.aws_logs(stream_prefix="label-studio", log_group=log_group),
            port_mappings=[ecs.PortMapping(container_port=CONTAINER_PORT)],
        )
        acknowledge(
            task,
            "AwsSolutions-ECS2",
            "The container's environment holds settings only (host names, switches); every "
            "password, token and key comes from Secrets Manager through `secrets`.",
        )
        self.service_security_group = ec2.SecurityGroup(
            self,
            "ServiceSecurity",
            vpc=self.vpc,
            description="Label Studio tasks: the load balancer in, HTTPS and PostgreSQL out",
            allow_all_outbound=True,
        )
        self.database_security_group.add_ingress_rule(
            self.service_security_group,
            ec2.Port.tcp_range(5432, 5432),
            "Label Studio's tasks",
        )
        # A private DNS name inside the VPC for the project setup function: the load
        # balancer's sign-in lets no API call through.
        namespace = servicediscovery.PrivateDnsNamespace(
            self,
            "Namespace",
            name=f"{self._prefix}.{NAMESPACE_SUFFIX}",
            vpc=self.vpc,
            description=f"Label Studio of {self._prefix}, inside its VPC",
        )
        self.service = ecs.FargateService(
            self,
            "Service",
            cloud_map_options=ecs.CloudMapOptions(
                cloud_map_namespace=namespace,
                name=SERVICE_NAME,
                dns_record_type=servicediscovery.DnsRecordType.A,
                dns_ttl=cdk.Duration.seconds(10),
            ),
            cluster=cluster,
            task_definition=task,
            desired_count=1,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            security_groups=[self.service_security_group],
            assign_public_ip=False,
            # Migrations run on start: one task at a time (Label Studio's own deployment).
            min_healthy_percent=0,
            max_healthy_percent=100,
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            health_check_grace_period=cdk.Duration.minutes(5),
        )
        self.service.node.add_dependency(self.database)
        self.service_url = f"http://{SERVICE_NAME}.{namespace.namespace_name}:{CONTAINER_PORT}"
        self._container = container
        self._grant_data()

    def _grant_data(self) -> None:
        storage = self._storage
        bucket_arn = f"arn:{cdk.Aws.PARTITION}:s3:::{storage.bucket_name}"
        images, exports = layout.LABELING_IMAGES, layout.STUDIO_EXPORTS
        policy = allow(
            self.task_role,
            {
                # The target storage checks its prefix as it holds it, without the slash
                # (label_studio_project.exports_storage_fields); the source storage lists
                # below its prefix.
                "ListLabelingImagesAndExports": (
                    ["s3:ListBucket"],
                    [bucket_arn],
                    {
                        "StringLike": {
                            "s3:prefix": [f"{images}*", exports.rstrip("/"), f"{exports}*"]
                        }
                    },
                ),
                "ReadLabelingImages": (["s3:GetObject"], [f"{bucket_arn}/{images}*"]),
                "WriteExports": (
                    ["s3:PutObject", "s3:GetObject", "s3:DeleteObject"],
                    [f"{bucket_arn}/{exports}*"],
                ),
                "UseTheDataKey": (["kms:Decrypt", "kms:GenerateDataKey"], [self._key.key_arn]),
            },
        )
        acknowledge_object_prefixes(
            policy,
            storage.bucket_name,
            {
                images: "Label Studio's source storage shows every image under the labeling "
                "images prefix; their names are chosen at upload time.",
                exports: "Label Studio's target storage writes one object per labeled task "
                "(<task id>.json) and removes it when the annotation is deleted.",
            },
        )

    def _load_balancer(self, certificate_arn: str) -> None:
        security_group = ec2.SecurityGroup(
            self,
            "LoadBalancerSecurity",
            vpc=self.vpc,
            description="The studio entrance: HTTPS from anywhere, signed in by Cognito",
            allow_all_outbound=False,
        )
        security_group.add_ingress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "HTTPS")
        # The listener's sign-in calls Cognito's token endpoint over HTTPS.
        security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "Cognito")
        acknowledge(
            security_group,
            "AwsSolutions-EC23",
            "The studio is used from labelers' browsers anywhere; port 443 only, and the "
            "listener forwards nothing before Cognito has signed the person in.",
        )
        self.load_balancer = elbv2.ApplicationLoadBalancer(
            self,
            "LoadBalancer",
            vpc=self.vpc,
            internet_facing=True,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PUBLIC),
            security_group=security_group,
            drop_invalid_header_fields=True,
            deletion_protection=self._settings.deletion_protection,
        )
        self.load_balancer.log_access_logs(self._storage.access_logs, ACCESS_LOG_PREFIX)
        self.target_group = elbv2.ApplicationTargetGroup(
            self,
            "Targets",
            vpc=self.vpc,
            port=CONTAINER_PORT,
            protocol=elbv2.ApplicationProtocol.HTTP,
            target_type=elbv2.TargetType.IP,
            targets=[
                self.service.load_balancer_target(
                    container_name=self._container.container_name,
                    container_port=CONTAINER_PORT,
                )
            ],
            health_check=elbv2.HealthCheck(path=HEALTH_PATH, healthy_http_codes="200"),
        )
        self.listener = self.load_balancer.add_listener(
            "Https",
            port=443,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            certificates=[
                acm.Certificate.from_certificate_arn(self, "Certificate", certificate_arn)
            ],
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            open=False,
            default_action=elbv2_actions.AuthenticateCognitoAction(
                user_pool=self.user_pool,
                user_pool_client=self.app_client,
                user_pool_domain=self.domain,
                on_unauthenticated_request=elbv2.UnauthenticatedAction.AUTHENTICATE,
                next=elbv2.ListenerAction.forward([self.target_group]),
            ),
        )
        self.service_security_group.add_ingress_rule(
            security_group, ec2.Port.tcp(CONTAINER_PORT), "The studio's load balancer"
        )
        security_group.add_egress_rule(
            self.service_security_group, ec2.Port.tcp(CONTAINER_PORT), "Label Studio's tasks"
        )

    def _alarms(self, topic: sns.ITopic) -> None:
        metrics = self.load_balancer.metrics
        target_metrics = self.target_group.metrics
        alarms = {
            "UnhealthyTargets": (
                target_metrics.unhealthy_host_count(period=ALARM_PERIOD, statistic="Maximum"),
                0,
                "Label Studio's task fails its health check",
            ),
            "TargetServerErrors": (
                metrics.http_code_target(
                    elbv2.HttpCodeTarget.TARGET_5XX_COUNT, period=ALARM_PERIOD
                ),
                SERVER_ERRORS_THRESHOLD,
                "Label Studio answers with server errors",
            ),
            "LoadBalancerServerErrors": (
                metrics.http_code_elb(elbv2.HttpCodeElb.ELB_5XX_COUNT, period=ALARM_PERIOD),
                SERVER_ERRORS_THRESHOLD,
                "The studio's load balancer answers with server errors (no healthy task, or "
                "the Cognito sign-in failing)",
            ),
        }
        self.alarms = []
        for name, (metric, threshold, description) in alarms.items():
            alarm = metric.create_alarm(
                self,
                name,
                threshold=threshold,
                evaluation_periods=1,
                comparison_operator=cloudwatch.ComparisonOperator.GREATER_THAN_THRESHOLD,
                treat_missing_data=cloudwatch.TreatMissingData.NOT_BREACHING,
                alarm_description=f"{description} ({self._prefix})",
            )
            alarm.add_alarm_action(cloudwatch_actions.SnsAction(topic))
            self.alarms.append(alarm)

    def _exports_to_manifest(self) -> None:
        """The ``studio_exports`` Lambda: each object under the export prefix rebuilds the
        stage's studio manifest (and, when asked, a whole export starts training)."""
        settings, storage = self._settings, self._storage
        self.dead_letters = dead_letter_queue(
            self,
            "ExportDeadLetters",
            self._key,
            holds="Studio export events the converter failed on after retries",
            named_by_targets=True,
        )
        values = {
            "bucket": storage.bucket_name,
            "label_attribute": settings.label_attribute,
            "class_names": json.dumps(list(settings.class_names)),
            "rotated_boxes": settings.rotated_boxes,
            "start_training": settings.start_training,
        }
        self.exports_function = HandlerFunction(
            self,
            "Exports",
            name="studio_exports",
            description="Converts Label Studio's exports into the studio's training manifest",
            key=self._key,
            service="studio-exports",
            timeout=cdk.Duration.minutes(5),
            memory_size=1024,
            contract=studio_exports.Environment,
            environment=values,
        )
        dead_letter_failed_invocations(
            self.exports_function.function, self.dead_letters, who="The studio export converter"
        )
        bucket_arn = f"arn:{cdk.Aws.PARTITION}:s3:::{storage.bucket_name}"
        exports, manifests = layout.STUDIO_EXPORTS, layout.STUDIO_MANIFESTS
        written = [f"{bucket_arn}/{manifests}*"]
        if settings.start_training:
            written.append(f"{bucket_arn}/{layout.TRAINING_REQUESTS}*")
        policy = allow(
            self.exports_function.role,
            {
                "ListExports": (
                    ["s3:ListBucket"],
                    [bucket_arn],
                    {"StringLike": {"s3:prefix": f"{exports}*"}},
                ),
                "ReadExports": (["s3:GetObject"], [f"{bucket_arn}/{exports}*"]),
                "WriteManifests": (["s3:PutObject"], written),
                "UseTheDataKey": (["kms:Decrypt", "kms:GenerateDataKey"], [self._key.key_arn]),
                "DeadLetterFailedInvocations": (["sqs:SendMessage"], [self.dead_letters.queue_arn]),
            },
        )
        reasons = {
            exports: "Label Studio names each task's object by its id at run time; the "
            "converter reads them all.",
            manifests: "The converter writes the manifest, its summary or its rejection there.",
        }
        if settings.start_training:
            reasons[layout.TRAINING_REQUESTS] = (
                "A whole export's manifest starts training under a name with the time in it."
            )
        acknowledge_object_prefixes(policy, storage.bucket_name, reasons)
        rule = events.Rule(
            self,
            "ExportWritten",
            description=f"An object written under {exports} rebuilds the studio manifest",
            event_pattern=objects_created(storage.bucket_name, {"prefix": exports}),
        )
        rule.add_target(retried_lambda_target(self.exports_function.function, self.dead_letters))

    def _project(self) -> None:
        """The ``studio_project`` Lambda: sets the Label Studio project up (a custom resource,
        run again whenever ``labeling.studio.class_names`` changes) and puts the review queues
        uploaded under ``labeling/studio/reviews/`` on its tasks.

        A Lambda-backed custom resource rather than a one-off ECS task: CloudFormation runs it
        after the service is up and again when the labels change, waits for it, and fails the
        deployment with Label Studio's own reason. It runs in the VPC and calls the service at
        its Cloud Map name: the load balancer's Cognito sign-in lets no API call through.
        """
        storage = self._storage
        security_group = ec2.SecurityGroup(
            self,
            "ProjectSecurity",
            vpc=self.vpc,
            description="The studio project function: the Label Studio API and HTTPS out",
            allow_all_outbound=False,
        )
        # Secrets Manager through the NAT gateway, S3 through its gateway endpoint, and
        # CloudFormation's response URL.
        security_group.add_egress_rule(ec2.Peer.any_ipv4(), ec2.Port.tcp(443), "AWS APIs")
        security_group.add_egress_rule(
            self.service_security_group, ec2.Port.tcp(CONTAINER_PORT), "Label Studio's API"
        )
        self.service_security_group.add_ingress_rule(
            security_group, ec2.Port.tcp(CONTAINER_PORT), "The studio project function"
        )
        self.project_dead_letters = dead_letter_queue(
            self,
            "ProjectDeadLetters",
            self._key,
            holds="Review requests the studio project function failed on after retries",
            named_by_targets=True,
        )
        self.project_function = HandlerFunction(
            self,
            "Project",
            name="studio_project",
            description="Keeps the Label Studio project in step and puts review queues on it",
            key=self._key,
            service="studio-project",
            timeout=PROJECT_FUNCTION_TIMEOUT,
            contract=studio_project.Environment,
            environment={
                "bucket": storage.bucket_name,
                "studio_url": self.service_url,
                "api_token_secret": self.api_token.secret_arn,
                "project_title": self._prefix,
            },
            network=Network(
                self.vpc,
                self.vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS).subnets,
                security_group,
            ),
        )
        function = self.project_function.function
        dead_letter_failed_invocations(
            function, self.project_dead_letters, who="The studio project function"
        )
        bucket_arn = f"arn:{cdk.Aws.PARTITION}:s3:::{storage.bucket_name}"
        reviews = layout.STUDIO_REVIEWS
        policy = allow(
            self.project_function.role,
            {
                "ReadTheApiToken": (["secretsmanager:GetSecretValue"], [self.api_token.secret_arn]),
                "WriteThePlaceholder": (["s3:PutObject"], [f"{bucket_arn}/{PLACEHOLDER_KEY}"]),
                "ReadReviewRequestsWriteOutcomes": (
                    ["s3:GetObject", "s3:PutObject"],
                    [f"{bucket_arn}/{reviews}*"],
                ),
                "UseTheDataKey": (["kms:Decrypt", "kms:GenerateDataKey"], [self._key.key_arn]),
                "DeadLetterFailedInvocations": (
                    ["sqs:SendMessage"],
                    [self.project_dead_letters.queue_arn],
                ),
            },
        )
        acknowledge_object_prefixes(
            policy,
            storage.bucket_name,
            {
                reviews: "Review requests are named after the model version at run time; the "
                "outcome of each is written beside it."
            },
        )
        rule = events.Rule(
            self,
            "ReviewRequested",
            description=f"A review request under {reviews} puts predictions on the studio's tasks",
            event_pattern=objects_created(
                storage.bucket_name, {"wildcard": f"{reviews}*{REVIEW_REQUEST_SUFFIX}"}
            ),
        )
        rule.add_target(retried_lambda_target(function, self.project_dead_letters))
        project = cdk.CustomResource(
            self,
            "LabelStudioProject",
            service_token=function.function_arn,
            resource_type="Custom::LabelStudioProject",
            properties={"ClassNames": list(self._settings.class_names)},
            service_timeout=PROJECT_SETUP_TIMEOUT,
        )
        # Set up once the service answers, the function may reach it and may act.
        for needed in (self.service, self.service_security_group, self.project_function.role):
            project.node.add_dependency(needed)
        self.project_id = project.get_att_string("ProjectId")
