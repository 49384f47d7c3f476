"""tests/data/hand_checked.manifest and its figures, counted by hand.

Shared by the manifest domain tests and the ``counting manifest`` CLI tests.

  line 1 a.jpg  car, car
  line 2 b.jpg  truck (its class-map lists only truck)
  line 3 c.jpg  failed
  line 4 d.jpg  no boxes
  line 5 e.jpg  car, truck, truck (the car box ends exactly on the 640 x 480 image's
                right and bottom edges)
  line 6 f.jpg  failed
  line 7 g.jpg  car
  line 8 h.jpg  car, truck

images 8 = labeled 5 (a, b, e, g, h) + failed 2 (c, f) + empty 1 (d); 8 lines, no duplicates
objects 9: car 2 + 1 + 1 + 1 = 5, truck 1 + 2 + 1 = 4
most boxes in one image 3 -> label_width max(350, 5 * 3 + 2) = 350; num_classes 2
validation fraction 0.2: round(5 * 0.2) = 1 validation, 4 train
validation fraction 0.5: round(2.5) = 2 (ties go to even) validation, 3 train
"""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent.parent / "data"
HAND_CHECKED = DATA / "hand_checked.manifest"

HAND_CHECKED_STATS = {
    "label_attribute": "vehicles",
    "lines": 8,
    "images": 8,
    "labeled": 5,
    "failed": 2,
    "empty": 1,
    "duplicates": 0,
    "objects": 9,
    "by_class": {"car": 5, "truck": 4},
}
# The split's figures at validation fraction 0.2 (the tests split with seed 7).
HAND_CHECKED_SPLIT_AT_0_2 = {
    "num_training_samples": 4,
    "num_validation_samples": 1,
    "num_classes": 2,
    "label_width": 350,
    "dropped_failed": 2,
    "dropped_empty": 1,
    "kept_empty": 0,
}
HAND_CHECKED_USABLE = ["a.jpg", "b.jpg", "e.jpg", "g.jpg", "h.jpg"]
