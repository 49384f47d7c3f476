"""Count small objects in large photos: tiles at native resolution, merged across borders.

Scaled whole to the model's input (512 px by default), a 12 MP photo shrinks six to eight
times and a 30 px car becomes 4 or 5 px. Tiled, the upright image is cut into overlapping
windows of the model's input side at native resolution, each window goes to the endpoint as
its own JPEG (within the serverless payload limit: ``detection``), and the boxes come back
shifted into image coordinates and merged, so an object seen by two or four tiles is counted
once.

How tiles are laid out: along each side, ``n = ceil((length - overlap) / (side - overlap))``
windows, the first at 0 and the last flush with the far edge, spread evenly, so neighbours
overlap by at least ``overlap`` pixels (SAHI and supervision lay out the same number, with a
last window squeezed against its neighbour instead). Any object no wider and no taller than
the overlap then lies whole inside some tile.

How boxes are merged (``merge``, the default, or ``nms``), within one class only:

* ``merge``: boxes from different tiles are one object when their intersection over union
  is at least 0.5, or when their intersection over the smaller box is at least 0.5 and one
  of them was cut by a tile border (it ends within 2 % of the tile side of a tile edge that
  lies inside the image). A box joins a group when it matches any box of the group; the
  group's box is the box around them all and keeps the best score. A piece of an object
  cut by a border lies inside the whole view a
  neighbouring tile has of it: its intersection over union is the piece's share of the
  object (a 20 % sliver: 0.2), so suppression on IoU keeps it and counts the object twice,
  while its intersection over the smaller box is 1. This is SAHI's default for sliced
  prediction (greedy non-maximum merging on intersection over smaller, 0.5:
  ``sahi/predict.py get_sliced_prediction``), narrowed to cut boxes so that a small object
  lying on a larger one of its class, both whole, stays two (obss/sahi#560).
* ``nms``: non-maximum suppression on intersection over union of at least 0.5
  (supervision's ``InferenceSlicer`` default). Pieces of cut objects are kept: use it to
  compare, or where objects are never cut (a grid of wells).

Either way, a group takes at most one box from each tile or pass: the model already chose
one box per object within each request, so two boxes of one tile are two objects.

What ``merge`` guarantees (tests/core/test_tiling.py checks it by property): an object at
most three times the overlap wide and tall (306 px at the defaults) is counted once from the
tiles alone, wherever the borders cut it. Up to the overlap, some tile sees it whole and
every piece lies inside that view; wider, two neighbouring pieces add up to its width plus
the overlap and share the overlap, so their intersection over the smaller is at least
overlap / ((width + overlap) / 2), 0.5 up to three overlaps. Larger objects come apart into
pieces unless the whole-image pass finds them.

The optional whole-image pass (the image scaled as it is sent untiled) finds objects larger
than a tile; of its boxes only those wider or taller than the overlap are kept, since
smaller objects are seen whole, at higher resolution, by some tile.

Pure arithmetic, without Pillow: the stacks validate ``counter.tiling`` with it;
``detection`` cuts, sends and merges with it. Counting through an endpoint and through Batch
Transform (tiles written to S3, answers read back) lay tiles out with one ``plan_tiles`` and
merge answers with one ``merge_answers``, so both count an image alike.
"""

from __future__ import annotations

import dataclasses
import math
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from counting_core.constants import MIN_SIDE_PIXELS
from counting_core.contracts.published import MergeMethod, TilingUsed
from counting_core.counts.predictions import Detection, Response
from counting_core.errors import InputError, describe_validation_error

TilingMode = Literal["off", "on", "auto"]
TILING_MODES: tuple[TilingMode, ...] = ("off", "on", "auto")
MERGE_METHODS: tuple[MergeMethod, ...] = ("merge", "nms")

