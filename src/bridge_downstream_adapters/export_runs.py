"""The export runs -- Synapse mirror and downstream delivery -- and their options.

One place for both entry points that run them: the command line registers
them as ``export synapse|deliver``
(:mod:`bridge_downstream_cli.export_commands`) and the Glue jobs
(``src/glue/jobs/synapse_export.py``, ``src/glue/jobs/delivery.py``) call
:func:`run_synapse_export` and :func:`run_deliver` with the same arguments.
Each run takes parsed arguments and returns an exit code. This module imports
nothing heavy at import time (boto3 and synapseclient load inside the runs).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from datetime import UTC, datetime

log = logging.getLogger(__name__)


def open_storage(location: str, s3_client=None):
    """``s3://bucket/prefix`` -> S3Storage; anything else -> LocalStorage."""
    if location.startswith("s3://"):
        from bridge_downstream_adapters.s3 import S3Storage

        return S3Storage.from_uri(location, client=s3_client)
    from bridge_downstream.common.storage import LocalStorage

    return LocalStorage(location)


def read_text(location: str, s3_client=None) -> str:
    if location.startswith("s3://"):
        import boto3

        from bridge_downstream_adapters.s3 import parse_s3_uri

        bucket, key = parse_s3_uri(location)
        return (s3_client or boto3.client("s3")).get_object(Bucket=bucket, Key=key)["Body"].read().decode()
    with open(location, encoding="utf-8") as stream:
        return stream.read()


def _pairs(values: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for value in values or []:
        name, sep, version = value.partition("=")
        if not sep or not name or not version:
            raise SystemExit(f"{what} takes DATASET=VERSION, not {value!r}")
        out[name] = version
    return out


# ------------------------------------------------------------------ parsers


def glue_bool(value: str) -> bool:
    return str(value).strip().lower() in ("1", "true", "yes", "y")


def add_synapse_arguments(parser: argparse.ArgumentParser, *, glue: bool = False) -> None:
    """``glue``: every option takes a value (``--dry-run true``), as Glue passes them."""
    parser.add_argument(
        "--published-root", required=True, help="the pipeline root in S3, s3://bucket/<namespace>/<app>/<study>"
    )
    parser.add_argument("--synapse-folder-id", required=True, help="the export root folder, e.g. syn12345678")
    parser.add_argument(
        "--ssm-parameter-name",
        help="SSM parameter with the Synapse auth token (default: env BRIDGE_DOWNSTREAM_SYNAPSE_AUTH_TOKEN)",
    )
    parser.add_argument(
        "--dataset",
        action="append",
        dest="datasets",
        help="export only this dataset (repeatable); only its folders are pruned",
    )
    parser.add_argument("--table", action="append", dest="tables", help="export only this table (repeatable)")
    parser.add_argument(
        "--format",
        action="append",
        dest="formats",
        choices=["parquet", "csv"],
        help="formats to register (default both)",
    )
    parser.add_argument(
        "--storage-location-id",
        type=int,
        help="the external S3 storage location (default: the folder's upload destination)",
    )
    parser.add_argument("--synapse-endpoint", help="Synapse base URL (default: production)")
    if glue:
        parser.add_argument("--dry-run", type=glue_bool, default=False, help="true: print the plan only")
    else:
        parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")


def add_deliver_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--published-root", required=True, help="the pipeline root: s3://... or a local directory")
    parser.add_argument("--config", required=True, help="delivery configuration (YAML/JSON; path or s3:// URI)")
    parser.add_argument("--app", required=True)
    parser.add_argument("--study", required=True)
    parser.add_argument("--name", help="run only this configured delivery (default: all for the app and study)")
    parser.add_argument("--run-id", help="recorded in manifest.json (default: generated)")
    parser.add_argument(
        "--version",
        action="append",
        dest="versions",
        metavar="DATASET=VERSION",
        help="deliver this published version instead of the current one (repeatable)",
    )
    parser.add_argument("--retention-only", action="store_true", help="apply retention only, copy nothing")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, change nothing")


# ----------------------------------------------------------------- handlers


def run_synapse_export(args: argparse.Namespace, *, s3_client=None, ssm_client=None, retry=None) -> int:
    from bridge_downstream_adapters.secrets import SecretError, synapse_auth_token
    from bridge_downstream_adapters.synapse import SynapseExportError, export_published_root

    try:
        token = synapse_auth_token(args.ssm_parameter_name, ssm_client=ssm_client)
        result = export_published_root(
            args.published_root,
            args.synapse_folder_id,
            token,
            endpoint=args.synapse_endpoint,
            datasets=args.datasets,
            tables=args.tables,
            formats=args.formats or ("parquet", "csv"),
            storage_location_id=args.storage_location_id,
            dry_run=args.dry_run,
            retry=retry,
            s3_client=s3_client,
        )
    except (SecretError, SynapseExportError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    if args.dry_run:
        for action in result.plan.actions:
            print(f"would {action.describe()}")
    print(json.dumps(result.summary(), sort_keys=True))
    return 0


def run_deliver(args: argparse.Namespace, *, s3_client=None, now: datetime | None = None) -> int:
    from bridge_downstream.exports import delivery as dl

    now = now or datetime.now(UTC)
    try:
        targets = dl.targets_for(
            dl.load_delivery_config(read_text(args.config, s3_client)), args.app, args.study, args.name
        )
        source = open_storage(args.published_root, s3_client)
        results = []
        for target in targets:
            destination = open_storage(target.destination, s3_client)
            if args.retention_only:
                if not target.retention_days:
                    results.append({"delivery": target.name, "removed_by_retention": [], "note": "no retention set"})
                    continue
                removed = dl.apply_retention(destination, target.retention_days, now, dry_run=args.dry_run)
                results.append({"delivery": target.name, "removed_by_retention": removed})
                continue
            result = dl.run_delivery(
                source,
                destination,
                target,
                now=now,
                run_id=args.run_id,
                versions=_pairs(args.versions, "--version"),
                dry_run=args.dry_run,
            )
            if args.dry_run:
                for copy in result.plan.copies:
                    print(f"would copy {source.uri(copy.source_key)} -> {destination.uri(result.plan.key(copy))}")
            results.append(result.summary())
    except dl.DeliveryError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for summary in results:
        print(json.dumps(summary, sort_keys=True))
    return 0
