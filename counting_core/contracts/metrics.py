"""The CloudWatch metrics the counter and bulk counting publish, and the dashboard reads.

Both functions publish them as embedded metric format (Powertools) lines, one set per
recorded image, with the dimension ``service`` (the function's ``POWERTOOLS_SERVICE_NAME``:
``counter`` or ``bulk-counting``); ``stacks/components/monitoring.py`` graphs and alarms on
the same names. A duplicate delivery or a retried batch adds nothing to them.
"""

from __future__ import annotations

from typing import Final

NAMESPACE: Final = "ObjectCounting"
#: The dimension Powertools adds to every metric: which function published it.
SERVICE_DIMENSION: Final = "service"
#: ``ObjectsCountedByClass``'s own dimension: the class name.
CLASS_NAME_DIMENSION: Final = "ClassName"

IMAGES_COUNTED: Final = "ImagesCounted"
IMAGES_REJECTED: Final = "ImagesRejected"
#: 0 or 1 per counted image: the sum counts capped images, the average is their share.
IMAGES_CAPPED: Final = "ImagesCapped"
OBJECTS_COUNTED: Final = "ObjectsCounted"
OBJECTS_COUNTED_BY_CLASS: Final = "ObjectsCountedByClass"
#: Milliseconds the counter waited for the endpoint's answer (uploads only); for a tiled
#: image, the slowest of its calls.
ENDPOINT_LATENCY: Final = "EndpointLatency"