#: Overlap of neighbouring tiles, as a fraction of the tile side: SAHI's default
#: (``overlap_height_ratio`` 0.2), 102 px of a 512 px tile.
DEFAULT_OVERLAP = 0.2
#: More overlap than half a tile puts most pixels in three tiles per side: calls for nothing.
MAX_OVERLAP = 0.5
#: ``auto`` tiles an image whose shorter side exceeds this many times the model's input side:
#: scaled whole, its objects would shrink more than 3x each way. A 1080p frame (2.1x at
#: 512 px) is sent whole, a 12 MP phone photo (5.9x) is tiled. A judgement until the count
#: evaluation measures it on the validation images.
DEFAULT_AUTO_MULTIPLE = 3.0
#: Smallest and largest tile sides, in pixels: below the narrowest countable side nothing is
#: left to detect; above 4,096 a tile is a whole photo again.
MIN_TILE_SIDE = MIN_SIDE_PIXELS
MAX_TILE_SIDE = 4096
#: Both overlap measures match at 0.5, SAHI's and supervision's default threshold.
MATCH_THRESHOLD = 0.5
#: A box ending within this fraction of the tile side of an inner tile edge was cut by it:
#: a detector's box of a truncated object ends at the edge give or take its regression error.
CUT_MARGIN = 0.02


@dataclass(frozen=True)
class TilingPolicy:
    """When and how to tile; ``tile_side`` None means the model's input side."""

    mode: TilingMode = "off"
    tile_side: int | None = None
    overlap: float = DEFAULT_OVERLAP
    auto_multiple: float = DEFAULT_AUTO_MULTIPLE
    merge: MergeMethod = "merge"
    whole_image_pass: bool = True

    def __post_init__(self) -> None:
        if self.mode not in TILING_MODES:
            raise InputError(f"tiling must be one of {', '.join(TILING_MODES)}, got {self.mode!r}")
        if self.tile_side is not None and not MIN_TILE_SIDE <= self.tile_side <= MAX_TILE_SIDE:
            raise InputError(
                f"tile size must be {MIN_TILE_SIDE} to {MAX_TILE_SIDE} pixels, got {self.tile_side}"
            )
        if not 0 < self.overlap <= MAX_OVERLAP:
            raise InputError(
                f"tile overlap must be a fraction of the tile above 0 and at most {MAX_OVERLAP}, "
                f"got {self.overlap}"
            )
        if not self.auto_multiple >= 1:
            raise InputError(f"auto multiple must be at least 1, got {self.auto_multiple}")
        if self.merge not in MERGE_METHODS:
            raise InputError(f"merge must be one of {', '.join(MERGE_METHODS)}, got {self.merge!r}")

    def side(self, image_shape: int) -> int:
        """The tile side in pixels for a model whose input side is ``image_shape``."""
        return self.tile_side or image_shape

    def overlap_pixels(self, image_shape: int) -> int:
        """The overlap in pixels: whole pixels, at least one."""
        return max(1, int(self.overlap * self.side(image_shape)))


def should_tile(
    policy: TilingPolicy,
    image_size: tuple[int, int],
    image_shape: int,
    measured: bool | None = None,
) -> bool:
    """Whether ``policy`` tiles an upright image of ``image_size`` for a model of input side
    ``image_shape``. ``auto`` follows ``measured``, what the count evaluation found of tiling
    on the model's validation images (``ActiveModel.tiling_measured``), for every image; not
    measured, it tiles when the shorter side exceeds ``auto_multiple`` inputs."""
    if policy.mode == "auto":
        if measured is not None:
            return measured
        return min(image_size) > policy.auto_multiple * image_shape
    return policy.mode == "on"


class Window(NamedTuple):
    """A tile's place in the upright image, in pixels; right and bottom are excluded."""

    left: int
    top: int
    right: int
    bottom: int

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top


