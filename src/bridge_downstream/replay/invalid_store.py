"""Where invalid records' entries are kept, behind one interface: a folder
locally (:class:`StorageInvalidStore`); the adapters provide the SQS queue."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from bridge_downstream.common.storage import Storage
from bridge_downstream.ingest.invalid_sink import StorageInvalidSink


@dataclass
class StoredEntry:
    """One invalid record as stored: the entry and the handles that hold it
    (a file key locally; every message of the same identity in SQS)."""

    entry: dict
    handles: list[str] = field(default_factory=list)

    @property
    def record_id(self) -> str:
        return entry_record_id(self.entry)

    @property
    def identity(self) -> str:
        return str(self.entry.get("identity") or "")


class InvalidStore(Protocol):
    def load(self) -> list[StoredEntry]:
        """Every stored entry, one per record identity."""
        ...

    def send(self, entry: dict) -> str | None:
        """Store a (new) entry; returns its handle when it is known at once."""
        ...

    def remove(self, handles: Iterable[str]) -> int:
        """Remove stored entries by handle; returns how many were removed."""
        ...

    def release(self, handles: Iterable[str]) -> None:
        """Give entries back untouched (SQS: make the messages visible again)."""
        ...


class StorageInvalidStore:
    """The local invalid sink (``invalid/`` under a pipeline root) as a store."""

    def __init__(self, storage: Storage):
        self.storage = storage
        self.sink = StorageInvalidSink(storage)

    def load(self) -> list[StoredEntry]:
        return [StoredEntry(entry, [key]) for key, entry in self.sink.entries()]

    def send(self, entry: dict) -> str:
        self.sink.send(entry)
        return self.sink.key_for(entry)

    def remove(self, handles: Iterable[str]) -> int:
        count = 0
        for key in handles:
            if self.storage.exists(key):
                self.storage.delete(key)
                count += 1
        return count

    def release(self, handles: Iterable[str]) -> None:
        pass


class CollectingSink:
    """Receives run_ingest's invalid entries so that the replay can settle
    them against the old ones (keyed by the archive's source URI)."""

    def __init__(self) -> None:
        self.entries: dict[str, dict] = {}

    def send(self, entry: dict) -> None:
        self.entries[entry["source"]] = entry


def entry_record_id(entry: dict) -> str:
    return str((entry.get("validation_result") or {}).get("recordId") or "unknown-record")


def entry_assessment(entry: dict) -> str:
    return str(
        (entry.get("validation_result") or {}).get("assessmentId")
        or (entry.get("metadata") or {}).get("assessmentid")
        or ""
    )


def entry_messages(entry: dict) -> list[str]:
    errors = (entry.get("validation_result") or {}).get("errors") or {}
    return [f"{name}: {message}" for name, messages in errors.items() for message in messages]
