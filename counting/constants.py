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
