"""``bridge-downstream invalid list|show|replay``: invalid records, locally or in SQS.

Where the entries are: ``--output DIR`` (the local sink, ``DIR/invalid/``) or
``--queue-url URL`` (the invalid-records SQS queue). A replay from the queue
reads the archives from S3 (``source_bucket``/``source_key``, with the
objects' current metadata) and writes the datasets under ``--json-root``.
Each subcommand sets ``handler`` (and the alias ``func``), ``args -> exit
code``. boto3 loads only for ``--queue-url`` and S3 locations.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config import RunConfig, SchemaRegistry, load_profile
from bridge_downstream.replay import (
    Selection,
    StorageInvalidStore,
    format_replay_summary,
    format_table,
    local_archive_input,
    replay,
    replay_report_key,
    select,
)
from bridge_downstream_cli.errors import UsageError
from bridge_downstream_cli.pipeline_commands import print_publish_summary, publish_stage


def add_location_arguments(parser: argparse.ArgumentParser, visibility_default: int) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--output", help="local pipeline root: its invalid/ folder is the sink")
    where.add_argument("--queue-url", help="the invalid-records SQS queue (AWS)")
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        default=visibility_default,
        help=f"SQS: seconds the received messages stay hidden while this command works (default {visibility_default}); "
        "messages it does not settle are made visible again at the end",
    )
    parser.add_argument("--wait-seconds", type=int, default=1, help="SQS: long-poll seconds per receive (default 1)")
    parser.add_argument(
        "--archive-root",
        help="with --queue-url: the pipeline root (s3://...) whose invalid/ folder holds every record's durable "
        "copy, so records the queue has dropped (after 14 days) are listed and replayed too "
        "(default for replay: --json-root)",
    )


def add_filter_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--record",
        action="append",
        dest="records",
        metavar="ID",
        help="a record id, source key or file name, or identity prefix (repeatable)",
    )
    parser.add_argument("--reason", help="case-insensitive text in the reason or in an error message")
    parser.add_argument(
        "--assessment", action="append", dest="assessments", metavar="ID", help="an assessment id (repeatable)"
    )


def add_invalid_commands(subparsers) -> argparse.ArgumentParser:
    """Register ``invalid list``, ``invalid show`` and ``invalid replay``."""
    invalid = subparsers.add_parser("invalid", help="list, show and replay invalid records (local sink or SQS queue)")
    commands = invalid.add_subparsers(dest="invalid_command", metavar="{list,show,replay}")
    commands.required = True

    listing = commands.add_parser("list", help="invalid records with their reasons (filters combine with AND)")
    add_location_arguments(listing, visibility_default=60)
    add_filter_arguments(listing)
    listing.add_argument("--json", action="store_true", help="print the full entries as a JSON array")
    listing.set_defaults(handler=command_list, func=command_list)

    show = commands.add_parser("show", help="one invalid record's full entry (pretty JSON)")
    show.add_argument("record", metavar="RECORD_ID", help="record id, source key or file name, or identity prefix")
    add_location_arguments(show, visibility_default=60)
    show.set_defaults(handler=command_show, func=command_show)

    replay = commands.add_parser(
        "replay",
        help="re-ingest chosen invalid records; those that pass leave the sink, the others stay with new reasons",
    )
    add_location_arguments(replay, visibility_default=900)
    add_filter_arguments(replay)
    replay.add_argument("--all", action="store_true", help="replay every invalid record")
    replay.add_argument("--registry", required=True, help="registry directory or s3:// URI (the fixed one)")
    replay.add_argument("--profile", help="profile name or YAML (default: the profile the records were ingested with)")
    replay.add_argument(
        "--json-root", help="with --queue-url: the pipeline root the datasets go to (s3://... or a directory)"
    )
    replay.add_argument("--app-id", help="app id for records whose metadata names none")
    replay.add_argument("--workers", type=int, default=1, help="ingest worker processes (default 1)")
    replay.add_argument(
        "--publish",
        action="store_true",
        help="then publish the datasets the replay wrote (local pipeline roots), as `run` does",
    )
    replay.add_argument("--retention", type=int, default=3, help="with --publish: complete versions kept per dataset")
    replay.add_argument("--dry-run", action="store_true", help="show what would be replayed, change nothing")
    replay.add_argument("--json", action="store_true", help="print the replay report as JSON")
    replay.set_defaults(handler=command_replay, func=command_replay)
    return invalid


# ------------------------------------------------------------------ helpers


def open_store(args):
    """(store, a label for messages)."""
    if args.queue_url:
        from bridge_downstream_adapters.export_runs import open_storage
        from bridge_downstream_adapters.invalid_queue import QueueAndArchiveInvalidStore, SqsInvalidStore

        queue = SqsInvalidStore(
            args.queue_url, visibility_timeout=args.visibility_timeout, wait_seconds=args.wait_seconds
        )
        archive_root = args.archive_root or getattr(args, "json_root", None)
        if not archive_root:
            return queue
        return QueueAndArchiveInvalidStore(queue, StorageInvalidStore(open_storage(archive_root)))
    if not Path(args.output).is_dir():
        raise UsageError(f"--output {args.output} is not a directory")
    return StorageInvalidStore(LocalStorage(args.output))


def selection_of(args, everything: bool = False):
    return Selection(
        records=tuple(getattr(args, "records", None) or ()),
        reason=getattr(args, "reason", None),
        assessments=tuple(getattr(args, "assessments", None) or ()),
        all=everything,
    )


def _load_selected(args, selection):
    store = open_store(args)
    loaded = store.load()
    chosen = select(loaded, selection)
    return store, loaded, chosen


# ----------------------------------------------------------------- handlers


def command_list(args) -> int:
    selection = selection_of(args, everything=True)
    store, loaded, chosen = _load_selected(args, selection)
    store.release([h for s in loaded for h in s.handles])
    if args.json:
        print(json.dumps([s.entry for s in chosen], indent=2, sort_keys=True))
        return 0
    if chosen:
        print(format_table([s.entry for s in chosen]))
    messages = sum(len(s.handles) for s in chosen)
    where = f"queue {args.queue_url}" if args.queue_url else f"{args.output}/invalid"
    extra = f" ({messages} messages)" if args.queue_url and messages != len(chosen) else ""
    print(f"{len(chosen)} of {len(loaded)} invalid records{extra} in {where}")
    return 0


def command_show(args) -> int:
    store, loaded, chosen = _load_selected(args, Selection(records=(args.record,)))
    store.release([h for s in loaded for h in s.handles])
    if not chosen:
        print(f"bridge-downstream: no invalid record matches {args.record!r}", file=sys.stderr)
        return 1
    entries = [s.entry for s in chosen]
    print(json.dumps(entries[0] if len(entries) == 1 else entries, indent=2, sort_keys=True))
    return 0


def _registry(location: str):
    if location.startswith("s3://"):
        from bridge_downstream_adapters.s3 import S3Storage

        return SchemaRegistry.load(S3Storage.from_uri(location))
    return SchemaRegistry.load(location)


def _profile_name(args, chosen) -> str:
    if args.profile:
        return args.profile
    recorded = sorted({s.entry.get("profile") for s in chosen if s.entry.get("profile")})
    if len(recorded) > 1:
        raise UsageError(
            f"the chosen records were ingested with different profiles ({', '.join(recorded)}): pass --profile"
        )
    return recorded[0] if recorded else "mtb"


def replay_command(args) -> dict:
    """Run a replay from parsed arguments; returns the replay report (with
    ``publish`` added when ``--publish`` published)."""
    selection = selection_of(args, everything=args.all)
    if selection.empty and not args.all:
        raise UsageError("choose what to replay: --record, --reason, --assessment, or --all")
    if args.queue_url:
        if not args.json_root:
            raise UsageError("--queue-url replays need --json-root (the pipeline root the datasets go to)")
        from bridge_downstream_adapters.export_runs import open_storage
        from bridge_downstream_adapters.invalid_queue import s3_input_resolver

        output = open_storage(args.json_root)
        resolve = s3_input_resolver()
        publish_root = None if args.json_root.startswith("s3://") else args.json_root
    else:
        if args.json_root:
            raise UsageError("--json-root goes with --queue-url; a local replay writes under --output")
        output = LocalStorage(args.output)
        publish_root = args.output

        s3_resolvers: list = []

        def resolve(entry):
            if str(entry.get("source") or "").startswith("s3://"):
                if not s3_resolvers:  # boto3 only for entries whose archive is in S3
                    from bridge_downstream_adapters.invalid_queue import s3_input_resolver

                    s3_resolvers.append(s3_input_resolver())
                return s3_resolvers[0](entry)
            return local_archive_input(entry)

    if args.publish and publish_root is None:
        raise UsageError(
            "--publish works on local pipeline roots; in AWS the JSON-to-Parquet workflow publishes "
            "the datasets listed in the replay report"
        )
    registry = _registry(args.registry)
    store = open_store(args)
    loaded = store.load()
    try:
        profile = load_profile(_profile_name(args, select(loaded, selection)))
    except BaseException:
        store.release([h for s in loaded for h in s.handles])
        raise
    report = replay(
        store,
        selection,
        registry=registry,
        profile=profile,
        output=output,
        resolve_input=resolve,
        workers=args.workers,
        app_id=args.app_id,
        dry_run=args.dry_run,
        entries=loaded,
    )
    if args.publish and not args.dry_run and report["datasets"]:
        # The replay's registry and profile, resolved above, publish what it wrote.
        # The --publish check above rejected a replay without a local root.
        assert publish_root is not None
        config = RunConfig(
            registry=registry, profile=profile, output=LocalStorage(publish_root), retention=args.retention
        )
        Path(publish_root).mkdir(parents=True, exist_ok=True)
        report["publish"] = publish_stage(config, sorted(report["datasets"]), run_id=report["run_id"])
        output.write_bytes(replay_report_key(report["run_id"]), json.dumps(report, indent=2).encode())
    return report


def command_replay(args) -> int:
    report = replay_command(args)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(format_replay_summary(report))
    if not report.get("dry_run"):
        print(
            f"report: {report.get('ingest_report') or 'no archive was re-ingested'} (ingest), reports/replay-{report['run_id']}.json (replay)"
        )
    if "publish" in report:
        print_publish_summary(report["publish"])
    return 0
