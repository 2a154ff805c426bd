"""A dataset's published versions: ``CURRENT`` (the commit point of a publish),
the complete versions behind it, pruning and rollback."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from bridge_downstream.common import layout
from bridge_downstream.common.storage import Storage
from bridge_downstream.publish.catalog import Catalog
from bridge_downstream.publish.manifest import (
    PublishManifest,
    current_version,
    read_manifest,
)


def new_version() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")


def set_current(storage: Storage, dataset_id: str, version: str) -> None:
    if not storage.exists(layout.manifest_key(dataset_id, version)):
        raise ValueError(
            f"version {version} of {dataset_id} has no manifest: it is incomplete and cannot be made current"
        )
    storage.write_bytes(layout.current_pointer_key(dataset_id), json.dumps({"version": version}).encode())


def list_versions(storage: Storage, dataset_id: str) -> dict[str, bool]:
    """Every version prefix of a dataset -> whether it is complete (has a manifest)."""
    prefix = layout.published_dataset_prefix(dataset_id) + "/versions/"
    versions: dict[str, bool] = {}
    for info in storage.list(prefix):
        version, _, rest = info.key[len(prefix) :].partition("/")
        versions[version] = versions.get(version, False) or rest == layout.MANIFEST_NAME
    return dict(sorted(versions.items()))


def prune_versions(storage: Storage, dataset_id: str, retention: int) -> list[str]:
    """Keep the ``retention`` newest complete versions (always the current one);
    remove older ones and any incomplete version older than the current.
    A file a kept version references (an incremental version carries
    partitions by reference) stays where it is: its version's folder loses
    its manifest and index, so that version is no longer complete."""
    current = current_version(storage, dataset_id)
    versions = list_versions(storage, dataset_id)
    complete = [v for v, done in versions.items() if done]
    keep = set(complete[-max(1, retention) :]) | ({current} if current else set())
    doomed = [v for v, done in versions.items() if v not in keep and (done or (current is not None and v < current))]
    if not doomed:
        return doomed
    referenced = {
        file.key
        for version in keep
        if versions.get(version)
        for table in read_manifest(storage, dataset_id, version).tables.values()
        for file in table.files
    }
    manifests = [layout.manifest_key(dataset_id, version) for version in doomed]
    for key in manifests:  # first: a version half removed is never taken for a complete one
        if storage.exists(key):
            storage.delete(key)
    for version in doomed:
        for info in list(storage.list(layout.version_prefix(dataset_id, version) + "/")):
            if info.key not in referenced:
                storage.delete(info.key)
    return doomed


def rollback(
    storage: Storage, dataset_id: str, to_version: str | None = None, catalog: Catalog | None = None
) -> PublishManifest:
    """Make an earlier complete version current again (default: the one before)."""
    current = current_version(storage, dataset_id)
    if current is None:
        raise ValueError(f"{dataset_id} has never been published")
    if to_version is None:
        to_version = read_manifest(storage, dataset_id, current).previous_version
        if to_version is None:
            raise ValueError(f"{dataset_id} version {current} has no previous version to roll back to")
    if not list_versions(storage, dataset_id).get(to_version):
        raise ValueError(f"{dataset_id} has no complete version {to_version} (it may have been pruned)")
    set_current(storage, dataset_id, to_version)
    manifest = read_manifest(storage, dataset_id, to_version)
    if catalog is not None:
        catalog.register(manifest)
    return manifest