def axis_starts(length: int, side: int, overlap: int) -> list[int]:
    """Where tiles of ``side`` pixels start along ``length`` so neighbours share at least
    ``overlap`` pixels; one tile when the length fits."""
    if length <= side:
        return [0]
    count = math.ceil((length - overlap) / (side - overlap))
    last = length - side
    # Even spacing, floored: steps differ by a pixel at most and never exceed side - overlap.
    return [index * last // (count - 1) for index in range(count)]


def tile_windows(image_size: tuple[int, int], side: int, overlap: int) -> list[Window]:
    """The tiles of an image, row by row; ``overlap`` must be below ``side``."""
    if not 0 < overlap < side:
        raise InputError(f"tile overlap must be 1 to {side - 1} pixels, got {overlap}")
    width, height = image_size
    return [
        Window(left, top, min(left + side, width), min(top + side, height))
        for top in axis_starts(height, side, overlap)
        for left in axis_starts(width, side, overlap)
    ]


@dataclass(frozen=True)
class TilePlan:
    """How one upright image is cut: its tiles, row by row, and whether it also goes whole.

    Requests are numbered by ``source``: a tile by its index in ``windows``, the whole-image
    pass by ``whole_image_source`` (one past the last tile).
    """

    image_size: tuple[int, int]
    side: int
    overlap: int
    merge: MergeMethod
    whole_image_pass: bool

    @property
    def windows(self) -> list[Window]:
        return tile_windows(self.image_size, self.side, self.overlap)

    @property
    def whole_image_source(self) -> int:
        return len(self.windows)

    def window(self, source: int) -> Window:
        """Where request ``source`` lies in the image."""
        windows = self.windows
        if source == len(windows):
            return Window(0, 0, *self.image_size)
        return windows[source]


class TileSet(BaseModel):
    """One image cut into tiles written to S3 for Batch Transform: what the step that merges
    the tiles' answers (``merge_answers``) reads back. The windows are not stored: ``plan``
    lays them out again from the size, side and overlap, as they were cut."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    image: str = Field(min_length=1, description="the image, as its manifest names it")
    width: int = Field(ge=1)
    height: int = Field(ge=1)
    side: int = Field(ge=MIN_TILE_SIDE, le=MAX_TILE_SIDE)
    overlap: int = Field(ge=1)
    merge: MergeMethod
    whole_image_pass: bool
    tiles: list[str] = Field(min_length=1, description="each tile's object key, by source")

    @classmethod
    def of(cls, image: str, plan: TilePlan, tiles: list[str]) -> TileSet:
        return cls(
            image=image,
            width=plan.image_size[0],
            height=plan.image_size[1],
            side=plan.side,
            overlap=plan.overlap,
            merge=plan.merge,
            whole_image_pass=plan.whole_image_pass,
            tiles=tiles,
        )

    def plan(self) -> TilePlan:
        plan = TilePlan(
            (self.width, self.height), self.side, self.overlap, self.merge, self.whole_image_pass
        )
        if len(plan.windows) != len(self.tiles):
            raise InputError(
                f"{self.image}: {len(self.tiles)} tiles recorded where its size and tile side "
                f"lay out {len(plan.windows)}"
            )
        return plan


def read_tile_sets(parts: Iterable[bytes]) -> dict[str, TileSet]:
    """The TileSets of JSON-lines ``parts`` (each invocation of the function that cuts a run's
    validation images writes one), by image; an image cut again by a later part (a retried
    invocation) takes that part's. InputError names a line that is not a TileSet."""
    tile_sets: dict[str, TileSet] = {}
    for part in parts:
        for number, line in enumerate(part.splitlines(), start=1):
            if not line.strip():
                continue
            try:
                tile_set = TileSet.model_validate_json(line)
            except ValidationError as error:
                problem = describe_validation_error(error)[0]
                raise InputError(f"tile set line {number}: {problem}") from None
            tile_sets[tile_set.image] = tile_set
    return tile_sets


def plan_tiles(policy: TilingPolicy, image_size: tuple[int, int], image_shape: int) -> TilePlan:
    """How ``policy`` tiles an upright image of ``image_size`` for a model of input side
    ``image_shape``; the whole-image pass only when there is more than one tile."""
    side, overlap = policy.side(image_shape), policy.overlap_pixels(image_shape)
    tiles = len(tile_windows(image_size, side, overlap))
    return TilePlan(image_size, side, overlap, policy.merge, policy.whole_image_pass and tiles > 1)


def merge_answers(
    plan: TilePlan, answers: Iterable[tuple[int, Response]]
) -> tuple[list[Detection], TilingRecord]:
    """One image's detections from its requests' answers (``(source, response)``, in any
    order), each object once, as fractions of the upright image, by descending score; and
    the record of the requests made."""
    windows = plan.windows
    margin = CUT_MARGIN * plan.side
    placed: list[PlacedBox] = []
    calls = capped_calls = 0
    caps: set[int] = set()
    for source, response in answers:
        calls += 1
        capped_calls += response.capped
        if response.max_detections is not None:
            caps.add(response.max_detections)
        window = Window(0, 0, *plan.image_size) if source == len(windows) else windows[source]
        boxes = place(response.detections, window, plan.image_size, source=source, margin=margin)
        if source == len(windows):  # the whole-image pass
            # Objects within the overlap are seen whole, and sharper, by some tile.
            boxes = [box for box in boxes if _larger_than(box, plan.overlap)]
        placed.extend(boxes)
    merged = merge_boxes(placed, plan.merge, cell=max(plan.side / 4, 1.0))
    width, height = plan.image_size
    detections = [
        Detection(box.class_id, box.score, box.left / width, box.top / height,
                  box.right / width, box.bottom / height)
        for box in sorted(merged, key=lambda box: -box.score)
    ]  # fmt: skip
    record = TilingRecord(
        tiles=len(windows),
        endpoint_calls=calls,
        capped_calls=capped_calls,
        tile_side=plan.side,
        overlap=plan.overlap,
        merge=plan.merge,
        whole_image_pass=plan.whole_image_pass,
        max_detections=max(caps, default=None),
    )
    return detections, record


def _larger_than(box: PlacedBox, pixels: int) -> bool:
    return box.right - box.left > pixels or box.bottom - box.top > pixels


class PlacedBox(NamedTuple):
    """A detection in pixels of the upright image, with the request that found it and
    whether a tile border cut it."""

    class_id: int
    score: float
    left: float
    top: float
    right: float
    bottom: float
    source: int  # the request: a tile's index, or the whole-image pass's
    cut: bool


def place(
    detections: Iterable[Detection],
    window: Window,
    image_size: tuple[int, int],
    *,
    source: int,
    margin: float,
) -> list[PlacedBox]:
    """Shift a request's boxes (fractions of ``window``) into image pixels, and mark those
    ending within ``margin`` pixels of an edge of the window inside the image as cut."""
    width, height = image_size
    left, top = window.left, window.top
    span_x, span_y = window.width, window.height
    # The image's own borders cut nothing that another tile could see.
    inner_left, inner_top = left > 0, top > 0
    inner_right, inner_bottom = window.right < width, window.bottom < height
    placed = []
    for class_id, score, xmin, ymin, xmax, ymax in detections:
        x0, y0 = left + xmin * span_x, top + ymin * span_y
        x1, y1 = left + xmax * span_x, top + ymax * span_y
        cut = (
            (inner_left and x0 - left <= margin)
            or (inner_top and y0 - top <= margin)
            or (inner_right and window.right - x1 <= margin)
            or (inner_bottom and window.bottom - y1 <= margin)
        )
        placed.append(PlacedBox(class_id, score, x0, y0, x1, y1, source, cut))
    return placed


def merge_boxes(
    boxes: Sequence[PlacedBox],
    method: MergeMethod,
    *,
    cell: float,
    threshold: float = MATCH_THRESHOLD,
) -> list[PlacedBox]:
    """The boxes of one image's requests, each object once (the module says how).

    Greedy by descending score: the best box left starts a group, which takes, in score
    order, each box of another request that matches the group's first box (``nms``) or any
    of its boxes (``merge``: the pieces of one object match each other pairwise, while the
    box around all of them would dilute the match). With ``merge`` the group's box is the
    box around its boxes. ``cell`` is the side of the grid that finds overlapping boxes
    without comparing every pair: about a quarter tile.
    """
    order = sorted(
        range(len(boxes)),
        key=lambda i: (-boxes[i].score, boxes[i].source, boxes[i].top, boxes[i].left, i),
    )
    rank = {index: position for position, index in enumerate(order)}
    grid = _Grid(cell)
    for index, box in enumerate(boxes):
        grid.add(index, box)
    taken = [False] * len(boxes)
    merged = []
    for index in order:
        if taken[index]:
            continue
        taken[index] = True
        members = [boxes[index]]
        sources = {boxes[index].source}
        group = boxes[index]
        grown = True
        while grown:
            grown = False
            for other in sorted(grid.near(group), key=rank.__getitem__):
                candidate = boxes[other]
                if taken[other] or candidate.class_id != group.class_id:
                    continue
                if candidate.source in sources:
                    continue
                partners = members if method == "merge" else members[:1]
                if not any(
                    _same_object(member, candidate, method, threshold) for member in partners
                ):
                    continue
                taken[other] = True
                sources.add(candidate.source)
                members.append(candidate)
                if method == "merge":
                    group = _union(group, candidate)
                    grown = True
        merged.append(group)
    return merged


def _same_object(a: PlacedBox, b: PlacedBox, method: MergeMethod, threshold: float) -> bool:
    """Whether two boxes of one class from different requests show one object."""
    overlap = _intersection(a, b)
    if overlap <= 0:
        return False
    if overlap >= threshold * (_area(a) + _area(b) - overlap):
        return True
    return method == "merge" and (a.cut or b.cut) and overlap >= threshold * min(_area(a), _area(b))


def _area(box: PlacedBox) -> float:
    return max(0.0, box.right - box.left) * max(0.0, box.bottom - box.top)


def _intersection(a: PlacedBox, b: PlacedBox) -> float:
    width = min(a.right, b.right) - max(a.left, b.left)
    height = min(a.bottom, b.bottom) - max(a.top, b.top)
    return width * height if width > 0 and height > 0 else 0.0


def _union(group: PlacedBox, other: PlacedBox) -> PlacedBox:
    """The smallest box around both; the group keeps its class, score, source and cut mark."""
    return group._replace(
        left=min(group.left, other.left),
        top=min(group.top, other.top),
        right=max(group.right, other.right),
        bottom=max(group.bottom, other.bottom),
    )


class _Grid:
    """Boxes by the grid cells they touch, to find the boxes that may overlap one."""

    def __init__(self, cell: float) -> None:
        self._cell = cell
        self._cells: defaultdict[tuple[int, int], list[int]] = defaultdict(list)

    def _span(self, box: PlacedBox) -> Iterator[tuple[int, int]]:
        cell = self._cell
        for column in range(int(box.left // cell), int(box.right // cell) + 1):
            for row in range(int(box.top // cell), int(box.bottom // cell) + 1):
                yield column, row

    def add(self, index: int, box: PlacedBox) -> None:
        for key in self._span(box):
            self._cells[key].append(index)

    def near(self, box: PlacedBox) -> set[int]:
        found: set[int] = set()
        for key in self._span(box):
            found.update(self._cells.get(key, ()))
        return found


@dataclass(frozen=True)
class TilingRecord:
    """How one image was sent: what a result records beside its count."""

    tiles: int  # 0: the image went whole, scaled to the model
    endpoint_calls: int
    # Requests whose answer held as many detections as the model's cap (Response.capped).
    capped_calls: int
    tile_side: int | None = None  # pixels; None when not tiled
    overlap: int | None = None  # pixels
    merge: MergeMethod | None = None
    whole_image_pass: bool = False
    # The most detections the model returns per request, as it echoes it; None: not said.
    max_detections: int | None = None

    @property
    def capped(self) -> bool:
        """Some request may have lost detections to the model's cap: the count is a floor."""
        return self.capped_calls > 0

    def used(self) -> TilingUsed | None:
        """What a result document records of it; None when the image went whole."""
        if not self.tiles:
            return None
        return TilingUsed(
            tiles=self.tiles,
            tile_side=self.tile_side,
            overlap=self.overlap,
            merge=self.merge,
            whole_image_pass=self.whole_image_pass,
            endpoint_calls=self.endpoint_calls,
            capped_calls=self.capped_calls,
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
