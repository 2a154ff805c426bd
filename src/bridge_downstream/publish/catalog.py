"""Catalogs that make a publish queryable the moment it is current.

``Catalog.register(manifest)`` creates or updates one table per output table
of the dataset. The Glue Data Catalog implementation (for Athena) is in
``bridge_downstream_adapters.glue_catalog``; locally a DuckDB database file
beside the outputs holds a view per table.

The DuckDB views name their Parquet files by absolute path, so that
``duckdb /path/to/out/catalog.duckdb`` works from any working directory
(DuckDB resolves a relative path against the process's working directory,
not the database's folder, and ``file_search_path`` is a per-connection
setting no database file can carry). A copied or moved output is therefore
caught rather than read from its old place: every view checks that it is
queried in the database file it was built in, and fails, naming the fix
(``bridge-downstream catalog rebuild``), where not. ``bridge-downstream
query`` rebuilds such views itself (:meth:`DuckDBCatalog.rebuild_if_moved`).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Protocol

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.publish.manifest import (
    PublishedFile,
    PublishedTable,
    PublishManifest,
    read_current_manifests,
)

DUCKDB_TYPES = {
    "string": "VARCHAR",
    "bigint": "BIGINT",
    "decimal(38,0)": "DECIMAL(38,0)",
    "double": "DOUBLE",
    "boolean": "BOOLEAN",
    "int": "INTEGER",
    "timestamp": "TIMESTAMPTZ",  # Parquet's TIMESTAMP(MICROS, UTC) reads as this
}


def duckdb_type(column_type: str) -> str:
    """The DuckDB type of a manifest column's Athena/Hive type, the nested
    table's ``struct<..>``, ``array<..>`` and ``map<string,..>`` included
    (their field names are safe names: relationalize/nested.py)."""
    parsed, rest = _duckdb_type(column_type.replace(" ", ""))
    if rest:
        raise ValueError(f"not a column type: {column_type!r}")
    return parsed


def _duckdb_type(text: str) -> tuple[str, str]:
    """The DuckDB type of the type at the start of ``text``, and the text after it."""
    for head, close in (("struct<", ">"), ("array<", ">"), ("map<", ">")):
        if not text.startswith(head):
            continue
        rest, parts = text[len(head) :], []
        while True:
            name = ""
            if head == "struct<":
                name, _, rest = rest.partition(":")
            inner, rest = _duckdb_type(rest)
            parts.append((name, inner))
            separator, rest = rest[:1], rest[1:]
            if separator == close:
                break
            if separator != ",":
                raise ValueError(f"not a column type: {text!r}")
        if head == "array<":
            return f"{parts[0][1]}[]", rest
        if head == "map<":
            return f"MAP({parts[0][1]}, {parts[1][1]})", rest
        return "STRUCT(" + ", ".join(f"{_quote(n)} {t}" for n, t in parts) + ")", rest
    scalar = _SCALAR_TYPE.match(text)
    if scalar is None:
        raise ValueError(f"not a column type: {text!r}")
    return DUCKDB_TYPES.get(scalar.group(), "VARCHAR"), text[scalar.end() :]


_SCALAR_TYPE = re.compile(r"decimal\(\d+,\d+\)|[a-z_]+")


# The comment that marks a view as this catalog's (an analyst's own views in the file are left alone).
VIEW_COMMENT_KEY = "bridge_downstream.catalog"


class Catalog(Protocol):
    def register(self, manifest: PublishManifest) -> None: ...


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class DuckDBCatalog:
    """A DuckDB file with one view per current table (local runs)."""

    def __init__(self, storage: LocalStorage, path: str | os.PathLike | None = None):
        self.storage = storage
        # Resolved, as DuckDB names an open database file (duckdb_databases().path): the views compare the two.
        self.path = (Path(path) if path else storage.root / layout.LOCAL_CATALOG_NAME).resolve()

    def _moved_guard(self) -> str:
        """A condition true only in the database file the view was built in;
        elsewhere (a copy, a moved output) an error naming the fix."""
        message = (
            f"this catalog was built at {self.path} and has been copied or moved since: "
            "run `bridge-downstream catalog rebuild --output <its folder>`"
        )
        return (
            f"CASE WHEN EXISTS (SELECT 1 FROM duckdb_databases() WHERE path = {_literal(str(self.path))}) "
            f"THEN true ELSE error({_literal(message)})::BOOLEAN END"
        )

    @staticmethod
    def _typed_null(name: str, column_type: str) -> str:
        return f"CAST(NULL AS {duckdb_type(column_type)}) AS {_quote(name)}"

    def _read_sql(self, files: list[PublishedFile], partition_keys: list[str]) -> str:
        paths = ", ".join(_literal(str(self.storage.path(f.key))) for f in files)
        # Typed here, not guessed from the values (hive_types_autocast is off): the date parts are
        # integers, and a cohort or assessment id that looks like a number stays text.
        in_folders = {k for f in files for k in f.partition}  # DuckDB refuses a type for any other
        typed = ", ".join(
            f"{_literal(k)}: {DUCKDB_TYPES[layout.partition_type(k)]}"
            for k in partition_keys
            if k in in_folders and layout.partition_type(k) != "string"
        )
        hive_types = f"hive_types = {{{typed}}}, " if typed else ""
        # DuckDB's hive_partitioning unescapes the folder names (cohort=a%2Fb is "a/b"), as
        # layout.parse_partition_path does for the manifest: a view shows the values published.
        return (
            f"read_parquet([{paths}], hive_partitioning = true, hive_types_autocast = false, "
            f"{hive_types}union_by_name = true)"
        )

    def _view_sql(self, connection, table: PublishedTable) -> str:
        files = table.files_of("parquet")
        if not files:
            select = ", ".join(
                [self._typed_null(c["name"], c["type"]) for c in table.columns]
                + [self._typed_null(k, layout.partition_type(k)) for k in table.partition_keys]
            )
            return f"CREATE OR REPLACE VIEW {_quote(table.name)} AS SELECT {select} WHERE false"
        read = self._read_sql(files, table.partition_keys)
        missing: list[str] = []
        if not set(table.partition_keys) <= {k for f in files for k in f.partition}:
            # An empty table is one file with no partition folders: its partition columns, typed
            # NULLs, keep the view's columns those of the table with rows.
            present = {row[0] for row in connection.execute(f"DESCRIBE SELECT * FROM {read}").fetchall()}
            missing = [k for k in table.partition_keys if k not in present]
        added = "".join(", " + self._typed_null(k, layout.partition_type(k)) for k in missing)
        return f"CREATE OR REPLACE VIEW {_quote(table.name)} AS SELECT *{added} FROM {read} WHERE {self._moved_guard()}"

    def _comment_sql(self, manifest: PublishManifest, table: PublishedTable) -> str:
        comment = json.dumps({VIEW_COMMENT_KEY: str(self.path), "dataset": manifest.dataset_id})
        return f"COMMENT ON VIEW {_quote(table.name)} IS {_literal(comment)}"

    def register(self, manifest: PublishManifest) -> None:
        import duckdb

        with duckdb.connect(str(self.path)) as connection:
            for table in manifest.tables.values():
                connection.execute(self._view_sql(connection, table))
                connection.execute(self._comment_sql(manifest, table))

    def rebuild(self) -> int:
        """Views for every dataset's current version (after a rollback, or in a
        copied or moved output); this catalog's views of tables no longer
        current are dropped. The number of views."""
        import duckdb

        manifests = list(read_current_manifests(self.storage))
        current = {table.name for manifest in manifests for table in manifest.tables.values()}
        with duckdb.connect(str(self.path)) as connection:
            for view in set(self._built_views(connection)) - current:
                connection.execute(f"DROP VIEW {_quote(view)}")
        for manifest in manifests:
            self.register(manifest)
        return len(current)

    def built_at(self) -> set[str]:
        """The catalog files this catalog's views were built in (one, unless copied or moved since)."""
        import duckdb

        if not self.path.is_file():
            return set()
        with duckdb.connect(str(self.path), read_only=True) as connection:
            return set(self._built_views(connection).values())

    def rebuild_if_moved(self) -> bool:
        """Rebuild the views if they were built in another place; whether it did."""
        places = self.built_at()
        if not places or places == {str(self.path)}:
            return False
        self.rebuild()
        return True

    @staticmethod
    def _built_views(connection) -> dict[str, str]:
        """This catalog's views -> the catalog file each was built in."""
        views = {}
        for name, comment in connection.execute(
            "SELECT view_name, comment FROM duckdb_views() WHERE NOT internal AND comment IS NOT NULL"
        ).fetchall():
            try:
                place = json.loads(comment).get(VIEW_COMMENT_KEY)
            except (ValueError, AttributeError):
                continue  # an analyst's own comment
            if isinstance(place, str):
                views[name] = place
        return views

    def counts(self) -> dict[str, int]:
        import duckdb

        with duckdb.connect(str(self.path), read_only=True) as connection:
            views = [
                row[0]
                for row in connection.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
            ]
            counts = {}
            for view in sorted(views):
                row = connection.execute(f"SELECT count(*) FROM {_quote(view)}").fetchone()
                counts[view] = row[0] if row is not None else 0
            return counts
