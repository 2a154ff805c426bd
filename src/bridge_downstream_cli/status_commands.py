"""``status`` (each dataset of an output folder: its current version, rows,
tables, last ingest and publish, and the invalid records) and ``versions
DATASET`` (the versions kept, which is current, when each was made).

An invalid record counts for the dataset its failed files belong to
(:func:`~bridge_downstream.replay.entry_datasets`, by the profile and
registry the output recorded); one that failed before its files were
bucketed, or in files of several datasets, counts once as not attributable
to a dataset: the counts add up to the output's invalid records."""

from __future__ import annotations

import json
from pathlib import Path

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage, Storage
from bridge_downstream.config import SchemaRegistry, load_profile
from bridge_downstream.config.registry import RegistryError
from bridge_downstream.publish import json_datasets
from bridge_downstream.publish.manifest import (
    PublishManifest,
    current_version,
    published_datasets,
    read_manifest,
)
from bridge_downstream.publish.versions import list_versions
from bridge_downstream.replay import StorageInvalidStore, entry_datasets
from bridge_downstream_cli.cli_context import resolve_dataset_ids
from bridge_downstream_cli.errors import UsageError
from bridge_downstream_cli.output_root import RootRecord
from bridge_downstream_cli.run_history import committed_runs


def open_output(output: str) -> LocalStorage:
    """An existing output folder (a typo must not read as an empty one)."""
    if not Path(output).is_dir():
        raise UsageError(f"output folder {output} does not exist: give the --output of a `run`")
    return LocalStorage(output)


def root_rows(manifest: PublishManifest) -> int:
    """Rows of the dataset's root table (one per record version kept)."""
    return sum(table.rows for table in manifest.tables.values() if table.parent is None)


def resolve_dataset(storage: Storage, name: str) -> str:
    """A dataset id from its id or one of its table names, case aside."""
    return resolve_dataset_ids([name], set(published_datasets(storage)) | set(json_datasets(storage)))[0]


def _last_ingests(storage: Storage) -> dict[str, str]:
    """Dataset id -> the finish time of the last committed run that ingested rows into it."""
    last: dict[str, str] = {}
    for run in committed_runs(storage):
        key = layout.report_key(run["run_id"])
        report = json.loads(storage.read_bytes(key)) if storage.exists(key) else {}
        for dataset_id in report.get("datasets") or {}:
            last[dataset_id] = report.get("finished_at") or run.get("committed_at") or run["run_id"]
    return last


def invalid_by_dataset(storage: LocalStorage) -> dict:
    """The invalid records: their total, the count attributed to each dataset,
    the count not attributable to one, and why attribution was partial (if it was)."""
    entries = [stored.entry for stored in StorageInvalidStore(storage).load()]
    attributed: dict[str, int] = {}
    note = None
    record = RootRecord.read(Path(storage.root)) if entries else None
    if entries and record is None:
        note = "the output records no profile: no invalid record is attributed"
    if record is not None:
        profile = load_profile(record.profile)
        registry = None
        if record.registry is not None:
            try:
                registry = SchemaRegistry.load(record.registry)
            except RegistryError as error:
                note = f"the output's registry cannot be read ({error}): its records are not attributed"
        for entry in entries:
            datasets = entry_datasets(entry, profile, registry)
            if len(datasets) == 1:
                (dataset_id,) = datasets
                attributed[dataset_id] = attributed.get(dataset_id, 0) + 1
    return {
        "total": len(entries),
        "by_dataset": dict(sorted(attributed.items())),
        "not_attributable": len(entries) - sum(attributed.values()),
        "note": note,
    }


