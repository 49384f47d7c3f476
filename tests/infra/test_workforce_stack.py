"""The private workforce: Cognito sign-in, SageMaker workforce, work team and outputs.

The workforce stack is built beside the storage stack only, whose key it imports.
"""

from __future__ import annotations

import json
from typing import Any

import botocore.session
import pytest
from aws_cdk.assertions import Annotations, Match, Template
from botocore.validate import validate_parameters

from stacks.workforce_stack import WorkforceStack
from tests.infra.synth import app_with_storage

pytestmark = pytest.mark.synth  # every test here synthesizes templates

TWO_WORKERS = {"counting.workforce.invite_emails": '["a@example.com", "b@example.com"]'}
EXISTING = {
    "counting.workforce.existing_user_pool_id": "eu-west-1_AbCdEf123",
    "counting.workforce.existing_app_client_id": "1example23456789abcdefghij",
}


def workforce_stack(**context) -> WorkforceStack:
    app, config, storage, env = app_with_storage(**context)
    return WorkforceStack(
        app, f"{config.prefix}-workforce", config=config, storage=storage, env=env
    )


def workforce_template(**context) -> Template:
    return Template.from_stack(workforce_stack(**context))


@pytest.fixture(scope="module")
def template() -> Template:
    return workforce_template(**TWO_WORKERS)


@pytest.fixture(scope="module")
def existing() -> Template:
    return workforce_template(**EXISTING)


def only(template: Template, resource_type: str) -> tuple[str, dict]:
    found = template.find_resources(resource_type)
    assert len(found) == 1, f"{len(found)} {resource_type}"
    return next(iter(found.items()))


def rendered(value: Any) -> Any:
    """A template value with Fn::Join flattened and references written as <Ref>/<GetAtt>."""
    if isinstance(value, dict) and len(value) == 1:
        (function, argument), *_ = value.items()
        if function == "Fn::Join":
            separator, parts = argument
            return separator.join(str(rendered(part)) for part in parts)
        if function == "Ref":
            return f"<{argument}>"
        if function == "Fn::GetAtt":
            return f"<{argument[0]}.{argument[1]}>"
    if isinstance(value, dict):
        return {key: rendered(item) for key, item in value.items()}
    if isinstance(value, list):
        return [rendered(item) for item in value]
    return value


def sdk_call(template: Template, action: str) -> tuple[dict, dict]:
    """The AwsCustomResource making ``action``: (its Create call, its Update call)."""
    for resource in template.find_resources("Custom::AWS").values():
        create = json.loads(rendered(resource["Properties"]["Create"]))
        if create["action"] == action:
            return create, json.loads(rendered(resource["Properties"]["Update"]))
    raise AssertionError(f"no custom resource calls {action}")


def test_user_pool_is_invitation_only_with_a_strong_password_policy(template):
    template.has_resource(
        "AWS::Cognito::UserPool",
        {
            "Properties": Match.object_like(
                {
                    "AdminCreateUserConfig": Match.object_like({"AllowAdminCreateUserOnly": True}),
                    "Policies": {
                        "PasswordPolicy": {
                            "MinimumLength": 12,
                            "RequireLowercase": True,
                            "RequireUppercase": True,
                            "RequireNumbers": True,
                            "RequireSymbols": True,
                            "TemporaryPasswordValidityDays": 7,
                        }
                    },
                    "AccountRecoverySetting": {
                        "RecoveryMechanisms": [{"Name": "verified_email", "Priority": 1}]
                    },
                    "UsernameAttributes": ["email"],
                    "AutoVerifiedAttributes": ["email"],
                    "UserPoolTier": "PLUS",
                    "UserPoolAddOns": {"AdvancedSecurityMode": "ENFORCED"},
                    "MfaConfiguration": "OPTIONAL",
                    "EnabledMfas": ["SOFTWARE_TOKEN_MFA"],
                }
            ),
            # Deleted with a dev stage, kept in prod: tests/infra/test_stages.py.
            "DeletionPolicy": "Delete",
        },
    )


def test_invitation_says_what_workers_are_invited_to(template):
    _, pool = only(template, "AWS::Cognito::UserPool")
    invitation = pool["Properties"]["AdminCreateUserConfig"]["InviteMessageTemplate"]
    assert invitation["EmailSubject"] == "You are invited to label images for object-counting-dev"
    body = invitation["EmailMessage"]
    for text in ("{username}", "{####}", "Ground Truth", "draw a box", "labeling portal"):
        assert text in body


@pytest.mark.parametrize(
    ("mfa", "configuration", "factors"),
    [("required", "ON", ["SOFTWARE_TOKEN_MFA"]), ("off", "OFF", None)],
)
def test_mfa_follows_the_setting_with_authenticator_apps_only(mfa, configuration, factors):
    _, pool = only(workforce_template(**{"counting.workforce.mfa": mfa}), "AWS::Cognito::UserPool")
    assert pool["Properties"]["MfaConfiguration"] == configuration
    assert pool["Properties"].get("EnabledMfas") == factors


