"""The invalid-records SQS queue as a replay store, and S3 archives as replay inputs.

Listing a queue without consuming it: a receive with ``VisibilityTimeout=0``
alone cannot enumerate a queue -- SQS (and the emulator) may hand back the
same first messages on every call, so a queue of more than ten messages is
never seen whole. :meth:`SqsInvalidStore.load` therefore receives with a
short visibility timeout (each message is hidden while the listing goes on,
so the next receive returns new ones) until the queue answers empty, and
``release`` then sets every received message's visibility back to 0: after a
listing nothing stays hidden. A replay keeps the selected messages hidden
(``--visibility-timeout``, default 900 s) while it re-ingests them.

Messages are grouped by the record's archive identity: the same invalid
record sent twice (a rerun of the same archive) is one record with two
messages, and settling it deletes both.

:class:`QueueAndArchiveInvalidStore` adds the durable copies the Glue job
writes under the pipeline root's ``invalid/`` (``sqs.DurableInvalidSink``):
a record the queue no longer holds (after its 14-day retention) is still
listed and replayed from S3, and settling a record removes both copies.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable

from botocore.exceptions import ClientError

from bridge_downstream.ingest.listing import ArchiveInput
from bridge_downstream.replay.invalid_store import StorageInvalidStore, StoredEntry
from bridge_downstream.replay.replayer import (
    SourceUnavailable,
    archive_metadata,
    choose_metadata,
    local_archive_input,
)
from bridge_downstream_adapters.s3 import S3Storage, parse_s3_uri
from bridge_downstream_adapters.sqs import SqsInvalidSink

log = logging.getLogger(__name__)

BATCH = 10  # SQS batch limit
NOT_FOUND = ("404", "NoSuchKey", "NotFound", "NoSuchBucket")


def _chunks(items: list, size: int = BATCH):
    for start in range(0, len(items), size):
        yield items[start : start + size]


class SqsInvalidStore:
    def __init__(
        self,
        queue_url: str,
        client=None,
        visibility_timeout: int = 60,
        wait_seconds: int = 1,
        max_messages: int | None = None,
    ):
        self.sink = SqsInvalidSink(queue_url, client)
        self.client = self.sink.client
        self.queue_url = queue_url
        self.visibility_timeout = visibility_timeout
        self.wait_seconds = wait_seconds
        self.max_messages = max_messages
        self.messages = 0  # received by the last load

    def load(self) -> list[StoredEntry]:
        by_identity: dict[str, StoredEntry] = {}
        seen: dict[str, str] = {}  # message id -> its newest receipt handle
        unreadable: list[str] = []  # message ids, made visible again once the listing is done
        empty = 0
        while empty < 2 and (self.max_messages is None or len(seen) < self.max_messages):
            response = self.client.receive_message(
                QueueUrl=self.queue_url,
                MaxNumberOfMessages=BATCH,
                VisibilityTimeout=self.visibility_timeout,
                WaitTimeSeconds=self.wait_seconds,
            )
            messages = response.get("Messages", [])
            if not messages:
                empty += 1
                continue
            empty = 0
            for message in messages:
                handle = message["ReceiptHandle"]
                previous = seen.get(message["MessageId"])
                if previous is not None:
                    # Received again (its visibility ran out): only the newest
                    # receipt handle reliably deletes it.
                    seen[message["MessageId"]] = handle
                    for kept in by_identity.values():
                        kept.handles = [handle if h == previous else h for h in kept.handles]
                    continue
                seen[message["MessageId"]] = handle
                try:
                    entry = json.loads(message["Body"])
                    if not isinstance(entry, dict):
                        raise TypeError("not a JSON object")
                except (ValueError, TypeError) as error:
                    log.warning(
                        "invalid queue message %s is not an invalid-record entry (%s); left in the queue",
                        message["MessageId"],
                        error,
                    )
                    unreadable.append(message["MessageId"])
                    continue
                identity = str(entry.get("identity") or message["MessageId"])
                stored = by_identity.get(identity)
                if stored is None:
                    by_identity[identity] = StoredEntry(entry, [handle])
                else:
                    stored.handles.append(handle)
                    if "metadata" not in stored.entry and "metadata" in entry:
                        stored.entry = entry  # prefer a message that was not slimmed
        self.release([seen[message_id] for message_id in unreadable])
        self.messages = len(seen)
        return list(by_identity.values())

    def send(self, entry: dict) -> None:
        """A new message; its receipt handle is not known (None)."""
        self.sink.send(entry)

    def remove(self, handles: Iterable[str]) -> int:
        handles = list(handles)
        removed = 0
        for chunk in _chunks(handles):
            response = self.client.delete_message_batch(
                QueueUrl=self.queue_url, Entries=[{"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(chunk)]
            )
            removed += len(response.get("Successful", []))
            for failure in response.get("Failed", []):
                log.warning(
                    "could not delete an invalid-queue message: %s", failure.get("Message") or failure.get("Code")
                )
        return removed

    def release(self, handles: Iterable[str]) -> None:
        for chunk in _chunks(list(handles)):
            self.client.change_message_visibility_batch(
                QueueUrl=self.queue_url,
                Entries=[{"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": 0} for i, h in enumerate(chunk)],
            )


ARCHIVED = "archived:"  # marks a handle that is a key under the pipeline root, not a receipt handle


class QueueAndArchiveInvalidStore:
    """The queue's entries and the durable copies in S3, one per record identity."""

    def __init__(self, queue: SqsInvalidStore, archive: StorageInvalidStore):
        self.queue = queue
        self.archive = archive
        self.messages = 0

    def load(self) -> list[StoredEntry]:
        by_identity = {stored.identity or str(id(stored)): stored for stored in self.queue.load()}
        self.messages = self.queue.messages
        for kept in self.archive.load():
            handles = [ARCHIVED + handle for handle in kept.handles]
            queued = by_identity.get(kept.identity)
            if queued is None:
                by_identity[kept.identity or str(id(kept))] = StoredEntry(kept.entry, handles)
            else:
                queued.handles.extend(handles)
                if "metadata" not in queued.entry and "metadata" in kept.entry:
                    queued.entry = kept.entry  # the S3 copy is never slimmed
        return list(by_identity.values())

    def send(self, entry: dict) -> str:
        """Both copies; the S3 copy's handle, which a replay must not remove
        with the entry's old handles (the same record keeps the same key)."""
        handle = ARCHIVED + self.archive.send(entry)
        self.queue.send(entry)
        return handle

    def remove(self, handles: Iterable[str]) -> int:
        handles = list(handles)
        archived = [h[len(ARCHIVED) :] for h in handles if h.startswith(ARCHIVED)]
        queued = [h for h in handles if not h.startswith(ARCHIVED)]
        return self.queue.remove(queued) + self.archive.remove(archived)

    def release(self, handles: Iterable[str]) -> None:
        self.queue.release(h for h in handles if not h.startswith(ARCHIVED))


