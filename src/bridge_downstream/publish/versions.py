"""A dataset's published versions: ``CURRENT`` (the commit point of a publish),
the complete versions behind it, pruning and rollback."""

from __future__ import annotations

import json
import posixpath
import re
from collections.abc import Iterable
from datetime import UTC, datetime

from bridge_downstream.common import layout
from bridge_downstream.common.storage import Storage
from bridge_downstream.publish.catalog import Catalog
from bridge_downstream.publish.increments import index_key
from bridge_downstream.publish.manifest import (
    FileLines,
    PublishedFiles,
    PublishManifest,
    current_version,
    file_line_keys,
    listed_file_key_bytes,
    read_manifest,
)

# Beside CURRENT: the dataset's complete versions, and the newest version
# name a prune has examined (versions named after it are the ones to find).
VERSION_LOG_NAME = "versions.json"
# In a version's index: the version it was made from and the files of that
# version it does not list (None: a full version, which lists none of them).
LINEAGE_NAME = "lineage.json"
_NAME_CHARACTERS = "0123456789TZ"  # those of new_version's names, in order


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


def lineage_key(dataset_id: str, version: str) -> str:
    return index_key(dataset_id, version, LINEAGE_NAME)


def record_lineage(
    storage: Storage,
    dataset_id: str,
    version: str,
    previous: str | None,
    replaced: Iterable[str] | None,
    written: Iterable[str] | None = None,
) -> None:
    """Record, before ``version``'s manifest, the version it was made from,
    the files of that version it no longer lists (``replaced``; None for a
    full version, which lists none) and the files of its own folder it lists
    (``written``; None for a full version, which lists the history's): a
    prune follows these records instead of reading the history's manifests
    (:func:`prune_versions`)."""
    record = {
        "previous_version": previous,
        "replaced_files": None if replaced is None else sorted(set(replaced)),
        "written_files": None if written is None else sorted(set(written)),
    }
    storage.write_bytes(lineage_key(dataset_id, version), json.dumps(record, indent=1).encode())


def read_lineage(storage: Storage, dataset_id: str, version: str) -> dict | None:
    """``version``'s :func:`record_lineage`, or None when it has none (made before lineage was recorded)."""
    key = lineage_key(dataset_id, version)
    return json.loads(storage.read_bytes(key)) if storage.exists(key) else None


def version_log_key(dataset_id: str) -> str:
    return layout.published_dataset_prefix(dataset_id) + "/" + VERSION_LOG_NAME


def _discovered_versions(storage: Storage, dataset_id: str, log: dict | None, current: str | None) -> dict[str, bool]:
    """Versions the log may not hold yet -> whether complete. Every version
    begun since the log's last prune is named from its ``checked_through`` to
    the current one: listing the name prefixes of that span reads the folders
    of the versions since, not the history's files. Without a log (an output
    from before it): every version, listed once."""
    if log is None:
        return list_versions(storage, dataset_id)
    prefix = layout.published_dataset_prefix(dataset_id) + "/versions/"
    found: dict[str, bool] = {}
    for name_prefix in _name_prefixes(log["checked_through"], max(log["checked_through"], current or "")):
        for info in storage.list(prefix + name_prefix):
            version, _, rest = info.key[len(prefix) :].partition("/")
            found[version] = found.get(version, False) or rest == layout.MANIFEST_NAME
    return found


def _name_prefixes(low: str, high: str, most: int = 16) -> list[str]:
    """Prefixes that every name :func:`new_version` gives after ``low`` up to
    ``high`` starts with, each one listing: the longest ones, at most
    ``most`` of them, but the first made exact, so that neither ``low``'s
    own folder (a full publish holds every file of the history) nor an older
    one is listed. Names of other characters: their common prefix."""
    common = posixpath.commonprefix([low, high])
    if not set(low + high) <= set(_NAME_CHARACTERS):
        return [common]
    best = [common]
    for length in range(len(common) + 1, min(len(low), len(high)) + 1):
        names = [low[:length]]
        while names[-1] != high[:length] and len(names) <= most:
            names.append(_next_name(names[-1]))
        if len(names) > most:
            break
        best = names
    length = len(best[0])
    after_low = [
        low[:i] + following
        for i in range(len(low) - 1, length - 1, -1)
        for following in _NAME_CHARACTERS[_NAME_CHARACTERS.index(low[i]) + 1 :]
    ]
    # a version name has digits where ``low`` has, and letters where it has
    return [p for p in after_low + best[1:] if all(a.isdigit() == b.isdigit() for a, b in zip(p, low))]


def _next_name(name: str) -> str:
    """The name after ``name`` among those of its length over :data:`_NAME_CHARACTERS`."""
    last = _NAME_CHARACTERS[-1]
    stem = name.rstrip(last)
    following = _NAME_CHARACTERS[_NAME_CHARACTERS.index(stem[-1]) + 1]
    return stem[:-1] + following + _NAME_CHARACTERS[0] * (len(name) - len(stem))