def test_domain_prefix_is_the_stage_prefix_and_the_account(template):
    _, domain = only(template, "AWS::Cognito::UserPoolDomain")
    assert rendered(domain["Properties"]["Domain"]) == "object-counting-dev-<AWS::AccountId>"


def test_a_prefix_cognito_refuses_fails_synth():
    Annotations.from_stack(workforce_stack(**{"counting.project": "aws-labels"})).has_error(
        "*", Match.string_like_regexp("cannot contain aws, amazon, cognito")
    )


def test_app_client_has_a_secret_and_the_oauth_code_flow(template):
    template.has_resource_properties(
        "AWS::Cognito::UserPoolClient",
        {
            "GenerateSecret": True,
            "AllowedOAuthFlows": ["code"],
            "AllowedOAuthFlowsUserPoolClient": True,
            "AllowedOAuthScopes": ["email", "openid", "profile"],
            "SupportedIdentityProviders": ["COGNITO"],
        },
    )


def test_each_invited_email_is_a_user_in_the_workers_group(template):
    template.resource_count_is("AWS::Cognito::UserPoolUser", 2)
    template.resource_count_is("AWS::Cognito::UserPoolUserToGroupAttachment", 2)
    group_id, group = only(template, "AWS::Cognito::UserPoolGroup")
    assert group["Properties"]["GroupName"] == "object-counting-dev-workers"
    for email in ("a@example.com", "b@example.com"):
        template.has_resource_properties(
            "AWS::Cognito::UserPoolUser",
            {
                "Username": email,
                "DesiredDeliveryMediums": ["EMAIL"],
                "UserAttributes": [
                    {"Name": "email", "Value": email},
                    {"Name": "email_verified", "Value": "true"},
                ],
            },
        )
        template.has_resource(
            "AWS::Cognito::UserPoolUserToGroupAttachment",
            {
                "Properties": {
                    "Username": email,
                    "GroupName": {"Ref": group_id},
                    "UserPoolId": Match.any_value(),
                },
                "DependsOn": [Match.string_like_regexp("Worker")],
            },
        )
        template.has_resource_properties(
            "AWS::SNS::Subscription", {"Protocol": "email", "Endpoint": email}
        )


def test_an_address_in_two_letter_cases_is_one_user():
    template = workforce_template(
        **{"counting.workforce.invite_emails": '["Ann@Example.com", "ann@example.com"]'}
    )
    template.resource_count_is("AWS::Cognito::UserPoolUser", 1)
    template.has_resource_properties("AWS::Cognito::UserPoolUser", {"Username": "ann@example.com"})


def test_no_invite_emails_no_users():
    template = workforce_template()
    template.resource_count_is("AWS::Cognito::UserPoolUser", 0)


def test_workforce_is_made_on_the_user_pool_and_its_client_after_the_domain(template):
    pool_id, _ = only(template, "AWS::Cognito::UserPool")
    client_id, _ = only(template, "AWS::Cognito::UserPoolClient")
    domain_id, _ = only(template, "AWS::Cognito::UserPoolDomain")
    template.has_resource(
        "AWS::SageMaker::Workforce",
        {
            "Properties": {
                "WorkforceName": "object-counting-dev-workforce",
                "CognitoConfig": {"UserPool": {"Ref": pool_id}, "ClientId": {"Ref": client_id}},
            },
            "DependsOn": [domain_id],
        },
    )


def test_portal_urls_are_set_on_the_client_resending_every_client_field(template):
    _, client = only(template, "AWS::Cognito::UserPoolClient")
    client_properties = rendered(client["Properties"])
    create, update = sdk_call(template, "updateUserPoolClient")

    assert create == update
    parameters = create["parameters"]
    model = botocore.session.get_session().get_service_model("cognito-idp")
    validate_parameters(parameters, model.operation_model("UpdateUserPoolClient").input_shape)
    assert parameters["CallbackURLs"] == [
        "https://<Workforce659573B2.SubDomain>/oauth2/idpresponse"
    ]
    assert parameters["LogoutURLs"] == ["https://<Workforce659573B2.SubDomain>/logout"]
    # UpdateUserPoolClient resets whatever it is not given: everything the client was
    # created with is sent again, unchanged (GenerateSecret cannot change after creation).
    for name, value in client_properties.items():
        if name not in {"GenerateSecret", "CallbackURLs", "LogoutURLs"}:
            assert parameters[name] == value, name
    assert parameters["ClientId"] == f"<{only(template, 'AWS::Cognito::UserPoolClient')[0]}>"
    # The answer holds the client secret: not logged, not returned to the stack.
    assert create["logApiResponseData"] is False
    assert create["outputPaths"] == ["UserPoolClient.ClientId"]


def test_the_client_update_may_only_update_clients_of_this_pool(template):
    pool_id, _ = only(template, "AWS::Cognito::UserPool")
    template.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": {
                "Statement": [
                    {
                        "Action": "cognito-idp:UpdateUserPoolClient",
                        "Effect": "Allow",
                        "Resource": {"Fn::GetAtt": [pool_id, "Arn"]},
                    }
                ],
                "Version": "2012-10-17",
            }
        },
    )


