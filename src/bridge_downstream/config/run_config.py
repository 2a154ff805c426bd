"""One run's configuration, resolved once at the edge.

The command line and each Glue job read their options, load the schema
registry and the profile, open the storages and build one
:class:`RunConfig`; the stages are handed what it holds and never load
configuration themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

from bridge_downstream.common.storage import Storage
from bridge_downstream.config.limits import DEFAULT_LIMITS, ArchiveLimits
from bridge_downstream.config.profiles import Profile
from bridge_downstream.config.registry import SchemaRegistry

DEFAULT_RETENTION = 3  # complete published versions kept per dataset
DEFAULT_ENGINE = "arrow"


@dataclass(frozen=True)
class RunConfig:
    registry: SchemaRegistry
    profile: Profile
    output: Storage  # the pipeline root: NDJSON datasets, ledger, reports, invalid sink
    published: Storage | None = None  # where versions are published (default: the pipeline root)
    engine: str = DEFAULT_ENGINE  # the publish engine, "arrow" or "spark"
    workers: int | None = None  # ingest worker processes (default: one per core)
    app_id: str | None = None  # for records whose metadata names none
    limits: ArchiveLimits = DEFAULT_LIMITS
    retention: int = DEFAULT_RETENTION

    @property
    def publish_root(self) -> Storage:
        return self.published if self.published is not None else self.output
