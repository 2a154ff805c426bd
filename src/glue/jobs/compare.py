"""Glue job: a branch namespace's current versions compared with the default
namespace's (docs/quality.md, "Comparing a branch with main").

Job arguments: --published-root (this namespace's pipeline root, B),
--main-published-root (the default namespace's, A); optional --engine
(spark, the default on Glue, or pandas), --abs-tol, --rel-tol, --tables
(comma list of patterns), --where, --fail-on-diff (true: the job fails when
anything differs). The reports go under this namespace's root,
``reports/compare/<run id>/``; the log names the HTML report.
"""

import logging
import os
import sys
from typing import cast

from bridge_downstream.ingest import new_run_id
from bridge_downstream.publish import DirectLocation
from bridge_downstream.quality.compare import (
    HTML_NAME,
    CompareOptions,
    ComparisonReport,
    compare_report_prefix,
    compare_storages,
)
from bridge_downstream_adapters.glue_args import resolve_options
from bridge_downstream_adapters.s3 import S3Storage
from bridge_downstream_adapters.spark_staging import StagedLocation

log = logging.getLogger("compare")


class DataDiffers(RuntimeError):
    pass


def main(argv=None, spark=None, glue_client=None) -> ComparisonReport:
    args = resolve_options(
        argv if argv is not None else sys.argv,
        ["published-root", "main-published-root"],
        {
            "engine": "spark",
            "abs-tol": "0",
            "rel-tol": "0",
            "tables": "",
            "where": "",
            "fail-on-diff": "false",
            "WORKFLOW_RUN_ID": None,
            "JOB_RUN_ID": None,
        },
    )
    branch = S3Storage.from_uri(cast(str, args["published_root"]))
    main_root = S3Storage.from_uri(cast(str, args["main_published_root"]))
    options = CompareOptions(
        abs_tol=float(cast(str, args["abs_tol"])),
        rel_tol=float(cast(str, args["rel_tol"])),
        tables=tuple(t for t in cast(str, args["tables"]).split(",") if t),
        where=args["where"] or None,
    )
    engine = cast(str, args["engine"])
    locations = None
    if engine == "spark":
        if spark is None:
            from pyspark.sql import SparkSession

            spark = SparkSession.builder.getOrCreate()
        # An emulated endpoint is out of reach of Spark's own S3 connector.
        staged = bool(os.environ.get("AWS_ENDPOINT_URL"))
        locations = (StagedLocation(), StagedLocation()) if staged else (DirectLocation(), DirectLocation())
    try:
        report = compare_storages(
            main_root,
            branch,
            options,
            engine=engine,
            spark=spark,
            locations=locations,
            a_label=cast(str, args["main_published_root"]),
            b_label=cast(str, args["published_root"]),
        )
    finally:
        for location in locations or ():
            location.close()
    prefix = compare_report_prefix(args["WORKFLOW_RUN_ID"] or args["JOB_RUN_ID"] or new_run_id())
    report.write(branch, prefix)
    log.info("%s", report.summary_text())
    log.info("compare report: %s", branch.uri(f"{prefix}/{HTML_NAME}"))
    if args["fail_on_diff"] == "true" and report.differs:
        raise DataDiffers(f"this namespace's data differs from main's: {branch.uri(f'{prefix}/{HTML_NAME}')}")
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
