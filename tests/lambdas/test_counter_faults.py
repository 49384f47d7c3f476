"""Fault injection: the counter under SQS's delivery rules, replayed on a virtual clock.

The queue below does what SQS does with a Lambda event source (receive counts, visibility
timeout, delays, redrive to the dead-letter queue after 5 receives); the handler runs for
real against moto (S3, DynamoDB, SSM). The endpoint fails at random, one image crashes the
function (a BaseException escapes, as a process dies), one image fails every time, the
endpoint may be slow enough for the time budget to hand images back, and every upload event
arrives 1 to 3 times in shuffled order. Nothing may be lost or counted twice, and every
dead-letter entry must be the poison, the persistent fault, or an image that failed five
times on its own.
"""

from __future__ import annotations

import asyncio
import io
import json
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from dataclasses import dataclass, field

import boto3
import pytest
from botocore.exceptions import ClientError
from PIL import Image

from adapters import result_store
from counting_core.uploads import cold_start, delivery
from tests.lambdas.conftest import REGION, emitted, image_bytes
from tests.lambdas.counter_harness import (
    BUCKET,
    IDEMPOTENCY_TABLE,
    QUEUE_URL,
    RESPONSE,
    FakeLambdaContext,
    FakeTime,
    build_counter,
    create_resources,
    idempotency_items,
    powertools_environment,
    result_or_none,
    table_items,
    upload,
)

# Thousands of generated cases: run by `make test`, left out of the `make unit` loop.
pytestmark = pytest.mark.slow

# The stack's settings: redrive after 5 receives, visibility 6 x the 600 s timeout, batches of 9.
MAX_RECEIVES = 5
VISIBILITY_SECONDS = 3600
TIMEOUT_SECONDS = 600
BATCH_SIZE = 9
IMAGES = 24


class Crash(BaseException):
    """The function dies (out of memory, killed): nothing it had not finished happens."""


@dataclass
class Message:
    body: str
    attributes: dict[str, str]
    visible_at: float
    receive_count: int = 0
    message_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class Letter:
    body: str
    attributes: dict[str, str]
    by: str  # "counter" or "redrive"


class Queue:
    """SQS semantics on a virtual clock."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.now = 0.0
        self.messages: dict[str, Message] = {}
        self.dead: list[Letter] = []

    def send(self, body: str, attributes: dict[str, str], delay: int = 0) -> None:
        message = Message(body, attributes, self.now + delay)
        self.messages[message.message_id] = message

    def receive(self, most: int) -> list[Message]:
        visible = [m for m in self.messages.values() if m.visible_at <= self.now]
        self.rng.shuffle(visible)
        batch = []
        for message in visible:
            if len(batch) == most:
                break
            if message.receive_count >= MAX_RECEIVES:  # the next receive would exceed it
                del self.messages[message.message_id]
                self.dead.append(Letter(message.body, message.attributes, "redrive"))
                continue
            message.receive_count += 1
            message.visible_at = self.now + VISIBILITY_SECONDS
            batch.append(message)
        return batch

    def next_visible(self) -> float | None:
        return min((m.visible_at for m in self.messages.values()), default=None)


class CounterSqs:
    """The counter's SQS client: sends land in the simulated queues; the dead send nothing."""

    def __init__(self, queue: Queue, queue_url: str) -> None:
        self.queue = queue
        self.queue_url = queue_url
        self.alive = True
        self.lock = threading.Lock()

    def send_message(self, *, QueueUrl, MessageBody, MessageAttributes, DelaySeconds=0):
        attributes = {name: value["StringValue"] for name, value in MessageAttributes.items()}
        with self.lock:
            if self.alive:
                if QueueUrl == self.queue_url:
                    self.queue.send(MessageBody, attributes, DelaySeconds)
                else:
                    self.queue.dead.append(Letter(MessageBody, attributes, "counter"))
        return {"MessageId": str(uuid.uuid4())}

    def delete_message(self, *, QueueUrl, ReceiptHandle):
        with self.lock:
            if self.alive:
                self.queue.messages.pop(ReceiptHandle, None)
        return {}


@dataclass
class Invocation:
    """The virtual clock of one invocation: endpoint latency runs it down."""

    elapsed_ms: float = 0.0
    crashed: bool = False


