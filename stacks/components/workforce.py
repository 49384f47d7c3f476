"""The private labeling workforce: Cognito sign-in, SageMaker workforce and work team.

Ground Truth allows one private workforce per account and Region. ``LabelingWorkforce``
creates it on a new Cognito user pool, or, when the settings name the user pool of one
that already exists, adds this app's work team to that one instead.
https://docs.aws.amazon.com/sagemaker/latest/dg/sms-workforce-create-private.html
"""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_cognito as cognito
from aws_cdk import aws_iam as iam
from aws_cdk import aws_kms as kms
from aws_cdk import aws_logs as logs
from aws_cdk import aws_sagemaker as sagemaker
from aws_cdk import aws_sns as sns
from aws_cdk import aws_sns_subscriptions as subscriptions
from aws_cdk import custom_resources as cr
from constructs import Construct

from stacks.config import WorkforceSettings
from stacks.nag import acknowledge

# Cognito refuses domain prefixes containing these words.
# https://docs.aws.amazon.com/cognito/latest/developerguide/cognito-user-pools-assign-domain-prefix.html
RESERVED_DOMAIN_WORDS = ("aws", "amazon", "cognito")
# The construct id CDK gives the one Lambda function behind a stack's AwsCustomResources.
SDK_CALL_PROVIDER = "AWS679f53fac002430cb0da5b7982bd2287"
MFA = {"off": cognito.Mfa.OFF, "optional": cognito.Mfa.OPTIONAL, "required": cognito.Mfa.REQUIRED}

# How long an invitation's temporary password can be used to sign in the first time.
TEMPORARY_PASSWORD_DAYS = 7

# The app client SageMaker's labeling portal signs workers in with: authorization code
# grant, OpenID scopes, Cognito's own users. Written once here because the custom resource
# that adds the portal's URLs must resend all of it (UpdateUserPoolClient resets anything
# left out). Keys are the API's (and CloudFormation's) property names; validities are in
# minutes, the unit CDK renders them in (the refresh token lasts a workday).
# https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_UpdateUserPoolClient.html
ACCESS_TOKEN_MINUTES = 60
ID_TOKEN_MINUTES = 60
REFRESH_TOKEN_MINUTES = 12 * 60
AUTH_SESSION_MINUTES = 3
APP_CLIENT_SETTINGS = {
    "AllowedOAuthFlows": ["code"],
    "AllowedOAuthFlowsUserPoolClient": True,
    "AllowedOAuthScopes": ["email", "openid", "profile"],
    "SupportedIdentityProviders": ["COGNITO"],
    "ExplicitAuthFlows": ["ALLOW_USER_SRP_AUTH", "ALLOW_REFRESH_TOKEN_AUTH"],
    "PreventUserExistenceErrors": "ENABLED",
    "EnableTokenRevocation": True,
    "AccessTokenValidity": ACCESS_TOKEN_MINUTES,
    "IdTokenValidity": ID_TOKEN_MINUTES,
    "RefreshTokenValidity": REFRESH_TOKEN_MINUTES,
    "TokenValidityUnits": {
        "AccessToken": "minutes",
        "IdToken": "minutes",
        "RefreshToken": "minutes",
    },
    "AuthSessionValidity": AUTH_SESSION_MINUTES,
}


def portal_urls(sub_domain: str) -> dict[str, list[str]]:
    """Where Cognito may send workers back to on the labeling portal (``SubDomain``)."""
    return {
        "CallbackURLs": [f"https://{sub_domain}/oauth2/idpresponse"],
        "LogoutURLs": [f"https://{sub_domain}/logout"],
    }


