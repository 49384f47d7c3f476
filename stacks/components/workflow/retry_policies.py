"""Named retry policies of the state machines' task states, and why each is so.

Step Functions names a service's error ``<Service>.<Exception>`` after the exceptions the
service's API reference lists; errors a service does not list (throttling, internal
errors) have no documented name. A policy therefore names an error only where AWS's own
examples do, and otherwise retries ``States.TaskFailed`` (every task failure but a
timeout): each of those calls is safe to repeat, and each policy is kept short enough
that retrying an error that will not go away costs seconds, not a run. What still fails
after the retries is caught and reported (``notify.RunNotifications``).

``MaxAttempts`` counts retries: a policy of 3 makes up to 4 calls. Short policies spread
concurrent runs' retries with full jitter, which AWS defines as a random wait between 0 and
the interval: their intervals are the longest waits. The waits for capacity have no
jitter: they wait for other jobs to finish, and their totals are what the state machine's
time limit keeps for them.
https://docs.aws.amazon.com/step-functions/latest/dg/concepts-error-handling.html
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
    # Spread retries of concurrent runs instead of hitting a throttled API together.
    jitter: bool = True

    def apply(self, state: sfn.TaskStateBase | sfn.CustomState) -> None:
        state.add_retry(
            errors=list(self.errors),
            interval=self.interval,
            max_attempts=self.max_attempts,
            backoff_rate=self.backoff_rate,
            jitter_strategy=sfn.JitterType.FULL if self.jitter else sfn.JitterType.NONE,
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

#: Starting a SageMaker job (createTrainingJob.sync, createTransformJob.sync): AWS's .sync
#: example retries SageMaker.AmazonSageMakerException (the API's errors and throttling) and,
#: separately, SageMaker.ResourceLimitExceededException (no quota or capacity left right
#: now: the *_CAPACITY policies). https://docs.aws.amazon.com/step-functions/latest/dg/connect-sagemaker.html
#: A retry reuses the run's job name, so it can never start a second job: if the first one
#: started, the retry fails at once. A job that fails or stops (States.TaskFailed) is not
#: retried (a transform fails the whole job when one image fails, and would again:
#: https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_TransformOutput.html).
#: API errors: at most 1, 2 and 4 minutes apart (full jitter).
SAGEMAKER_JOB_API = RetryPolicy(
    errors=("SageMaker.AmazonSageMakerException",),
    interval=cdk.Duration.minutes(1),
    max_attempts=3,
)
#: No quota or capacity: every 5 minutes for up to 55 minutes, while other jobs finish.
#: The execution's own time limit keeps an hour for this (pipeline.OVERHEAD).
TRAINING_CAPACITY = RetryPolicy(
    errors=("SageMaker.ResourceLimitExceededException",),
    interval=cdk.Duration.minutes(5),
    max_attempts=11,
    backoff_rate=1.0,
    jitter=False,
)

#: No quota for the CPU transform instance right now: every 5 minutes for up to 25 minutes
#: (the evaluation's share of the execution's time limit, evaluate.evaluation_time).
TRANSFORM_CAPACITY = RetryPolicy(
    errors=("SageMaker.ResourceLimitExceededException",),
    interval=cdk.Duration.minutes(5),
    max_attempts=5,
    backoff_rate=1.0,
    jitter=False,
)

#: SSM GetParameter: throttling and internal errors have no documented name, so any failure
#: is retried, as for SSM_WRITE; a missing parameter is excluded by the task itself.
SSM_READ = RetryPolicy(
    errors=("States.TaskFailed",),
    interval=cdk.Duration.seconds(1),
    max_attempts=4,
)

#: SageMaker's model, endpoint-config and endpoint calls. Their throttling and internal
#: errors have no documented name, so any failure is retried, four times in about 30 s:
#: creating twice fails on the name already taken, the rest are reads, updates and a
#: deletion that repeat harmlessly.
SAGEMAKER_API = RetryPolicy(
    errors=("States.TaskFailed",),
    interval=cdk.Duration.seconds(2),
    max_attempts=4,
)

#: PutParameter (Overwrite): concurrent updates of the one parameter and throttling. Writing
#: the same record again is harmless, and only TooManyUpdatesException is documented, so
#: any failure is retried.
SSM_WRITE = RetryPolicy(
    errors=("States.TaskFailed",),
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
