"""Fabricated published versions (real Parquet and CSV files and a
manifest written through the dataclasses), as the publish step writes them.
"""

from __future__ import annotations

import hashlib
import io
import json

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from bridge_downstream.common import layout
from bridge_downstream.common.storage import Storage, join_key
from bridge_downstream.publish.manifest import PublishedFile, PublishedTable, PublishManifest


def _digests(data: bytes) -> tuple[str, str]:
    return hashlib.md5(data, usedforsecurity=False).hexdigest(), hashlib.sha256(data).hexdigest()


def table_bytes(rows: list[dict]) -> tuple[bytes, bytes]:
    table = pa.Table.from_pylist(rows)
    parquet = io.BytesIO()
    pq.write_table(table, parquet)
    csv = io.BytesIO()
    pacsv.write_csv(table, csv)
    return parquet.getvalue(), csv.getvalue()


def publish(
    storage: Storage,
    dataset_id: str,
    version: str,
    tables: dict[str, dict[tuple[tuple[str, str], ...], list[dict]]],
    *,
    run_id: str | None = None,
    registry_version: str = "2024.1",
    make_current: bool = True,
) -> PublishManifest:
    """Write ``tables`` -- {table: {partition tuple: rows}} -- as one
    published version of ``dataset_id`` and return its manifest."""
    manifest = PublishManifest(
        dataset_id=dataset_id,
        version=version,
        run_id=run_id or f"run-{version}",
        created_at="2026-11-23T12:00:00Z",
        registry_version=registry_version,
    )
    for table_name, partitions in tables.items():
        published = PublishedTable(
            name=table_name, dataset_id=dataset_id, parent=None, columns=[], partition_keys=[], rows=0
        )
        for partition, rows in partitions.items():
            partition_dict = dict(partition)
            published.partition_keys = list(partition_dict)
            parquet, csv = table_bytes(rows)
            if not published.columns:
                published.columns = [{"name": k, "type": "string"} for k in rows[0]]
            for fmt, data, name in (("parquet", parquet, "part-00000.parquet"), ("csv", csv, "part-00000.csv")):
                key = join_key(
                    layout.table_prefix(dataset_id, version, fmt, table_name),
                    layout.partition_path(partition_dict),
                    name,
                )
                storage.write_bytes(key, data)
                md5, sha256 = _digests(data)
                published.files.append(
                    PublishedFile(
                        key=key,
                        format=fmt,
                        size=len(data),
                        md5=md5,
                        sha256=sha256,
                        rows=len(rows),
                        partition=partition_dict,
                    )
                )
            published.rows += len(rows)
        manifest.tables[table_name] = published
    storage.write_bytes(layout.manifest_key(dataset_id, version), manifest.to_json().encode())
    if make_current:
        storage.write_bytes(layout.current_pointer_key(dataset_id), json.dumps({"version": version}).encode())
    return manifest


def sample_tables(n: int = 2, extra: str = "") -> dict:
    """Two tables; the first partitioned by assessment and day."""
    return {
        "ArchiveMetadata_v1": {
            (("assessmentid", "spelling"), ("year", "2022"), ("month", "02")): [
                {"recordid": f"r{i}{extra}", "value": i} for i in range(n)
            ],
            (("assessmentid", "vocab"), ("year", "2022"), ("month", "03")): [
                {"recordid": f"v{i}{extra}", "value": i} for i in range(n + 1)
            ],
        },
        "ArchiveMetadata_v1_files": {
            (): [{"recordid": f"f{i}{extra}", "filename": "taskData.json"} for i in range(n)],
        },
    }
