"""``locate RECORD_ID [--rows]``: where one record went. Its archives and
the runs that read them (outcome and reason), the ledger, the datasets and
rows it gave, the dedup decision, the current published version holding it
and its rows there. The run reports are the index: only the datasets they
name for the record are read, and only their current Parquet.

An export (recover) has no record id: its rows are keyed by the profile's
record key (``ParticipantIdentifier`` first) and carry the file they came
from (``sourcefile``). ``locate --participant ID`` finds a participant's
current rows through each version's key index (``index/keys.arrow``): a
dataset whose index does not hold the participant is not read, one that
does is read only in the partitions holding its rows. ``locate --export
NAME`` finds an export archive's runs and outcomes, and its rows still
published (those of its files: the others were superseded or deleted by
later exports); both together give the participant's rows of that export."""

from __future__ import annotations

import json
import posixpath
import zipfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from urllib.parse import unquote, urlparse

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage, Storage
from bridge_downstream.config import Profile, load_profile
from bridge_downstream.publish.increments import KEY_INDEX_NAME, KEY_SEPARATOR, file_partition, read_index_table
from bridge_downstream.publish.manifest import (
    PublishedTable,
    PublishManifest,
    current_version,
    published_datasets,
    read_manifest,
)
from bridge_downstream_cli.errors import UsageError
from bridge_downstream_cli.output_root import RootRecord
from bridge_downstream_cli.run_history import ledger_lines, run_records
from bridge_downstream_cli.status_commands import open_output

RECORD_KEY = "recordid"
PARTICIPANT_COLUMN = "ParticipantIdentifier"  # recover's: the first field of every record key, carried to child rows
SOURCE_FILE_COLUMN = "sourcefile"  # the export file a row was read from
EXPORT_MANIFEST = "Manifest.csv"  # an export's list of its files, no data file
FILE_COLUMN = "_located_in_file"  # no published column has this name
EXPORTS_NOT_RECORDED = (
    "Synapse entities and deliveries: not recorded per record (the exports mirror the published files: "
    "the files listed above are the ones they carry)"
)


def _current_manifests(storage: Storage, datasets: Iterable[str]) -> Iterator[tuple[str, PublishManifest | None]]:
    """Each dataset's current manifest; None for a dataset without a current version."""
    for dataset_id in datasets:
        version = current_version(storage, dataset_id)
        yield dataset_id, None if version is None else read_manifest(storage, dataset_id, version)


def _exported_on(source: str) -> str | None:
    """The export time a local archive's metadata sidecar gives, where it is readable."""
    parsed = urlparse(source)
    if parsed.scheme != "file":
        return None
    sidecar = Path(unquote(parsed.path) + ".metadata.json")
    try:
        return json.loads(sidecar.read_text()).get("exportedon")
    except (OSError, ValueError, AttributeError):
        return None


def _same_instant(left: object, right: object) -> bool:
    from datetime import datetime

    def parse(value: object):
        text = str(value).replace("Z", "+00:00").replace(" ", "T")
        return datetime.fromisoformat(text)

    try:
        return parse(left) == parse(right)
    except ValueError:
        return str(left) == str(right)


def _table_rows(storage: LocalStorage, dataset_id: str, version: str, table: str, record_id: str):
    """The table's rows of the record in the version (DuckDB over its Parquet), with the file holding each."""
    import duckdb

    folder = Path(storage.root) / layout.table_prefix(dataset_id, version, "parquet", table)
    files = sorted(str(path) for path in folder.rglob("*.parquet"))
    if not files:
        return [], []
    with duckdb.connect() as connection:
        relation = connection.sql(
            f"SELECT * FROM read_parquet($files, hive_partitioning = true, filename = '{FILE_COLUMN}')",
            params={"files": files},
        )
        if RECORD_KEY not in relation.columns:
            return None, []
        rows = relation.filter(duckdb.ColumnExpression(RECORD_KEY) == duckdb.ConstantExpression(record_id))
        return rows.columns, rows.fetchall()


