"""Where everything lives under a pipeline root.

A *pipeline root* is ``s3://<bucket>/<namespace>/<app>/<study>/`` in AWS and
the ``--output`` directory locally; the keys below it are the same in both.
This module is the one place that spells them.

    json/dataset=<DatasetId>/<partitions>/part-<run>-<task>.ndjson   ingest output
    invalid/<recordid>-<identity>.json                               invalid sink (local)
    ledger/ingested/<run id>.jsonl                                   ingest bookmarks (archive identities)
    reports/<run id>.json                                            run reports
    reports/<run id>.records.jsonl, .parts.jsonl                     every archive / part file of a run
    reports/.spool/<run id>/...                                      per-task outcomes while a run lasts
    published/<DatasetId>/versions/<version>/parquet/<table>/<partitions>/...   one publish
    published/<DatasetId>/versions/<version>/csv/<table>/<partitions>/...
    published/<DatasetId>/versions/<version>/manifest.json            written last
    published/<DatasetId>/CURRENT                                     the current version

Each dataset publishes on its own (Glue runs one JSON-to-Parquet job per
dataset, in parallel), so versions and the CURRENT pointer are per dataset.
    catalog.duckdb                                                   local SQL views (local only)

Partition folders are Hive style and zero-padded
(``assessmentid=spelling/year=2022/month=02/day=15``) so that a lexical
listing is a chronological one.
"""

from __future__ import annotations

from collections.abc import Mapping

from bridge_downstream.common.storage import join_key

JSON_PREFIX = "json"
INVALID_PREFIX = "invalid"
LEDGER_PREFIX = "ledger/ingested"
REPORTS_PREFIX = "reports"
PUBLISHED_PREFIX = "published"
MANIFEST_NAME = "manifest.json"
LOCAL_CATALOG_NAME = "catalog.duckdb"

PARTITION_WIDTHS = {"year": 4, "month": 2, "day": 2}


def partition_value_text(name: str, value: object) -> str:
    width = PARTITION_WIDTHS.get(name)
    if width is not None and isinstance(value, int):
        return str(value).zfill(width)
    return str(value)


def partition_path(partition: Mapping[str, object]) -> str:
    return "/".join(f"{name}={partition_value_text(name, value)}" for name, value in partition.items())


def parse_partition_path(path: str) -> dict[str, str]:
    values = {}
    for segment in path.strip("/").split("/"):
        if "=" in segment:
            name, value = segment.split("=", 1)
            values[name] = value
    return values


def dataset_prefix(dataset_id: str) -> str:
    return join_key(JSON_PREFIX, f"dataset={dataset_id}")


def json_part_key(dataset_id: str, partition: Mapping[str, object], run_id: str, task: int) -> str:
    # Never starts with "_" or ".": Spark and Athena skip such files.
    return join_key(dataset_prefix(dataset_id), partition_path(partition), f"part-{run_id}-{task:05d}.ndjson")


def invalid_key(record_id: str, identity: str) -> str:
    return join_key(INVALID_PREFIX, f"{record_id}-{identity[:16]}.json")


def ledger_key(identity: str) -> str:
    return join_key(LEDGER_PREFIX, f"{identity}.json")


def report_key(run_id: str) -> str:
    return join_key(REPORTS_PREFIX, f"{run_id}.json")


def published_dataset_prefix(dataset_id: str) -> str:
    return join_key(PUBLISHED_PREFIX, dataset_id)


def current_pointer_key(dataset_id: str) -> str:
    return join_key(published_dataset_prefix(dataset_id), "CURRENT")


def version_prefix(dataset_id: str, version: str) -> str:
    return join_key(published_dataset_prefix(dataset_id), "versions", version)


def table_prefix(dataset_id: str, version: str, fmt: str, table: str) -> str:
    return join_key(version_prefix(dataset_id, version), fmt, table)


def manifest_key(dataset_id: str, version: str) -> str:
    return join_key(version_prefix(dataset_id, version), MANIFEST_NAME)
