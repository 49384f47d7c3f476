"""Each use's botocore client policy, as botocore resolves it (adapters/clients.py)."""

from __future__ import annotations

import boto3

from adapters import clients


def resolved(policy):
    return boto3.client("s3", region_name="us-east-1", config=policy).meta.config


def test_storage_calls_retry_in_standard_mode_with_a_connection_per_thread():
    config = resolved(clients.STORAGE)

    assert config.retries == {"mode": "standard"}
    # The counter's 10 images in flight plus one, bulk counting's 10 workers: at most 11.
    assert config.max_pool_connections == 11


def test_a_pipeline_step_makes_five_calls_before_it_fails():
    assert resolved(clients.PIPELINE_STEP).retries == {"mode": "standard", "total_max_attempts": 5}
