"""``locate RECORD_ID [--rows]``: where one record went. Its archives and
the runs that read them (outcome and reason), the ledger, the datasets and
rows it gave, the dedup decision, the current published version holding it
and its rows there. The run reports are the index: only the datasets they
name for the record are read, and only their current Parquet."""

from __future__ import annotations

import json
from pathlib import Path
from urllib.parse import unquote, urlparse

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.publish.manifest import current_version, read_manifest
from bridge_downstream_cli.run_history import ledger_lines, run_records
from bridge_downstream_cli.status_commands import open_output

RECORD_KEY = "recordid"
FILE_COLUMN = "_located_in_file"  # no published column has this name
EXPORTS_NOT_RECORDED = (
    "Synapse entities and deliveries: not recorded per record (the exports mirror the published files: "
    "the files listed above are the ones they carry)"
)


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
    for dataset_id in datasets:
        version = current_version(storage, dataset_id)
        if version is None:
            published[dataset_id] = {"version": None}
            continue
        manifest = read_manifest(storage, dataset_id, version)
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


def command_locate(args) -> int:
    storage = open_output(args.output)
    found = locate_record(storage, args.record_id, with_rows=args.rows)
    if args.json:
        print(json.dumps(found, indent=2, default=str))
        return 0
    if not found["archives"]:
        print(f"{args.record_id}: no committed run read an archive of this record")
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
        for table, where in entry["tables"].items():
            if where["rows"] is None:
                print(f"    {table}: {where['note']}")
                continue
            ids = f" ids {', '.join(where['ids'])}" if where.get("ids") else ""
            print(f"    {table}: {where['rows']} rows{ids}")
            for file in where["files"]:
                print(f"      {file}")
            for row in where.get("row_values", []):
                print(f"      {json.dumps(row)}")
    print(f"  {found['exports']}")
    return 0


def add_locate_commands(commands) -> None:
    locate = commands.add_parser("locate", help="where one record went: archives, runs, dedup, published rows")
    locate.add_argument("record_id")
    locate.add_argument("--output", required=True, help="pipeline root folder")
    locate.add_argument("--rows", action="store_true", help="also print its rows from every table")
    locate.add_argument("--json", action="store_true", help="print JSON")
    locate.set_defaults(handler=command_locate)
