"""Replay of invalid records: list them, and re-submit chosen ones to ingest.

Once the registry, its pipeline rules or an upload's metadata are fixed, a
replay runs the selected records through the ordinary ingest
(:func:`bridge_downstream.ingest.run_ingest`: same ledger, part files and run
report) and then settles the invalid sink:

* a record that is now ``processed`` (its rows are in the datasets) or
  ``skipped`` (e.g. already in the ingest ledger) leaves the sink;
* a record that is still ``invalid`` stays, with its new reasons and a
  ``replays`` history of the earlier ones;
* a record whose archive can no longer be read (the source object is gone)
  is not submitted and its entry stays untouched.

Nothing is lost in either direction: the new rows and the ledger are written
(inside ``run_ingest``) before any entry is removed, and a still-invalid
record's new entry is written before its old one is removed. A crash in
between leaves the old entry, and replaying it again finds the archive in the
ledger (``skipped``) and removes it.

The core knows nothing of SQS or boto3: an :class:`InvalidStore` hides where
the entries are (a folder locally; the adapters provide the SQS queue) and a
``resolve_input`` callable turns an entry into an :class:`ArchiveInput`.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bridge_downstream.common import layout
from bridge_downstream.common.storage import NO_METADATA, LocalStorage, Storage, join_key
from bridge_downstream.config.limits import ArchiveLimits
from bridge_downstream.config.profiles import Profile
from bridge_downstream.config.registry import SchemaRegistry
from bridge_downstream.ingest.listing import ArchiveInput
from bridge_downstream.ingest.outcomes import INVALID, PROCESSED, SKIPPED, read_run_records
from bridge_downstream.ingest.run import new_run_id, run_ingest
from bridge_downstream.replay.invalid_store import CollectingSink, InvalidStore, StoredEntry
from bridge_downstream.replay.selection import Selection, select

REPLAY_REPORT_PREFIX = "replay-"


NOT_REPLAYED = "not_replayed"


def replay_report_key(run_id: str) -> str:
    return join_key(layout.REPORTS_PREFIX, f"{REPLAY_REPORT_PREFIX}{run_id}.json")


class SourceUnavailable(Exception):
    """The entry's archive cannot be read any more; the entry stays as it is."""


def local_path_of(entry: dict) -> Path:
    source = str(entry.get("source") or "")
    if not source.startswith("file://"):
        raise SourceUnavailable(f"not a local archive: {source or 'the entry names no source'}")
    return Path(source[len("file://") :])


def choose_metadata(fresh: Mapping[str, object], entry: dict) -> dict[str, object] | None:
    """Fresh metadata (a sidecar or object metadata that exists now) wins --
    it is how a record invalid for missing or wrong metadata is fixed --
    even empty (an empty sidecar: metadata with no fields, which the
    profile's defaults complete, as in ingest); where the store holds none
    (:data:`NO_METADATA`), the metadata the entry was ingested with. None:
    there is none."""
    if fresh is not NO_METADATA:
        return dict(fresh)
    recorded = entry.get("metadata")
    return dict(recorded) if recorded else None


def archive_metadata(chosen: Mapping[str, object] | None) -> Mapping[str, object] | None:
    """What :class:`ArchiveInput` is given for ``chosen`` metadata. Its
    ``metadata`` tells "none" (an empty mapping) from "read the store's":
    so chosen empty metadata -- only ever the store's own, an empty sidecar
    -- is read from the store again, where ingest sees it as empty, not
    missing."""
    if chosen is None:
        return {}
    return chosen if chosen else None


def local_archive_input(entry: dict) -> ArchiveInput:
    """A local entry's archive: the file named by its ``file://`` source."""
    path = local_path_of(entry)
    if not path.is_file():
        raise SourceUnavailable(f"archive not found: {path}")
    storage = LocalStorage(path.parent)
    return ArchiveInput(
        storage,
        path.name,
        source_bucket=entry.get("source_bucket"),
        raw_folder_id=entry.get("raw_folder_id"),
        metadata=archive_metadata(choose_metadata(storage.metadata(path.name), entry)),
    )


