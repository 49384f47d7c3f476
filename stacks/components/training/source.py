"""The torchvision training job's code: ``detector/`` packed at synth, uploaded as a CDK asset.

Under network isolation the training container cannot fetch its code, so SageMaker hands it
in as the ``code`` channel and the container unpacks it, as the SageMaker Python SDK does
(``Framework``: channel ``code``, ``sagemaker_submit_directory`` =
``/opt/ml/input/data/code/<file>``; the training toolkit extracts a local tar.gz path).
https://github.com/aws/sagemaker-python-sdk/blob/master/src/sagemaker/estimator.py
https://github.com/aws/sagemaker-training-toolkit/blob/master/src/sagemaker_training/files.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import aws_cdk as cdk
from aws_cdk import aws_s3_assets as s3_assets
from constructs import Construct

from detector.source import write_source_tarball

#: Where a File-mode channel named ``code`` is put in the training container.
CODE_CHANNEL = "code"
CHANNEL_DIRECTORY = f"/opt/ml/input/data/{CODE_CHANNEL}/"
ARCHIVE_NAME = "sourcedir.tar.gz"


def source_asset(scope: Construct, construct_id: str) -> s3_assets.Asset:
    """The source tarball as a file asset (uploaded as is, named ``<hash>.gz``)."""
    folder = Path(tempfile.mkdtemp(prefix="detector-source-"))
    tarball = folder / ARCHIVE_NAME
    write_source_tarball(tarball)
    return s3_assets.Asset(scope, construct_id, path=str(tarball))


def code_file_name(asset: s3_assets.Asset) -> str:
    """The name the code channel gives the tarball in the container: the base name of its key
    (a synthesizer with a bucket prefix puts a folder before it, which the channel drops)."""
    key = asset.s3_object_key
    if cdk.Token.is_unresolved(key):
        raise ValueError("the detector's code asset needs a key known at synth")
    return key.rsplit("/", 1)[-1]