def locate_record(storage: LocalStorage, record_id: str, with_rows: bool = False) -> dict:
    """Everything the output folder knows of ``record_id``, as ``locate --json`` prints it."""
    archives = [
        {
            "run_id": run_id,
            "source": record["source"],
            "status": record["status"],
            "reason": record.get("reason"),
            "datasets": record.get("datasets") or {},
            "exportedon": _exported_on(record["source"]),
        }
        for run_id, record in run_records(storage)
        if record.get("recordid") == record_id
    ]
    ledger = [line for line in ledger_lines(storage) if line.get("recordid") == record_id]
    datasets = sorted({dataset for archive in archives for dataset in archive["datasets"]})
    published: dict[str, dict] = {}
    for dataset_id, manifest in _current_manifests(storage, datasets):
        if manifest is None:
            published[dataset_id] = {"version": None}
            continue
        version = manifest.version
        tables: dict[str, dict] = {}
        kept_exported_on: object = None
        for name, table in manifest.tables.items():
            columns, rows = _table_rows(storage, dataset_id, version, name, record_id)
            if columns is None:
                tables[name] = {"rows": None, "note": f"no {RECORD_KEY} column: its rows are not located"}
                continue
            entry: dict = {"rows": len(rows), "files": sorted({row[columns.index(FILE_COLUMN)] for row in rows})}
            if "id" in columns:
                entry["ids"] = sorted({str(row[columns.index("id")]) for row in rows})
            if table.parent is None and rows and "exportedon" in columns:
                kept_exported_on = rows[0][columns.index("exportedon")]
            if with_rows:
                shown = [c for c in columns if c != FILE_COLUMN]
                entry["row_values"] = [
                    {c: str(v) if v is not None else None for c, v in zip(columns, row, strict=True) if c in shown}
                    for row in rows
                ]
            tables[name] = entry
        published[dataset_id] = {"version": version, "tables": tables, "kept_exportedon": kept_exported_on}
    for archive in archives:
        archive["dedup"] = _dedup_decision(archive, archives, published)
    return {
        "recordid": record_id,
        "archives": archives,
        "ledger": ledger,
        "published": published,
        "exports": EXPORTS_NOT_RECORDED,
    }


def _dedup_decision(archive: dict, archives: list[dict], published: dict) -> str:
    if archive["status"] != "processed":
        return f"not published ({archive['status']})"
    held = [published[d] for d in archive["datasets"] if published.get(d, {}).get("version")]
    if not held:
        return "not published yet"
    kept = next((p["kept_exportedon"] for p in held if p.get("kept_exportedon") is not None), None)
    processed = [a for a in archives if a["status"] == "processed"]
    if len({a["source"] for a in processed}) == 1:
        return "kept (the only export)"
    winner = next(
        (
            a["source"]
            for a in processed
            if kept is not None and a["exportedon"] and _same_instant(kept, a["exportedon"])
        ),
        None,
    )
    if winner is None:
        return "not known (the published row or the archives name no exportedOn)"
    return "kept (latest exportedOn)" if winner == archive["source"] else f"superseded by {winner}"


def _output_profile(storage: LocalStorage) -> Profile:
    record = RootRecord.read(Path(storage.root))
    if record is None:
        raise UsageError(f"{storage.root} records no profile: run `bridge-downstream run` on it first")
    return load_profile(record.profile)


def _is_export(source: str, name: str) -> bool:
    file_name = posixpath.basename(unquote(urlparse(source).path))
    return name in (source, file_name, file_name.removesuffix(".zip"))


def _export_files(source: str) -> list[str] | None:
    """The data files of a local export archive (as rows name them in ``sourcefile``); None when it cannot be read here."""
    parsed = urlparse(source)
    if parsed.scheme != "file":
        return None
    try:
        with zipfile.ZipFile(unquote(parsed.path)) as archive:
            return sorted(n for n in archive.namelist() if posixpath.basename(n) != EXPORT_MANIFEST)
    except (OSError, zipfile.BadZipFile):
        return None


def _participant_partitions(
    storage: LocalStorage, dataset_id: str, version: str, participant: str
) -> tuple[set[str], int] | None:
    """The partitions holding the participant's surviving rows, by the
    version's key index, and how many the index knows; None: no index to ask."""
    import pyarrow.compute as pc

    keys = read_index_table(storage, dataset_id, version, KEY_INDEX_NAME)
    if keys is None:
        return None
    key = keys.column("key")
    of_participant = pc.or_(pc.equal(key, participant), pc.starts_with(key, participant + KEY_SEPARATOR))
    held = keys.filter(pc.and_(of_participant, keys.column("winner"))).column("partition")
    return set(held.to_pylist()), len(pc.unique(keys.column("partition")))


