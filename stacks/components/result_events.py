"""Result events on the default bus: who may publish them, and their published schemas.

Both pipelines put one event per counted or rejected image (``counting_core.counts.announcements``).
Publishing is granted on the default bus only, and only with this stage's source
(``events:source``) and the two detail-types (``events:detail-type``), so a function of
this app cannot impersonate another source.
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-use-conditions.html

The schemas under ``schemas/`` (``make schemas``, generated from
``counting_core.contracts.published``) are registered in an EventBridge schema registry,
where consumers download code bindings.
https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-schema.html
"""

from __future__ import annotations

import json
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_eventschemas as eventschemas
from aws_cdk import aws_iam as iam
from constructs import Construct, IConstruct

from counting_core.contracts import published
from counting_core.counts import announcements

SCHEMAS_DIR = Path(__file__).resolve().parents[2] / "schemas"
#: Registry schema name of each file: ``<source>@<Name>``, the way EventBridge names
#: discovered event schemas (``aws.events@ScheduledEvent``).
SCHEMA_NAMES = {
    "image-counted-event.json": "ImageCounted",
    "image-rejected-event.json": "ImageRejected",
    "result-document.json": "ResultDocument",
    "result-table-item.json": "ResultTableItem",
}


def default_bus_arn(scope: IConstruct) -> str:
    return cdk.Stack.of(scope).format_arn(
        service="events", resource="event-bus", resource_name=announcements.EVENT_BUS
    )


def grant_put_result_events(role: iam.IRole, *, source: str) -> None:
    """Let ``role`` put result events, with this source only, on the default bus."""
    role.add_to_principal_policy(
        iam.PolicyStatement(
            sid="AnnounceResults",
            actions=["events:PutEvents"],
            resources=[default_bus_arn(role)],
            conditions={
                "StringEquals": {
                    "events:source": source,
                    "events:detail-type": sorted(announcements.DETAIL_TYPES.values()),
                }
            },
        )
    )


class ResultContracts(Construct):
    """The schema registry ``<prefix>-counting`` with the four published schemas.

    Attributes:
        registry: the registry.
        schemas: schema resources by file name.
    """

    def __init__(self, scope: Construct, construct_id: str, *, prefix: str, source: str) -> None:
        super().__init__(scope, construct_id)
        if sorted(SCHEMA_NAMES) != sorted(published.SCHEMAS):
            raise ValueError(
                "SCHEMA_NAMES must name every schema of counting_core.contracts.published"
            )
        self.registry = eventschemas.CfnRegistry(
            self,
            "Registry",
            registry_name=f"{prefix}-counting",
            description=f"Result documents, table items and result events of {prefix}",
        )
        self.schemas: dict[str, eventschemas.CfnSchema] = {}
        for file_name, name in SCHEMA_NAMES.items():
            content = json.loads((SCHEMAS_DIR / file_name).read_text())
            schema = eventschemas.CfnSchema(
                self,
                name,
                registry_name=self.registry.attr_registry_name,
                schema_name=f"{source}@{name}",
                type="JSONSchemaDraft4",
                content=json.dumps(content, sort_keys=True),
                description=content.get("description", content.get("title", name))[:256],
            )
            self.schemas[file_name] = schema
