"""``backfill SOURCE``: the archives a source holds that the output folder
never read, submitted as Glue workflow runs in batches or ingested here.

A source is an S3 prefix (``s3://bucket/prefix``), a Synapse file view
(``syn123``, as the original's bootstrap trigger queried it) or a local
folder. An archive counts as read when a committed run reported it (any
outcome: an invalid one is replayed with ``invalid replay``, not backfilled)
or the ledger holds its source.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path

from bridge_downstream_adapters.backfill_sources import RawArchive, WorkflowSubmitter
from bridge_downstream_cli.errors import UsageError
from bridge_downstream_cli.run_history import ledger_lines, run_records
from bridge_downstream_cli.status_commands import open_output

SYNAPSE_ID = re.compile(r"^syn\d+$")
SYNAPSE_TOKEN_VARIABLE = "SYNAPSE_AUTH_TOKEN"  # synapseclient's own name for it
SYNAPSE_ENDPOINT_VARIABLE = "BRIDGE_DOWNSTREAM_SYNAPSE_ENDPOINT"  # a test server


def parse_since(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as error:
        raise UsageError(f"--since takes a date or an ISO time (2024-03-01), not {text!r}") from error
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def list_local_archives(folder: str) -> list[RawArchive]:
    root = Path(folder)
    if not root.is_dir():
        raise UsageError(f"backfill source {folder} is no folder, s3://bucket/prefix or Synapse file view (syn123)")
    return [
        RawArchive(path.resolve().as_uri(), modified=datetime.fromtimestamp(path.stat().st_mtime, UTC))
        for path in sorted(root.rglob("*.zip"))
        if path.is_file()
    ]


def list_source(args) -> list[RawArchive]:
    if args.source.startswith("s3://"):
        from bridge_downstream_adapters.backfill_sources import list_s3_archives

        return list_s3_archives(args.source)
    if SYNAPSE_ID.match(args.source):
        from bridge_downstream_adapters.backfill_sources import list_file_view
        from bridge_downstream_adapters.secrets import SecretError, SecretToken
        from bridge_downstream_adapters.synapse import connect

        try:
            token = SecretToken(os.environ.get(SYNAPSE_TOKEN_VARIABLE, ""), f"${SYNAPSE_TOKEN_VARIABLE}")
        except SecretError as error:
            raise UsageError(f"{error}: set it to a Synapse personal access token") from error
        syn = connect(token, endpoint=os.environ.get(SYNAPSE_ENDPOINT_VARIABLE))
        return list_file_view(syn, args.source, args.raw_folder_id, args.query, not args.keep_duplicates)
    return list_local_archives(args.source)


def _exported_at(archive: RawArchive) -> datetime | None:
    if archive.exported_on and str(archive.exported_on).isdigit():
        return datetime.fromtimestamp(int(archive.exported_on) / 1000, UTC)
    return archive.modified


def missing_archives(
    archives: list[RawArchive], read_sources: set[str], since: datetime | None, limit: int | None
) -> list[RawArchive]:
    """The archives never read, newer than ``since``, at most ``limit``, in listing order."""
    missing = [a for a in archives if a.source not in read_sources]
    if since is not None:
        missing = [a for a in missing if (_exported_at(a) or since) >= since]
    return missing[:limit] if limit is not None else missing


def command_backfill(args) -> int:
    storage = open_output(args.output)
    read_sources = {record["source"] for _, record in run_records(storage)}
    read_sources |= {line["source"] for line in ledger_lines(storage) if "source" in line}
    archives = list_source(args)
    missing = missing_archives(archives, read_sources, parse_since(args.since), args.limit)
    print(f"backfill {args.source}: {len(archives)} archives listed, {len(missing)} never read")
    if args.dry_run or not missing:
        for archive in missing:
            print(f"  would submit {archive.source}")
        return 0
    if args.workflow:
        if any(archive.bucket is None for archive in missing):
            raise UsageError("a Glue workflow reads S3: backfill a local folder without --workflow (ingests here)")
        import boto3

        submitter = WorkflowSubmitter(boto3.client("glue"), args.workflow, batch_size=args.batch_size)
        runs = submitter.submit(missing)
        print(f"submitted {len(missing)} archives to {args.workflow} in {len(runs)} workflow runs:")
        for run_id in runs:
            print(f"  {run_id}")
        return 0
    if not args.registry:
        raise UsageError("ingesting here needs --registry (or give --workflow NAME to submit to Glue)")
    from bridge_downstream_cli.pipeline_commands import (
        discover_archives,
        ingest_stage,
        print_ingest_summary,
        run_config,
    )

    local = [archive.source.removeprefix("file://") for archive in missing]
    if any(archive.bucket is not None for archive in missing):
        raise UsageError("S3 and Synapse sources are submitted to Glue: give --workflow NAME")
    config = run_config(args)
    report = ingest_stage(config, discover_archives(local), show_progress=False)
    print_ingest_summary(report, Path(args.output))
    return 0


def add_backfill_commands(commands) -> None:
    backfill = commands.add_parser(
        "backfill",
        help="submit what a bucket, folder or Synapse file view holds and the output never read",
    )
    backfill.add_argument("source", help="s3://bucket/prefix, a Synapse file view id (syn123) or a local folder")
    backfill.add_argument("--output", required=True, help="pipeline root folder (its ledger and run reports)")
    backfill.add_argument("--dry-run", action="store_true", help="list what would be submitted, submit nothing")
    backfill.add_argument("--since", help="only archives exported (or modified) at or after this date")
    backfill.add_argument("--limit", type=int, help="submit at most this many archives")
    backfill.add_argument("--workflow", help="Glue workflow to submit to (default: ingest here)")
    backfill.add_argument("--batch-size", type=int, default=100, help="archives per workflow run (default 100)")
    backfill.add_argument("--query", help="file view: a query, {source_table} in its FROM clause")
    backfill.add_argument("--raw-folder-id", help="file view: the Bridge raw data folder its files are in")
    backfill.add_argument(
        "--keep-duplicates", action="store_true", help="file view: every export, not the latest per record id"
    )
    backfill.add_argument("--registry", help="registry directory, to ingest here")
    backfill.add_argument("--profile", default="mtb", help="profile, to ingest here")
    backfill.set_defaults(handler=command_backfill)
