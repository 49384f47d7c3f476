"""The Label Studio stack: the only way in is through Cognito; data and secrets stay encrypted."""

from __future__ import annotations

import pytest
from aws_cdk.assertions import Match, Template

from counting_core.contracts import studio_project
from counting_core.contracts.studio_exports import Environment
from stacks.components.python_function import NETWORK_INTERFACE_ACTIONS
from stacks.config import ConfigError, load_config
from tests.conftest import cdk_context
from tests.infra.configurations import (
    CONFIGURATIONS,
    STUDIO_CERTIFICATE,
    STUDIO_DOMAIN,
    STUDIO_IMAGE_DIGEST,
)
from tests.infra.synth import build_app
from tests.infra.test_labeling_stack import statements
from tests.infra.test_workforce_stack import only, rendered

pytestmark = pytest.mark.synth  # the stack tests build the CDK app

STUDIO = CONFIGURATIONS["studio, no workforce"]
BUCKET = "object-counting-dev-data-<AWS::AccountId>-<AWS::Region>"
OBJECTS = f"arn:<AWS::Partition>:s3:::{BUCKET}"


@pytest.fixture(scope="module")
def template() -> Template:
    _, stacks = build_app(**STUDIO)
    return Template.from_stack(stacks["studio"])


def test_the_studio_is_off_by_default():
    _, stacks = build_app()
    assert "studio" not in stacks


@pytest.mark.parametrize(
    ("left_out", "message"),
    [
        (
            ("counting.labeling.studio.domain_name", "counting.labeling.studio.certificate_arn"),
            "labeling.studio.domain_name, labeling.studio.certificate_arn: required when "
            "labeling.studio.enabled is true",
        ),
        (
            ("counting.region",),
            "region: required when labeling.studio.enabled is true",
        ),
        (
            ("counting.labeling.studio.image_digest",),
            "labeling.studio.image_digest: required when labeling.studio.enabled is true",
        ),
        (
            ("counting.labeling.studio.class_names",),
            "labeling.studio.class_names: required when labeling.studio.enabled is true",
        ),
    ],
)
def test_an_enabled_studio_without_its_address_is_refused_in_one_line(left_out, message):
    context = {key: value for key, value in STUDIO.items() if key not in left_out}

    with pytest.raises(ConfigError) as caught:
        load_config(cdk_context(**context))

    assert str(caught.value) == message


def test_class_names_a_labeling_interface_cannot_hold_are_refused_in_one_line():
    context = {**STUDIO, "counting.labeling.studio.class_names": '["car", "car"]'}

    with pytest.raises(ConfigError) as caught:
        load_config(cdk_context(**context))

    assert str(caught.value) == (
        "labeling.studio.class_names: the class list names 'car' more than once "
        "(got ['car', 'car'])"
    )


def test_a_certificate_of_another_region_is_refused():
    context = {**STUDIO, "counting.region": "us-east-1"}

    with pytest.raises(ConfigError) as caught:
        load_config(cdk_context(**context))

    assert str(caught.value) == (
        "labeling.studio.certificate_arn: the certificate is in eu-west-1, not us-east-1, "
        "where the studio's load balancer runs"
    )


def test_the_https_listener_signs_in_with_cognito_before_forwarding(template):
    _, listener = only(template, "AWS::ElasticLoadBalancingV2::Listener")
    properties = listener["Properties"]

    assert (properties["Port"], properties["Protocol"]) == (443, "HTTPS")
    assert properties["Certificates"] == [{"CertificateArn": STUDIO_CERTIFICATE}]
    first, second = sorted(properties["DefaultActions"], key=lambda action: action["Order"])
    assert first["Type"] == "authenticate-cognito"
    assert first["AuthenticateCognitoConfig"]["OnUnauthenticatedRequest"] == "authenticate"
    pool_id, _ = only(template, "AWS::Cognito::UserPool")
    assert first["AuthenticateCognitoConfig"]["UserPoolArn"] == {"Fn::GetAtt": [pool_id, "Arn"]}
    assert second["Type"] == "forward"
    # No listener rule and no other listener: nothing reaches Label Studio unsigned.
    template.resource_count_is("AWS::ElasticLoadBalancingV2::ListenerRule", 0)


