"""The Glue Data Catalog as a publish catalog: one Parquet table per output
table, its partitions registered, so Athena can query right after a run.

Re-publishing updates a table in place: its columns only grow, its
partitions are created, moved in place and then pruned, so a query never
sees a partition missing or half-registered (:meth:`GlueCatalog._move_partitions`)
and the catalog describes the current version once the publish is done. A
partition's values are the published values (``a/b``); its location is the
folder that holds them (``assessmentid=a%2Fb/``, :mod:`layout`). The date
partitions are ``int`` keys (``layout.partition_type``) registered with the
integer's own digits (``3``), their location the zero-padded folder
(``month=03/``): no reader of the catalog has to parse ``03`` as an integer.

Column names are the published names lower-cased (Glue's rule; the plan
keeps them unique case-insensitively), and a column's comment is its JSON
Schema description, cut to Glue's limit.
"""

from __future__ import annotations

from typing import Any

import boto3

from bridge_downstream.common import layout
from bridge_downstream.common.storage import Storage
from bridge_downstream.publish.manifest import PublishedTable, PublishManifest

PARQUET_SERDE = {
    "SerializationLibrary": "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe",
    "Parameters": {"serialization.format": "1"},
}
PARQUET_INPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
PARQUET_OUTPUT = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"
MAX_COMMENT_BYTES = 255  # Glue's limit on a column's Comment (UTF-8), a single line
ELLIPSIS = "…"


def _chunks(items: list, size: int):
    for start in range(0, len(items), size):
        yield items[start : start + size]


def glue_column(column: dict) -> dict:
    """A Glue column of a published column: its name lower-cased, its description as its comment."""
    glue = {"Name": column["name"].lower(), "Type": column["type"]}
    if column.get("comment"):
        glue["Comment"] = glue_comment(column["comment"])
    return glue


def glue_comment(text: str) -> str:
    """``text`` on one line (Glue refuses line breaks), cut to Glue's limit with an ellipsis."""
    line = " ".join(text.split())
    encoded = line.encode("utf-8")
    if len(encoded) <= MAX_COMMENT_BYTES:
        return line
    room = MAX_COMMENT_BYTES - len(ELLIPSIS.encode("utf-8"))
    return encoded[:room].decode("utf-8", errors="ignore").rstrip() + ELLIPSIS


