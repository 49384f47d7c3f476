"""Named retry policies of the training state machine's task states, and why each is so.

Step Functions names an error ``<Service>.<Exception>``. Errors a service does not model
(SageMaker's and SSM's throttling among them) arrive as ``<Service>.<Service>Exception``,
so a policy on that name also retries some errors that will not go away; each policy is
kept short enough that this costs seconds, not a run. What still fails after the retries
is caught and reported (``notify.RunNotifications``).
https://docs.aws.amazon.com/step-functions/latest/dg/supported-services-awssdk.html
"""

from __future__ import annotations

from dataclasses import dataclass

import aws_cdk as cdk
from aws_cdk import aws_stepfunctions as sfn


@dataclass(frozen=True)
class RetryPolicy:
    errors: tuple[str, ...]
    interval: cdk.Duration
    max_attempts: int
    backoff_rate: float = 2.0

    def apply(self, state: sfn.TaskStateBase | sfn.CustomState) -> None:
        state.add_retry(
            errors=list(self.errors),
            interval=self.interval,
            max_attempts=self.max_attempts,
            backoff_rate=self.backoff_rate,
            # Spread retries of concurrent runs instead of hitting a throttled API together.
            jitter_strategy=sfn.JitterType.FULL,
        )


#: The Lambda service's own transient failures and throttling, as AWS recommends retrying
#: them; the function's errors (``DataNotTrainable``) are not retried: the data stays bad.
#: https://docs.aws.amazon.com/step-functions/latest/dg/bp-lambda-serviceexception.html
LAMBDA_SERVICE = RetryPolicy(
    errors=(
        "Lambda.ServiceException",
        "Lambda.AWSLambdaException",
        "Lambda.SdkClientException",
        "Lambda.TooManyRequestsException",
    ),
    interval=cdk.Duration.seconds(2),
    max_attempts=6,
)

#: createTrainingJob.sync reports SageMaker's API errors, throttling and "ResourceLimitExceeded"
#: (no spot or GPU capacity quota left right now) alike, as SageMaker.AmazonSageMakerException.
#: Minutes apart, so capacity has a chance to free up. A retry reuses the run's job name, so
#: it can never start a second GPU job: if the first one started, the retry fails at once.
#: A job that fails or stops (States.TaskFailed) is not retried.
TRAINING_JOB_START = RetryPolicy(
    errors=("SageMaker.AmazonSageMakerException",),
    interval=cdk.Duration.minutes(1),
    max_attempts=3,
)

#: SageMaker's throttling and internal errors are not modeled: Step Functions reports them,
#: like a ValidationException, as SageMaker.SageMakerException. Four quick tries (about 30 s).
SAGEMAKER_API = RetryPolicy(
    errors=("SageMaker.SageMakerException",),
    interval=cdk.Duration.seconds(2),
    max_attempts=4,
)

#: PutParameter: concurrent updates of the one parameter (modeled) and throttling (not).
SSM_WRITE = RetryPolicy(
    errors=("Ssm.TooManyUpdatesException", "Ssm.SsmException"),
    interval=cdk.Duration.seconds(1),
    max_attempts=5,
)

#: Publishing to SNS: throttling (of SNS or of the topic's KMS key) or an SNS internal
#: error. Repeating a notification is harmless, and the names the optimized SNS integration
#: gives these errors are not documented, so any task failure is retried
#: (``States.TaskFailed`` matches every error but a timeout).
NOTIFICATION = RetryPolicy(
    errors=("States.TaskFailed",),
    interval=cdk.Duration.seconds(2),
    max_attempts=3,
)