def test_the_sign_in_returns_to_the_studio_and_nobody_signs_up(template):
    _, client = only(template, "AWS::Cognito::UserPoolClient")
    assert client["Properties"]["CallbackURLs"] == [f"https://{STUDIO_DOMAIN}/oauth2/idpresponse"]
    assert client["Properties"]["GenerateSecret"] is True
    _, pool = only(template, "AWS::Cognito::UserPool")
    assert pool["Properties"]["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"] is True
    template.has_resource_properties("AWS::Cognito::UserPoolUser", {"Username": "ann@example.com"})


def test_only_the_load_balancer_is_public(template):
    _, balancer = only(template, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert balancer["Properties"]["Scheme"] == "internet-facing"
    attributes = {
        item["Key"]: item["Value"] for item in balancer["Properties"]["LoadBalancerAttributes"]
    }
    assert attributes["access_logs.s3.enabled"] == "true"
    assert attributes["access_logs.s3.prefix"] == "studio-load-balancer"
    assert attributes["routing.http.drop_invalid_header_fields.enabled"] == "true"
    _, service = only(template, "AWS::ECS::Service")
    network = service["Properties"]["NetworkConfiguration"]["AwsvpcConfiguration"]
    assert network["AssignPublicIp"] == "DISABLED"
    _, database = only(template, "AWS::RDS::DBInstance")
    assert database["Properties"]["PubliclyAccessible"] is False
    # The tasks admit the load balancer's security group only, on Label Studio's port.
    ingress = template.find_resources("AWS::EC2::SecurityGroupIngress")
    open_to_all = [
        rule for rule in ingress.values() if rule["Properties"].get("CidrIp") == "0.0.0.0/0"
    ]
    assert open_to_all == []


def test_database_and_secrets_are_encrypted_with_the_stage_key(template):
    _, database = only(template, "AWS::RDS::DBInstance")
    properties = database["Properties"]
    assert properties["StorageEncrypted"] is True
    assert "ImportValue" in str(properties["KmsKeyId"])
    assert properties["BackupRetentionPeriod"] == 7
    assert properties["DeletionProtection"] is False  # as the test configuration asks
    secrets = template.find_resources("AWS::SecretsManager::Secret")
    assert len(secrets) == 4  # database, administrator, API token, Django key
    assert all("KmsKeyId" in secret["Properties"] for secret in secrets.values())


def test_deletion_protection_is_on_unless_switched_off():
    context = {k: v for k, v in STUDIO.items() if "deletion_protection" not in k}
    _, stacks = build_app(**context)
    template = Template.from_stack(stacks["studio"])

    template.has_resource_properties("AWS::RDS::DBInstance", {"DeletionProtection": True})


def test_label_studio_runs_the_pinned_image_without_sign_up(template):
    _, task = only(template, "AWS::ECS::TaskDefinition")
    (container,) = task["Properties"]["ContainerDefinitions"]
    assert container["Image"] == f"heartexlabs/label-studio@{STUDIO_IMAGE_DIGEST}"
    environment = {item["Name"]: item["Value"] for item in container["Environment"]}
    assert environment["LABEL_STUDIO_DISABLE_SIGNUP_WITHOUT_LINK"] == "true"
    assert environment["LABEL_STUDIO_HOST"] == f"https://{STUDIO_DOMAIN}"
    assert environment["FUTURE_SAVE_TASK_TO_STORAGE"] == "true"
    assert environment["DJANGO_DB"] == "default"
    secrets = {item["Name"] for item in container["Secrets"]}
    assert secrets == {
        "POSTGRE_USER",
        "POSTGRE_PASSWORD",
        "LABEL_STUDIO_PASSWORD",
        "LABEL_STUDIO_USER_TOKEN",
        "SECRET_KEY",
    }
    # No password or key in the plain environment.
    assert not any("PASSWORD" in name or "TOKEN" in name for name in environment)


def test_the_task_role_reads_the_images_and_writes_the_exports_only(template):
    _, task = only(template, "AWS::ECS::TaskDefinition")
    role = task["Properties"]["TaskRoleArn"]["Fn::GetAtt"][0]

    found = statements(template, role)

    assert set(found) == {
        "ListLabelingImagesAndExports",
        "ReadLabelingImages",
        "WriteExports",
        "UseTheDataKey",
    }
    assert found["ReadLabelingImages"]["Action"] == "s3:GetObject"
    assert found["ReadLabelingImages"]["Resource"] == f"{OBJECTS}/labeling/images/*"
    assert found["WriteExports"]["Resource"] == f"{OBJECTS}/labeling/studio/exports/*"
    # The target storage checks its prefix as it holds it, without the slash (Label Studio
    # adds one before each task's name): listing that exact prefix must be allowed too.
    assert found["ListLabelingImagesAndExports"]["Condition"] == {
        "StringLike": {
            "s3:prefix": [
                "labeling/images/*",
                "labeling/studio/exports",
                "labeling/studio/exports/*",
            ]
        }
    }


def test_alarms_on_unhealthy_targets_and_server_errors_reach_the_alerts_topic(template):
    alarms = template.find_resources("AWS::CloudWatch::Alarm")
    metrics = sorted(alarm["Properties"]["MetricName"] for alarm in alarms.values())

    assert metrics == ["HTTPCode_ELB_5XX_Count", "HTTPCode_Target_5XX_Count", "UnHealthyHostCount"]
    for alarm in alarms.values():
        assert "ImportValue" in str(rendered(alarm["Properties"]["AlarmActions"]))
    template.has_resource_properties(
        "AWS::ElasticLoadBalancingV2::TargetGroup",
        {"HealthCheckPath": "/health/", "TargetType": "ip", "Port": 8080},
    )
    template.has_resource_properties("AWS::EC2::FlowLog", Match.object_like({"TrafficType": "ALL"}))


def test_exports_rebuild_the_manifest_through_the_converter_function(template):
    functions = template.find_resources(
        "AWS::Lambda::Function",
        {"Properties": {"Handler": "lambdas.studio_exports.handler.main"}},
    )
    ((_, function),) = functions.items()
    variables = function["Properties"]["Environment"]["Variables"]
    aliases = {field.alias for field in Environment.model_fields.values()}
    assert aliases <= set(variables)
    assert (variables["CLASS_NAMES"], variables["START_TRAINING"]) == ('["car", "truck"]', "true")
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": Match.object_like(
                {
                    "detail": Match.object_like(
                        {"object": {"key": [{"prefix": "labeling/studio/exports/"}]}}
                    )
                }
            ),
            "Targets": [Match.object_like({"DeadLetterConfig": Match.any_value()})],
        },
    )
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    found = statements(template, role)
    assert found["ReadExports"]["Resource"] == f"{OBJECTS}/labeling/studio/exports/*"
    assert found["WriteManifests"]["Resource"] == [
        f"{OBJECTS}/labeling/studio/manifests/*",
        f"{OBJECTS}/training/requests/*",
    ]


