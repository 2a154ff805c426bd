"""What every input format's reader is given (the run's context) and gives back
(an archive's outcome, or :class:`InvalidArchive`)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from bridge_downstream.config.limits import DEFAULT_LIMITS, ArchiveLimits
from bridge_downstream.config.profiles import Profile
from bridge_downstream.config.registry import SchemaRegistry
from bridge_downstream.ingest.outcomes import (
    IngestLedger,
)


@dataclass(slots=True)
class ArchiveOutcome:
    source: str
    status: str
    reason: str | None = None
    record_id: str | None = None
    identity: str | None = None
    rows: dict[str, int] = field(default_factory=dict)
    files_skipped: list[dict[str, str]] = field(default_factory=list)
    invalid_entry: dict | None = None
    # per dataset: rows holding an integer beyond 64 bits (kept exact; publish widens the column)
    wide_integer_rows: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class IngestContext:
    registry: SchemaRegistry
    profile: Profile
    limits: ArchiveLimits = DEFAULT_LIMITS
    app_id: str | None = None  # the pipeline's app, when records do not say
    already_ingested: IngestLedger = field(default_factory=IngestLedger)
    # Archives read ahead on threads while one is processed: on S3 a GET waits
    # far longer than the archive takes to process. Memory: up to this many
    # archives (each within ``limits``) per worker. 0 reads each when it is due.
    prefetch: int = 0
    # Archives (identities) the run was given more than once, each with the
    # copy that is ingested: (task, source). Decided by the run from its
    # tasks' outcomes (:func:`~bridge_downstream.ingest.outcomes.repeated_archives`);
    # every other copy is skipped.
    kept_copies: Mapping[str, tuple[int, str]] = field(default_factory=dict)


@dataclass
class TaskCopies:
    """What one task knows of the copies of an archive it is given: an
    archive given twice in a row (the same key listed twice) is told by the
    latest archive alone; any other repetition by the run's ``kept_copies``.
    Nothing per archive is kept. Handed from one process of a task to the next."""

    task: int
    latest: tuple[str, str] | None = None  # (identity, source) of the latest archive that ended processed or invalid
    kept_taken: set[str] = field(default_factory=set)  # kept copies this task has ingested

    def earlier_copy(self, identity: str, source: str, kept_copies: Mapping[str, tuple[int, str]]) -> str | None:
        """The source of the copy that stands for this archive in the run, when
        this is not that copy; None when it is."""
        kept = kept_copies.get(identity)
        if kept is not None:
            return kept[1] if kept != (self.task, source) or identity in self.kept_taken else None
        if self.latest is not None and self.latest[0] == identity:
            return self.latest[1]
        return None

    def taken(self, identity: str, source: str, kept_copies: Mapping[str, tuple[int, str]]) -> None:
        """This archive ended processed or invalid: a later copy is not."""
        self.latest = (identity, source)
        if identity in kept_copies:
            self.kept_taken.add(identity)


def default_prefetch(profile: Profile) -> int:
    """For remote storage: uploads are small, so read several ahead; exports are few and large."""
    return 8 if profile.kind == "bridge-archive" else 1


class InvalidArchive(Exception):
    """Ends an archive as invalid; ``errors`` maps file names to messages."""

    def __init__(self, reason: str, errors: dict[str, list[str]] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.errors = errors or {}