def dataset_status(storage: LocalStorage) -> dict:
    """The output folder's state, as ``status --json`` prints it."""
    ingests = _last_ingests(storage)
    invalid = invalid_by_dataset(storage)
    datasets = {}
    known = set(published_datasets(storage)) | set(json_datasets(storage)) | set(ingests) | set(invalid["by_dataset"])
    for dataset_id in sorted(known):
        version = current_version(storage, dataset_id)
        manifest = read_manifest(storage, dataset_id, version) if version else None
        datasets[dataset_id] = {
            "current_version": version,
            "rows": root_rows(manifest) if manifest else None,
            "tables": sorted(manifest.tables) if manifest else [],
            "last_ingest": ingests.get(dataset_id),
            "last_publish": manifest.created_at if manifest else None,
            "versions": sum(1 for done in list_versions(storage, dataset_id).values() if done),
            "invalid": invalid["by_dataset"].get(dataset_id, 0),
        }
    return {
        "datasets": datasets,
        "invalid": invalid["total"],
        "invalid_not_attributable": invalid["not_attributable"],
        "invalid_note": invalid["note"],
        "runs": len(committed_runs(storage)),
    }


def command_status(args) -> int:
    storage = open_output(args.output)
    status = dataset_status(storage)
    if args.json:
        print(json.dumps(status, indent=2))
        return 0
    print(f"{args.output}: {len(status['datasets'])} datasets, {status['runs']} committed runs")
    print(
        f"  {'dataset':<32} {'current version':<24} {'rows':>9} {'tables':>6} {'invalid':>7}  "
        "last ingest / last publish"
    )
    for dataset_id, entry in status["datasets"].items():
        rows = "-" if entry["rows"] is None else entry["rows"]
        print(
            f"  {dataset_id:<32} {entry['current_version'] or 'never published':<24} {rows:>9} "
            f"{len(entry['tables']):>6} {entry['invalid']:>7}  "
            f"{entry['last_ingest'] or '-'} / {entry['last_publish'] or '-'}"
        )
    invalid = status["invalid"]
    print(f"invalid records: {invalid}" + (" (bridge-downstream invalid list --output ...)" if invalid else ""))
    if invalid:
        print(f"  not attributable to a dataset: {status['invalid_not_attributable']}")
    if status["invalid_note"]:
        print(f"  ({status['invalid_note']})")
    return 0


def dataset_versions(storage: Storage, dataset_id: str) -> list[dict]:
    current = current_version(storage, dataset_id)
    versions = []
    for version, complete in list_versions(storage, dataset_id).items():
        entry: dict = {"version": version, "current": version == current, "complete": complete}
        if complete:
            manifest = read_manifest(storage, dataset_id, version)
            entry.update(created_at=manifest.created_at, rows=root_rows(manifest), run_id=manifest.run_id)
        versions.append(entry)
    return versions


def command_versions(args) -> int:
    storage = open_output(args.output)
    dataset_id = resolve_dataset(storage, args.dataset)
    versions = dataset_versions(storage, dataset_id)
    if args.json:
        print(json.dumps({"dataset": dataset_id, "versions": versions}, indent=2))
        return 0
    if not versions:
        print(f"{dataset_id}: never published")
        return 0
    print(f"{dataset_id}: {len(versions)} versions")
    for entry in versions:
        mark = "* current" if entry["current"] else ""
        if entry["complete"]:
            print(f"  {entry['version']:<24} {entry['created_at']:<26} {entry['rows']:>9} rows  {mark}")
        else:
            print(f"  {entry['version']:<24} incomplete (no manifest: a publish that did not finish)")
    return 0


def add_status_commands(commands) -> None:
    status = commands.add_parser("status", help="each dataset of an output folder: version, rows, last runs")
    status.add_argument("--output", required=True, help="pipeline root folder")
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=command_status)

    versions = commands.add_parser("versions", help="a dataset's published versions, which is current, when made")
    versions.add_argument("dataset", help="dataset id or table name (case aside)")
    versions.add_argument("--output", required=True, help="pipeline root folder")
    versions.add_argument("--json", action="store_true", help="print JSON")
    versions.set_defaults(handler=command_versions)
