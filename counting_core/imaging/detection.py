"""Ask the endpoint what one image holds: whole and scaled, or in tiles at native resolution.

The one call the CLI makes (and the counter, bulk counting and the count evaluation are to
make): ``detect`` takes an upload, an ``invoke`` function that sends one JPEG and returns
the answer's body, and a concurrency limit; ``tiling`` decides whether to tile, lays the
tiles out and merges their boxes.

Memory: a tiled image is decoded once at full resolution (``images.decode_native``: 4 bytes
per pixel, 400 MB for 100 MP); tiles are cut and JPEG-encoded one at a time, as a slot
among ``concurrency`` endpoint calls frees up, so at most ``concurrency`` encoded tiles
(about 100 kB each at 512 px) exist at once. ``bench/bench_tiling.py`` measures it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from typing import IO, NamedTuple

from PIL import Image

from counting_core.constants import SERVERLESS_MAX_PAYLOAD_BYTES
from counting_core.counts.predictions import Detection, Response, parse_response
from counting_core.errors import InputError
from counting_core.imaging import images
from counting_core.imaging.tiling import (
    TilePlan,
    TilingPolicy,
    TilingRecord,
    Window,
    merge_answers,
    plan_tiles,
    should_tile,
)


@dataclass(frozen=True)
class ImageDetections:
    """What the endpoint found in one image, each object once, and how it was asked."""

    image_size: tuple[int, int]  # upright, in pixels
    detections: list[Detection]  # boxes as fractions of the upright image, each object once
    tiling: TilingRecord
    picture: Image.Image | None = None  # upright RGB copy to draw on, when asked for

    @property
    def capped(self) -> bool:
        return self.tiling.capped


class UnexpectedAnswer(InputError):
    """The endpoint answered a request in a shape ``parse_response`` refuses.

    An ``InputError``, so the CLI prints it as one line; the counter tells it apart from a bad
    image (the model's answer, not the upload, is at fault) by catching it first.
    """


#: Sends one JPEG to the endpoint and returns its answer's body.
Invoke = Callable[[bytes], bytes]


class _Request(NamedTuple):
    source: int
    window: Window
    payload: bytes
    name: str  # says which request failed


def detect(
    source: IO[bytes] | bytes,
    *,
    invoke: Invoke,
    concurrency: int,
    policy: TilingPolicy,
    image_shape: int,
    payload_scale: float,
    picture_side: int | None = None,
    max_payload_bytes: int = SERVERLESS_MAX_PAYLOAD_BYTES,
    decoding: AbstractContextManager[object] | None = None,
    tiling_measured: bool | None = None,
) -> ImageDetections:
    """Everything the endpoint finds in one JPEG or PNG upload, tiled or whole as ``policy``
    decides, each object once.

    ``invoke`` sends one JPEG and returns the answer's body; it is called from up to
    ``concurrency`` threads at once. Untiled, the image goes as the counter has always sent
    it: one JPEG, longest side ``payload_scale`` x ``image_shape``. ``picture_side`` also
    returns an upright copy to draw on, from the same decode. ``decoding`` (a lock) is held
    while a decoded copy of the image is in memory: untiled, while it is scaled; tiled, while
    its tiles are cut and sent. ``tiling_measured``: what the count evaluation found of
    tiling for this model, which ``auto`` follows (``tiling.should_tile``). Raises InputError
    for an image that cannot be counted, UnexpectedAnswer for an answer not in the documented
    shape, and whatever ``invoke`` raises.
    """
    payload_side = round(image_shape * payload_scale)
    size = images.image_size(source)
    held = decoding or nullcontext()
    if not should_tile(policy, size, image_shape, tiling_measured):
        with held:
            prepared = images.prepare(
                source,
                payload_side=payload_side,
                picture_side=picture_side,
                max_payload_bytes=max_payload_bytes,
            )
        response = _read_answer(None, invoke(prepared.payload))
        record = TilingRecord(
            tiles=0,
            endpoint_calls=1,
            capped_calls=int(response.capped),
            max_detections=response.max_detections,
        )
        return ImageDetections(prepared.size, list(response.detections), record, prepared.picture)
    with held, images.decode_native(source) as image:
        detections, record = detect_tiled(
            image,
            invoke=invoke,
            concurrency=concurrency,
            policy=policy,
            image_shape=image_shape,
            payload_side=payload_side,
            max_payload_bytes=max_payload_bytes,
        )
        picture = None if picture_side is None else image.scaled(picture_side)
    return ImageDetections(image.size, detections, record, picture)


def detect_tiled(
    image: images.NativeImage,
    *,
    invoke: Invoke,
    concurrency: int,
    policy: TilingPolicy,
    image_shape: int,
    payload_side: int,
    max_payload_bytes: int = SERVERLESS_MAX_PAYLOAD_BYTES,
) -> tuple[list[Detection], TilingRecord]:
    """The tiled count of a decoded image: merged detections (fractions of the upright
    image) and the record of the requests made."""
    if concurrency < 1:
        raise InputError(f"concurrency must be at least 1, got {concurrency}")
    plan = plan_tiles(policy, image.size, image_shape)
    requests = _requests(image, plan, payload_side, max_payload_bytes)
    answers = _answers(requests, invoke, concurrency)
    return merge_answers(plan, ((request.source, response) for request, response in answers))


@contextmanager
def cut_for_transform(
    source: IO[bytes] | bytes,
    *,
    policy: TilingPolicy,
    image_shape: int,
    max_payload_bytes: int = SERVERLESS_MAX_PAYLOAD_BYTES,
) -> Iterator[tuple[TilePlan, Iterator[tuple[Window, bytes]]]]:
    """An upload cut into tiles for Batch Transform, whatever ``policy``'s mode (the caller
    has decided to tile): its plan, and its tiles JPEG-encoded one at a time as they are asked
    for, while the decoded image is held. The whole-image pass is not cut: Batch Transform
    answers the upload itself, and that answer is the pass (``plan.whole_image_source``).
    Raises InputError for an image that cannot be counted."""
    with images.decode_native(source) as image:
        plan = plan_tiles(policy, image.size, image_shape)
        yield plan, encoded_tiles(image, plan.windows, max_payload_bytes)


def encoded_tiles(
    image: images.NativeImage, windows: Sequence[Window], max_payload_bytes: int
) -> Iterator[tuple[Window, bytes]]:
    """Each window cut from the image and JPEG-encoded, one at a time, as it is asked for.

    A tile is sent at native resolution; one whose JPEG would pass ``max_payload_bytes`` is
    scaled down until it fits (its boxes are fractions of the window either way).
    """
    for window in windows:
        tile = image.crop(window)
        payload, _ = images.encode_jpeg(tile, max(window.width, window.height), max_payload_bytes)
        tile.close()
        yield window, payload


def _encoded_whole(image: images.NativeImage, payload_side: int, max_payload_bytes: int) -> bytes:
    """The whole image scaled to ``payload_side`` and JPEG-encoded: the whole-image pass."""
    scaled = image.scaled(payload_side)
    payload, _ = images.encode_jpeg(scaled, payload_side, max_payload_bytes)
    scaled.close()
    return payload


def _requests(
    image: images.NativeImage, plan: TilePlan, payload_side: int, max_payload_bytes: int
) -> Iterator[_Request]:
    """The requests of a tiled image, made as they are asked for: the whole image first (it
    takes longest to scale), then the tiles row by row."""
    windows = plan.windows
    if plan.whole_image_pass:
        payload = _encoded_whole(image, payload_side, max_payload_bytes)
        yield _Request(plan.whole_image_source, plan.window(plan.whole_image_source), payload,
                       "the whole-image pass")  # fmt: skip
    for index, (window, payload) in enumerate(encoded_tiles(image, windows, max_payload_bytes)):
        name = (
            f"tile {index + 1} of {len(windows)} (x {window.left}-{window.right}, "
            f"y {window.top}-{window.bottom})"
        )
        yield _Request(index, window, payload, name)


def _answers(
    requests: Iterator[_Request], invoke: Invoke, concurrency: int
) -> Iterator[tuple[_Request, Response]]:
    """Each request's parsed answer, as answers come, with at most ``concurrency`` requests
    in flight; the next request is made only when a slot frees up. The first failure stops
    the rest: requests not yet sent are dropped, and the error is raised."""
    with ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="tile") as pool:
        pending: dict[Future[bytes], _Request] = {}

        def send_next() -> None:
            request = next(requests, None)
            if request is not None:
                pending[pool.submit(invoke, request.payload)] = request

        try:
            for _ in range(concurrency):
                send_next()
            while pending:
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    request = pending.pop(future)
                    answer = _read_answer(request.name, future.result())
                    # The payload goes with the request: only requests in flight hold one.
                    yield request._replace(payload=b""), answer
                    send_next()
        finally:
            for future in pending:
                future.cancel()


def _read_answer(name: str | None, body: bytes) -> Response:
    """The parsed answer; UnexpectedAnswer naming the request (a tile or the whole-image pass;
    None: the image sent whole) when it is not in the documented shape."""
    try:
        return parse_response(body)
    except InputError as error:
        raise UnexpectedAnswer(str(error) if name is None else f"{name}: {error}") from None
