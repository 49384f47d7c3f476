"""Objects, JSON documents and listings in one S3 bucket: what the pipeline steps (bulk
counting, the count evaluation, cutting tiles) read and write between their steps."""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator
from typing import Any

from counting_core.constants import JSON_CONTENT_TYPE
from counting_core.errors import InputError


class Objects:
    """One bucket's objects through an injected S3 client."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3 = s3
        self.bucket = bucket

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{key}"

    def key_of(self, uri: str, under: tuple[str, ...]) -> str:
        """The key of ``uri``, an object of this bucket under one of the prefixes ``under``;
        InputError naming where it may be otherwise."""
        key = uri.removeprefix(f"s3://{self.bucket}/")
        if key == uri or not key.startswith(under):
            allowed = " or ".join(self.uri(prefix) for prefix in under)
            raise InputError(f"{uri} is not under {allowed}")
        return key

    def get(self, key: str) -> bytes | None:
        """The object's bytes; None for a missing key (GetObject's documented NoSuchKey)."""
        try:
            body: bytes = self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read()
        except self.s3.exceptions.NoSuchKey:
            return None
        return body

    def read(self, key: str) -> bytes:
        """The object's bytes; InputError naming it when it does not exist."""
        body = self.get(key)
        if body is None:
            raise InputError(f"{self.uri(key)} does not exist")
        return body

    def put(self, key: str, body: bytes, content_type: str) -> None:
        self.s3.put_object(Bucket=self.bucket, Key=key, Body=body, ContentType=content_type)

    def get_json(self, key: str) -> Any:
        return json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())

    def put_json(self, key: str, value: Any) -> None:
        """``value`` as JSON, keys sorted, so the same value always writes the same bytes."""
        self.s3.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=json.dumps(value, sort_keys=True).encode(),
            ContentType=JSON_CONTENT_TYPE,
        )

    def keys_under(self, prefix: str) -> Iterator[str]:
        for key, _ in self.sizes_under(prefix):
            yield key

    def sizes_under(self, prefix: str) -> Iterator[tuple[str, int]]:
        """Each key under ``prefix`` with its size in bytes."""
        pages = self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=prefix)
        for page in pages:
            for found in page.get("Contents", ()):
                yield found["Key"], found["Size"]

    def upload_chunks(self, key: str, chunks: Iterable[bytes], content_type: str) -> None:
        """Write ``chunks`` as one object without holding them all: boto3's multipart upload
        reads them as a stream, part by part."""
        self.s3.upload_fileobj(
            io.BufferedReader(_ChunkStream(chunks)),
            self.bucket,
            key,
            ExtraArgs={"ContentType": content_type},
        )


class _ChunkStream(io.RawIOBase):
    """A readable stream over byte chunks, for boto3's multipart ``upload_fileobj``."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self._pending = bytearray()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while len(self._pending) < len(buffer):
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._pending += chunk
        size = min(len(buffer), len(self._pending))
        buffer[:size] = self._pending[:size]
        del self._pending[:size]
        return size