def project_function(template: Template) -> tuple[str, dict]:
    functions = template.find_resources(
        "AWS::Lambda::Function",
        {"Properties": {"Handler": "lambdas.studio_project.handler.main"}},
    )
    ((name, function),) = functions.items()
    return name, function


def test_the_project_is_set_up_from_the_class_names_once_the_service_runs(template):
    name, function = project_function(template)
    (resource,) = template.find_resources("Custom::LabelStudioProject").values()

    assert resource["Properties"]["ServiceToken"] == {"Fn::GetAtt": [name, "Arn"]}
    # A change of labeling.studio.class_names changes the properties: CloudFormation then
    # asks the function to update the project.
    assert resource["Properties"]["ClassNames"] == ["car", "truck"]
    # Failing to answer fails the deployment after 15 minutes, not CloudFormation's hour.
    assert resource["Properties"]["ServiceTimeout"] == "900"
    (service_id, _) = only(template, "AWS::ECS::Service")
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]
    assert {service_id, role} <= set(resource["DependsOn"])
    variables = function["Properties"]["Environment"]["Variables"]
    assert set(variables) == {
        field.alias for field in studio_project.Environment.model_fields.values()
    }
    assert variables["STUDIO_URL"] == "http://label-studio.object-counting-dev.studio.internal:8080"
    assert variables["PROJECT_TITLE"] == "object-counting-dev"