def _select_rows(storage: LocalStorage, files: list[str], where: dict[str, list[str]], with_rows: bool) -> dict:
    """The rows of ``files`` whose columns hold one of the values ``where`` gives (DuckDB over the Parquet)."""
    import duckdb

    if not files:
        return {"rows": 0, "files": []}
    paths = [str(Path(storage.root) / key) for key in files]
    with duckdb.connect() as connection:
        relation = connection.sql(
            f"SELECT * FROM read_parquet($files, hive_partitioning = true, union_by_name = true, "
            f"filename = '{FILE_COLUMN}')",
            params={"files": paths},
        )
        missing = sorted(set(where) - set(relation.columns))
        if missing:
            return {"rows": None, "note": f"no {', '.join(missing)} column: its rows are not located"}
        for column, values in where.items():
            wanted = [duckdb.ConstantExpression(value) for value in values]
            relation = relation.filter(duckdb.ColumnExpression(column).isin(*wanted))
        if not with_rows:  # counted where the rows lie: a participant may have 100,000s of intraday rows
            counted = relation.aggregate(f"count(*), list(DISTINCT {FILE_COLUMN})").fetchone()
            count, holding = counted if counted is not None else (0, [])
            return {"rows": count, "files": sorted(holding or [])}
        columns, rows = relation.columns, relation.fetchall()
    return {
        "rows": len(rows),
        "files": sorted({row[columns.index(FILE_COLUMN)] for row in rows}),
        "row_values": [
            {c: None if v is None else str(v) for c, v in zip(columns, row, strict=True) if c != FILE_COLUMN}
            for row in rows
        ],
    }


def _table_files(table: PublishedTable, partitions: set[str] | None, dataset_partition_keys: list[str]) -> list[str]:
    """A table's Parquet files, only those of ``partitions`` where the table is partitioned like its dataset."""
    files = table.files_of("parquet")
    if partitions is not None and table.partition_keys == dataset_partition_keys:
        files = [f for f in files if file_partition(f, table.partition_keys) in partitions]
    return [f.key for f in files]


def locate_export_rows(
    storage: LocalStorage, participant: str | None, export: str | None, with_rows: bool = False
) -> dict:
    """A participant's and/or an export archive's current rows, as ``locate --participant/--export --json`` prints them."""
    profile = _output_profile(storage)
    archives = []
    for run_id, record in run_records(storage):
        if export is not None and _is_export(record["source"], export):
            archives.append(
                {
                    "run_id": run_id,
                    "source": record["source"],
                    "status": record["status"],
                    "reason": record.get("reason"),
                    "datasets": record.get("datasets") or {},
                    "files": _export_files(record["source"]),
                }
            )
    export_files = sorted({f for archive in archives for f in archive["files"] or []})
    if export is not None:
        datasets = sorted({d for archive in archives if archive["status"] == "processed" for d in archive["datasets"]})
    else:
        datasets = published_datasets(storage)
    published: dict[str, dict] = {}
    for dataset_id, manifest in _current_manifests(storage, datasets):
        if manifest is None:
            published[dataset_id] = {"version": None}
            continue
        version = manifest.version
        root = next(t for t in manifest.tables.values() if t.parent is None)
        partitions = None
        index = "every partition read: " + (
            "an export is not in the key index" if participant is None else "no key index on the participant"
        )
        if participant is not None and profile.dedup.key_for(dataset_id)[:1] == (PARTICIPANT_COLUMN,):
            indexed = _participant_partitions(storage, dataset_id, version, participant)
            if indexed is not None:
                partitions, known = indexed
                index = f"key index: {len(partitions)} of {known} partitions hold the participant's rows"
        if partitions is not None and not partitions:
            continue  # the index says the version holds no row of the participant
        where: dict[str, list[str]] = {PARTICIPANT_COLUMN: [participant]} if participant is not None else {}
        tables = {}
        for name, table in manifest.tables.items():
            files = _table_files(table, partitions, root.partition_keys)
            table_where = dict(where)
            if export is not None:
                if table.parent is not None:
                    continue  # child rows hold no sourcefile: their root rows are located
                table_where[SOURCE_FILE_COLUMN] = export_files
            tables[name] = _select_rows(storage, files, table_where, with_rows)
        found = tables.get(root.name, {}).get("rows")
        if participant is not None and found == 0:
            continue
        published[dataset_id] = {"version": version, "index": index, "tables": tables}
        if export is not None and participant is None:
            ingested = sum(a["datasets"].get(dataset_id, 0) for a in archives if a["status"] == "processed")
            published[dataset_id]["dedup"] = (
                f"{found} of the {ingested} rows ingested from it are current "
                "(the others were superseded or deleted by later exports)"
            )
    return {
        "participant": participant,
        "export": export,
        "archives": archives,
        "published": published,
        "exports": EXPORTS_NOT_RECORDED,
    }


