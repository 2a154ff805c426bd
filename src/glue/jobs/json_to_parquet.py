"""Glue job: NDJSON datasets -> relationalized Parquet and CSV, published and catalogued.

Job arguments: --json-root, --published-root, --registry-uri, --profile,
--glue-database; optional --datasets (comma list; default: the datasets the
workflow run's ingest wrote, else every dataset under the JSON root; ``*``:
those defaults but the ones --excluded-datasets lists, the other groups'),
--catalog-table-prefix, --retention. Glue adds --WORKFLOW_NAME and
--WORKFLOW_RUN_ID when a workflow starts the job.
"""

import logging
import os
import sys
from typing import cast

import boto3

from bridge_downstream.config import DEFAULT_RETENTION, RunConfig, SchemaRegistry, load_profile
from bridge_downstream.ingest import new_run_id
from bridge_downstream.publish import DirectLocation, json_datasets, publish_dataset
from bridge_downstream_adapters.glue_args import resolve_options
from bridge_downstream_adapters.glue_catalog import GlueCatalog
from bridge_downstream_adapters.s3 import S3Storage
from bridge_downstream_adapters.spark_staging import StagedLocation

log = logging.getLogger("json_to_parquet")


# A dataset group that publishes every dataset the pipeline's other groups do
# not name, so a dataset no group lists is still published.
EVERY_OTHER_DATASET = "*"


def chosen_datasets(args, glue, work) -> list[str]:
    named = [d for d in args["datasets"].split(",") if d]
    if named == [EVERY_OTHER_DATASET]:
        excluded = {d for d in args["excluded_datasets"].split(",") if d}
        return [d for d in _offered_datasets(args, glue, work) if d not in excluded]
    if named:
        return named
    return _offered_datasets(args, glue, work)


def _offered_datasets(args, glue, work) -> list[str]:
    """The datasets the workflow run's ingest wrote, else every dataset under the JSON root."""
    if args["WORKFLOW_NAME"] and args["WORKFLOW_RUN_ID"]:
        properties = glue.get_workflow_run_properties(Name=args["WORKFLOW_NAME"], RunId=args["WORKFLOW_RUN_ID"])[
            "RunProperties"
        ]
        if "ingested_datasets" in properties:
            return [d for d in properties["ingested_datasets"].split(",") if d]
    return json_datasets(work)


def main(argv=None, spark=None, glue_client=None) -> dict:
    args = resolve_options(
        argv if argv is not None else sys.argv,
        ["json-root", "published-root", "registry-uri", "profile", "glue-database"],
        {
            "datasets": "",
            "excluded-datasets": "",
            "catalog-table-prefix": "",
            "retention": str(DEFAULT_RETENTION),
            "WORKFLOW_NAME": None,
            "WORKFLOW_RUN_ID": None,
        },
    )
    glue = glue_client or boto3.client("glue")
    # resolve_options raised MissingJobArgument unless every required argument
    # is a str, and the optional ones cast below have str defaults.
    work = S3Storage.from_uri(cast(str, args["json_root"]))
    config = RunConfig(
        registry=SchemaRegistry.load(S3Storage.from_uri(cast(str, args["registry_uri"]))),
        profile=load_profile(cast(str, args["profile"])),
        output=work,
        published=S3Storage.from_uri(cast(str, args["published_root"])),
        engine="spark",
        retention=int(cast(str, args["retention"])),
    )
    if spark is None:
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.getOrCreate()
    # An emulated endpoint is out of reach of Spark's own S3 connector.
    location = StagedLocation() if os.environ.get("AWS_ENDPOINT_URL") else DirectLocation()
    catalog = GlueCatalog(
        cast(str, args["glue_database"]), config.publish_root, glue, cast(str, args["catalog_table_prefix"])
    )
    run_id = args["WORKFLOW_RUN_ID"] or new_run_id()
    present = set(json_datasets(work))
    results = {}
    try:
        for dataset_id in chosen_datasets(args, glue, work):
            if dataset_id not in present:
                # A dataset group names every dataset it may see; most runs hold a few.
                log.info("%s: no NDJSON under the JSON root, nothing to publish", dataset_id)
                continue
            result = publish_dataset(
                spark,
                dataset_id=dataset_id,
                registry=config.registry,
                profile=config.profile,
                work=config.output,
                published=config.publish_root,
                run_id=run_id,
                location=location,
                catalog=catalog,
                retention=config.retention,
            )
            results[dataset_id] = result.manifest
            log.info(
                "published %s version %s: %s",
                dataset_id,
                result.manifest.version,
                {n: t.rows for n, t in result.manifest.tables.items()},
            )
    finally:
        location.close()
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
