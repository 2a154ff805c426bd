"""Where invalid records go: a folder locally, an SQS queue in AWS.

An entry has the shape the original pipeline's invalid queue had --
``{source_bucket, source_key, raw_folder_id, validation_result: {...}}`` --
plus ``reason`` (one line for people) and ``identity`` (the archive's
content identity, which makes re-sending the same record idempotent).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Protocol

from bridge_downstream.common import layout
from bridge_downstream.common.storage import Storage


class InvalidSink(Protocol):
    def send(self, entry: dict) -> None: ...


class StorageInvalidSink:
    """One JSON object per invalid record under ``invalid/``.

    The key is a digest of the record id and the archive identity
    (``invalid/<digest>.json``), so sending the same record twice leaves one
    entry, and a record id -- metadata, which may hold ``/`` or ``..`` -- never
    becomes a path; the entry holds the record id.
    """

    def __init__(self, storage: Storage):
        self.storage = storage

    def key_for(self, entry: dict) -> str:
        record_id = (entry.get("validation_result") or {}).get("recordId") or "unknown-record"
        return layout.invalid_key(record_id, entry["identity"])

    def send(self, entry: dict) -> None:
        self.storage.write_bytes(self.key_for(entry), json.dumps(entry, indent=2, sort_keys=True).encode())

    def entries(self) -> Iterator[tuple[str, dict]]:
        for info in self.storage.list(layout.INVALID_PREFIX + "/"):
            if info.key.endswith(".json") and not info.key.endswith(".metadata.json"):
                yield info.key, json.loads(self.storage.read_bytes(info.key))

    def remove(self, key: str) -> None:
        self.storage.delete(key)
