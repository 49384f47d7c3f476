"""Where things live in the data bucket.

One bucket, one prefix per stage of the flow, so that IAM grants, lifecycle
rules and EventBridge rules can each name exactly the prefix they need. The
constructs and the Lambda handlers import these names; nothing else spells
them out.
"""

from __future__ import annotations

from typing import Final

#: Images workers will label (one folder per batch).
LABELING_IMAGES: Final = "labeling/images/"
#: Labeling requests: a JSON file uploaded here starts a labeling job.
LABELING_REQUESTS: Final = "labeling/requests/"
#: Input manifests, label categories and the worker template written for Ground Truth.
LABELING_INPUT: Final = "labeling/input/"
#: Ground Truth output (one folder per labeling job).
LABELING_OUTPUT: Final = "labeling/output/"
#: Label Studio's exports: its S3 target storage writes one JSON task per labeled image here,
#: and a whole JSON export may be uploaded here too; each becomes a manifest.
STUDIO_EXPORTS: Final = "labeling/studio/exports/"
#: Manifests converted from Label Studio's exports (the training manifest is ``all.manifest``).
STUDIO_MANIFESTS: Final = "labeling/studio/manifests/"
#: Review queues for Label Studio: ``<model version>.request.json`` uploaded here puts the
#: model's boxes on those images' tasks as predictions; the outcome is written beside it.
STUDIO_REVIEWS: Final = "labeling/studio/reviews/"
#: An augmented manifest uploaded here starts training.
TRAINING_REQUESTS: Final = "training/requests/"
#: Train/validation manifests and the data report written by the prepare step.
TRAINING_MANIFESTS: Final = "training/manifests/"
#: Model artifacts and spot-training checkpoints.
MODEL_ARTIFACTS: Final = "training/models/"
#: Pretrained detector weights (torchvision's published COCO weights, uploaded by
#: ``counting detector fetch-weights``): training jobs run without internet access.
DETECTOR_WEIGHTS: Final = "training/weights/"
#: Images uploaded here are counted.
INCOMING: Final = "incoming/"
#: One JSON result per counted image, mirroring the incoming key.
RESULTS: Final = "results/"
#: Images with each counted object outlined and numbered.
ANNOTATED: Final = "annotated/"
#: Working files of bulk-counting runs (selections, transform manifest and outputs, summary).
BULK: Final = "bulk/"
#: Where images a bulk run may count are kept (its transform may read only these).
ARCHIVE: Final = "archive/"

ALL_PREFIXES: Final = (
    LABELING_IMAGES,
    LABELING_REQUESTS,
    LABELING_INPUT,
    LABELING_OUTPUT,
    STUDIO_EXPORTS,
    STUDIO_MANIFESTS,
    STUDIO_REVIEWS,
    TRAINING_REQUESTS,
    TRAINING_MANIFESTS,
    MODEL_ARTIFACTS,
    DETECTOR_WEIGHTS,
    INCOMING,
    RESULTS,
    ANNOTATED,
    BULK,
    ARCHIVE,
)
