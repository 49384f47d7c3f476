"""The pure decisions of a bulk run: keys, selection, manifest, summary."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from counting_core.counts import bulk
from counting_core.datasets import manifest
from counting_core.errors import InputError
from counting_core.imaging import image_formats

RUN = "object-counting-dev-bulk-1a2b3c4d"
BUCKET = "object-counting-dev-data-123456789012-eu-west-1"
JPEG = b"\xff\xd8\xff\xe0" + bytes(12)
PNG = b"\x89PNG\r\n\x1a\n" + bytes(8)


@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1))
def test_an_output_keeps_its_name_below_the_runs_output_path(key):
    output = f"bulk/{RUN}/outputs/{key}.out"

    assert bulk.output_name(RUN, output) == f"{key}.out"


@pytest.mark.parametrize(
    "output",
    [
        f"bulk/{RUN}/outputs/archive/a.jpg",  # no .out
        "bulk/other-run/outputs/archive/a.jpg.out",
        "archive/a.jpg.out",
    ],
)
def test_what_is_not_an_output_of_the_run_is_refused(output):
    with pytest.raises(InputError, match="is not a transform output of run"):
        bulk.output_name(RUN, output)


@pytest.mark.parametrize(
    ("key", "image"),
    [
        ("a/b.jpg", True),
        ("a/B.JPEG", True),
        ("c.png", True),
        # Cameras and Windows save JPEGs under these names too; uploads take them as well.
        ("d.jpe", True),
        ("e.JFIF", True),
        ("notes.txt", False),
        ("f.gif", False),
        ("dir/", False),
    ],
)
def test_only_jpeg_and_png_names_are_images(key, image):
    # What a bulk run lists under its prefix: named like an image, or ignored.
    assert image_formats.is_image_name(key) is image


def test_refusals_say_why_in_the_upload_pipelines_words():
    key = "archive/a.jpg"
    assert bulk.refusal(key, 1000, JPEG, 6_000_000) is None
    assert bulk.refusal(key, 1000, PNG, 6_000_000) is None
    assert bulk.refusal(key, 0, b"", 6_000_000) == "image is empty"
    assert bulk.refusal(key, 9, b"%PDF-1.7\n", 6_000_000).startswith("not a JPEG or PNG image")
    too_big = bulk.refusal(key, 7_000_000, JPEG, 6_000_000)
    assert too_big.startswith("image is 7000000 bytes, more than the 6000000")
    # results/ + 1,012 bytes + .json = 1,025: one byte more than an S3 key holds.
    too_long = bulk.refusal("archive/" + "k" * 1004, 1000, JPEG, 6_000_000)
    assert too_long.startswith("key too long to count: results/ key would be 1025 bytes")


def test_the_manifest_is_batch_transforms_manifest_file():
    keys = ["archive/2026/a.jpg", 'archive/odd "name".png']

    written = json.loads(
        b"".join(manifest.transform_manifest_chunks(f"s3://{BUCKET}/", iter(keys)))
    )

    assert written == [{"prefix": f"s3://{BUCKET}/"}, *keys]


def test_an_empty_selection_makes_a_manifest_of_the_prefix_alone():
    assert json.loads(b"".join(manifest.transform_manifest_chunks(f"s3://{BUCKET}/", []))) == [
        {"prefix": f"s3://{BUCKET}/"}
    ]


def test_batch_names_depend_on_the_keys_only():
    assert bulk.batch_name(["a", "b"]) == bulk.batch_name(iter(["a", "b"]))
    assert bulk.batch_name(["a", "b"]) != bulk.batch_name(["ab"])


def test_an_item_as_step_functions_hands_it_over_keeps_its_etag():
    # The ItemReader page's example item for an S3 listing: "Etag", LastModified in seconds.
    # https://docs.aws.amazon.com/step-functions/latest/dg/input-output-itemreader.html
    listed = bulk.ListedObject.model_validate(
        {
            "Etag": '"05704fbdccb224cb01c59005bebbad28"',
            "Key": "processData/images/n02085620_1073.jpg",
            "LastModified": 1668699881,
            "Size": 34910,
            "StorageClass": "STANDARD",
        }
    )

    assert bulk.unquoted_etag(listed.etag) == "05704fbdccb224cb01c59005bebbad28"
    assert (listed.key, listed.size) == ("processData/images/n02085620_1073.jpg", 34910)


def test_listing_items_keep_key_etag_and_size():
    listed = bulk.ListedObject.model_validate(
        {
            "Key": "archive/a.jpg",
            "ETag": '"9b2cf535f27731c974343645a3985328"',
            "Size": 2048,
            "LastModified": "2026-11-29T10:00:00Z",
            "StorageClass": "STANDARD",
        }
    )

    assert (listed.key, listed.size) == ("archive/a.jpg", 2048)
    assert bulk.unquoted_etag(listed.etag) == "9b2cf535f27731c974343645a3985328"


def summarize(selections, counts, transform=None):
    return bulk.summarize(
        run=RUN,
        prefix="archive/2026/",
        model_name="object-counting-dev-20261101-090000-0f0f0f",
        bucket=BUCKET,
        selections=selections,
        counts=counts,
        transform=transform or bulk.TransformOutcome(),
    )


def test_a_complete_run_adds_up_its_batches():
    selections = [
        bulk.BatchReport(listed=5, ignored=1, skipped=1, rejected=1, selected=2),
        bulk.BatchReport(listed=2, selected=2),
    ]
    counts = [
        bulk.BatchReport(counted=3, capped=1, objects_by_class={"car": 4, "person": 1}),
        bulk.BatchReport(rejected=1, objects_by_class={}),
    ]

    summary = summarize(selections, counts)

    assert (summary.outcome, summary.images_listed, summary.counted) == ("complete", 7, 3)
    assert summary.capped == 1
    assert (summary.rejected, summary.skipped, summary.ignored, summary.failed) == (2, 1, 1, 0)
    assert summary.objects_by_class == {"car": 4, "person": 1}
    assert summary.summary_uri == f"s3://{BUCKET}/bulk/{RUN}/summary.json"


def test_selected_images_without_a_result_are_failed():
    selections = [bulk.BatchReport(listed=10, selected=10)]

    partial = summarize(selections, [bulk.BatchReport(counted=7)])
    nothing = summarize(selections, [])

    assert (partial.outcome, partial.failed) == ("partial", 3)
    assert (nothing.outcome, nothing.failed) == ("failed", 10)


def test_nothing_to_count_is_complete():
    assert summarize([bulk.BatchReport(listed=3, skipped=3)], []).outcome == "complete"


def test_instance_hours_come_from_the_finished_job():
    transform = bulk.TransformOutcome.model_validate(
        {
            "TransformJobStatus": "Completed",
            # Step Functions gives SageMaker's times as epoch milliseconds.
            "TransformStartTime": 1_795_000_000_000,
            "TransformEndTime": 1_795_000_000_000 + 90 * 60 * 1000,
            "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 2},
        }
    )

    assert transform.started == datetime.fromtimestamp(1_795_000_000, UTC)
    assert bulk.instance_hours(transform) == 3.0


def test_a_failed_job_is_read_from_the_caught_error():
    described = {
        "TransformJobStatus": "Failed",
        "FailureReason": "ClientError: See job logs for more information",
        "TransformStartTime": 1_795_000_000_000,
        "TransformEndTime": 1_795_000_360_000,
        "TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1},
    }
    caught = {"Error": "States.TaskFailed", "Cause": json.dumps(described)}

    transform = bulk.TransformOutcome.model_validate(caught)

    assert transform.status == "Failed"
    assert transform.failure_reason == "ClientError: See job logs for more information"
    assert bulk.instance_hours(transform) == 0.1


def test_a_caught_error_without_a_job_keeps_its_words():
    caught = {"Error": "States.TaskFailed", "Cause": "no capacity"}

    transform = bulk.TransformOutcome.model_validate(caught)

    assert (transform.status, transform.failure_reason) == (
        "Failed",
        "States.TaskFailed: no capacity",
    )
    assert bulk.instance_hours(transform) == 0.0


@given(st.text(min_size=1).filter(lambda name: "/" not in name))
def test_every_file_name_falls_in_one_of_the_256_shards_the_manifest_step_writes(name):
    shards = bulk.name_shards()

    assert len(set(shards)) == 256
    assert (shards[0], shards[-1]) == ("00", "ff")
    assert bulk.name_shard(name) in shards


def test_images_the_select_step_could_not_send_are_failed_or_overwritten():
    # 10 listed: 6 selected, 1 whose tiles could not be written, 1 overwritten before its cut,
    # 2 rejected; of the 6, 5 counted.
    selections = [bulk.BatchReport(listed=10, selected=6, failed=1, overwritten=1, rejected=2)]

    summary = summarize(selections, [bulk.BatchReport(counted=5)])

    assert (summary.failed, summary.overwritten, summary.outcome) == (2, 1, "partial")


# --- Tiles ---

DIGEST = "0123456789abcdef0123456789abcdef"


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        # The input's folders kept, or the file name alone.
        (f"bulk/tiles/{RUN}/{DIGEST}-0.jpg.out", bulk.TileOutput(DIGEST, 0)),
        (f"{DIGEST}-17.jpg.out", bulk.TileOutput(DIGEST, 17)),
        # Another run's tiles, an image's folders, and names only like a tile's.
        (f"bulk/tiles/{RUN}-2/{DIGEST}-0.jpg.out", None),
        (f"archive/{DIGEST}-0.jpg.out", None),
        (f"{DIGEST}-0.png.out", None),
        (f"{DIGEST[:-1]}-0.jpg.out", None),
        ("cam1.jpg.out", None),
    ],
)
def test_a_tiles_output_is_told_from_an_images(name, expected):
    assert bulk.tile_output(RUN, name) == expected


def test_a_tiles_key_names_its_output_by_its_image_and_source():
    key = bulk.tile_key(RUN, DIGEST, 3)
    output = bulk.output_name(RUN, f"{bulk.outputs_prefix(RUN)}{key}.out")

    assert key == f"bulk/tiles/{RUN}/{DIGEST}-3.jpg"
    assert bulk.tile_output(RUN, output) == (DIGEST, 3)
    assert bulk.tile_set_key(RUN, DIGEST) == f"bulk/tiles/{RUN}/{DIGEST}.json"


def test_the_transform_reads_an_images_tiles_and_itself_unless_tiles_only():
    digest = bulk.image_digest("archive/a.jpg")
    tiles = [f"bulk/tiles/{RUN}/{digest}-{source}.jpg" for source in range(3)]

    whole = bulk.Selected(key="archive/a.jpg", etag="e")
    tiled = whole.model_copy(update={"tiles": 3})
    tiles_only = tiled.model_copy(update={"whole": False})

    assert bulk.transform_inputs(RUN, whole) == ["archive/a.jpg"]
    assert bulk.transform_inputs(RUN, tiled) == ["archive/a.jpg", *tiles]
    assert bulk.transform_inputs(RUN, tiles_only) == tiles
    assert digest != bulk.image_digest("archive/b/a.jpg")  # file names alike, tiles apart


@pytest.mark.parametrize(("hours", "days"), [(1, 2), (24, 2), (25, 3), (48, 3), (8760, 366)])
def test_tiles_are_kept_past_the_longest_run_and_the_midnight_after(hours, days):
    assert bulk.tiles_kept_days(hours) == days
