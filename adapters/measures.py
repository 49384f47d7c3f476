"""An image's metrics, published the moment it is recorded (embedded metric format).

Each image's figures are printed as soon as the result store has announced it, before its
table item is marked finished, rather than kept for the end of the invocation: an
invocation that dies after recording an image has published its metrics already, and a
retry that finds the image finished publishes none (``adapters.result_store``). Powertools
adds the dimension ``service`` (``POWERTOOLS_SERVICE_NAME``) to every line.
"""

from __future__ import annotations

from aws_lambda_powertools.metrics import EphemeralMetrics, MetricUnit, single_metric

from counting_core.contracts import metrics
from counting_core.counts.results import STATUS_COUNTED, Outcome


def publish(outcome: Outcome) -> None:
    """Print ``outcome``'s metrics: one line for the image, one per class it counted."""
    figures = EphemeralMetrics(namespace=metrics.NAMESPACE)
    if outcome.status != STATUS_COUNTED:
        figures.add_metric(metrics.IMAGES_REJECTED, MetricUnit.Count, 1)
        figures.flush_metrics()
        return
    figures.add_metric(metrics.IMAGES_COUNTED, MetricUnit.Count, 1)
    figures.add_metric(metrics.OBJECTS_COUNTED, MetricUnit.Count, outcome.count)
    figures.add_metric(metrics.IMAGES_CAPPED, MetricUnit.Count, int(outcome.capped))
    if outcome.endpoint_latency_ms is not None:
        figures.add_metric(
            metrics.ENDPOINT_LATENCY, MetricUnit.Milliseconds, outcome.endpoint_latency_ms
        )
    figures.flush_metrics()
    for class_name, count in outcome.by_class.items():
        with single_metric(
            name=metrics.OBJECTS_COUNTED_BY_CLASS,
            unit=MetricUnit.Count,
            value=count,
            namespace=metrics.NAMESPACE,
        ) as metric:
            metric.add_dimension(metrics.CLASS_NAME_DIMENSION, class_name)
