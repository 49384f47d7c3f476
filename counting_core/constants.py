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
# Every figure below follows from AWS's documentation and botocore's retry code; the
# counter's client (adapters/clients.py, ENDPOINT), its time budget, the Lambda timeout
# (stacks/config.py) and the queue's visibility timeout (stacks/counting_stack.py) are
# all sized from them, and tests/contracts/test_counter_timing.py recomputes the chain
# from the synthesized template.

# Seconds to open the connection to SageMaker Runtime: a regional HTTPS endpoint connects in
# milliseconds, so 5 s means the network is failing; botocore retries it (standard mode).
# https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html
ENDPOINT_CONNECT_TIMEOUT_SECONDS = 5
# A serverless endpoint's container must answer /invocations within 1 minute.
# https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints-invoke.html
ENDPOINT_INVOCATION_LIMIT_SECONDS = 60
# Seconds to wait for the answer: InvokeEndpoint's reference asks for a 70 s socket timeout
# when a model may take 50-60 s, so SageMaker's own timeout error arrives before ours.
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html
ENDPOINT_READ_TIMEOUT_SECONDS = ENDPOINT_INVOCATION_LIMIT_SECONDS + 10
# Calls per S3, DynamoDB or SageMaker request of the labeling, Prepare and evaluation Lambdas,
# the first included (botocore's ``total_max_attempts``): standard mode's backoff spreads them
# over about 15 s, enough for throttling to pass within the functions' timeouts.
# https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html
AWS_CALL_ATTEMPTS = 5
# Calls per invocation attempt, the first included (botocore's ``total_max_attempts``;
# its ``max_attempts`` counts retries only: botocore/args.py, _compute_retry_max_attempts).
# Standard mode retries throttling, 5xx answers, timeouts and broken connections.
# https://docs.aws.amazon.com/sdkref/latest/guide/feature-retry-behavior.html
ENDPOINT_CALL_ATTEMPTS = 2
# Longest wait between those calls: standard mode waits rand(0, 1) * min(2 ** (attempt - 1),
# 20) s (1 s base for throttling, 50 ms otherwise) and honours an ``x-amz-retry-after``
# header up to 5 s past that (botocore/retries/standard.py, ExponentialBackoff).
ENDPOINT_CALL_BACKOFF_SECONDS = sum(
    min(2 ** (retry - 1), 20) + 5 for retry in range(1, ENDPOINT_CALL_ATTEMPTS)
)
# The longest one InvokeEndpoint call can take through botocore: 2 * (5 + 70) + 6 = 156 s.
ENDPOINT_CALL_WORST_CASE_SECONDS = (
    ENDPOINT_CALL_ATTEMPTS * (ENDPOINT_CONNECT_TIMEOUT_SECONDS + ENDPOINT_READ_TIMEOUT_SECONDS)
    + ENDPOINT_CALL_BACKOFF_SECONDS
)
# A cold serverless endpoint has 3 minutes to download the model and answer /ping. Until
# it does, InvokeEndpoint answers ModelNotReadyException ("wait and try your request
# again"), which botocore does not retry (a modeled 429 not marked retryable:
# botocore/retries/standard.py, ThrottlingStatusCodeChecker): the counter retries it
# itself, with backoff, for this long. Whether a call instead waits through a cold start is
# not documented; such a call is bounded by the read timeout and retried by botocore, so
# the worst case below holds either way.
# https://docs.aws.amazon.com/sagemaker/latest/dg/serverless-endpoints-invoke.html
# https://docs.aws.amazon.com/sagemaker/latest/APIReference/API_runtime_InvokeEndpoint.html
ENDPOINT_COLD_START_SECONDS = 180
# Waits between ModelNotReadyException retries: 5 s, doubling, at most 40 s.
MODEL_NOT_READY_FIRST_WAIT_SECONDS = 5
MODEL_NOT_READY_LONGEST_WAIT_SECONDS = 40
# Seconds allowed for the rest of one image: reading it from S3, decoding and re-encoding,
# the idempotency record, the result JSON, the annotated PNG, the result event and the table
# item. These are small same-region calls, about a second together; 30 s absorbs a slow call
# and its retries.
# https://docs.aws.amazon.com/AmazonS3/latest/userguide/optimizing-performance.html
IMAGE_STORAGE_ALLOWANCE_SECONDS = 30
# The longest one image can take in the counter: a retry for a cold endpoint starts at most
# ENDPOINT_COLD_START_SECONDS after the first call, and that last call takes at most its
# worst case; then storage: 180 + 156 + 30 = 366 s. The counter starts an image only with
# this much time left, and the function timeout is at least this (stacks/config.py).
# https://docs.aws.amazon.com/lambda/latest/dg/python-context.html
IMAGE_WORST_CASE_SECONDS = (
    ENDPOINT_COLD_START_SECONDS + ENDPOINT_CALL_WORST_CASE_SECONDS + IMAGE_STORAGE_ALLOWANCE_SECONDS
)
# The counter Lambda's default timeout: one worst-case image, then time for the rest of a
# batch of ordinary images (about a second each) even after a cold start.
COUNTER_TIMEOUT_SECONDS = 600
# SQS: a queue's visibility timeout should be at least six times the function's timeout,
# so that a batch being retried by Lambda is not delivered again meanwhile.
# https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html
QUEUE_VISIBILITY_TIMEOUT_FACTOR = 6

# --- What the counter sends the endpoint. ---

# The model's input side when its active-model record does not say: the `image_shape`
# hyperparameter this app trains with (stacks/config.py DEFAULT_HYPERPARAMETERS).
# https://docs.aws.amazon.com/sagemaker/latest/dg/object-detection-api-config.html
DEFAULT_IMAGE_SHAPE = 512
# Below this many pixels on an image's (or a tile's) short side there is nothing left worth
# detecting.
MIN_SIDE_PIXELS = 32
# Images are sent with their longest side at most this many times `image_shape`: the model
# resizes every input to image_shape x image_shape, so 2x keeps the short side of a 4:3 or
# 16:9 photo above image_shape and sends a fraction of a phone photo's bytes.
DEFAULT_PAYLOAD_SCALE = 2
