"""The Glue Data Catalog as a publish catalog: one Parquet table per output
table, its partitions registered, so Athena can query right after a run.

Re-publishing updates a table in place (location, columns) and replaces its
partitions, so the catalog always describes the current version. A
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
            "StorageDescriptor": self._storage_descriptor(location, table.columns),
        }
        try:
            self.client.create_table(DatabaseName=self.database, TableInput=table_input)
        except self.client.exceptions.AlreadyExistsException:
            self.client.update_table(DatabaseName=self.database, TableInput=table_input)
        self._replace_partitions(name, table, location)

    def _replace_partitions(self, name: str, table: PublishedTable, location: str) -> None:
        existing: list[dict[str, Any]] = []
        paginator = self.client.get_paginator("get_partitions")
        for page in paginator.paginate(DatabaseName=self.database, TableName=name):
            existing.extend({"Values": p["Values"]} for p in page.get("Partitions", []))
        for chunk in _chunks(existing, 25):
            self.client.batch_delete_partition(DatabaseName=self.database, TableName=name, PartitionsToDelete=chunk)
        if not table.partition_keys:
            return
        values = sorted(
            {tuple(f.partition.get(k, "") for k in table.partition_keys) for f in table.files_of("parquet")}
        )
        inputs = []
        for partition_values in values:
            # Values as published (unescaped); the location is the folder, named as Spark escapes it.
            path = layout.partition_path(dict(zip(table.partition_keys, partition_values)))
            inputs.append(
                {
                    "Values": [_catalog_value(k, v) for k, v in zip(table.partition_keys, partition_values)],
                    "StorageDescriptor": self._storage_descriptor(location + path + "/", table.columns),
                }
            )
        for chunk in _chunks(inputs, 100):
            response = self.client.batch_create_partition(
                DatabaseName=self.database, TableName=name, PartitionInputList=chunk
            )
            if response.get("Errors"):
                raise RuntimeError(f"Glue refused partitions of {name}: {response['Errors'][:3]}")


def _catalog_value(key: str, value: str) -> str:
    """A partition value as the catalog holds it: an ``int`` key's without the folder's zero padding."""
    if layout.partition_type(key) == "int" and value.isdigit():
        return str(int(value))
    return value
