"""The answer to a CloudFormation custom resource request: a JSON document PUT to the request's
presigned S3 URL, at most 4,096 bytes, with an empty Content-Type as the URL was signed with
none (as AWS's own cfn-response module sends it).

https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/crpg-ref-responses.html
"""

from __future__ import annotations

import json
import urllib.request
from typing import Literal

from counting_core.contracts.studio_project import ProjectRequest

ANSWER_TIMEOUT_SECONDS = 30
# What a failure's reason keeps, so that the whole answer stays under the 4,096 bytes: the
# identifiers it echoes are CloudFormation's (a stack ARN, a request id, a logical id).
MAX_REASON_CHARACTERS = 1500


def respond(
    request: ProjectRequest,
    *,
    status: Literal["SUCCESS", "FAILED"],
    physical_resource_id: str,
    reason: str = "",
    data: dict[str, str] | None = None,
) -> bytes:
    """Send the answer; returns what was sent."""
    body = json.dumps(
        {
            "Status": status,
            "Reason": reason[:MAX_REASON_CHARACTERS],
            "PhysicalResourceId": physical_resource_id,
            "StackId": request.stack_id,
            "RequestId": request.request_id,
            "LogicalResourceId": request.logical_resource_id,
            "Data": data or {},
        }
    ).encode()
    put = urllib.request.Request(  # noqa: S310 (CloudFormation's https:// response URL)
        request.response_url,
        data=body,
        method="PUT",
        headers={"Content-Type": "", "Content-Length": str(len(body))},
    )
    with urllib.request.urlopen(put, timeout=ANSWER_TIMEOUT_SECONDS):  # noqa: S310 (same URL)
        pass
    return body