class LabelingWorkforce(Construct):
    """Cognito users in a workers group, and a private work team made of that group.

    Attributes:
        user_pool: the workforce's Cognito user pool (new, or the existing one).
        app_client: its app client, which the labeling portal signs in with.
        workers_group: the Cognito group the work team is made of.
        workforce: the SageMaker workforce, or ``None`` when attached to an existing one.
        notifications: SNS topic telling workers that tasks are waiting.
        workteam_arn: what labeling jobs name as their work team.
        portal_url: the labeling portal's sign-in page (``https://<SubDomain>``).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        prefix: str,
        settings: WorkforceSettings,
        key: kms.IKey,
    ) -> None:
        """``key`` encrypts the log group of the deploy-time API calls."""
        super().__init__(scope, construct_id)
        self._key = key
        self.workforce: sagemaker.CfnWorkforce | None = None
        if settings.existing_user_pool_id and settings.existing_app_client_id:
            self.user_pool = cognito.UserPool.from_user_pool_id(
                self, "UserPool", settings.existing_user_pool_id
            )
            self.app_client = cognito.UserPoolClient.from_user_pool_client_id(
                self, "AppClient", settings.existing_app_client_id
            )
        else:
            self._create_workforce(prefix, settings)

        self.workers_group = cognito.CfnUserPoolGroup(
            self,
            "Workers",
            user_pool_id=self.user_pool.user_pool_id,
            group_name=f"{prefix}-workers",
            description=f"Workers who label images for {prefix}",
        )
        self.notifications = self._notification_topic()
        self._invite(settings.invite_emails)

        self.workteam = sagemaker.CfnWorkteam(
            self,
            "Workteam",
            workteam_name=f"{prefix}-workers",
            description=f"Draws boxes around objects in {prefix} images",
            member_definitions=[
                sagemaker.CfnWorkteam.MemberDefinitionProperty(
                    cognito_member_definition=sagemaker.CfnWorkteam.CognitoMemberDefinitionProperty(
                        cognito_user_pool=self.user_pool.user_pool_id,
                        cognito_client_id=self.app_client.user_pool_client_id,
                        cognito_user_group=self.workers_group.ref,
                    )
                )
            ],
            notification_configuration=sagemaker.CfnWorkteam.NotificationConfigurationProperty(
                notification_topic_arn=self.notifications.topic_arn
            ),
            workforce_name=self.workforce.workforce_name if self.workforce else None,
        )
        if self.workforce:
            self.workteam.add_resource_dependency(self.workforce)
        self.workteam_arn = self.workteam.attr_workteam_arn
        self.portal_url = f"https://{self._portal_sub_domain()}"

    def _create_workforce(self, prefix: str, settings: WorkforceSettings) -> None:
        stack = cdk.Stack.of(self)
        self.user_pool = labelers_user_pool(
            self,
            "UserPool",
            name=f"{prefix}-workforce",
            mfa=settings.mfa,
            mfa_setting="workforce.mfa",
            invitation=cognito.UserInvitationConfig(
                email_subject=f"You are invited to label images for {prefix}",
                email_body=(
                    f"You are invited to join the {prefix} labeling team in Amazon SageMaker "
                    "Ground Truth: you will draw a box around each object of the kinds each "
                    "task names, in images shown in your web browser.<br><br>"
                    "Your user name is {username} and your temporary password is {####} "
                    f"(valid for {TEMPORARY_PASSWORD_DAYS} days). Sign in at the labeling portal "
                    "address that your project team sends you; you will be asked to choose a "
                    "new password."
                ),
            ),
        )

        # Hosted sign-in for the labeling portal. Domain prefixes are unique per Region
        # across all AWS accounts, hence the account id in it.
        if any(word in prefix for word in RESERVED_DOMAIN_WORDS):
            cdk.Annotations.of(self).add_error(
                f"the Cognito domain prefix cannot contain {', '.join(RESERVED_DOMAIN_WORDS)}: "
                f"choose a project or stage name without them (now {prefix!r})"
            )
        self.domain = self.user_pool.add_domain(
            "Domain",
            cognito_domain=cognito.CognitoDomainOptions(domain_prefix=f"{prefix}-{stack.account}"),
        )

        client_name = f"{prefix}-labeling-portal"
        self.app_client = self.user_pool.add_client(
            "AppClient",
            user_pool_client_name=client_name,
            generate_secret=True,
            o_auth=cognito.OAuthSettings(
                flows=cognito.OAuthFlows(authorization_code_grant=True),
                scopes=[
                    cognito.OAuthScope.EMAIL,
                    cognito.OAuthScope.OPENID,
                    cognito.OAuthScope.PROFILE,
                ],
                # The portal's URLs exist only once the workforce does (which needs this
                # client): the PortalUrls custom resource below replaces these.
                callback_urls=[self.domain.base_url()],
                logout_urls=[self.domain.base_url()],
            ),
            auth_flows=cognito.AuthFlow(user_srp=True),
            supported_identity_providers=[cognito.UserPoolClientIdentityProvider.COGNITO],
            prevent_user_existence_errors=True,
            enable_token_revocation=True,
            access_token_validity=cdk.Duration.minutes(ACCESS_TOKEN_MINUTES),
            id_token_validity=cdk.Duration.minutes(ID_TOKEN_MINUTES),
            refresh_token_validity=cdk.Duration.minutes(REFRESH_TOKEN_MINUTES),
            auth_session_validity=cdk.Duration.minutes(AUTH_SESSION_MINUTES),
        )

        self.workforce = sagemaker.CfnWorkforce(
            self,
            "Workforce",
            workforce_name=f"{prefix}-workforce",
            cognito_config=sagemaker.CfnWorkforce.CognitoConfigProperty(
                user_pool=self.user_pool.user_pool_id,
                client_id=self.app_client.user_pool_client_id,
            ),
        )
        # The portal signs workers in through the pool's domain: create that first.
        self.workforce.node.add_dependency(self.domain)
        self._point_app_client_at_portal(client_name=client_name)

    def _point_app_client_at_portal(self, *, client_name: str) -> None:
        """Set the client's callback and logout URLs from the workforce's ``SubDomain``."""
        assert self.workforce is not None
        call = cr.AwsSdkCall(
            service="CognitoIdentityServiceProvider",
            action="updateUserPoolClient",
            parameters={
                "UserPoolId": self.user_pool.user_pool_id,
                "ClientId": self.app_client.user_pool_client_id,
                "ClientName": client_name,
                **APP_CLIENT_SETTINGS,
                **portal_urls(self.workforce.attr_sub_domain),
            },
            physical_resource_id=cr.PhysicalResourceId.of(self.app_client.user_pool_client_id),
            # The answer holds the client secret: keep it out of the logs and the stack.
            logging=cr.Logging.with_data_hidden(),
            output_paths=["UserPoolClient.ClientId"],
        )
        self._sdk_call(
            "PortalUrls",
            call,
            iam.PolicyStatement(
                actions=["cognito-idp:UpdateUserPoolClient"],
                resources=[self.user_pool.user_pool_arn],
            ),
        )

    def _sdk_call(
        self, construct_id: str, call: cr.AwsSdkCall, permission: iam.PolicyStatement
    ) -> cr.AwsCustomResource:
        """One AWS API call made at deploy time (and again when its parameters change).

        CDK runs every such call of a stack in one shared Lambda function; it gets its own
        role and log group here instead of the managed AWSLambdaBasicExecutionRole, which
        may write to every log group.
        """
        stack = cdk.Stack.of(self)
        role = stack.node.try_find_child("SdkCallRole")
        log_group = stack.node.try_find_child("SdkCallLogs")
        if not (isinstance(role, iam.Role) and isinstance(log_group, logs.LogGroup)):
            role = iam.Role(
                stack,
                "SdkCallRole",
                assumed_by=iam.ServicePrincipal("lambda.amazonaws.com"),
                description="Runs the deploy-time API calls of the labeling workforce",
            )
            log_group = logs.LogGroup(
                stack,
                "SdkCallLogs",
                retention=logs.RetentionDays.THREE_MONTHS,
                encryption_key=self._key,
            )
            log_group.grant_write(role)
        resource = cr.AwsCustomResource(
            self,
            construct_id,
            on_create=call,
            on_update=call,
            policy=cr.AwsCustomResourcePolicy.from_statements([permission]),
            role=role,
            log_group=log_group,
            memory_size=256,
            install_latest_aws_sdk=False,
        )
        provider = stack.node.find_child(SDK_CALL_PROVIDER)
        for rule, reason in (
            (
                "Serverless-LambdaDLQ",
                "CloudFormation invokes the workforce's deploy-time API-call function "
                "synchronously and fails the deployment when a call fails; there is nothing "
                "to dead-letter.",
            ),
            (
                "Serverless-LambdaTracing",
                "The workforce's deploy-time API-call function is CDK's AwsCustomResource "
                "provider, which offers no X-Ray tracing setting; it runs only on deployments.",
            ),
        ):
            acknowledge(provider, rule, reason)
        return resource

    def _notification_topic(self) -> sns.Topic:
        stack = cdk.Stack.of(self)
        # Not KMS-encrypted: CreateWorkteam fails with an encrypted notification topic.
        topic = sns.Topic(
            self,
            "Notifications",
            display_name="Labeling tasks are waiting",
            enforce_ssl=True,
        )
        # Ground Truth publishes "tasks are waiting" for this account's work teams.
        # https://docs.aws.amazon.com/sagemaker/latest/dg/sms-workforce-management-private-sns.html
        topic.add_to_resource_policy(
            iam.PolicyStatement(
                sid="GroundTruthWorkteamNotifications",
                principals=[iam.ServicePrincipal("sagemaker.amazonaws.com")],
                actions=["sns:Publish"],
                resources=[topic.topic_arn],
                conditions={
                    "ArnLike": {
                        "aws:SourceArn": stack.format_arn(
                            service="sagemaker", resource="workteam", resource_name="*"
                        )
                    },
                    "StringEquals": {"aws:SourceAccount": stack.account},
                },
            )
        )
        return topic

    def _invite(self, emails: tuple[str, ...]) -> None:
        """One Cognito user per email (Cognito sends the invitation), in the workers group.

        Each invitee is also subscribed to the notification topic: SNS asks them to confirm.
        Construct ids are the addresses, so that reordering the list replaces nobody.
        """
        # Sign-in is case-insensitive: one user per address, whatever its letter case.
        for email in dict.fromkeys(email.lower() for email in emails):
            user = cognito.CfnUserPoolUser(
                self,
                f"Worker-{email}",
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
            membership = cognito.CfnUserPoolUserToGroupAttachment(
                self,
                f"WorkerInGroup-{email}",
                user_pool_id=self.user_pool.user_pool_id,
                group_name=self.workers_group.ref,
                username=email,
            )
            membership.add_resource_dependency(user)
            subscription = self.notifications.add_subscription(
                subscriptions.EmailSubscription(email)
            )
            acknowledge(
                subscription,
                "Serverless-SNSRedrivePolicy",
                f"Task notices mailed to the labeler {email}: one lost notice costs nothing, "
                "the portal lists every waiting task anyway.",
            )

    def _portal_sub_domain(self) -> str:
        if self.workforce:
            return self.workforce.attr_sub_domain
        # An existing workforce's portal: ask SageMaker for the work team's SubDomain.
        describe = cr.AwsSdkCall(
            service="SageMaker",
            action="describeWorkteam",
            parameters={"WorkteamName": self.workteam.attr_workteam_name},
            physical_resource_id=cr.PhysicalResourceId.of(self.workteam.attr_workteam_name),
            output_paths=["Workteam.SubDomain"],
        )
        portal = self._sdk_call(
            "PortalOfExistingWorkforce",
            describe,
            iam.PolicyStatement(
                actions=["sagemaker:DescribeWorkteam"], resources=[self.workteam_arn]
            ),
        )
        return portal.get_response_field("Workteam.SubDomain")


def labelers_user_pool(
    scope: Construct,
    construct_id: str,
    *,
    name: str,
    mfa: str,
    mfa_setting: str,
    invitation: cognito.UserInvitationConfig,
) -> cognito.UserPool:
    """A Cognito user pool of invited labelers: nobody signs up, passwords are strong, and
    ``mfa`` (``mfa_setting`` names where it is set) decides on a second factor."""
    user_pool = cognito.UserPool(
        scope,
        construct_id,
        user_pool_name=name,
        # Invited people only: an administrator adds them, nobody signs up.
        self_sign_up_enabled=False,
        sign_in_aliases=cognito.SignInAliases(email=True),
        standard_attributes=cognito.StandardAttributes(
            email=cognito.StandardAttribute(required=True, mutable=True)
        ),
        auto_verify=cognito.AutoVerifiedAttrs(email=True),
        account_recovery=cognito.AccountRecovery.EMAIL_ONLY,
        password_policy=cognito.PasswordPolicy(
            min_length=12,
            require_lowercase=True,
            require_uppercase=True,
            require_digits=True,
            require_symbols=True,
            temp_password_validity=cdk.Duration.days(TEMPORARY_PASSWORD_DAYS),
        ),
        # Authenticator apps only: SMS would need an SNS role and per-message costs.
        mfa=MFA[mfa],
        mfa_second_factor=(
            None if mfa == "off" else cognito.MfaSecondFactor(otp=True, sms=False, email=False)
        ),
        # Threat protection (the Plus plan) blocks sign-ins with leaked or risky
        # credentials to a site that shows the project's images. It is billed per
        # monthly active user, and labelers are a handful to a few hundred people, so it
        # costs little: https://aws.amazon.com/cognito/pricing/
        feature_plan=cognito.FeaturePlan.PLUS,
        standard_threat_protection_mode=cognito.StandardThreatProtectionMode.FULL_FUNCTION,
        user_invitation=invitation,
        # Kept or deleted with the stage's data (storage.removal_policy, stacks/application.py).
    )
    if mfa != "required":
        acknowledge(
            user_pool,
            "AwsSolutions-COG2",
            f"{mfa_setting} is {mfa!r}: invited labelers without an authenticator "
            "app can still sign in; set it to 'required' to enforce TOTP for everyone.",
        )
    return user_pool
