"""Backfill's AWS and Synapse side: list the raw archives an S3 prefix or a
Synapse file view holds, and submit archives to the ingest Glue workflow.

It is what the original BridgeDownstream's bootstrap trigger
(``src/scripts/bootstrap_trigger/bootstrap_trigger.py``) did: query a file
view (``--query`` with ``{source_table}``, optionally only the latest
``exportedOn`` per record id), take each file's bucket and key from its file
handle, and start one workflow run per batch of 100 with the batch as the
run's ``messages`` property, the message the ingest job reads
(``source_bucket``, ``source_key``, ``raw_folder_id``).
"""

from __future__ import annotations

import json
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

BATCH_SIZE = 100  # messages per workflow run, as the original
QUERY_RESULTS = 0x1


@dataclass(frozen=True)
class RawArchive:
    """One archive a listing found: where it is, and what the listing says of it."""

    source: str  # s3://bucket/key or file:///path
    bucket: str | None = None
    key: str | None = None
    recordid: str | None = None
    exported_on: str | None = None
    modified: datetime | None = None
    raw_folder_id: str | None = None

    def message(self) -> dict:
        return {"source_bucket": self.bucket, "source_key": self.key, "raw_folder_id": self.raw_folder_id}


def list_s3_archives(uri: str, client=None, suffixes: Sequence[str] = (".zip",)) -> list[RawArchive]:
    """The archives under an ``s3://bucket/prefix``, in key order."""
    import boto3

    from bridge_downstream_adapters.s3 import parse_s3_uri

    bucket, prefix = parse_s3_uri(uri)
    client = client or boto3.client("s3")
    found = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            if item["Key"].endswith(tuple(suffixes)):
                found.append(
                    RawArchive(f"s3://{bucket}/{item['Key']}", bucket, item["Key"], modified=item["LastModified"])
                )
    return found


def query_table(syn, sql: str) -> list[dict]:
    """Every row of a Synapse table or view query, as dicts. synapseclient's
    row set pages itself: the first page comes with the query, the next ones
    by the ``nextPageToken`` each page gives, until a page gives none."""
    with warnings.catch_warnings():
        # tableQuery is deprecated since synapseclient 4.9 for models.query, which
        # downloads one CSV and has no row-set paging: the row set is what pages.
        warnings.simplefilter("ignore", DeprecationWarning)
        results = syn.tableQuery(sql, resultsAs="rowset", partMask=QUERY_RESULTS)
        names = [header["name"] for header in results.headers]
        return [dict(zip(names, row["values"], strict=True)) for row in results]


def export_millis(value: object) -> int | None:
    """``exportedOn`` as epoch milliseconds, whichever type the view's column
    has: the client gives a DATE column as a datetime, an INTEGER as an int,
    a STRING as its text."""
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        aware = value if value.tzinfo else value.replace(tzinfo=UTC)  # the client's DATE is UTC
        return round(aware.timestamp() * 1000)
    return int(value)  # type: ignore[call-overload]


def latest_exports(rows: Iterable[dict], key: str = "recordId") -> list[dict]:
    """One row per record id, the one with the latest ``exportedOn`` (the
    original's ``--drop-duplicates``); rows without a record id stay."""
    latest: dict[str, dict] = {}
    kept: list[dict] = []
    for row in rows:
        record = row.get(key)
        if record is None:
            kept.append(row)
        elif record not in latest or (export_millis(row.get("exportedOn")) or 0) >= (
            export_millis(latest[record].get("exportedOn")) or 0
        ):
            latest[record] = row
    return kept + list(latest.values())


def list_file_view(
    syn, view_id: str, raw_folder_id: str | None, query: str | None = None, drop_duplicates: bool = True
) -> list[RawArchive]:
    """The files a Synapse file view lists (``query`` filters it: ``{source_table}`` is the view)."""
    sql = query.format(source_table=view_id) if query else f"SELECT * FROM {view_id}"
    rows = query_table(syn, sql)
    if drop_duplicates:
        rows = latest_exports(rows)
    archives = []
    for row in rows:
        handle = syn.restGET(f"/entity/{row['id']}/filehandles")["list"][0]
        bucket, key = handle["bucketName"], handle["key"]
        millis = export_millis(row.get("exportedOn"))
        archives.append(
            RawArchive(
                f"s3://{bucket}/{key}",
                bucket,
                key,
                recordid=row.get("recordId"),
                exported_on=None if millis is None else str(millis),
                raw_folder_id=raw_folder_id,
            )
        )
    return archives


@dataclass
class WorkflowSubmitter:
    """Start workflow runs, one per batch, never more running at once than
    the workflow allows (its ``MaxConcurrentRuns``): when no slot is free it
    waits ``poll_seconds`` between looks, up to ``timeout_seconds``."""

    glue: object
    workflow: str
    batch_size: int = BATCH_SIZE
    poll_seconds: float = 30.0
    timeout_seconds: float = 6 * 3600.0
    sleep: Callable[[float], None] = time.sleep
    started: list[str] = field(default_factory=list)

    def max_concurrent(self) -> int | None:
        workflow = self.glue.get_workflow(Name=self.workflow)["Workflow"]  # type: ignore[attr-defined]
        return workflow.get("MaxConcurrentRuns")

    def running(self) -> int:
        runs = self.glue.get_workflow_runs(Name=self.workflow, MaxResults=1000).get("Runs", [])  # type: ignore[attr-defined]
        return sum(1 for run in runs if run.get("Status") == "RUNNING")

    def _wait_for_slot(self, limit: int | None) -> None:
        waited = 0.0
        while limit is not None and self.running() >= limit:
            if waited >= self.timeout_seconds:
                raise TimeoutError(f"{self.workflow}: no free run slot after {waited:.0f} s ({limit} allowed at once)")
            self.sleep(self.poll_seconds)
            waited += self.poll_seconds

    def submit(self, archives: Sequence[RawArchive]) -> list[str]:
        """Submit the archives in batches; the run ids started."""
        limit = self.max_concurrent()
        for start in range(0, len(archives), self.batch_size):
            batch = archives[start : start + self.batch_size]
            self._wait_for_slot(limit)
            run_id = self.glue.start_workflow_run(Name=self.workflow)["RunId"]  # type: ignore[attr-defined]
            self.glue.put_workflow_run_properties(  # type: ignore[attr-defined]
                Name=self.workflow,
                RunId=run_id,
                RunProperties={"messages": json.dumps([archive.message() for archive in batch])},
            )
            self.started.append(run_id)
        return self.started
