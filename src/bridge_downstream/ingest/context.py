"""What every input format's reader is given (the run's context) and gives back
(an archive's outcome, or :class:`InvalidArchive`)."""

from __future__ import annotations

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


def default_prefetch(profile: Profile) -> int:
    """For remote storage: uploads are small, so read several ahead; exports are few and large."""
    return 8 if profile.kind == "bridge-archive" else 1


class InvalidArchive(Exception):
    """Ends an archive as invalid; ``errors`` maps file names to messages."""

    def __init__(self, reason: str, errors: dict[str, list[str]] | None = None):
        super().__init__(reason)
        self.reason = reason
        self.errors = errors or {}
