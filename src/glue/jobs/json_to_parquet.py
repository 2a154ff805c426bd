"""Glue job: NDJSON datasets -> relationalized Parquet and CSV, published and catalogued.

Job arguments: --json-root, --published-root, --registry-uri, --profile,
--glue-database; optional --datasets (comma list; default: the datasets the
workflow run's ingest wrote, else every dataset under the JSON root; ``*``:
those defaults but the ones --excluded-datasets lists, the other groups'),
--catalog-table-prefix, --retention. Glue adds --WORKFLOW_NAME and
--WORKFLOW_RUN_ID when a workflow starts the job.

Publish is debounced (docs/operations.md, "Debounced publish"): a rate
trigger starts the job, and of the datasets chosen it publishes only those
whose committed NDJSON (its ``_Deleted`` companion's too) differs from what
their last publish read -- recorded as a digest of part file keys and sizes
(a part file's name holds a digest of its archives: new data, new name).
``--force-publish true`` publishes them all.

Each new version is checked against the profile's data-quality expectations
before it is made current (docs/quality.md), as the command line's publish
does: a failed ``block`` expectation leaves the previous version current, and
the job, once it has published the other datasets, fails naming it.
"""

import hashlib
import logging
import os
import sys
from typing import cast

import boto3

from bridge_downstream.common import layout
from bridge_downstream.common.run_commits import committed_part_files
from bridge_downstream.common.storage import Storage
from bridge_downstream.config import DEFAULT_RETENTION, RunConfig, SchemaRegistry, load_profile
from bridge_downstream.ingest import new_run_id
from bridge_downstream.publish import DirectLocation, json_datasets, publish_dataset
from bridge_downstream.publish.engine_steps import publishing_with_quality_check
from bridge_downstream.publish.file_layout import ENVIRONMENT_VARIABLE
from bridge_downstream.publish.manifest import PublishManifest
from bridge_downstream.quality import SparkTables, failed_results, publish_quality_check
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


def inputs_digest(work: Storage, dataset_id: str, deleted_suffix: str | None) -> str:
    """What a publish of the dataset would read: its committed part files and its ``_Deleted`` companion's."""
    digest = hashlib.sha256()
    companions = [dataset_id] + ([dataset_id + deleted_suffix] if deleted_suffix else [])
    for companion in companions:
        for info in sorted(committed_part_files(work, companion), key=lambda info: info.key):
            digest.update(f"{info.key}\0{info.size}\n".encode())
    return digest.hexdigest()


def has_new_data(published: Storage, dataset_id: str, digest: str) -> bool:
    """Whether the committed NDJSON (``digest``) changed since the dataset's last publish."""
    key = layout.published_inputs_key(dataset_id)
    return not published.exists(key) or published.read_bytes(key).decode() != digest


class QualityBlocked(RuntimeError):
    """A version failed a ``block`` expectation and was not made current: the job fails with it."""


def blocked_message(blocked: list[PublishManifest]) -> str:
    """Each blocked version, the ``block`` expectations it failed and where its report is."""
    lines = []
    for manifest in blocked:
        quality = manifest.quality or {}
        lines.append(
            f"{manifest.dataset_id} version {manifest.version} not made current, the previous one stays "
            f"(report {quality.get('report')}):"
        )
        lines.extend(
            f"  [block] {r['table']}: {r['expectation']}: {r['unexpected_count']} unexpected"
            for r in failed_results(manifest)
            if r["policy"] == "block"
        )
    return "blocked by a data-quality expectation:\n" + "\n".join(lines)


def main(argv=None, spark=None, glue_client=None) -> dict:
    args = resolve_options(
        argv if argv is not None else sys.argv,
        ["json-root", "published-root", "registry-uri", "profile", "glue-database"],
        {
            "datasets": "",
            "excluded-datasets": "",
            "catalog-table-prefix": "",
            "retention": str(DEFAULT_RETENTION),
            "force-publish": "false",
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
    # On Spark: a table of years of data need not fit in the driver's memory.
    quality_check = publish_quality_check(config.profile, source=SparkTables(spark, location))
    try:
        for dataset_id in chosen_datasets(args, glue, work):
            if dataset_id not in present:
                # A dataset group names every dataset it may see; most runs hold a few.
                log.info("%s: no NDJSON under the JSON root, nothing to publish", dataset_id)
                continue
            digest = inputs_digest(config.output, dataset_id, config.profile.dedup.deleted_suffix)
            if args["force_publish"] != "true" and not has_new_data(config.publish_root, dataset_id, digest):
                log.info("%s: no new data since its last publish, left as it is", dataset_id)
                continue
            with publishing_with_quality_check(quality_check):
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
            # What this version read (a blocked one too: the same data would fail again, and
            # publishes again only with new data or --force-publish); NDJSON committed meanwhile
            # differs, and is published next time.
            config.publish_root.write_bytes(layout.published_inputs_key(dataset_id), digest.encode())
            log.info(
                "%s %s version %s: %s",
                "blocked by a data-quality expectation:" if result.manifest.blocked_by_quality else "published",
                dataset_id,
                result.manifest.version,
                {n: t.rows for n, t in result.manifest.tables.items()},
            )
    finally:
        location.close()
    blocked = [manifest for manifest in results.values() if manifest.blocked_by_quality]
    if blocked:
        raise QualityBlocked(blocked_message(blocked))
    return results


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    os.environ.setdefault(ENVIRONMENT_VARIABLE, "glue")  # Glue's file sizes (publish/file_layout.py)
    main()
