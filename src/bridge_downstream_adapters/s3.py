"""S3 implementation of :class:`bridge_downstream.common.storage.Storage`."""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Iterator, Mapping
from typing import BinaryIO, NoReturn
from urllib.parse import urlparse

import boto3
from botocore.exceptions import ClientError

from bridge_downstream.common.storage import NO_METADATA, ObjectInfo, join_key

_NOT_FOUND = ("404", "NoSuchKey", "NotFound")
# Without s3:ListBucket S3 answers a missing object with 403 too; either way
# the object cannot be read, which is the archive's outcome, not the run's.
_ACCESS_DENIED = ("403", "AccessDenied", "Forbidden")


def _raise_translated(error: ClientError, uri: str) -> NoReturn:
    """A missing object is FileNotFoundError and a refused one PermissionError,
    as for local files, so the core treats them the same way whatever the storage."""
    code = str(error.response.get("Error", {}).get("Code"))
    if code in _NOT_FOUND:
        raise FileNotFoundError(uri) from error
    if code in _ACCESS_DENIED:
        raise PermissionError(f"access denied: {uri}") from error
    raise error


def parse_s3_uri(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(f"not an s3:// URI: {uri!r}")
    return parsed.netloc, parsed.path.lstrip("/")


MULTIPART_THRESHOLD = 8 << 20  # boto3's own default


class S3Storage:
    """Keys under ``s3://bucket/prefix/``.

    ``endpoint_url`` reaches an S3-compatible endpoint (the emulator in
    tests); Spark executors get it passed explicitly because they do not
    share the driver's environment changes.
    """

    def __init__(self, bucket: str, prefix: str = "", client=None, endpoint_url: str | None = None):
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.endpoint_url = endpoint_url
        self._client = client
        self._owns_client = client is None
        self._client_pid = os.getpid()
        self._client_lock = threading.Lock()

    @property
    def client(self):
        # A boto3 client's pooled connections must not be shared with a forked
        # worker process: each process makes its own. Clients are thread-safe;
        # making one is not, hence the lock (read-ahead threads start together).
        if self._owns_client and (self._client is None or self._client_pid != os.getpid()):
            with self._client_lock:
                if self._client is None or self._client_pid != os.getpid():
                    self._client = boto3.client("s3", endpoint_url=self.endpoint_url)
                    self._client_pid = os.getpid()
        return self._client

    @classmethod
    def from_uri(cls, uri: str, client=None, endpoint_url: str | None = None) -> S3Storage:
        bucket, prefix = parse_s3_uri(uri)
        return cls(bucket, prefix, client, endpoint_url)

    def full_key(self, key: str) -> str:
        return join_key(self.prefix, key)

    def uri(self, key: str) -> str:
        return f"s3://{self.bucket}/{self.full_key(key)}"

    def read_bytes(self, key: str) -> bytes:
        try:
            return self.client.get_object(Bucket=self.bucket, Key=self.full_key(key))["Body"].read()
        except ClientError as error:
            _raise_translated(error, self.uri(key))

    def open_read(self, key: str) -> BinaryIO:
        # ZIP reading needs seek; archives are bounded by the ingest limits.
        return io.BytesIO(self.read_bytes(key))

    def write_bytes(self, key: str, data: bytes, metadata: dict[str, str] | None = None) -> None:
        extra = {"Metadata": metadata} if metadata else {}
        self.client.put_object(Bucket=self.bucket, Key=self.full_key(key), Body=data, **extra)

    def move_in(self, local_path: str, key: str) -> None:
        self.upload_file(local_path, key)
        os.unlink(local_path)

    def upload_file(self, local_path: str, key: str) -> None:
        if os.path.getsize(local_path) < MULTIPART_THRESHOLD:
            # One PUT: the managed transfer starts a thread pool per call, which
            # costs more than a small part file's upload.
            with open(local_path, "rb") as body:
                self.client.put_object(Bucket=self.bucket, Key=self.full_key(key), Body=body)
        else:
            self.client.upload_file(local_path, self.bucket, self.full_key(key))

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self.full_key(key))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def list(self, prefix: str) -> Iterator[ObjectInfo]:
        strip = len(self.prefix) + 1 if self.prefix else 0
        paginator = self.client.get_paginator("list_objects_v2")
        full = self.full_key(prefix)
        # Keys that start with ``prefix``, as Storage.list promises: join_key drops
        # a trailing "/", without which "versions/" would list "versions.json" too
        # (and a storage's root "root" the keys of "root2/").
        if full and (prefix.endswith("/") or not prefix.strip("/")):
            full += "/"
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full):
            for item in page.get("Contents", []):
                yield ObjectInfo(item["Key"][strip:], item["Size"])

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.full_key(key))

    def copy(self, source_key: str, dest_key: str) -> None:
        self.client.copy_object(
            Bucket=self.bucket,
            Key=self.full_key(dest_key),
            CopySource={"Bucket": self.bucket, "Key": self.full_key(source_key)},
        )

    def open_read_with_metadata(self, key: str) -> tuple[BinaryIO, Mapping[str, object]]:
        # One GET instead of a HEAD and a GET: a round trip less per archive.
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.full_key(key))
            body = response["Body"].read()
        except ClientError as error:
            _raise_translated(error, self.uri(key))
        return io.BytesIO(body), _user_metadata(response)

    def metadata(self, key: str) -> Mapping[str, object]:
        try:
            head = self.client.head_object(Bucket=self.bucket, Key=self.full_key(key))
        except ClientError as error:
            _raise_translated(error, self.uri(key))
        return _user_metadata(head)


def _user_metadata(response: dict) -> Mapping[str, object]:
    """An object's user metadata, names lower-cased; :data:`NO_METADATA` when
    it has none (S3 keeps no empty metadata apart from none)."""
    metadata = response.get("Metadata") or {}
    return {k.lower(): v for k, v in metadata.items()} if metadata else NO_METADATA
