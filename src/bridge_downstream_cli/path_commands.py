"""``bridge-downstream path TABLE``: the files of a table's current version.

A reader without a catalog (Spark, pandas, pyarrow, DuckDB) reads these files,
never the dataset's folder, which holds every kept version
(docs/publish.md, "Reading the current version without a catalog").
Formats: ``list`` (one path a line), ``json`` (the table, its version,
partition keys and files with their partition values), ``spark`` (a Python
line reading them with Spark), ``duckdb`` (a ``read_parquet`` SQL expression).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.publish.manifest import PublishedTable, PublishManifest, read_current_manifests
from bridge_downstream_cli.errors import UsageError

PATH_FORMATS = ("list", "json", "spark", "duckdb")


def current_table(storage: LocalStorage, name: str) -> tuple[PublishManifest, PublishedTable]:
    """The current manifest holding table ``name`` (case aside, as the catalogs name it)."""
    for manifest in read_current_manifests(storage):
        for table in manifest.tables.values():
            if table.name.lower() == name.lower():
                return manifest, table
    raise UsageError(f'no current table {name!r}: `bridge-downstream query "SHOW TABLES"` lists them')


def table_paths(storage: LocalStorage, table: PublishedTable) -> list[str]:
    """Absolute paths of the table's current Parquet files."""
    return [str(storage.path(f.key)) for f in table.files_of("parquet")]


def _table_folder(storage: LocalStorage, key: str, table: PublishedTable) -> str:
    """The table folder of the version a file lies in (partition folders below it)."""
    marker = "/parquet/" + layout.key_segment(table.name) + "/"
    return str(storage.path(key[: key.index(marker) + len(marker) - 1]))


def _quoted(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def render(storage: LocalStorage, manifest: PublishManifest, table: PublishedTable, fmt: str) -> str:
    paths = table_paths(storage, table)
    base = str(storage.path(table.location(manifest.version, "parquet")))
    if fmt == "list":
        return "".join(path + "\n" for path in paths)
    if fmt == "json":
        files = [
            {"path": path, "base_path": _table_folder(storage, f.key, table), "partition": f.partition, "rows": f.rows}
            for path, f in zip(paths, table.files_of("parquet"), strict=True)
        ]
        document = {
            "table": table.name,
            "dataset": manifest.dataset_id,
            "version": manifest.version,
            "base_path": base,
            "partition_keys": table.partition_keys,
            "files": files,
        }
        return json.dumps(document, indent=1) + "\n"
    if fmt == "spark":
        # Files of unchanged partitions may lie in an older version's folder: one
        # read per folder (basePath: its partition folders become columns), united.
        groups: dict[str, list[str]] = {}
        for path, file in zip(paths, table.files_of("parquet"), strict=True):
            groups.setdefault(_table_folder(storage, file.key, table), []).append(path)
        reads = ", ".join(f"spark.read.option('basePath', {b!r}).parquet(*{ps!r})" for b, ps in groups.items())
        return f"__import__('functools').reduce(lambda a, b: a.unionByName(b, allowMissingColumns=True), [{reads}])\n"
    if fmt == "duckdb":
        typed = ", ".join(f"{_quoted(k)}: INTEGER" for k in table.partition_keys if layout.partition_type(k) == "int")
        hive_types = f", hive_types = {{{typed}}}" if typed else ""
        listed = ", ".join(_quoted(path) for path in paths)
        return (
            f"read_parquet([{listed}], hive_partitioning = true, hive_types_autocast = false"
            f"{hive_types}, union_by_name = true)\n"
        )
    raise UsageError(f"unknown format {fmt!r}: one of {', '.join(PATH_FORMATS)}")


def command_path(args: argparse.Namespace) -> int:
    output = Path(args.output)
    if not (output / layout.PUBLISHED_PREFIX).is_dir():
        raise UsageError(f"{output} holds no published datasets: run `bridge-downstream run` or `publish` first")
    storage = LocalStorage(output)
    manifest, table = current_table(storage, args.table)
    text = render(storage, manifest, table, args.format)
    if args.to:
        Path(args.to).write_text(text)
    else:
        print(text, end="")
    return 0


def add_path_commands(commands) -> None:
    """Register ``path``."""
    path = commands.add_parser("path", help="the files of a table's current version, for readers without a catalog")
    path.add_argument("table", help='a published table (as `query "SHOW TABLES"` names it)')
    path.add_argument("--output", default=".", help="pipeline root folder (default: the current folder)")
    path.add_argument("--format", choices=PATH_FORMATS, default="list", help="how to print them (default: list)")
    path.add_argument("--to", help="write them to this file instead of printing them")
    path.set_defaults(handler=command_path)