class GlueCatalog:
    def __init__(self, database: str, published: Storage, client=None, table_prefix: str = ""):
        self.database = database
        self.published = published
        self.client = client or boto3.client("glue")
        self.table_prefix = table_prefix

    def table_name(self, table: PublishedTable) -> str:
        return (self.table_prefix + table.name).lower()

    def _storage_descriptor(self, location: str, columns: list[dict]) -> dict:
        return {
            "Columns": [glue_column(c) for c in columns],
            "Location": location,
            "InputFormat": PARQUET_INPUT,
            "OutputFormat": PARQUET_OUTPUT,
            "Compressed": True,
            "SerdeInfo": PARQUET_SERDE,
        }

    def register(self, manifest: PublishManifest) -> None:
        for table in manifest.tables.values():
            self._register_table(manifest, table)

    def _register_table(self, manifest: PublishManifest, table: PublishedTable) -> None:
        name = self.table_name(table)
        location = self.published.uri(table.location(manifest.version, "parquet")) + "/"
        existing = self._existing_table(name)
        columns = _grown_columns(existing, table.columns)
        table_input = {
            "Name": name,
            "TableType": "EXTERNAL_TABLE",
            "Parameters": {
                "classification": "parquet",
                "compressionType": "snappy",
                "bridge_downstream.dataset_id": manifest.dataset_id,
                "bridge_downstream.version": manifest.version,
                "bridge_downstream.run_id": manifest.run_id,
                "bridge_downstream.registry_version": manifest.registry_version,
            },
            "PartitionKeys": [{"Name": k.lower(), "Type": layout.partition_type(k)} for k in table.partition_keys],
            "StorageDescriptor": self._storage_descriptor(location, columns),
        }
        if existing is None:
            self.client.create_table(DatabaseName=self.database, TableInput=table_input)
            self._move_partitions(name, table, columns)
            return
        # The partitions first: until the table names the new version, a
        # query plans with the old columns, which the new ones only extend.
        self._move_partitions(name, table, columns, before_stale_removed=table_input)

    def _existing_table(self, name: str) -> dict | None:
        try:
            return self.client.get_table(DatabaseName=self.database, Name=name)["Table"]
        except self.client.exceptions.EntityNotFoundException:
            return None

    def _move_partitions(
        self, name: str, table: PublishedTable, columns: list[dict], before_stale_removed=None
    ) -> None:
        """Point the table's partitions at the new version without a moment
        in which one is missing: new partitions are created, those that stay
        are updated in place to their new folders, the table itself is
        updated (``before_stale_removed``), and only then are the partitions
        the new version no longer has deleted. Every partition a query sees
        is whole, its old files or its new ones (docs/publish.md, "Catalogs")."""
        existing = self._existing_partitions(name)
        wanted = self._partition_inputs(table, columns)
        new = [p for values, p in wanted.items() if values not in existing]
        moved = [
            {"PartitionValueList": list(values), "PartitionInput": p}
            for values, p in wanted.items()
            if values in existing and existing[values] != p["StorageDescriptor"]["Location"]
        ]
        stale = [{"Values": list(values)} for values in existing if values not in wanted]
        for chunk in _chunks(new, 100):
            response = self.client.batch_create_partition(
                DatabaseName=self.database, TableName=name, PartitionInputList=chunk
            )
            if response.get("Errors"):
                raise RuntimeError(f"Glue refused partitions of {name}: {response['Errors'][:3]}")
        for chunk in _chunks(moved, 100):
            response = self.client.batch_update_partition(DatabaseName=self.database, TableName=name, Entries=chunk)
            if response.get("Errors"):
                raise RuntimeError(f"Glue refused partition updates of {name}: {response['Errors'][:3]}")
        if before_stale_removed is not None:
            self.client.update_table(DatabaseName=self.database, TableInput=before_stale_removed)
        for chunk in _chunks(stale, 25):
            self.client.batch_delete_partition(DatabaseName=self.database, TableName=name, PartitionsToDelete=chunk)

    def _existing_partitions(self, name: str) -> dict[tuple[str, ...], str]:
        """The table's partitions: values -> location."""
        existing: dict[tuple[str, ...], str] = {}
        paginator = self.client.get_paginator("get_partitions")
        for page in paginator.paginate(DatabaseName=self.database, TableName=name):
            for partition in page.get("Partitions", []):
                existing[tuple(partition["Values"])] = partition.get("StorageDescriptor", {}).get("Location", "")
        return existing

    def _partition_inputs(self, table: PublishedTable, columns: list[dict]) -> dict[tuple[str, ...], dict[str, Any]]:
        if not table.partition_keys:
            return {}
        # An incremental version carries unchanged partitions by reference:
        # each partition's folder is where its files lie, perhaps an older version's.
        folders = table.partition_folders("parquet")
        inputs = {}
        for partition_values in sorted(folders):
            # Values as published (unescaped); the location is the folder, named as Spark escapes it.
            catalog_values = tuple(_catalog_value(k, v) for k, v in zip(table.partition_keys, partition_values))
            inputs[catalog_values] = {
                "Values": list(catalog_values),
                "StorageDescriptor": self._storage_descriptor(
                    self.published.uri(folders[partition_values]) + "/", columns
                ),
            }
        return inputs


def _grown_columns(existing: dict | None, columns: list[dict]) -> list[dict]:
    """The published columns in the table's existing order, the new ones
    after them: a table's columns only grow, so a query written against it,
    or planned while a publish updates it, never loses a column (a column a
    version no longer holds reads as null: Parquet is read by name)."""
    if existing is None:
        return columns
    published = {c["name"].lower(): c for c in columns}
    kept = [
        published.get(
            c["Name"], {"name": c["Name"], "type": c["Type"]} | ({"comment": c["Comment"]} if c.get("Comment") else {})
        )
        for c in existing.get("StorageDescriptor", {}).get("Columns", [])
    ]
    known = {c["name"].lower() for c in kept}
    return kept + [c for c in columns if c["name"].lower() not in known]


def _catalog_value(key: str, value: str) -> str:
    """A partition value as the catalog holds it: an ``int`` key's without the folder's zero padding."""
    if layout.partition_type(key) == "int" and value.isdigit():
        return str(int(value))
    return value