def _history(stored: Sequence[StoredEntry], run_id: str, at: str) -> list[dict]:
    history: list[dict] = []
    seen: set[str] = set()
    for item in stored:
        for past in item.entry.get("replays") or []:
            marker = json.dumps(past, sort_keys=True)
            if marker not in seen:
                seen.add(marker)
                history.append(past)
    for item in stored:
        history.append(
            {
                "replay_run_id": run_id,
                "replayed_at": at,
                "previous_reason": item.entry.get("reason"),
                "previous_errors": (item.entry.get("validation_result") or {}).get("errors") or {},
                "previous_identity": item.identity,
                "previous_registry_version": item.entry.get("registry_version"),
            }
        )
    return history


def _entry_item(stored: StoredEntry, **extra) -> dict:
    return {
        "record_id": stored.record_id,
        "source": stored.entry.get("source"),
        "identity": stored.identity,
        "previous_reason": stored.entry.get("reason"),
        **extra,
    }


def replay(
    store: InvalidStore,
    selection: Selection,
    *,
    registry: SchemaRegistry,
    profile: Profile,
    output: Storage,
    resolve_input: Callable[[dict], ArchiveInput] = local_archive_input,
    workers: int | None = 1,
    app_id: str | None = None,
    limits: ArchiveLimits | None = None,
    run_id: str | None = None,
    dry_run: bool = False,
    entries: Sequence[StoredEntry] | None = None,
) -> dict[str, Any]:
    """Re-submit the selected invalid entries to ingest; settle the store;
    write and return the replay report (``reports/replay-<run id>.json``).

    ``entries`` (default: ``store.load()``) lets an adapter pass entries it
    has already received. Entries that are not selected are released.
    """
    if selection.empty and not selection.all:
        raise ValueError("choose what to replay: --record, --reason, --assessment, or --all")
    started = datetime.now(UTC)
    run_id = run_id or new_run_id()
    loaded = list(store.load() if entries is None else entries)
    chosen = select(loaded, selection)
    chosen_ids = {id(s) for s in chosen}
    store.release([h for s in loaded if id(s) not in chosen_ids for h in s.handles])

    # One input per archive: entries of the same source (e.g. ingested with
    # different metadata) are settled by that archive's one outcome.
    groups: dict[str, list[StoredEntry]] = {}
    inputs: dict[str, ArchiveInput] = {}
    not_replayed: list[dict] = []
    kept_handles: list[str] = []
    for stored in chosen:
        recorded_profile = stored.entry.get("profile")
        if recorded_profile and recorded_profile != profile.name:
            not_replayed.append(
                _entry_item(
                    stored,
                    reason=f"not replayed: ingested with profile {recorded_profile!r}, replay asked for {profile.name!r}",
                    errors={},
                )
            )
            kept_handles.extend(stored.handles)
            continue
        try:
            inp = resolve_input(stored.entry)
        except SourceUnavailable as error:
            not_replayed.append(
                _entry_item(
                    stored,
                    reason=f"not replayed: {error}",
                    errors=(stored.entry.get("validation_result") or {}).get("errors") or {},
                )
            )
            kept_handles.extend(stored.handles)
            continue
        groups.setdefault(inp.source, []).append(stored)
        inputs.setdefault(inp.source, inp)

    report: dict[str, Any] = {
        "run_id": run_id,
        "stage": "replay",
        "dry_run": dry_run,
        "profile": profile.name,
        "registry_version": registry.version,
        "started_at": started.isoformat(timespec="seconds"),
        "selection": selection.to_json(),
        "counts": {},
        "processed": [],
        "still_invalid": [],
        "skipped": [],
        "not_replayed": not_replayed,
        "datasets": {},
        "ingest_report": None,
    }
    if dry_run:
        store.release([h for s in chosen for h in s.handles])
        report["would_replay"] = [_entry_item(s) for group in groups.values() for s in group]
        report["counts"] = {"selected": len(chosen), "archives": len(inputs), "not_replayed": len(not_replayed)}
        report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
        return report

    collected = CollectingSink()
    try:
        ingest_report = (
            run_ingest(
                list(inputs.values()),
                registry=registry,
                profile=profile,
                output=output,
                sink=collected,
                workers=workers,
                app_id=app_id,
                limits=limits or ArchiveLimits(),
                run_id=run_id,
            )
            if inputs
            else None
        )
    except BaseException:
        # Nothing was settled: every chosen entry stays as it was.
        store.release([h for s in chosen for h in s.handles])
        raise

    # Per-source outcomes, from the run's records file (every archive, with its reason).
    status: dict[str, tuple[str, str | None]] = {source: (PROCESSED, None) for source in inputs}
    rows: dict[str, dict[str, int]] = {}
    record_ids: dict[str, str | None] = {}
    if ingest_report is not None:
        for record in read_run_records(output, run_id):
            status[record["source"]] = (record["status"], record["reason"])
            if record["status"] == PROCESSED:
                rows[record["source"]] = record.get("datasets") or {}
                record_ids[record["source"]] = record.get("recordid")

    at = datetime.now(UTC).isoformat(timespec="seconds")
    removed = 0
    for source, group in groups.items():
        outcome, reason = status[source]
        if outcome == INVALID:
            new_entry = dict(collected.entries[source])
            new_entry["replays"] = _history(group, run_id, at)
            new_handle = store.send(new_entry)  # the new entry first, then the old ones
            removed += store.remove([h for s in group for h in s.handles if h != new_handle])
            for stored in group:
                report["still_invalid"].append(
                    _entry_item(
                        stored,
                        reason=new_entry["reason"],
                        errors=new_entry["validation_result"]["errors"],
                        new_identity=new_entry["identity"],
                    )
                )
            continue
        removed += store.remove([h for s in group for h in s.handles])
        for stored in group:
            if outcome == PROCESSED:
                report["processed"].append(
                    _entry_item(stored, rows=rows.get(source, {}), new_record_id=record_ids.get(source))
                )
            else:
                report["skipped"].append(_entry_item(stored, reason=reason))
    store.release(kept_handles)

    report["datasets"] = (ingest_report or {}).get("datasets", {})
    report["ingest_report"] = layout.report_key(run_id) if ingest_report is not None else None
    report["counts"] = {
        "selected": len(chosen),
        "archives": len(inputs),
        PROCESSED: len(report["processed"]),
        "still_invalid": len(report["still_invalid"]),
        SKIPPED: len(report["skipped"]),
        NOT_REPLAYED: len(not_replayed),
        "entries_removed": removed,
    }
    report["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    output.write_bytes(replay_report_key(run_id), json.dumps(report, indent=2).encode())
    return report


def format_replay_summary(report: dict) -> str:
    counts = report["counts"]
    if report.get("dry_run"):
        lines = [f"replay (dry run): {counts['selected']} selected, {counts['archives']} archives would be re-ingested"]
        lines += [f"  would replay  {item['record_id']}  {item['source']}" for item in report.get("would_replay", [])]
    else:
        lines = [
            (
                f"replay {report['run_id']}: {counts['selected']} selected -- {counts['processed']} processed, "
                f"{counts['still_invalid']} still invalid, {counts['skipped']} skipped, {counts['not_replayed']} not replayed"
            )
        ]
        for item in report["processed"]:
            datasets = ", ".join(f"{d}={n}" for d, n in sorted(item["rows"].items()))
            lines.append(f"  processed      {item['record_id']}: {datasets}")
        for item in report["still_invalid"]:
            lines.append(f"  still invalid  {item['record_id']}: {item['reason']}")
        for item in report["skipped"]:
            lines.append(f"  skipped        {item['record_id']}: {item['reason']}")
    for item in report["not_replayed"]:
        lines.append(f"  not replayed   {item['record_id']}: {item['reason']}")
    return "\n".join(lines)
