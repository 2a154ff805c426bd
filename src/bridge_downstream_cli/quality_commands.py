"""Data quality on the command line (docs/quality.md): the expectations run
after every publish (``publish``, ``run``), and ``bridge-downstream quality
OUTPUT [--dataset D] [--engine arrow|spark]`` on the current versions on demand.
On the Spark engine the tables are checked by Spark, else read into pandas.

A failed ``block`` expectation exits with the invalid-data code; ``warn`` ones
are reported and exit 0.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config import Profile, load_profile
from bridge_downstream.config.expectations import load_expectations_file, merge_expectations
from bridge_downstream.publish.engine_steps import PublishResult, publishing_with_quality_check
from bridge_downstream.publish.engines import DEFAULT_LOCAL_ENGINE, ENGINE_ENVIRONMENT, ENGINES
from bridge_downstream.publish.manifest import PublishManifest, current_version, published_datasets, read_manifest
from bridge_downstream.quality import (
    PandasTables,
    SparkTables,
    TableSource,
    failed_results,
    publish_quality_check,
    render_quality_html,
    run_expectations,
)
from bridge_downstream_cli.cli_context import resolve_dataset_ids
from bridge_downstream_cli.errors import UsageError
from bridge_downstream_cli.exit_codes import ExitCode
from bridge_downstream_cli.output_root import RootRecord


def with_study_expectations(profile: Profile, expectations_file: str | None) -> Profile:
    """``--expectations FILE``: the study's expectations after the profile's."""
    if not expectations_file:
        return profile
    if not Path(expectations_file).is_file():
        raise UsageError(f"--expectations {expectations_file}: no such file")
    added = load_expectations_file(expectations_file)
    return dataclasses.replace(profile, expectations=merge_expectations(profile.expectations, added))


def table_source(engine: str, spark_factory: Callable[[], Any] | None) -> TableSource:
    """Where the expectations read the tables: Spark on the Spark engine (the session
    the publish uses), pandas on the Arrow engine (which starts no JVM)."""
    if engine == "spark" and spark_factory is not None:
        return SparkTables(spark_factory())
    return PandasTables()


def with_quality_check(profile: Profile, publish: Callable[..., PublishResult]) -> Callable[..., PublishResult]:
    """``publish`` (:func:`~bridge_downstream.publish.publish_dataset_with`) with the
    profile's expectations run on each new version before it is made current,
    on the publish's engine."""

    def checked(engine: str, spark_factory: Callable[[], Any] | None, **kwargs) -> PublishResult:
        source = table_source(engine, spark_factory)
        with publishing_with_quality_check(publish_quality_check(profile, source=source)):
            return publish(engine, spark_factory, **kwargs)

    return checked


def quality_findings(manifest: PublishManifest) -> dict:
    """What the run report says of a version's quality: nothing when every expectation passed."""
    failed = failed_results(manifest)
    if not failed:
        return {}
    quality = manifest.quality or {}
    return {"blocked": quality.get("blocked", False), "report": quality.get("report"), "failed": failed}


def print_quality_findings(findings: dict[str, dict]) -> None:
    for dataset_id, found in findings.items():
        verdict = "BLOCKED, the previous version stays current" if found["blocked"] else "published (warn)"
        print(f"  {dataset_id}: {len(found['failed'])} expectations failed, {verdict}: {found['report']}")
        for result in found["failed"]:
            keys = "; ".join(json.dumps(s["key"], sort_keys=True) for s in result["samples"])
            unexpected = result["unexpected_count"] if result["unexpected_count"] is not None else result["error"]
            print(f"    [{result['policy']}] {result['table']}: {result['expectation']}: {unexpected} {keys}".rstrip())


def quality_exit_code(findings: dict[str, dict]) -> ExitCode:
    """Invalid data when a ``block`` expectation failed on any dataset."""
    return ExitCode.INVALID if any(found["blocked"] for found in findings.values()) else ExitCode.OK


def command_quality(args: argparse.Namespace) -> int:
    root = Path(args.output)
    record = RootRecord.read(root)
    profile_name = args.profile or (record.profile if record else None)
    if profile_name is None:
        raise UsageError(f"{root} records no profile: give --profile")
    profile = with_study_expectations(load_profile(profile_name), args.expectations)
    storage = LocalStorage(root)
    available = published_datasets(storage)
    datasets = resolve_dataset_ids(args.dataset, available) if args.dataset else available
    if not datasets:
        print(f"bridge-downstream: {root} holds no published dataset", file=sys.stderr)
        return int(ExitCode.NOTHING)
    checked = []
    findings = {}
    spark = None
    if args.engine == "spark":
        from bridge_downstream.publish import local_spark_session

        spark = local_spark_session(app_name="bridge-downstream-quality")
    try:
        source = table_source(args.engine, lambda: spark)
        for dataset_id in datasets:
            version = current_version(storage, dataset_id)
            if version is None:
                continue
            manifest = read_manifest(storage, dataset_id, version)
            quality = run_expectations(storage, manifest, profile, source=source)
            checked.append((manifest, quality))
            manifest.quality = quality
            found = quality_findings(manifest)
            if found:
                findings[dataset_id] = found
    finally:
        if spark is not None:
            spark.stop()
    stamp = checked[0][1]["checked_at"].replace(":", "") if checked else "none"
    report_key = f"{layout.QUALITY_REPORTS_PREFIX}/{stamp}.html"
    storage.write_bytes(report_key, render_quality_html(checked).encode())
    storage.write_bytes(
        f"{layout.QUALITY_REPORTS_PREFIX}/{stamp}.json",
        json.dumps({m.dataset_id: {"version": m.version, **q} for m, q in checked}, indent=2).encode(),
    )
    for found in findings.values():
        found["report"] = storage.uri(report_key)
    passed = sum(1 for _, quality in checked if quality["passed"])
    print(f"checked {len(checked)} datasets: {passed} passed every expectation; report {storage.uri(report_key)}")
    print_quality_findings(findings)
    return int(quality_exit_code(findings))


def add_expectations_argument(sub) -> None:
    sub.add_argument(
        "--expectations",
        metavar="FILE",
        help="a YAML file of the study's own expectations (`expectations:`), run after the profile's",
    )


def add_quality_commands(commands) -> None:
    quality = commands.add_parser("quality", help="run the data-quality expectations on the current published versions")
    quality.add_argument("output", help="pipeline root folder")
    quality.add_argument("--dataset", action="append", help="a dataset id or table name (repeatable; default: all)")
    quality.add_argument("--profile", help="profile name or YAML file (default: the one the output root recorded)")
    add_expectations_argument(quality)
    quality.add_argument(
        "--engine",
        choices=ENGINES,
        default=os.environ.get(ENGINE_ENVIRONMENT) or DEFAULT_LOCAL_ENGINE,
        help="arrow (default: the tables read into pandas) or spark (checked by a local Spark, for tables "
        "larger than memory)",
    )
    quality.set_defaults(handler=command_quality)