def _print_export_rows(args, found: dict) -> int:
    if args.json:
        print(json.dumps(found, indent=2, default=str))
        return 0
    asked = " and ".join(f"{what} {found[what]}" for what in ("participant", "export") if found[what] is not None)
    if found["export"] is not None and not found["archives"]:
        print(f"{asked}: no committed run read an archive of this name")
        return 1
    if not found["published"] and not found["archives"]:
        print(f"{asked}: no current version holds a row of it")
        return 1
    print(f"{asked}: {len(found['published'])} datasets")
    for archive in found["archives"]:
        reason = f" ({archive['reason']})" if archive["reason"] else ""
        rows = ", ".join(f"{d} {n} rows" for d, n in archive["datasets"].items()) or "no rows"
        print(f"  run {archive['run_id']}: {archive['status']}{reason}: {archive['source']}")
        print(f"    ingested {rows}" + ("" if archive["files"] is not None else "; the archive is not readable here"))
    for dataset_id, entry in found["published"].items():
        if not entry["version"]:
            print(f"  {dataset_id}: never published")
            continue
        print(f"  {dataset_id}: current version {entry['version']} ({entry['index']})")
        if "dedup" in entry:
            print(f"    {entry['dedup']}")
        _print_tables(entry["tables"])
    print(f"  {found['exports']}")
    return 0


def command_locate(args) -> int:
    storage = open_output(args.output)
    if args.participant or args.export:
        if args.record_id:
            raise UsageError("give a RECORD_ID, or --participant and/or --export (recover outputs), not both")
        return _print_export_rows(args, locate_export_rows(storage, args.participant, args.export, args.rows))
    if not args.record_id:
        raise UsageError("give a RECORD_ID, or --participant ID and/or --export NAME (recover outputs)")
    found = locate_record(storage, args.record_id, with_rows=args.rows)
    if args.json:
        print(json.dumps(found, indent=2, default=str))
        return 0
    if not found["archives"]:
        record = RootRecord.read(Path(args.output))
        hint = ""
        if record is not None and load_profile(record.profile).kind == "ndjson-export":
            hint = f" (a {record.profile_name} output has no record ids: locate --participant ID or --export NAME)"
        print(f"{args.record_id}: no committed run read an archive of this record{hint}")
        return 1
    print(f"record {args.record_id}: {len(found['archives'])} archives")
    for archive in found["archives"]:
        reason = f" ({archive['reason']})" if archive["reason"] else ""
        rows = ", ".join(f"{d} {n} rows" for d, n in archive["datasets"].items()) or "no rows"
        print(f"  run {archive['run_id']}: {archive['status']}{reason}: {archive['source']}")
        print(f"    {rows}; exportedOn {archive['exportedon'] or 'not known'}; {archive['dedup']}")
    print(f"  ledger: {len(found['ledger'])} entries" + "".join(f"\n    {e['source']}" for e in found["ledger"]))
    for dataset_id, entry in found["published"].items():
        if not entry["version"]:
            print(f"  {dataset_id}: never published")
            continue
        print(f"  {dataset_id}: current version {entry['version']}")
        _print_tables(entry["tables"])
    print(f"  {found['exports']}")
    return 0


def _print_tables(tables: dict[str, dict]) -> None:
    """Each table's rows of what was located: count (and ids), files, and the rows when asked."""
    for table, where in tables.items():
        if where["rows"] is None:
            print(f"    {table}: {where['note']}")
            continue
        ids = f" ids {', '.join(where['ids'])}" if where.get("ids") else ""
        print(f"    {table}: {where['rows']} rows{ids}")
        for file in where["files"]:
            print(f"      {file}")
        for row in where.get("row_values", []):
            print(f"      {json.dumps(row)}")


def add_locate_commands(commands) -> None:
    locate = commands.add_parser("locate", help="where one record went: archives, runs, dedup, published rows")
    locate.add_argument("record_id", nargs="?", help="a Bridge upload's record id")
    locate.add_argument("--participant", metavar="ID", help="an export's participant (ParticipantIdentifier)")
    locate.add_argument("--export", metavar="NAME", help="an export archive, by its file name (with or without .zip)")
    locate.add_argument("--output", required=True, help="pipeline root folder")
    locate.add_argument("--rows", action="store_true", help="also print its rows from every table")
    locate.add_argument("--json", action="store_true", help="print JSON")
    locate.set_defaults(handler=command_locate)
