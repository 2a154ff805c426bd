"""Downstream delivery: copy a published version of chosen tables to a
downstream location, one folder per delivery run, manifest last.

Layout under a delivery destination (any :class:`Storage`)::

    <destination>/<YYYYMMDDTHHMMSSZ>/<format>/<table>/<partitions>/<file>
    <destination>/<YYYYMMDDTHHMMSSZ>/manifest.json      written last

A folder without ``manifest.json`` is a delivery in progress or an
interrupted one: consumers ignore it. ``manifest.json`` lists every file with
its size, SHA-256 and row count (see :func:`delivery_manifest` and
docs/delivery.md). Each file is checked against the publish manifest's
SHA-256 and size while it is copied, so a delivery never vouches for bytes
other than the published ones.

Retention (:func:`expired_folders`) removes delivery folders older than N
days, never the newest complete one; it deletes a folder's manifest first, so
a consumer never sees a manifest whose files are going away.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from bridge_downstream.common import layout
from bridge_downstream.common.storage import Storage, join_key
from bridge_downstream.publish.manifest import PublishedFile, PublishedTable, PublishManifest

DELIVERY_MANIFEST = "manifest.json"
MANIFEST_FORMAT = 1
FOLDER_TIME_FORMAT = "%Y%m%dT%H%M%SZ"
FOLDER_PATTERN = re.compile(r"^\d{8}T\d{6}Z$")
FORMATS = ("parquet", "csv")


class DeliveryError(RuntimeError):
    """A delivery cannot be planned or completed; the message says why."""


# ------------------------------------------------------------ configuration


@dataclass(frozen=True)
class DeliveryTarget:
    """One configured delivery of one app and study."""

    name: str
    app: str
    study: str
    destination: str  # s3://bucket/prefix, or a local directory
    tables: tuple[str, ...] | None = None  # None: every published table
    formats: tuple[str, ...] = FORMATS
    retention_days: int | None = None

    @classmethod
    def from_dict(cls, raw: Mapping) -> DeliveryTarget:
        missing = [k for k in ("name", "app", "study", "destination") if not raw.get(k)]
        if missing:
            raise DeliveryError(f"delivery {raw.get('name', '?')!r} lacks {', '.join(missing)}")
        unknown = set(raw) - {"name", "app", "study", "destination", "tables", "formats", "retention_days"}
        if unknown:
            raise DeliveryError(f"delivery {raw['name']!r}: unknown settings {sorted(unknown)}")
        formats = tuple(raw.get("formats") or FORMATS)
        bad = [f for f in formats if f not in FORMATS]
        if bad:
            raise DeliveryError(f"delivery {raw['name']!r}: unknown formats {bad} (use {list(FORMATS)})")
        retention = raw.get("retention_days")
        if retention is not None and (not isinstance(retention, int) or retention < 1):
            raise DeliveryError(f"delivery {raw['name']!r}: retention_days must be a whole number of days >= 1")
        tables = raw.get("tables")
        if tables is not None and (isinstance(tables, str) or not tables):
            raise DeliveryError(f"delivery {raw['name']!r}: tables must be a non-empty list (omit it for all)")
        return cls(
            name=str(raw["name"]),
            app=str(raw["app"]),
            study=str(raw["study"]),
            destination=str(raw["destination"]),
            tables=tuple(tables) if tables else None,
            formats=formats,
            retention_days=retention,
        )


def load_delivery_config(text: str) -> list[DeliveryTarget]:
    """Parse a delivery configuration (YAML or JSON)::

    deliveries:
      - name: partner-a
        app: mobile-toolbox
        study: cxhnxd
        destination: s3://partner-a-drop/mtb/cxhnxd
        tables: [ArchiveMetadata_v1]      # optional; default all
        formats: [parquet, csv]           # optional
        retention_days: 30                # optional; default keep all
    """
    import yaml

    raw = yaml.safe_load(text) or {}
    entries = raw.get("deliveries") if isinstance(raw, Mapping) else None
    if not isinstance(entries, list):
        raise DeliveryError("the delivery configuration needs a 'deliveries' list")
    targets = [DeliveryTarget.from_dict(entry) for entry in entries]
    seen = set()
    for target in targets:
        ident = (target.app, target.study, target.name)
        if ident in seen:
            raise DeliveryError(f"delivery {target.name!r} is configured twice for {target.app}/{target.study}")
        seen.add(ident)
    return targets


def targets_for(
    targets: Iterable[DeliveryTarget], app: str, study: str, name: str | None = None
) -> list[DeliveryTarget]:
    chosen = [t for t in targets if t.app == app and t.study == study and (name is None or t.name == name)]
    if not chosen:
        raise DeliveryError(
            f"no delivery configured for app {app!r}, study {study!r}" + (f" named {name!r}" if name else "")
        )
    return chosen


# --------------------------------------------------------------------- plan


@dataclass(frozen=True)
class PlannedCopy:
    source_key: str  # relative to the pipeline root
    path: str  # relative to the delivery folder
    dataset_id: str
    version: str
    table: str
    format: str
    size: int
    sha256: str
    rows: int
    partition: Mapping[str, str] = field(default_factory=dict, hash=False)


@dataclass
class DeliveryPlan:
    target: DeliveryTarget
    folder: str
    run_id: str
    sources: list[dict] = field(default_factory=list)
    tables: dict[str, dict] = field(default_factory=dict)
    copies: list[PlannedCopy] = field(default_factory=list)

    @property
    def manifest_key(self) -> str:
        return join_key(self.folder, DELIVERY_MANIFEST)

    def key(self, copy: PlannedCopy) -> str:
        return join_key(self.folder, copy.path)


def folder_name(when: datetime) -> str:
    return when.astimezone(UTC).strftime(FOLDER_TIME_FORMAT)


def folder_time(name: str) -> datetime | None:
    if not FOLDER_PATTERN.match(name):
        return None
    return datetime.strptime(name, FOLDER_TIME_FORMAT).replace(tzinfo=UTC)


def _path_in_delivery(table: PublishedTable, file: PublishedFile) -> str:
    # published/<D>/versions/<any version>/<fmt>/<table>/<rest>  ->  <fmt>/<table>/<rest>: an
    # incremental version's file may lie in the folder of the version that wrote it
    return join_key(file.format, table.name, table.relative_key(file))


def plan_delivery(
    target: DeliveryTarget, manifests: Sequence[PublishManifest], *, now: datetime, run_id: str | None = None
) -> DeliveryPlan:
    """What a delivery run copies: the chosen tables of ``manifests``."""
    folder = folder_name(now)
    plan = DeliveryPlan(target, folder, run_id or f"delivery-{folder}-{uuid.uuid4().hex[:8]}")
    wanted = set(target.tables) if target.tables is not None else None
    found = set()
    for manifest in sorted(manifests, key=lambda m: m.dataset_id):
        used = False
        for table in sorted(manifest.tables.values(), key=lambda t: t.name):
            if wanted is not None and table.name not in wanted:
                continue
            if table.name in plan.tables:
                raise DeliveryError(f"table {table.name!r} is published by two datasets")
            found.add(table.name)
            used = True
            plan.tables[table.name] = {
                "dataset_id": manifest.dataset_id,
                "version": manifest.version,
                "rows": table.rows,
                "columns": table.columns,
                "partition_keys": table.partition_keys,
            }
            for published in table.files:
                if published.format not in target.formats:
                    continue
                plan.copies.append(
                    PlannedCopy(
                        source_key=published.key,
                        path=_path_in_delivery(table, published),
                        dataset_id=manifest.dataset_id,
                        version=manifest.version,
                        table=table.name,
                        format=published.format,
                        size=published.size,
                        sha256=published.sha256,
                        rows=published.rows,
                        partition=dict(published.partition),
                    )
                )
        if used:
            plan.sources.append(
                {
                    "dataset_id": manifest.dataset_id,
                    "version": manifest.version,
                    "publish_run_id": manifest.run_id,
                    "schema_version": manifest.registry_version,
                }
            )
    if wanted is not None and wanted - found:
        raise DeliveryError(
            f"delivery {target.name!r}: no published version of table(s) {', '.join(sorted(wanted - found))}"
        )
    paths = [c.path for c in plan.copies]
    if len(paths) != len(set(paths)):
        raise DeliveryError("two published files map to the same delivery path")
    return plan


def delivery_manifest(plan: DeliveryPlan, write_date: datetime) -> dict:
    """The manifest.json of a complete delivery."""
    return {
        "manifest_format": MANIFEST_FORMAT,
        "write_date": write_date.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "run_id": plan.run_id,
        "delivery": {"name": plan.target.name, "app": plan.target.app, "study": plan.target.study},
        "folder": plan.folder,
        "sources": plan.sources,
        "tables": plan.tables,
        "files": [
            {
                "path": c.path,
                "table": c.table,
                "format": c.format,
                "dataset_id": c.dataset_id,
                "size": c.size,
                "sha256": c.sha256,
                "rows": c.rows,
                "partition": dict(c.partition),
            }
            for c in plan.copies
        ],
    }


# ------------------------------------------------------------------ deliver


def deliver(source: Storage, destination: Storage, plan: DeliveryPlan, *, now=None) -> dict:
    """Copy every planned file, each checked against its published SHA-256
    and size, then write manifest.json. Raises before the manifest on any
    failure, so an interrupted delivery never has one."""
    if any(True for _ in destination.list(plan.folder + "/")):
        raise DeliveryError(f"delivery folder {destination.uri(plan.folder)} already exists")
    for copy in plan.copies:
        data = source.read_bytes(copy.source_key)
        digest = hashlib.sha256(data).hexdigest()
        if len(data) != copy.size or digest != copy.sha256:
            raise DeliveryError(
                f"{source.uri(copy.source_key)} does not match its publish manifest "
                f"(size {len(data)} vs {copy.size}, sha256 {digest[:12]}.. vs {copy.sha256[:12]}..); "
                "delivery stopped without a manifest"
            )
        destination.write_bytes(plan.key(copy), data)
    manifest = delivery_manifest(plan, (now or (lambda: datetime.now(UTC)))())
    destination.write_bytes(plan.manifest_key, json.dumps(manifest, indent=2, sort_keys=True).encode())
    return manifest


# ---------------------------------------------------------------- retention


@dataclass(frozen=True)
class DeliveryFolder:
    name: str
    time: datetime
    complete: bool


def list_deliveries(destination: Storage) -> list[DeliveryFolder]:
    """Delivery folders at the top of ``destination``, oldest first."""
    seen: dict[str, bool] = {}
    times: dict[str, datetime] = {}
    for info in destination.list(""):
        top, _, rest = info.key.partition("/")
        when = folder_time(top)
        if not rest or when is None:
            continue
        times[top] = when
        seen[top] = seen.get(top, False) or rest == DELIVERY_MANIFEST
    return [DeliveryFolder(name, times[name], complete) for name, complete in sorted(seen.items())]


def expired_folders(folders: Sequence[DeliveryFolder], retention_days: int, now: datetime) -> list[DeliveryFolder]:
    """Folders older than ``retention_days``, never the newest complete one."""
    if retention_days < 1:
        raise DeliveryError("retention_days must be >= 1")
    cutoff = now - timedelta(days=retention_days)
    complete = [f for f in folders if f.complete]
    newest = max(complete, key=lambda f: f.time).name if complete else None
    return [f for f in folders if f.time < cutoff and f.name != newest]


def apply_retention(destination: Storage, retention_days: int, now: datetime, *, dry_run: bool = False) -> list[str]:
    removed = []
    for folder in expired_folders(list_deliveries(destination), retention_days, now):
        if not dry_run:
            manifest = join_key(folder.name, DELIVERY_MANIFEST)
            if folder.complete:
                destination.delete(manifest)  # first: the folder stops being a delivery
            for info in list(destination.list(folder.name + "/")):
                destination.delete(info.key)
        removed.append(folder.name)
    return removed


# ------------------------------------------------------------- verification


def verify_delivery(destination: Storage, folder: str) -> list[str]:
    """Problems with a delivered folder (empty list: complete and intact)."""
    manifest_key = join_key(folder, DELIVERY_MANIFEST)
    if not destination.exists(manifest_key):
        return [f"{folder}: no {DELIVERY_MANIFEST} (incomplete delivery)"]
    manifest = json.loads(destination.read_bytes(manifest_key))
    problems = []
    for entry in manifest["files"]:
        key = join_key(folder, entry["path"])
        if not destination.exists(key):
            problems.append(f"{entry['path']}: missing")
            continue
        data = destination.read_bytes(key)
        if len(data) != entry["size"]:
            problems.append(f"{entry['path']}: size {len(data)} != {entry['size']}")
        elif hashlib.sha256(data).hexdigest() != entry["sha256"]:
            problems.append(f"{entry['path']}: sha256 mismatch")
    return problems


# ------------------------------------------------------------- one delivery


@dataclass
class DeliveryResult:
    target: DeliveryTarget
    plan: DeliveryPlan
    manifest: dict | None  # None on a dry run
    removed: list[str]

    def summary(self) -> dict:
        return {
            "delivery": self.target.name,
            "folder": self.plan.folder,
            "run_id": self.plan.run_id,
            "files": len(self.plan.copies),
            "bytes": sum(c.size for c in self.plan.copies),
            "complete": self.manifest is not None,
            "removed_by_retention": self.removed,
        }


def run_delivery(
    source: Storage,
    destination: Storage,
    target: DeliveryTarget,
    *,
    now: datetime | None = None,
    run_id: str | None = None,
    versions: Mapping[str, str] | None = None,
    dry_run: bool = False,
) -> DeliveryResult:
    """Deliver the current (or pinned) published version of the target's
    tables from ``source`` (a pipeline root) to ``destination``, then apply
    the target's retention."""
    from bridge_downstream.publish.manifest import read_current_manifests, read_manifest

    now = now or datetime.now(UTC)
    manifests = {m.dataset_id: m for m in read_current_manifests(source)}
    for dataset_id, version in (versions or {}).items():
        if not source.exists(layout.manifest_key(dataset_id, version)):
            raise DeliveryError(f"{dataset_id} has no complete published version {version!r}")
        manifests[dataset_id] = read_manifest(source, dataset_id, version)
    plan = plan_delivery(target, list(manifests.values()), now=now, run_id=run_id)
    if not plan.copies:
        raise DeliveryError(f"delivery {target.name!r}: nothing published to deliver")
    manifest = None if dry_run else deliver(source, destination, plan)
    removed = []
    if target.retention_days:
        removed = apply_retention(destination, target.retention_days, now, dry_run=dry_run)
    return DeliveryResult(target, plan, manifest, removed)