def s3_input_resolver(client=None, endpoint_url: str | None = None):
    """entry -> ArchiveInput reading ``s3://source_bucket/source_key`` with the
    object's current S3 metadata (the entry's metadata when the object has
    none); local ``file://`` entries go to the local resolver."""
    storages: dict[str, S3Storage] = {}

    def resolve(entry: dict) -> ArchiveInput:
        bucket, key = entry.get("source_bucket"), entry.get("source_key")
        source = str(entry.get("source") or "")
        if not bucket and source.startswith("s3://"):
            bucket, key = parse_s3_uri(source)
        if not bucket:
            return local_archive_input(entry)
        if not key:
            raise SourceUnavailable("the entry names no source_key")
        storage = storages.get(bucket)
        if storage is None:
            storage = storages[bucket] = S3Storage(bucket, client=client, endpoint_url=endpoint_url)
        try:
            fresh = storage.metadata(key)
        except FileNotFoundError as error:
            raise SourceUnavailable(f"archive not found: s3://{bucket}/{key}") from error
        except PermissionError as error:
            raise SourceUnavailable(f"archive not readable: {error}") from error
        except ClientError as error:
            # S3Storage turns a missing object into FileNotFoundError; a missing bucket is still a ClientError.
            if str(error.response.get("Error", {}).get("Code")) in NOT_FOUND:
                raise SourceUnavailable(f"archive not found: s3://{bucket}/{key}") from error
            raise
        return ArchiveInput(
            storage,
            key,
            source_bucket=bucket,
            raw_folder_id=entry.get("raw_folder_id"),
            metadata=archive_metadata(choose_metadata(fresh, entry)),
        )

    return resolve
