"""Where invalid records' entries are kept, behind one interface: a folder
locally (:class:`StorageInvalidStore`); the adapters provide the SQS queue."""

from __future__ import annotations

import posixpath
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

from bridge_downstream.common.storage import Storage
from bridge_downstream.config.profiles import Profile
from bridge_downstream.config.registry import SchemaRegistry
from bridge_downstream.ingest.invalid_sink import StorageInvalidSink
from bridge_downstream.ingest.ndjson_export import export_dataset_id
from bridge_downstream.ingest.resolution import resolve_file


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


# The errors' key of a failure of the whole archive (ingest's, where no member failed).
WHOLE_ARCHIVE = "archive"


def entry_datasets(entry: dict, profile: Profile, registry: SchemaRegistry | None) -> frozenset[str]:
    """The datasets of the files an invalid record failed in, as ingest
    buckets them: an export file by its name, a Bridge upload's file by the
    registry and the record's app, assessment and revision (its
    ``metadata.json``'s own schema references are not in the entry, so a file
    only they would place gives none). Empty: the archive failed before its
    files were bucketed (unreadable, no or bad metadata), or ``registry`` is
    None for a profile that needs one."""
    errors = (entry.get("validation_result") or {}).get("errors") or {}
    result = entry.get("validation_result") or {}
    datasets: set[str] = set()
    for member in errors:
        if member == WHOLE_ARCHIVE:
            continue
        file_name = posixpath.basename(str(member))
        if profile.kind == "ndjson-export":
            dataset_id = export_dataset_id(file_name, profile.subtype_data_types)
        elif registry is None:
            return frozenset()
        else:
            try:
                revision = int(result.get("assessmentRevision"))  # type: ignore[arg-type]
            except (TypeError, ValueError):
                return frozenset()  # refused for its metadata: no file was bucketed
            dataset_id = resolve_file(
                registry,
                file_name=file_name,
                app_id=str(result.get("appId") or ""),
                assessment_id=str(result.get("assessmentId") or ""),
                revision=revision,
                self_references={},
            ).dataset_id
        if dataset_id is not None:
            datasets.add(dataset_id)
    return frozenset(datasets)