def test_workteam_is_the_workers_group_with_a_notification_topic(template):
    pool_id, _ = only(template, "AWS::Cognito::UserPool")
    client_id, _ = only(template, "AWS::Cognito::UserPoolClient")
    group_id, _ = only(template, "AWS::Cognito::UserPoolGroup")
    topic_id, _ = only(template, "AWS::SNS::Topic")
    workforce_id, _ = only(template, "AWS::SageMaker::Workforce")
    template.has_resource(
        "AWS::SageMaker::Workteam",
        {
            "Properties": {
                "WorkteamName": "object-counting-dev-workers",
                "WorkforceName": "object-counting-dev-workforce",
                "Description": Match.any_value(),
                "MemberDefinitions": [
                    {
                        "CognitoMemberDefinition": {
                            "CognitoUserPool": {"Ref": pool_id},
                            "CognitoClientId": {"Ref": client_id},
                            "CognitoUserGroup": {"Ref": group_id},
                        }
                    }
                ],
                "NotificationConfiguration": {"NotificationTopicArn": {"Ref": topic_id}},
            },
            "DependsOn": [workforce_id],
        },
    )


def test_notification_topic_is_unencrypted_ssl_only_and_open_to_ground_truth(template):
    _, topic = only(template, "AWS::SNS::Topic")
    # CreateWorkteam fails with a KMS-encrypted topic.
    assert "KmsMasterKeyId" not in topic["Properties"]
    _, policy = only(template, "AWS::SNS::TopicPolicy")
    statements = rendered(policy["Properties"]["PolicyDocument"]["Statement"])
    plain_http = next(s for s in statements if s["Effect"] == "Deny")
    assert plain_http["Condition"] == {"Bool": {"aws:SecureTransport": "false"}}
    assert plain_http["Principal"] == "*"
    ground_truth = next(s for s in statements if s["Effect"] == "Allow")
    assert ground_truth["Principal"] == {"Service": "sagemaker.amazonaws.com"}
    assert ground_truth["Action"] == "sns:Publish"
    assert ground_truth["Condition"]["StringEquals"] == {"aws:SourceAccount": "<AWS::AccountId>"}
    assert ground_truth["Condition"]["ArnLike"]["aws:SourceArn"].endswith(":workteam/*")


def test_outputs_portal_url_workteam_and_user_pool(template):
    outputs = template.find_outputs("*")
    assert (
        rendered(outputs["LabelingPortalUrl"]["Value"]) == "https://<Workforce659573B2.SubDomain>"
    )
    workteam_id, _ = only(template, "AWS::SageMaker::Workteam")
    assert outputs["WorkteamArn"]["Value"] == {"Fn::GetAtt": [workteam_id, "WorkteamArn"]}
    pool_id, _ = only(template, "AWS::Cognito::UserPool")
    assert outputs["UserPoolId"]["Value"] == {"Ref": pool_id}


def test_an_existing_workforce_is_attached_to_not_created(existing):
    for resource_type in (
        "AWS::SageMaker::Workforce",
        "AWS::Cognito::UserPool",
        "AWS::Cognito::UserPoolClient",
        "AWS::Cognito::UserPoolDomain",
    ):
        existing.resource_count_is(resource_type, 0)
    existing.has_resource_properties(
        "AWS::SageMaker::Workteam",
        {
            "WorkforceName": Match.absent(),
            "MemberDefinitions": [
                {
                    "CognitoMemberDefinition": {
                        "CognitoUserPool": "eu-west-1_AbCdEf123",
                        "CognitoClientId": "1example23456789abcdefghij",
                        "CognitoUserGroup": Match.any_value(),
                    }
                }
            ],
        },
    )
    existing.has_resource_properties(
        "AWS::Cognito::UserPoolGroup", {"UserPoolId": "eu-west-1_AbCdEf123"}
    )


def test_an_existing_workforce_portal_url_comes_from_the_work_team(existing):
    workteam_id, _ = only(existing, "AWS::SageMaker::Workteam")
    create, _ = sdk_call(existing, "describeWorkteam")
    assert create["parameters"] == {"WorkteamName": f"<{workteam_id}.WorkteamName>"}
    existing.has_resource_properties(
        "AWS::IAM::Policy",
        {
            "PolicyDocument": Match.object_like(
                {
                    "Statement": [
                        {
                            "Action": "sagemaker:DescribeWorkteam",
                            "Effect": "Allow",
                            "Resource": {"Fn::GetAtt": [workteam_id, "WorkteamArn"]},
                        }
                    ]
                }
            )
        },
    )
    portal = rendered(existing.find_outputs("LabelingPortalUrl")["LabelingPortalUrl"]["Value"])
    assert portal.startswith("https://<WorkforcePortalOfExistingWorkforce")
    assert portal.endswith(".Workteam.SubDomain>")


def test_the_deploy_time_api_calls_log_to_an_encrypted_group(template):
    _, log_group = only(template, "AWS::Logs::LogGroup")

    assert log_group["Properties"]["RetentionInDays"] == 90
    assert "Fn::ImportValue" in json.dumps(log_group["Properties"]["KmsKeyId"])