class Endpoint:
    """Answers by image (told apart by width), failing as the scenario says."""

    def __init__(self, rng, *, fault_rate, poison, persistent, latency_seconds, in_flight):
        self.rng = rng
        self.fault_rate = fault_rate
        self.poison = poison
        self.persistent = persistent
        self.latency_ms = latency_seconds * 1000 / in_flight
        self.invocation = Invocation()
        self.faults: Counter[int] = Counter()
        self.lock = threading.Lock()

    def invoke_endpoint(self, **request):
        index = Image.open(io.BytesIO(request["Body"])).size[0] - 100
        with self.lock:
            invocation = self.invocation
            invocation.elapsed_ms += self.latency_ms
            if invocation.crashed:
                raise Crash
            if index == self.poison:
                invocation.crashed = True
                raise Crash
            failing = index == self.persistent or self.rng.random() < self.fault_rate
            if failing:
                self.faults[index] += 1
        if failing:
            code, status = self.rng.choice(
                [
                    ("ThrottlingException", 400),
                    ("ModelNotReadyException", 429),
                    ("ServiceUnavailable", 503),
                    ("InternalFailure", 500),
                ]
            )
            error = {"Error": {"Code": code, "Message": code}}
            raise ClientError({**error, "ResponseMetadata": {"HTTPStatusCode": status}}, "X")
        return {"Body": io.BytesIO(json.dumps(RESPONSE).encode())}


@dataclass
class VirtualContext(FakeLambdaContext):
    invocation: Invocation = field(default_factory=Invocation)

    def get_remaining_time_in_millis(self) -> int:
        return int(TIMEOUT_SECONDS * 1000 - self.invocation.elapsed_ms)


def key_of(body: str) -> str | None:
    try:
        return json.loads(body)["detail"]["object"]["key"]
    except (ValueError, KeyError, TypeError):
        return None


def index_of(key: str) -> int:
    return int(key.removeprefix("incoming/").removesuffix(".png"))


SCENARIOS = {
    "20% faults": {"fault_rate": 0.2, "latency_seconds": 1},
    "60% faults": {"fault_rate": 0.6, "latency_seconds": 1},
    "slow endpoint": {"fault_rate": 0.1, "latency_seconds": 45},
    # Tiled: each image is one tile of its own size (narrower than a tile), sent through the
    # tiler, so the endpoint still tells the images apart by width.
    "tiled, 20% faults": {"fault_rate": 0.2, "latency_seconds": 1, "tiling": "on"},
}


def uploads(rng: random.Random, count: int, queue: Queue) -> list[str]:
    """``count`` uploads, each delivered 1 to 3 times in shuffled order; their bodies.

    Each image is as wide as 100 + its index, so the endpoint can tell which it was sent.
    """
    bodies = [
        json.dumps(upload(f"incoming/{index}.png", image_bytes("PNG", (100 + index, 60))))
        for index in range(count)
    ]
    deliveries = [body for body in bodies for _ in range(rng.randint(1, 3))]
    rng.shuffle(deliveries)
    for body in deliveries:
        queue.send(body, {})
    return bodies


def drain(handler, queue: Queue, sqs: CounterSqs, endpoint: Endpoint) -> Counter[str]:
    """Run the counter until the queue is empty; which delivery counted each image (a fresh
    outcome: the one that wrote and reported it)."""
    fresh: Counter[str] = Counter()
    in_flight: Counter[str] = Counter()
    lock = threading.Lock()
    handle = handler.messages.handle

    def watched(body, *args):
        with lock:
            in_flight["threads"] += 1
        try:
            handled = handle(body, *args)
        finally:
            with lock:
                in_flight["threads"] -= 1
        outcome = handled.outcome
        if outcome is not None and outcome.status == "counted" and not outcome.replayed:
            with lock:
                fresh[key_of(body)] += 1
        return handled

    handler.messages.handle = watched

    for _ in range(2000):
        if not queue.messages:
            break
        batch = queue.receive(BATCH_SIZE)
        if not batch:
            if queue.messages:
                queue.now = max(queue.now, queue.next_visible())
            continue
        event = lambda_event(batch)
        invocation = Invocation()
        endpoint.invocation = invocation
        sqs.alive = True
        try:
            response = handler.process(event, VirtualContext(invocation=invocation))
        except Crash:
            die(sqs, in_flight)
            queue.now += TIMEOUT_SECONDS
            continue
        failed = {failure["itemIdentifier"] for failure in response["batchItemFailures"]}
        for message in batch:
            if message.message_id not in failed:  # Lambda deletes what the counter did not
                queue.messages.pop(message.message_id, None)
        queue.now += invocation.elapsed_ms / 1000 + 1
    else:
        pytest.fail(f"the queue never drained: {len(queue.messages)} messages left")
    return fresh


