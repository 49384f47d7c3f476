"""Figures shared by the CLI, the Lambda handlers and the stacks, each with its unit."""

# A detection counts when its score (0..1) is at least this; the guide's notebook used 0.2.
DEFAULT_SCORE_THRESHOLD = 0.2

# Serverless inference accepts request and response payloads of at most 4 MB:
# https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints-invoke.html
# (limits overview: https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints.html).
# "4 MB" read as decimal megabytes: the stricter reading, so no image near the limit is refused.
SERVERLESS_MAX_PAYLOAD_BYTES = 4_000_000

# What the built-in Object Detection algorithm takes and answers with.
IMAGE_CONTENT_TYPE = "application/x-image"
JSON_CONTENT_TYPE = "application/json"

# --- The counter's calls to the serverless endpoint, and the time one image may take. ---

# Seconds to open the connection to SageMaker Runtime: a regional HTTPS endpoint connects in
# milliseconds, so 5 s means the network is failing; botocore retries it (standard mode).
# https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html
ENDPOINT_CONNECT_TIMEOUT_SECONDS = 5
# Seconds to wait for the answer: a serverless container must answer /invocations within
# 1 minute, so a little over that leaves SageMaker's own timeout error time to arrive
# (botocore applies it to each socket read; SageMaker ends the invocation at 60 s anyway).
# https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints-invoke.html
ENDPOINT_READ_TIMEOUT_SECONDS = 65
# Attempts per image, the first included: "standard" retry mode's documented default of 3.
# https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html
ENDPOINT_MAX_ATTEMPTS = 3
# Seconds of waiting between those attempts, at most: standard mode backs off
# rand(0, 1) * min(2 ** (attempt - 1), 20) s (1 s base for throttling, less otherwise), and
# botocore 1.44 honours an `x-amz-retry-after` header up to 5 s past that (source:
# botocore/retries/standard.py, ExponentialBackoff): (1 + 5) + (2 + 5) for the 2 retries.
# https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html
ENDPOINT_RETRY_BACKOFF_SECONDS = sum(
    min(2 ** (retry - 1), 20) + 5 for retry in range(1, ENDPOINT_MAX_ATTEMPTS)
)
# Seconds allowed for the rest of one image: reading it from S3, decoding and re-encoding,
# the idempotency record, the result JSON, the table item and the annotated PNG. These are
# small same-region calls, about a second together; 30 s absorbs a slow call and its retries.
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html
IMAGE_STORAGE_ALLOWANCE_SECONDS = 30
# The longest one image can take in the counter: every endpoint attempt connecting and then
# reading for the whole timeouts, the backoff between them, and the S3/DynamoDB allowance:
# 3 * (5 + 65) + (6 + 7) + 30 = 210 + 13 + 30 = 253 s. The counter starts an image only
# with this much time left, and the function timeout is at least this (stacks/config.py).
# https://docs.aws.amazon.com/lambda/latest/dg/python-context.html
IMAGE_WORST_CASE_SECONDS = (
    ENDPOINT_MAX_ATTEMPTS * (ENDPOINT_CONNECT_TIMEOUT_SECONDS + ENDPOINT_READ_TIMEOUT_SECONDS)
    + ENDPOINT_RETRY_BACKOFF_SECONDS
    + IMAGE_STORAGE_ALLOWANCE_SECONDS
)
