"""What the Synapse folder tree should look like for a set of publish
manifests, and the actions that take the current tree there.

The tree under the export root folder::

    <root folder>/
        <table>/                              one Folder per published table
            <partition path>__<file name>     one File per Parquet and CSV object

A File entity points at the S3 object through an external S3 file handle
(bucket, key, size, MD5); nothing is uploaded. File names flatten the Hive
partition path, because Synapse names may not contain ``=`` or ``/``:
``assessmentid=spelling/year=2022/part-0.parquet`` becomes
``assessmentid-spelling__year-2022__part-0.parquet``. A value is shown
unescaped, then made a safe name (``cohort=a%2Fb`` -> ``cohort-a_b``); a
File's partition annotations hold the values as published (``a/b``).

Every entity the export creates carries the annotation
``exportedBy = bridge-downstream``; only such entities are ever deleted.
Entities are matched by name inside their parent (Synapse keeps names unique
per parent), so a rerun updates them in place and never duplicates them.

This module is pure: the adapter (``bridge_downstream_adapters.synapse``)
reads the current tree into :class:`ExistingTree`, calls :func:`diff` and
executes the returned actions.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from bridge_downstream.common import layout
from bridge_downstream.publish.manifest import PublishedFile, PublishedTable, PublishManifest

MANAGED_BY_KEY = "exportedBy"
MANAGED_BY = "bridge-downstream"

# Annotation keys the export sets itself; a partition column with one of these
# names is annotated as ``partition_<name>``.
RESERVED_KEYS = frozenset(
    {
        MANAGED_BY_KEY,
        "datasetId",
        "table",
        "format",
        "publishVersion",
        "runId",
        "schemaVersion",
        "rowCount",
        "sha256",
        "fileCount",
    }
)

MAX_NAME_LENGTH = 256
_NAME_UNSAFE = re.compile(r"[^A-Za-z0-9 _.+\-'()]")
_ANNOTATION_KEY_UNSAFE = re.compile(r"[^A-Za-z0-9_.]")

# Annotation values as the plan sees them: a list of str or int.
AnnotationValue = list
Annotations = dict  # str -> AnnotationValue


class SynapsePlanError(ValueError):
    """The manifests cannot be mirrored as asked; the message says why."""


@dataclass(frozen=True)
class ObjectLocation:
    bucket: str
    key: str


@dataclass(frozen=True)
class DesiredFile:
    name: str
    key: str  # relative to the pipeline root
    location: ObjectLocation
    format: str
    size: int
    md5: str
    annotations: Annotations = field(default_factory=dict, hash=False, compare=False)


@dataclass
class DesiredFolder:
    name: str
    dataset_id: str
    table: str
    annotations: Annotations
    files: dict[str, DesiredFile] = field(default_factory=dict)


@dataclass
class DesiredTree:
    folders: dict[str, DesiredFolder] = field(default_factory=dict)
    dataset_ids: frozenset[str] = frozenset()


@dataclass
class ExistingFile:
    entity_id: str
    name: str
    location: ObjectLocation | None  # None: not an S3 file handle
    size: int | None
    md5: str | None
    annotations: Annotations = field(default_factory=dict)

    @property
    def managed(self) -> bool:
        return is_managed(self.annotations)


@dataclass
class ExistingFolder:
    entity_id: str
    name: str
    annotations: Annotations = field(default_factory=dict)
    files: dict[str, ExistingFile] = field(default_factory=dict)

    @property
    def managed(self) -> bool:
        return is_managed(self.annotations)


@dataclass
class ExistingTree:
    root_id: str
    folders: dict[str, ExistingFolder] = field(default_factory=dict)


# Action kinds, in the order the executor runs them.
CREATE_FOLDER = "create_folder"
UPDATE_FOLDER_ANNOTATIONS = "update_folder_annotations"
CREATE_FILE = "create_file"
UPDATE_FILE = "update_file"  # new file handle (and annotations)
UPDATE_FILE_ANNOTATIONS = "update_file_annotations"
DELETE_FILE = "delete_file"
DELETE_FOLDER = "delete_folder"
ACTION_ORDER = (
    CREATE_FOLDER,
    UPDATE_FOLDER_ANNOTATIONS,
    CREATE_FILE,
    UPDATE_FILE,
    UPDATE_FILE_ANNOTATIONS,
    DELETE_FILE,
    DELETE_FOLDER,
)


@dataclass(frozen=True)
class Action:
    kind: str
    folder: str  # table folder name
    name: str | None = None  # file name, for file actions
    entity_id: str | None = None  # existing entity, for updates and deletes
    file: DesiredFile | None = None
    annotations: Annotations | None = None
    reason: str = ""

    def describe(self) -> str:
        target = f"{self.folder}/{self.name}" if self.name else f"{self.folder}/"
        ident = f" ({self.entity_id})" if self.entity_id else ""
        why = f": {self.reason}" if self.reason else ""
        return f"{self.kind} {target}{ident}{why}"


@dataclass
class Plan:
    actions: list[Action] = field(default_factory=list)
    unchanged: int = 0
    left_alone: list[str] = field(default_factory=list)  # unmanaged entities kept

    def of(self, kind: str) -> list[Action]:
        return [a for a in self.actions if a.kind == kind]

    def counts(self) -> dict[str, int]:
        counts = {kind: len(self.of(kind)) for kind in ACTION_ORDER}
        counts["unchanged"] = self.unchanged
        return counts

    @property
    def empty(self) -> bool:
        return not self.actions


# --------------------------------------------------------------------- names


def safe_name(text: str) -> str:
    """A valid Synapse entity name for ``text`` (letters, digits, space,
    ``_ . + - ' ( )``); over-long names keep their end and gain a hash."""
    name = _NAME_UNSAFE.sub("_", text).strip() or "_"
    if len(name) > MAX_NAME_LENGTH:
        digest = hashlib.sha1(text.encode()).hexdigest()[:10]
        name = f"{name[:116]}_{digest}_{name[-120:]}"  # 248 characters
    return name


def file_entity_name(relative_path: str) -> str:
    """``year=2022/month=02/part-0.parquet`` -> ``year-2022__month-02__part-0.parquet``;
    a partition value by what it is, not by its folder's escapes
    (``cohort=a%2Fb`` -> ``cohort-a_b``, as :func:`safe_name` shows ``/``)."""
    segments = []
    for segment in relative_path.strip("/").split("/"):
        name, is_partition, value = segment.partition("=")
        if is_partition:
            segments.append(f"{layout.unescape_path_name(name)}-{layout.unescape_path_name(value)}")
        elif segment:
            segments.append(segment)
    return safe_name("__".join(segments))


def annotation_key(name: str) -> str:
    key = _ANNOTATION_KEY_UNSAFE.sub("_", name) or "_"
    return f"partition_{key}" if key in RESERVED_KEYS else key


def is_managed(annotations: Mapping[str, AnnotationValue]) -> bool:
    return [str(v) for v in annotations.get(MANAGED_BY_KEY, [])] == [MANAGED_BY]


# ------------------------------------------------------------- annotations


def annotations_to_v2(annotations: Mapping[str, AnnotationValue]) -> dict[str, dict]:
    """The ``annotations`` member of a Synapse Annotations (v2) object."""
    out = {}
    for key, values in annotations.items():
        values = list(values)
        if values and all(isinstance(v, bool) for v in values):
            kind, text = "BOOLEAN", [str(v).lower() for v in values]
        elif values and all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            kind, text = "LONG", [str(v) for v in values]
        elif values and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
            kind, text = "DOUBLE", [repr(float(v)) for v in values]
        else:
            kind, text = "STRING", [str(v) for v in values]
        out[key] = {"type": kind, "value": text}
    return out


def annotations_from_v2(raw: Mapping[str, Mapping]) -> Annotations:
    """The inverse of :func:`annotations_to_v2` (LONG values become int)."""
    out: Annotations = {}
    for key, typed in (raw or {}).items():
        kind = typed.get("type", "STRING")
        values = typed.get("value", [])
        if kind == "LONG":
            out[key] = [int(v) for v in values]
        elif kind == "DOUBLE":
            out[key] = [float(v) for v in values]
        elif kind == "BOOLEAN":
            out[key] = [str(v).lower() == "true" for v in values]
        else:
            out[key] = [str(v) for v in values]
    return out


def _normalized(annotations: Mapping[str, AnnotationValue]) -> dict:
    return {k: v for k, v in annotations_to_v2(annotations).items()}


def annotations_equal(a: Mapping[str, AnnotationValue], b: Mapping[str, AnnotationValue]) -> bool:
    return _normalized(a) == _normalized(b)


# ----------------------------------------------------------- desired state


def _base_annotations(manifest: PublishManifest, table: PublishedTable) -> Annotations:
    return {
        MANAGED_BY_KEY: [MANAGED_BY],
        "datasetId": [manifest.dataset_id],
        "table": [table.name],
        "publishVersion": [manifest.version],
        "runId": [manifest.run_id],
        "schemaVersion": [manifest.registry_version],
    }


def file_annotations(manifest: PublishManifest, table: PublishedTable, published: PublishedFile) -> Annotations:
    annotations = _base_annotations(manifest, table)
    annotations["format"] = [published.format]
    annotations["rowCount"] = [int(published.rows)]
    annotations["sha256"] = [published.sha256]
    for name, value in published.partition.items():
        annotations[annotation_key(name)] = [str(value)]
    return annotations


def folder_annotations(manifest: PublishManifest, table: PublishedTable) -> Annotations:
    annotations = _base_annotations(manifest, table)
    annotations["rowCount"] = [int(table.rows)]
    return annotations


def _relative_to_table(manifest: PublishManifest, table: PublishedTable, published: PublishedFile) -> str:
    # an incremental version's file may lie in an older version's folder: its path below its table
    return table.relative_key(published)


def desired_tree(
    manifests: Iterable[PublishManifest],
    locate: Callable[[str], ObjectLocation],
    formats: Sequence[str] = ("parquet", "csv"),
    tables: Iterable[str] | None = None,
) -> DesiredTree:
    """The folders and files the export root should hold for ``manifests``.

    ``locate`` maps a pipeline-root key to its S3 bucket and object key.
    ``tables`` restricts the export to those table names (all when None).
    """
    wanted_tables = set(tables) if tables is not None else None
    tree = DesiredTree()
    dataset_ids = set()
    for manifest in manifests:
        dataset_ids.add(manifest.dataset_id)
        for table in manifest.tables.values():
            if wanted_tables is not None and table.name not in wanted_tables:
                continue
            folder_name = safe_name(table.name)
            if folder_name in tree.folders:
                other = tree.folders[folder_name]
                raise SynapsePlanError(
                    f"tables {other.dataset_id}/{other.table} and {manifest.dataset_id}/{table.name} "
                    f"both map to the Synapse folder name {folder_name!r}"
                )
            folder = DesiredFolder(folder_name, manifest.dataset_id, table.name, folder_annotations(manifest, table))
            by_name: dict[str, list[tuple[str, PublishedFile]]] = {}
            for published in table.files:
                if published.format not in formats:
                    continue
                name = file_entity_name(_relative_to_table(manifest, table, published))
                by_name.setdefault(name, []).append((name, published))
            for name, entries in by_name.items():
                for _, published in entries:
                    final = name
                    if len(entries) > 1:  # sanitising made two keys collide
                        digest = hashlib.sha1(published.key.encode()).hexdigest()[:8]
                        final = safe_name(f"{digest}-{name}")
                    folder.files[final] = DesiredFile(
                        name=final,
                        key=published.key,
                        location=locate(published.key),
                        format=published.format,
                        size=int(published.size),
                        md5=published.md5,
                        annotations=file_annotations(manifest, table, published),
                    )
            folder.annotations["fileCount"] = [len(folder.files)]
            tree.folders[folder_name] = folder
    tree.dataset_ids = frozenset(dataset_ids)
    return tree


# --------------------------------------------------------------------- diff


def _same_object(want: DesiredFile, have: ExistingFile) -> bool:
    return have.location == want.location and have.size == want.size and (have.md5 or "").lower() == want.md5.lower()


def diff(desired: DesiredTree, existing: ExistingTree, *, prune_datasets: Iterable[str] | None = None) -> Plan:
    """The actions that turn ``existing`` into ``desired``.

    Managed table folders that are not desired are deleted when their
    ``datasetId`` is in ``prune_datasets`` (default: every dataset, i.e. the
    export mirrors the whole published root). Unmanaged entities are never
    touched; they are listed in ``Plan.left_alone``.
    """
    plan = Plan()
    for folder_name, want_folder in sorted(desired.folders.items()):
        have_folder = existing.folders.get(folder_name)
        if have_folder is None:
            plan.actions.append(
                Action(
                    CREATE_FOLDER,
                    folder_name,
                    annotations=want_folder.annotations,
                    reason=f"new table {want_folder.dataset_id}/{want_folder.table}",
                )
            )
            for name, want in sorted(want_folder.files.items()):
                plan.actions.append(Action(CREATE_FILE, folder_name, name, file=want, annotations=want.annotations))
            continue
        if not annotations_equal(want_folder.annotations, have_folder.annotations):
            plan.actions.append(
                Action(
                    UPDATE_FOLDER_ANNOTATIONS,
                    folder_name,
                    entity_id=have_folder.entity_id,
                    annotations=want_folder.annotations,
                    reason="annotations changed",
                )
            )
        for name, want in sorted(want_folder.files.items()):
            have = have_folder.files.get(name)
            if have is None:
                plan.actions.append(Action(CREATE_FILE, folder_name, name, file=want, annotations=want.annotations))
            elif not _same_object(want, have):
                plan.actions.append(
                    Action(
                        UPDATE_FILE,
                        folder_name,
                        name,
                        entity_id=have.entity_id,
                        file=want,
                        annotations=want.annotations,
                        reason="object changed",
                    )
                )
            elif not annotations_equal(want.annotations, have.annotations):
                plan.actions.append(
                    Action(
                        UPDATE_FILE_ANNOTATIONS,
                        folder_name,
                        name,
                        entity_id=have.entity_id,
                        file=want,
                        annotations=want.annotations,
                        reason="annotations changed",
                    )
                )
            else:
                plan.unchanged += 1
        for name, have in sorted(have_folder.files.items()):
            if name in want_folder.files:
                continue
            if have.managed:
                plan.actions.append(
                    Action(
                        DELETE_FILE, folder_name, name, entity_id=have.entity_id, reason="not in the current version"
                    )
                )
            else:
                plan.left_alone.append(f"{folder_name}/{name} ({have.entity_id})")

    prune = None if prune_datasets is None else set(prune_datasets)
    for folder_name, have_folder in sorted(existing.folders.items()):
        if folder_name in desired.folders:
            continue
        dataset = (have_folder.annotations.get("datasetId") or [None])[0]
        if not have_folder.managed:
            plan.left_alone.append(f"{folder_name}/ ({have_folder.entity_id})")
        elif prune is not None and dataset not in prune:
            continue  # another dataset's folder, outside this export's scope
        else:
            unmanaged = [f for f in have_folder.files.values() if not f.managed]
            if unmanaged:
                # Keep the folder (and what others put there); remove our files.
                for name, have in sorted(have_folder.files.items()):
                    if have.managed:
                        plan.actions.append(
                            Action(
                                DELETE_FILE,
                                folder_name,
                                name,
                                entity_id=have.entity_id,
                                reason="table no longer published",
                            )
                        )
                    else:
                        plan.left_alone.append(f"{folder_name}/{name} ({have.entity_id})")
            else:
                plan.actions.append(
                    Action(
                        DELETE_FOLDER, folder_name, entity_id=have_folder.entity_id, reason="table no longer published"
                    )
                )
    order = {kind: i for i, kind in enumerate(ACTION_ORDER)}
    plan.actions.sort(key=lambda a: order[a.kind])
    return plan