def test_the_project_function_reaches_label_studio_inside_the_vpc_only(template):
    _, function = project_function(template)
    network = function["Properties"]["VpcConfig"]
    (security_group,) = network["SecurityGroupIds"]
    group_id = security_group["Fn::GetAtt"][0]
    _, group = next(
        (name, group)
        for name, group in template.find_resources("AWS::EC2::SecurityGroup").items()
        if name == group_id
    )
    # Out: HTTPS (AWS APIs, CloudFormation's response URL) and Label Studio's port alone.
    egress = sorted(
        (rule["FromPort"], rule.get("CidrIp", "the service"))
        for rule in [*group["Properties"].get("SecurityGroupEgress", []),
                     *(rule["Properties"] for rule in
                       template.find_resources("AWS::EC2::SecurityGroupEgress").values()
                       if rule["Properties"]["GroupId"] == security_group)]
    )  # fmt: skip
    assert egress == [(443, "0.0.0.0/0"), (8080, "the service")]
    # The service admits it on Label Studio's port, beside the load balancer.
    ingress = [
        rule["Properties"]
        for rule in template.find_resources("AWS::EC2::SecurityGroupIngress").values()
        if rule["Properties"].get("SourceSecurityGroupId") == security_group
    ]
    assert [(rule["FromPort"], rule["ToPort"]) for rule in ingress] == [(8080, 8080)]
    # The service answers to a name inside the VPC.
    _, service = only(template, "AWS::ECS::Service")
    assert len(service["Properties"]["ServiceRegistries"]) == 1
    template.has_resource_properties(
        "AWS::ServiceDiscovery::PrivateDnsNamespace",
        {"Name": "object-counting-dev.studio.internal"},
    )


def test_the_project_function_reads_the_token_and_the_review_requests_only(template):
    _, function = project_function(template)
    role = function["Properties"]["Role"]["Fn::GetAtt"][0]

    found = statements(template, role)

    assert found["ReadTheApiToken"]["Action"] == "secretsmanager:GetSecretValue"
    assert found["WriteThePlaceholder"]["Resource"] == f"{OBJECTS}/labeling/images/README.txt"
    assert found["ReadReviewRequestsWriteOutcomes"]["Resource"] == (
        f"{OBJECTS}/labeling/studio/reviews/*"
    )
    # Its network interfaces, in a policy of their own that the function waits for.
    (interfaces,) = [
        name
        for name, policy in template.find_resources("AWS::IAM::Policy").items()
        if {"Ref": role} in policy["Properties"]["Roles"]
        and policy["Properties"]["PolicyDocument"]["Statement"][0]["Action"]
        == sorted(NETWORK_INTERFACE_ACTIONS)
    ]
    assert interfaces in function["DependsOn"]
    template.has_resource_properties(
        "AWS::Events::Rule",
        {
            "EventPattern": Match.object_like(
                {
                    "detail": Match.object_like(
                        {
                            "object": {
                                "key": [{"wildcard": "labeling/studio/reviews/*.request.json"}]
                            }
                        }
                    )
                }
            ),
            "Targets": [Match.object_like({"DeadLetterConfig": Match.any_value()})],
        },
    )
