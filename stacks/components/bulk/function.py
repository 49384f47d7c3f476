"""The bulk-counting Lambda (``lambdas/bulk_counter``) and exactly what it may touch."""

from __future__ import annotations

import aws_cdk as cdk
from aws_cdk import aws_dynamodb as dynamodb
from constructs import Construct

from counting_core import layout
from counting_core.contracts import bulk_counter
from counting_core.counts import bulk
from stacks.components.permissions import Statement, acknowledge_object_prefixes, allow
from stacks.components.python_function import HandlerFunction, imaging_layer
from stacks.components.result_events import grant_put_result_events
from stacks.components.storage import DataStorage
from stacks.config import AppConfig
from stacks.nag import acknowledge

# A batch of bulk.batch_size images, 10 at a time, each a few S3 calls (and an annotated
# PNG when configured): seconds to a few minutes; the manifest of a large run is written
# in one invocation, so the limit is Lambda's longest.
TIMEOUT = cdk.Duration.minutes(15)
# Outputs in flight are held to some 250 MB (bulk.OUTPUT_BYTES_IN_FLIGHT). With tiling
# (counter.tiling not off) the select step also decodes one image at a time at native
# resolution to cut its tiles (4 bytes a pixel: 400 MB for 100 MP, 640 MB for the largest
# JPEG accepted, images.MAX_JPEG_PIXELS) beside its bytes (bulk.max_payload_mb, at most
# 100 MB): within 2,048 MB either way, as the counter's TILED_MEMORY_MB.
MEMORY_MB = 2048


class BulkCounterFunction(Construct):
    """Attributes:
    handler: the HandlerFunction (function, role, log group).
    """

    def __init__(
        self,
        scope: Construct,
        construct_id: str,
        *,
        config: AppConfig,
        storage: DataStorage,
        results_table: dynamodb.ITable,
    ) -> None:
        super().__init__(scope, construct_id)
        settings = config.bulk
        self.handler = HandlerFunction(
            self,
            "BulkCounter",
            name="bulk_counter",
            description="Selects, post-processes and summarizes the images of bulk runs",
            key=storage.key,
            service="bulk-counting",
            contract=bulk_counter.Environment,
            environment={
                "bucket": storage.bucket_name,
                "results_table": results_table.table_name,
                # As for the counter: unset when None, the model's calibrated threshold.
                "score_threshold": config.counter.score_threshold,
                "annotate": settings.annotate,
                "max_payload_bytes": settings.max_payload_mb * 1024 * 1024,
                "event_source": config.event_source,
                # One setting for every count: bulk runs tile as the counter does.
                **config.counter.tiling.environment,
            },
            timeout=TIMEOUT,
            memory_size=MEMORY_MB,
            layers=[imaging_layer(self)],
        )
        acknowledge(
            self.handler.function,
            "Serverless-LambdaDLQ",
            "The bulk-counting function is only invoked synchronously by its state machine, "
            "which retries it, records failed batches in its map results and reports stops.",
        )
        self._grant(settings.source_prefixes, storage, results_table)
        grant_put_result_events(self.handler.role, source=config.event_source)

    def _grant(
        self, sources: tuple[str, ...], storage: DataStorage, results_table: dynamodb.ITable
    ) -> None:
        bucket = storage.bucket_in(self)
        statements: dict[str, Statement] = {
            "ReadImagesToCount": (
                ["s3:GetObject"],
                [bucket.arn_for_objects(f"{prefix}*") for prefix in sources],
            ),
            "ReadAndWriteRunFiles": (
                ["s3:GetObject", "s3:PutObject"],
                [bucket.arn_for_objects(f"{layout.BULK}*")],
            ),
            "ListRunFiles": (
                ["s3:ListBucket"],
                [bucket.bucket_arn],
                {"StringLike": {"s3:prefix": f"{layout.BULK}*"}},
            ),
            # GetObject: the result store reads a file's ETag (HeadObject) to write it only
            # while the image's version is its key's newest (adapters/result_store.py).
            "WriteResultsAndAnnotatedImages": (
                ["s3:GetObject", "s3:PutObject"],
                [
                    bucket.arn_for_objects(f"{layout.RESULTS}*"),
                    bucket.arn_for_objects(f"{layout.ANNOTATED}*"),
                ],
            ),
            "UseTheDataKey": (
                ["kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey"],
                [storage.key.key_arn],
            ),
            # Query: was this content counted by this model? PutItem: each image's item, written
            # unfinished and then finished by the result store.
            "RecordResults": (
                ["dynamodb:Query", "dynamodb:PutItem"],
                [results_table.table_arn],
            ),
        }
        reasons = {
            prefix: f"A bulk run reads the images it counts under {prefix}; their names are "
            "known only when the run lists them."
            for prefix in sources
        }
        reasons.update(
            {
                layout.BULK: "A bulk run reads and writes its selections, reports and summary "
                f"under {bulk.run_prefix('<run>')}, and the tiles it cuts under "
                f"{bulk.tiles_prefix('<run>')}, named at run time.",
                layout.RESULTS: f"A bulk run writes one result per image under {layout.RESULTS}, "
                "named after it, like the counter.",
                layout.ANNOTATED: "A bulk run writes one annotated copy per image under "
                f"{layout.ANNOTATED}, named after it, like the counter.",
            }
        )
        acknowledge_object_prefixes(
            allow(self.handler.role, statements), storage.bucket_name, reasons
        )