@pytest.fixture
def counting(aws, monkeypatch):
    powertools_environment(monkeypatch)
    # Cold-start waits (counting_core.uploads.cold_start) pass at once.
    monkeypatch.setattr(cold_start, "time", FakeTime())
    create_resources()


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_nothing_lost_nothing_counted_twice(counting, scenario):
    settings = SCENARIOS[scenario]
    rng = random.Random(f"counter faults {scenario}")
    queue = Queue(rng)
    sqs = CounterSqs(queue, QUEUE_URL)
    poison, persistent = 3, 7
    endpoint = Endpoint(
        rng,
        fault_rate=settings["fault_rate"],
        poison=poison,
        persistent=persistent,
        latency_seconds=settings["latency_seconds"],
        in_flight=3,
    )
    handler, _ = build_counter(
        IMAGES_IN_FLIGHT="3",
        TILING=settings.get("tiling", "off"),
        sqs=sqs,
        sagemaker_runtime=endpoint,
    )
    bodies = uploads(rng, IMAGES, queue)

    fresh = drain(handler, queue, sqs, endpoint)

    check(bodies, queue.dead, fresh, endpoint, poison=poison, persistent=persistent)
    if settings["fault_rate"] <= 0.2:
        assert len(table_items()) >= IMAGES - 3


class FailingWrites:
    """A client whose writes fail at ``rate``, before they take effect; the rest goes through.

    ``writes``: the operations that may fail. ``failed_finishes`` counts, by image, the
    results-table puts of a finished item (no ``unfinished``) that failed.
    """

    def __init__(self, client, rng: random.Random, rate: float, writes: set[str]) -> None:
        self.client = client
        self.rng = rng
        self.rate = rate
        self.writes = writes
        self.lock = threading.Lock()
        self.failed_finishes: Counter[str] = Counter()

    def __getattr__(self, name):
        call = getattr(self.client, name)
        if name not in self.writes:
            return call

        def write(**request):
            with self.lock:
                failing = self.rng.random() < self.rate
            if failing:
                item = request.get("Item", {})
                if name == "put_item" and "image" in item and "unfinished" not in item:
                    with self.lock:
                        self.failed_finishes[item["image"]["S"]] += 1
                error = {"Error": {"Code": "InternalServerError", "Message": "injected"}}
                raise ClientError(error, name)
            return call(**request)

        return write


class RefusingBus:
    """EventBridge refusing each entry at ``rate``; delivered ones are kept, by image."""

    def __init__(self, rng: random.Random, rate: float) -> None:
        self.client = boto3.client("events", region_name=REGION)
        self.rng = rng
        self.rate = rate
        self.lock = threading.Lock()
        self.delivered: Counter[str] = Counter()

    def put_events(self, Entries):
        answers = []
        for entry in Entries:
            with self.lock:
                refused = self.rng.random() < self.rate
            if refused:
                answers.append({"ErrorCode": "InternalFailure", "ErrorMessage": "injected"})
                continue
            answers.extend(self.client.put_events(Entries=[entry])["Entries"])
            with self.lock:
                self.delivered[json.loads(entry["Detail"])["image"]] += 1
        failed = sum("ErrorCode" in answer for answer in answers)
        return {"FailedEntryCount": failed, "Entries": answers}


WRITE_FAULT_IMAGES = 200


