"""torchvision's published COCO-pretrained weights, per supported detector.

The URLs are the ``COCO_V1`` entries of torchvision's weights enums
(torchvision/models/detection/faster_rcnn.py and ssdlite.py, torchvision 0.29.1). Each
file name ends in the first hex digits of the file's SHA-256, which torch.hub checks
(``check_hash=True``); ``counting detector fetch-weights`` checks it the same way.
Standard library only: the CLI reads this table without torch.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

_HASH_IN_NAME = re.compile(r"-([0-9a-f]{6,})\.")
_READ_CHUNK = 1 << 20


@dataclass(frozen=True)
class PublishedWeights:
    url: str

    @property
    def file_name(self) -> str:
        return self.url.rsplit("/", 1)[-1]

    @property
    def hash_prefix(self) -> str:
        """torch.hub's rule: the digits after the file name's last "-" are the SHA-256's start."""
        match = _HASH_IN_NAME.search(self.file_name)
        if match is None:
            raise ValueError(f"{self.file_name} carries no hash prefix")
        return match.group(1)


COCO_WEIGHTS = {
    "fasterrcnn_mobilenet_v3_large_fpn": PublishedWeights(
        "https://download.pytorch.org/models/fasterrcnn_mobilenet_v3_large_fpn-fb6a3cc7.pth"
    ),
    "fasterrcnn_mobilenet_v3_large_320_fpn": PublishedWeights(
        "https://download.pytorch.org/models/fasterrcnn_mobilenet_v3_large_320_fpn-907ea3f9.pth"
    ),
    "ssdlite320_mobilenet_v3_large": PublishedWeights(
        "https://download.pytorch.org/models/ssdlite320_mobilenet_v3_large_coco-a79551df.pth"
    ),
}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(_READ_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()