def prune_versions(
    storage: Storage, dataset_id: str, retention: int, in_memory: Iterable[PublishManifest] = ()
) -> list[str]:
    """Keep the ``retention`` newest complete versions (always the current
    one); remove older ones and any incomplete version older than the current.

    Retention by reference: a file a kept version's manifest lists stays
    where it is (an incremental version carries partitions by reference), so
    a removed version's folder may keep files and lose its manifest and
    index. What to delete follows from manifests, not from listing storage:
    a removed version's own folder (listed once, when it leaves) and the
    files its manifest lists, less every file a kept version's manifest
    lists. A file outlives the versions that wrote it until the last version
    listing it is removed.

    When the complete versions form one line (each made from the one before,
    as :func:`record_lineage` records) and those removed are the oldest, the
    files no kept version lists are those the removed versions' successors
    replaced: a prune reads those records and searches the oldest kept
    manifest for its keys under the removed folders, instead of reading
    every kept and removed manifest's keys, which at a long history cost
    more than the rest of a small publish. Otherwise (a rollback, a blocked
    version, a full rebuild among the successors, a version without a
    record) it compares the manifests as above; :func:`_lineage_removal`
    says when the two find the same files.

    The versions are kept in a log beside ``CURRENT``
    (:data:`VERSION_LOG_NAME`), so a publish lists only the versions begun
    since the last prune (crashed ones among them). ``in_memory``: manifests
    the caller holds (the one just published, the one it was made from),
    whose files need not be read again."""
    current = current_version(storage, dataset_id)
    log = _read_log(storage, dataset_id)
    found = _discovered_versions(storage, dataset_id, log, current)
    complete = set(log["complete"] if log else ()) | {v for v, done in found.items() if done}
    ordered = sorted(complete)
    keep = set(ordered[-max(1, retention) :]) | ({current} if current else set())
    doomed = sorted(
        {v for v in complete if v not in keep}
        | {v for v, done in found.items() if not done and current is not None and v < current}
    )
    if doomed:
        _remove_versions(storage, dataset_id, doomed, keep, ordered, {m.version: m for m in in_memory})
    # a version found incomplete and newer than the current may be under way: looked at again next time
    checked = [v for v in (*complete & set(found), current, log["checked_through"] if log else None) if v]
    remaining = sorted(complete - set(doomed))
    storage.write_bytes(
        version_log_key(dataset_id),
        json.dumps({"complete": remaining, "checked_through": max(checked, default="")}, indent=1).encode(),
    )
    return doomed


def _read_log(storage: Storage, dataset_id: str) -> dict | None:
    key = version_log_key(dataset_id)
    return json.loads(storage.read_bytes(key)) if storage.exists(key) else None


def _remove_versions(
    storage: Storage,
    dataset_id: str,
    doomed: list[str],
    keep: set[str],
    complete: list[str],
    in_memory: dict[str, PublishManifest],
) -> None:
    kept_folders = tuple(layout.version_prefix(dataset_id, v) + "/" for v in keep)
    followed = _lineage_removal(storage, dataset_id, doomed, keep, complete, in_memory)
    kept_files: set[bytes] = set()
    if followed is not None:  # from the lineage records: no manifest read
        listed, kept_files = ({key.encode() for key in keys} for keys in followed)
    else:
        for version in keep:
            kept_files |= _listed_files(storage, dataset_id, version, in_memory.get(version))
        # read before the manifests go: the files each removed version listed, wherever they lie
        listed = set().union(*(_listed_files(storage, dataset_id, v, in_memory.get(v)) for v in doomed))
    for version in doomed:  # first: a version half removed is never taken for a complete one
        storage.delete(layout.manifest_key(dataset_id, version))
    own = {
        info.key.encode()
        for version in doomed
        for info in storage.list(layout.version_prefix(dataset_id, version) + "/")
    }
    for key in sorted(key.decode() for key in (own | listed) - kept_files):
        if not key.startswith(kept_folders):
            storage.delete(key)