def test_each_image_ends_recorded_whole_or_unannounced_under_write_faults(
    counting, monkeypatch, capsys
):
    # 10 % of every S3 put, DynamoDB write (results, and idempotency records saved) and event
    # fails. (Not the release of a failed count's idempotency record: it then lasts until
    # the invocation's timeout in real time, which this virtual clock never reaches.)
    monkeypatch.setattr(result_store, "ATTEMPT_BACKOFF_SECONDS", 0)
    monkeypatch.setattr("counting_core.counts.announcements.time.sleep", lambda _: None)
    rng = random.Random("counter write faults")
    queue = Queue(rng)
    sqs = CounterSqs(queue, QUEUE_URL)
    endpoint = Endpoint(
        rng, fault_rate=0, poison=None, persistent=None, latency_seconds=1, in_flight=3
    )
    bus = RefusingBus(rng, 0.1)
    writes = {"put_item", "update_item"}
    dynamodb = FailingWrites(boto3.client("dynamodb", region_name=REGION), rng, 0.1, writes)
    handler, _ = build_counter(
        IMAGES_IN_FLIGHT="3",
        sqs=sqs,
        sagemaker_runtime=endpoint,
        s3=FailingWrites(boto3.client("s3", region_name=REGION), rng, 0.1, {"put_object"}),
        dynamodb=dynamodb,
        events=bus,
    )
    bodies = uploads(rng, WRITE_FAULT_IMAGES, queue)

    fresh = drain(handler, queue, sqs, endpoint)

    items = {item["image"]: item for item in table_items()}
    dead = {key_of(letter.body) for letter in queue.dead}
    # Delivery is at least once: an image's event goes out again only after a finishing
    # write gave up (all its FINISH_ATTEMPTS failed) once that event was out. (The threads
    # draw the faults in no fixed order, so which images that befalls differs run to run.)
    gave_up = {
        image: failures // result_store.FINISH_ATTEMPTS
        for image, failures in dynamodb.failed_finishes.items()
    }
    for body in bodies:
        key = key_of(body)
        image = f"s3://{BUCKET}/{key}"
        item = items.get(image)
        if item is not None and "unfinished" not in item:
            # Recorded whole: its document, its event, counted by one delivery.
            assert result_or_none(key)["count"] == 3, key
            assert 1 <= bus.delivered[image] <= 1 + gave_up.get(image, 0), key
            assert fresh[key] == 1, key
        else:
            # Not recorded: dead-lettered after its own failures, announced only if a
            # finishing write gave up after its event went out.
            assert key in dead, f"{key} was lost"
            assert bus.delivered[image] <= gave_up.get(image, 0), key
    finished = [item for item in items.values() if "unfinished" not in item]
    assert len(finished) >= WRITE_FAULT_IMAGES * 0.95
    # Metrics go out with the event: once per image, again only after a finish gave up.
    counted = emitted(capsys, "ImagesCounted")
    assert len(finished) <= counted <= len(finished) + sum(gave_up.values())


def check(bodies, dead, fresh, endpoint, *, poison, persistent):
    """Nothing lost, nothing counted twice, and only the guilty in the dead-letter queue."""
    counted = {item["image"].removeprefix(f"s3://{BUCKET}/"): item for item in table_items()}
    dead_keys = defaultdict(list)
    for letter in dead:
        dead_keys[key_of(letter.body)].append(letter)

    for index, body in enumerate(bodies):
        key = key_of(body)
        if index == poison:
            assert key not in counted
            assert dead_keys[key], "the poison image ends in the dead-letter queue"
        elif index == persistent:
            assert key not in counted
            assert all(
                letter.attributes.get(delivery.FAILURES_ATTRIBUTE) in {"4", "5"}
                for letter in dead_keys[key]
            )
        elif key in counted:
            # Counted once: one table item, one delivery that reported it.
            assert counted[key]["status"] == "counted"
            assert fresh[key] == 1, (key, fresh[key])
        else:
            # Not counted: then it failed five times of its own (faults injected on it).
            assert dead_keys[key], f"{key} was lost"
            for letter in dead_keys[key]:
                own = int(letter.attributes.get(delivery.FAILURES_ATTRIBUTE, "0"))
                crashes = int(letter.attributes.get(delivery.CRASHES_ATTRIBUTE, "0"))
                assert crashes <= 1, "paid for more than the one crash it shared"
                assert own + crashes >= delivery.MAX_FAILURES
                assert endpoint.faults[index] >= own
    # Healthy images (no fault injected) never reach the dead-letter queue.
    for key, letters in dead_keys.items():
        index = index_of(key)
        if index not in {poison, persistent}:
            assert endpoint.faults[index] >= delivery.MAX_FAILURES - 1, (key, letters)
    assert sum(fresh.values()) == len(counted)


def lambda_event(batch: list[Message]) -> dict:
    return {
        "Records": [
            {
                "messageId": message.message_id,
                "receiptHandle": message.message_id,
                "body": message.body,
                "attributes": {"ApproximateReceiveCount": str(message.receive_count)},
                "messageAttributes": {
                    name: {"stringValue": value, "dataType": "Number"}
                    for name, value in message.attributes.items()
                },
                "eventSource": "aws:sqs",
            }
            for message in batch
        ]
    }


def die(sqs: CounterSqs, in_flight: Counter) -> None:
    """The process is gone: nothing of the batch is deleted, its threads' work dies with it.

    The next invocation runs in a new process (a new event loop: the dead one's pending
    tasks must not wake up in it), and by the time the batch is visible again, its
    in-progress idempotency records have expired.
    """
    sqs.alive = False
    asyncio.set_event_loop(asyncio.new_event_loop())
    deadline = time.monotonic() + 30
    while in_flight["threads"] and time.monotonic() < deadline:
        time.sleep(0.01)
    for item in idempotency_items():
        if item["status"] == "INPROGRESS":
            boto3.client("dynamodb", region_name=REGION).delete_item(
                TableName=IDEMPOTENCY_TABLE, Key={"id": {"S": item["id"]}}
            )
