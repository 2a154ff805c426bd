"""``bridge-downstream compare A B``: two pipeline roots' current versions
compared table by table (docs/quality.md, "Comparing a branch with main").

A and B are output folders or S3 prefixes (``s3://bucket/ns/app/study``,
or its ``.../published``). Exit 0 when they hold the same data, 1 when
anything differs and ``--fail-on-diff`` is given.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage, Storage
from bridge_downstream.quality.compare import ENGINES, CompareOptions, compare_storages
from bridge_downstream_cli.errors import UsageError

EXIT_DIFFERS = 1


def open_root(location: str) -> Storage:
    """The pipeline root a location names; its ``published`` folder names the root too."""
    trimmed = location.rstrip("/")
    if trimmed.endswith("/" + layout.PUBLISHED_PREFIX):
        trimmed = trimmed[: -len(layout.PUBLISHED_PREFIX) - 1]
    if trimmed.startswith("s3://"):
        from bridge_downstream_adapters.s3 import S3Storage

        return S3Storage.from_uri(trimmed + "/")
    if not (Path(trimmed) / layout.PUBLISHED_PREFIX).is_dir():
        raise UsageError(f"{location} holds no published datasets")
    return LocalStorage(trimmed)


def command_compare(args: argparse.Namespace) -> int:
    options = CompareOptions(
        abs_tol=args.abs_tol,
        rel_tol=args.rel_tol,
        tables=tuple(args.tables or ()),
        where=args.where,
        ignore_columns=tuple(args.ignore_columns or ()),
    )
    a, b = open_root(args.a), open_root(args.b)
    spark = None
    if args.engine == "spark":
        from bridge_downstream.publish import local_spark_session

        spark = local_spark_session(app_name="bridge-downstream-compare")
    try:
        locations = _spark_locations(a, b) if spark is not None else None
        report = compare_storages(
            a, b, options, engine=args.engine, spark=spark, locations=locations, a_label=args.a, b_label=args.b
        )
    finally:
        if spark is not None:
            spark.stop()
    print(report.summary_text(), end="")
    if args.report_dir:
        target = open_report_dir(args.report_dir)
        written = report.write(target)
        print(f"report: {target.uri('report.html')} ({len(written)} files)")
    return EXIT_DIFFERS if args.fail_on_diff and report.differs else 0


def _spark_locations(a: Storage, b: Storage):
    """Local Spark reads local folders directly, S3 through a staged copy (no S3 connector here)."""
    from bridge_downstream.publish import DirectLocation

    if isinstance(a, LocalStorage) and isinstance(b, LocalStorage):
        return None
    from bridge_downstream_adapters.spark_staging import StagedLocation

    return tuple(DirectLocation() if isinstance(s, LocalStorage) else StagedLocation() for s in (a, b))


def open_report_dir(location: str) -> Storage:
    if location.startswith("s3://"):
        from bridge_downstream_adapters.s3 import S3Storage

        return S3Storage.from_uri(location.rstrip("/") + "/")
    Path(location).mkdir(parents=True, exist_ok=True)
    return LocalStorage(location)


def add_compare_commands(commands) -> None:
    """Register ``compare``."""
    compare = commands.add_parser(
        "compare",
        help="compare two output roots' current versions (a branch's with main's): rows, values, columns, types",
    )
    compare.add_argument("a", help="output folder, or s3://bucket/ns/app/study[/published]")
    compare.add_argument("b", help="the other one")
    compare.add_argument("--abs-tol", type=float, default=0.0, help="absolute tolerance for numbers (default 0)")
    compare.add_argument("--rel-tol", type=float, default=0.0, help="relative tolerance for numbers (default 0)")
    compare.add_argument(
        "--tables", nargs="+", metavar="PATTERN", help="dataset ids or table names (shell patterns) to compare"
    )
    compare.add_argument("--where", help="SQL condition both sides of every compared table are filtered by")
    compare.add_argument("--ignore-columns", nargs="+", metavar="COLUMN", help="columns left out of the comparison")
    compare.add_argument(
        "--engine", choices=ENGINES, default="pandas", help="pandas (default) or spark for large tables"
    )
    compare.add_argument("--report-dir", help="folder or s3:// prefix for the summary, HTML report and CSVs")
    compare.add_argument("--fail-on-diff", action="store_true", help=f"exit {EXIT_DIFFERS} when anything differs")
    compare.set_defaults(handler=command_compare)
