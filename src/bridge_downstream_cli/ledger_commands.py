"""``bridge-downstream ledger forget RECORD_ID|ARCHIVE...``: re-ingest on purpose.

An archive in the ingest ledger is skipped by every later run (a redelivered
S3 event must not add its rows twice). After a registry or profile fix the
operator wants some archives ingested again: this removes their entries, so
the next run that is given them ingests them (``run --reingest`` does it for
the run's own inputs). Their earlier rows stay; publish keeps one copy of a
record (docs/publish.md, dedup).
"""

from __future__ import annotations

import argparse
import posixpath
import sys
from pathlib import Path

from bridge_downstream.common.text import printable
from bridge_downstream.ingest import forget_ingested
from bridge_downstream_cli.errors import UsageError
from bridge_downstream_cli.exit_codes import ExitCode


def entry_matches(entry: dict, name: str) -> bool:
    """A ledger entry is named by its record id, its archive's URI, path or file name."""
    source = str(entry.get("source") or "")
    if name in (entry.get("recordid"), source):
        return True
    if source.startswith("file://") and Path(name).exists():
        return source == Path(name).resolve().as_uri()
    return "/" not in name and posixpath.basename(source) == name


def command_ledger_forget(args: argparse.Namespace) -> int:
    if not args.output.startswith("s3://") and not Path(args.output).is_dir():
        raise UsageError(f"--output {args.output} is not a directory")
    from bridge_downstream_adapters.export_runs import open_storage

    storage = open_storage(args.output)
    matched: set[str] = set()

    def forget(entry: dict) -> bool:
        names = [name for name in args.names if entry_matches(entry, name)]
        matched.update(names)
        return bool(names) and not args.dry_run

    forgotten = forget_ingested(storage, forget)
    verb = "would forget" if args.dry_run else "forgot"
    if args.dry_run:
        print(f"{verb} {len(matched)} of {len(args.names)} names (nothing changed)")
    for entry in forgotten:
        print(f"  {verb} {printable(str(entry.get('recordid')))} {printable(str(entry.get('source')))}")
    if not args.dry_run:
        print(f"{verb} {len(forgotten)} ledger entries: the next run given their archives ingests them again")
    unmatched = [name for name in args.names if name not in matched]
    if unmatched:
        print(
            f"bridge-downstream: no ledger entry for {', '.join(map(printable, unmatched))} in {args.output}",
            file=sys.stderr,
        )
        return int(ExitCode.NOTHING)
    return int(ExitCode.OK)


def add_ledger_commands(commands) -> None:
    """Register ``ledger forget``."""
    ledger = commands.add_parser("ledger", help="the ingest ledger: which archives later runs skip")
    subcommands = ledger.add_subparsers(dest="ledger_command", metavar="{forget}", required=True)
    forget = subcommands.add_parser(
        "forget", help="remove archives from the ledger so that the next run ingests them again"
    )
    forget.add_argument("names", nargs="+", metavar="RECORD_ID|ARCHIVE", help="record ids, archive paths or file names")
    forget.add_argument("--output", required=True, help="pipeline root folder (or s3:// pipeline root)")
    forget.add_argument("--dry-run", action="store_true", help="show what would be forgotten, change nothing")
    forget.set_defaults(handler=command_ledger_forget)