def _lineage_removal(
    storage: Storage,
    dataset_id: str,
    doomed: list[str],
    keep: set[str],
    complete: list[str],
    in_memory: dict[str, PublishManifest],
) -> tuple[set[str], set[str]] | None:
    """What to delete besides the removed folders, and what to keep in them,
    from the lineage records (:func:`record_lineage`): the files the removed
    versions' successors replaced, and the files the oldest kept version
    lists under the removed folders (incomplete ones too: a prune killed
    after deleting a manifest leaves files a kept version carries). None
    unless that is exactly what comparing the manifests finds: the complete
    versions (``complete``, in name order) form one line, each made from the
    one before; the removed ones are the oldest; and each one after a
    removed one is incremental.
    In such a line a version lists only files the one before lists and
    files of its own folder, so a removed version's file that no kept
    version lists was replaced by one of the successors, and the oldest kept
    version lists every file a kept one lists outside the kept folders."""
    removed = sum(version not in keep for version in complete)
    folders = [layout.version_prefix(dataset_id, version) + "/" for version in doomed]
    # such a folder's keys are spelled in JSON as they are: found in a manifest's bytes
    spelled_as_is = all(f.isascii() and f.isprintable() and '"' not in f and "\\" not in f for f in folders)
    if not complete or set(complete[removed:]) != keep or not spelled_as_is:
        return None
    replaced: set[str] = set()
    # The files the removed versions listed in their own folders, when each one
    # recorded them. Not when a folder without manifest is removed: a crashed
    # publish's files are listed by none, but a version whose manifest a killed
    # prune deleted may have files the oldest kept version lists.
    written: set[str] | None = set() if set(doomed) <= set(complete) else None
    # newest first: the caller holds the newest manifests, so a rollback or a blocked version is seen unread
    for position in range(len(complete) - 1, -1, -1):
        version = complete[position]
        held = in_memory.get(version)
        if held is not None and position > removed:
            made_from = held.previous_version
        else:
            lineage = read_lineage(storage, dataset_id, version)
            if lineage is None and position == 0:
                written = None  # the oldest made from none the prune needs to know
                break
            if lineage is None:
                return None
            made_from = lineage["previous_version"]
            if position < removed and written is not None:
                own = lineage.get("written_files")
                written = None if own is None else written | set(own)
            if 0 < position <= removed:
                # a full version lists none of its predecessor's files, which that one's manifest alone names
                if lineage["replaced_files"] is None:
                    return None
                replaced.update(lineage["replaced_files"])
        if position > 0 and made_from != complete[position - 1]:
            return None
    if written is not None:
        # in one line, a file a removed version wrote is listed by the oldest kept one unless a successor replaced it
        return replaced, written - replaced
    first_kept = complete[removed]
    still_listed = _listed_under(storage, dataset_id, first_kept, in_memory.get(first_kept), folders)
    return None if still_listed is None else (replaced, still_listed)


# The rest of a JSON string after its opening quote, closing quote included.
_JSON_STRING_REST = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"')


def _listed_under(
    storage: Storage, dataset_id: str, version: str, held: PublishManifest | None, folders: list[str]
) -> set[str] | None:
    """The files ``version``'s manifest lists under ``folders`` (each spelled
    in JSON as it is), found by searching its bytes for keys that start with
    one of them: a manifest lists every file of the history, and reading each
    line's key cost most of a prune. None when it has no manifest.
    ``held``: that manifest, in memory (see :func:`_listed_files`)."""
    found: set[str] = set()
    if held is not None and not any(isinstance(table.files, PublishedFiles) for table in held.tables.values()):
        chunks = []
        for table in held.tables.values():
            files = table.files
            if isinstance(files, FileLines):
                chunks.append(files.body)
            else:
                found |= {f.key for f in files if f.key.startswith(tuple(folders))}
    elif storage.exists(layout.manifest_key(dataset_id, version)):
        chunks = [storage.read_bytes(layout.manifest_key(dataset_id, version))]
    else:
        return None
    # compact (orjson) and spaced (json, in manifests written before or with indents)
    needles = [(name, name + folder.encode()) for folder in folders for name in (b'"key":"', b'"key": "')]
    for chunk in chunks:
        for name, needle in needles:
            at = chunk.find(needle)
            while at >= 0:
                rest = _JSON_STRING_REST.match(chunk, at + len(needle))
                if rest is None:  # not a manifest's JSON: its keys are not known
                    return None
                text = chunk[at + len(name) - 1 : rest.end()]
                found.add(json.loads(text) if b"\\" in text else text[1:-1].decode())
                at = chunk.find(needle, rest.end())
    return found


def _listed_files(storage: Storage, dataset_id: str, version: str, held: PublishManifest | None = None) -> set[bytes]:
    """The files ``version``'s manifest lists, as UTF-8 keys; none when it has
    no manifest. ``held``: that manifest, in memory, its files in a list (a
    spooled list is read back more slowly than the manifest's lines)."""
    if not storage.exists(layout.manifest_key(dataset_id, version)):
        return set()
    if held is not None and not any(isinstance(table.files, PublishedFiles) for table in held.tables.values()):
        keys: set[bytes] = set()
        for table in held.tables.values():
            files = table.files
            keys |= file_line_keys([files.body]) if isinstance(files, FileLines) else {f.key.encode() for f in files}
        return keys
    return listed_file_key_bytes(storage, dataset_id, version)


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
    if not storage.exists(layout.manifest_key(dataset_id, to_version)):
        raise ValueError(f"{dataset_id} has no complete version {to_version} (it may have been pruned)")
    set_current(storage, dataset_id, to_version)
    manifest = read_manifest(storage, dataset_id, to_version)
    if catalog is not None:
        catalog.register(manifest)
    return manifest
