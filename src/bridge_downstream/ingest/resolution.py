"""Which JSON Schema, and which dataset, a file of an archive belongs to.

Precedence, as the original pipeline had it:

1. the archive's own ``metadata.json`` ``files[].jsonSchema`` (self-reference);
2. the archive map's ``assessments[]`` entry with the same identifier and the
   closest ``assessmentRevision`` not above the record's;
3. the record's app in ``apps[]``: its ``anyOf``, else its ``default`` files
   (where both name a file, ``anyOf`` wins, as in the original);
4. the archive map's top-level ``anyOf``.

The dataset id is the schema's ``$id`` through the schema mapping, else the
legacy dataset mapping (assessment, revision, file name), else the file is
skipped with the reason. File-name aliases from the registry's pipeline rules
apply to the archive-map lookups only, so an aliased file keeps its own name
in the output (and two files that share a dataset never overwrite each
other: every row carries ``sourcefile``).
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from bridge_downstream.config.registry import SchemaRegistry


@dataclass(frozen=True)
class Resolution:
    file_name: str
    dataset_id: str | None
    schema_url: str | None
    source: str  # self-reference | assessment | app-default | app-anyOf | anyOf | legacy | none
    reason: str | None = None  # why the file is skipped, when dataset_id is None

    @property
    def skipped(self) -> bool:
        return self.dataset_id is None


def _find(entries: Iterable[Mapping] | None, file_name: str) -> str | None:
    for entry in entries or []:
        if entry.get("filename") == file_name and entry.get("jsonSchema"):
            return entry["jsonSchema"]
    return None


def archive_map_schema(
    archive_map: Mapping, *, file_name: str, app_id: str, assessment_id: str, revision: int
) -> tuple[str | None, str]:
    candidates = [
        a
        for a in archive_map.get("assessments", [])
        if a.get("assessmentIdentifier") == assessment_id and int(a.get("assessmentRevision", 0)) <= revision
    ]
    if candidates:
        closest = max(candidates, key=lambda a: int(a.get("assessmentRevision", 0)))
        url = _find(closest.get("files"), file_name)
        if url:
            return url, "assessment"
    # Inside an app entry a later match overrides an earlier one, as the
    # original's loops did (it assigned and read on): a later organization's
    # default over an earlier one's, the app's anyOf over any default, a later
    # entry of the app over an earlier entry.
    app_url, app_source = None, "none"
    for app in archive_map.get("apps", []):
        if app.get("appId") != app_id:
            continue
        for default in app.get("default", []):
            url = _find(default.get("files"), file_name)
            if url:
                app_url, app_source = url, "app-default"
        url = _find(app.get("anyOf"), file_name)
        if url:
            app_url, app_source = url, "app-anyOf"
    if app_url:
        return app_url, app_source
    url = _find(archive_map.get("anyOf"), file_name)
    if url:
        return url, "anyOf"
    return None, "none"


def self_referenced_schemas(archive_metadata: object) -> dict[str, str]:
    """``files[].jsonSchema`` of an archive's metadata.json, by file name."""
    if not isinstance(archive_metadata, dict):
        return {}
    found = {}
    for entry in archive_metadata.get("files") or []:
        if (
            isinstance(entry, dict)
            and isinstance(entry.get("filename"), str)
            and isinstance(entry.get("jsonSchema"), str)
        ):
            found[entry["filename"]] = entry["jsonSchema"]
    return found


# Resolutions already made, per registry (a registry does not change once
# loaded): a batch asks the same few questions for every archive. Bounded,
# because member names come from the uploads.
_RESOLUTIONS: weakref.WeakKeyDictionary[SchemaRegistry, dict[tuple, Resolution]] = weakref.WeakKeyDictionary()
RESOLUTIONS_KEPT = 4096


def resolve_file(
    registry: SchemaRegistry,
    *,
    file_name: str,
    app_id: str,
    assessment_id: str,
    revision: int,
    self_references: Mapping[str, str],
) -> Resolution:
    """The schema and dataset of one archive file (see the module's precedence)."""
    self_reference = self_references.get(file_name)
    question = (file_name, app_id, assessment_id, revision, self_reference)
    known = _RESOLUTIONS.get(registry)
    if known is None:
        known = _RESOLUTIONS[registry] = {}
    resolution = known.get(question)
    if resolution is None:
        if len(known) >= RESOLUTIONS_KEPT:
            known.clear()
        resolution = known[question] = _resolve(registry, file_name, app_id, assessment_id, revision, self_reference)
    return resolution


def _resolve(
    registry: SchemaRegistry, file_name: str, app_id: str, assessment_id: str, revision: int, self_reference: str | None
) -> Resolution:
    url, source = None, "none"
    if self_reference is not None:
        url, source = self_reference, "self-reference"
    else:
        lookup_name = registry.rules.file_aliases.get(file_name, file_name)
        url, source = archive_map_schema(
            registry.archive_map, file_name=lookup_name, app_id=app_id, assessment_id=assessment_id, revision=revision
        )
    if url is not None:
        if registry.schema(url) is None:
            return Resolution(file_name, None, url, source, f"schema {url} ({source}) is not in the registry")
        dataset_id = registry.dataset_for_schema(url)
        if dataset_id is not None:
            return Resolution(file_name, dataset_id, url, source)
    legacy = registry.legacy_dataset(assessment_id, revision, file_name)
    if legacy is not None:
        return Resolution(file_name, legacy, url, "legacy")
    if url is not None:
        reason = f"schema {url} ({source}) has no dataset in the schema mapping"
    else:
        reason = (
            f"no schema for {file_name!r} in the archive map (assessment {assessment_id} revision {revision}, "
            f"app {app_id}) and no legacy dataset mapping"
        )
    return Resolution(file_name, None, url, source, reason)
