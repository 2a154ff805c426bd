"""Catalogs that make a publish queryable the moment it is current.

``Catalog.register(manifest)`` creates or updates one table per output table
of the dataset. The Glue Data Catalog implementation (for Athena) is in
``bridge_downstream_adapters.glue_catalog``; locally a DuckDB database file
beside the outputs holds a view per table.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.publish.manifest import (
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
}


class Catalog(Protocol):
    def register(self, manifest: PublishManifest) -> None: ...


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class DuckDBCatalog:
    """A DuckDB file with one view per current table (local runs)."""

    def __init__(self, storage: LocalStorage, path: str | os.PathLike | None = None):
        self.storage = storage
        self.path = Path(path) if path else storage.root / layout.LOCAL_CATALOG_NAME

    def _view_sql(self, manifest: PublishManifest, table: PublishedTable) -> str:
        files = table.files_of("parquet")
        if not files:
            columns = ", ".join(
                f"CAST(NULL AS {DUCKDB_TYPES.get(c['type'], 'VARCHAR')}) AS {_quote(c['name'])}" for c in table.columns
            )
            partitions = ", ".join(f"CAST(NULL AS VARCHAR) AS {_quote(k)}" for k in table.partition_keys)
            select = ", ".join(x for x in (columns, partitions) if x)
            return f"CREATE OR REPLACE VIEW {_quote(table.name)} AS SELECT {select} WHERE false"
        paths = ", ".join("'" + str(self.storage.path(f.key)).replace("'", "''") + "'" for f in files)
        # DuckDB's hive_partitioning unescapes the folder names (cohort=a%2Fb is "a/b"), as
        # layout.parse_partition_path does for the manifest: a view shows the values published.
        return (
            f"CREATE OR REPLACE VIEW {_quote(table.name)} AS SELECT * FROM read_parquet([{paths}], "
            "hive_partitioning = true, hive_types_autocast = false, union_by_name = true)"
        )

    def register(self, manifest: PublishManifest) -> None:
        import duckdb

        with duckdb.connect(str(self.path)) as connection:
            for table in manifest.tables.values():
                connection.execute(self._view_sql(manifest, table))

    def rebuild(self) -> None:
        """Views for every dataset's current version (after a rollback)."""
        for manifest in read_current_manifests(self.storage):
            self.register(manifest)

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
