"""Glue job: the profile's data-quality expectations run on the current
published versions after a publish (docs/quality.md).

Job arguments: --published-root, --profile; optional --datasets (comma list;
default every published dataset), --engine (spark, the default on Glue: the
tables are checked by Spark, however large; or pandas: read into the driver's memory). Each version's report is written beside
it (``quality.html``, by :func:`~bridge_downstream.quality.check_version`),
the run's results as one page and JSON under ``reports/quality/<run id>``;
the log names them. A failed expectation does not fail the job: ``block``
ones already kept their version from being made current when it was published.
"""

import json
import logging
import os
import sys
from typing import cast

from bridge_downstream.common import layout
from bridge_downstream.config import load_profile
from bridge_downstream.ingest import new_run_id
from bridge_downstream.publish import DirectLocation, current_version, published_datasets, read_manifest
from bridge_downstream.quality import PandasTables, SparkTables, TableSource, check_version, render_quality_html
from bridge_downstream_adapters.glue_args import resolve_options
from bridge_downstream_adapters.s3 import S3Storage
from bridge_downstream_adapters.spark_staging import StagedLocation

log = logging.getLogger("quality")


def main(argv=None, spark=None, glue_client=None) -> dict:
    args = resolve_options(
        argv if argv is not None else sys.argv,
        ["published-root", "profile"],
        {"datasets": "", "engine": "spark", "WORKFLOW_RUN_ID": None, "JOB_RUN_ID": None},
    )
    published = S3Storage.from_uri(cast(str, args["published_root"]))
    profile = load_profile(cast(str, args["profile"]))
    datasets = [d for d in cast(str, args["datasets"]).split(",") if d] or published_datasets(published)
    source: TableSource = PandasTables()
    location = None
    if args["engine"] == "spark":
        if spark is None:
            from pyspark.sql import SparkSession

            spark = SparkSession.builder.getOrCreate()
        # An emulated endpoint is out of reach of Spark's own S3 connector.
        location = StagedLocation() if os.environ.get("AWS_ENDPOINT_URL") else DirectLocation()
        source = SparkTables(spark, location)
    elif args["engine"] != "pandas":
        raise ValueError(f"--engine {args['engine']}: spark or pandas")
    checked = []
    try:
        for dataset_id in datasets:
            version = current_version(published, dataset_id)
            if version is None:
                log.info("%s: no current version, nothing to check", dataset_id)
                continue
            manifest = read_manifest(published, dataset_id, version)
            quality = check_version(published, manifest, profile, source=source)
            checked.append((manifest, quality))
            failed = [r for r in quality["results"] if not r["passed"]]
            log.info(
                "%s version %s: %d expectations, %d failed; report %s",
                dataset_id,
                version,
                len(quality["results"]),
                len(failed),
                published.uri(quality["report"]),
            )
    finally:
        if location is not None:
            location.close()
    run_id = args["WORKFLOW_RUN_ID"] or args["JOB_RUN_ID"] or new_run_id()
    run_key = f"{layout.QUALITY_REPORTS_PREFIX}/{layout.key_segment(run_id)}"
    summary = {m.dataset_id: {"version": m.version, **q} for m, q in checked}
    published.write_bytes(f"{run_key}.html", render_quality_html(checked).encode())
    published.write_bytes(f"{run_key}.json", json.dumps(summary, indent=2, default=str).encode())
    log.info("quality report: %s", published.uri(f"{run_key}.html"))
    return summary


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
