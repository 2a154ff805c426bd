"""Glue job: upload archives named in the workflow run's messages -> NDJSON datasets.

Job arguments: --json-root, --registry-uri, --profile, --invalid-queue-url,
optional --app-id, --ssm-parameter-name (the SSM parameter holding the Synapse
auth token: with it, a message's ``raw_folder_id`` is read from Bridge's bucket
through a Synapse STS read-only token) and --synapse-endpoint (tests); Glue
adds --WORKFLOW_NAME and --WORKFLOW_RUN_ID. The run properties hold
``messages``: ``[{source_bucket, source_key, raw_folder_id}]``.
"""

import json
import logging
import sys
from typing import cast

import boto3

from bridge_downstream_adapters.glue_args import resolve_options
from bridge_downstream_adapters.glue_ingest import (
    IngestJobConfig,
    messages_from_run_properties,
    run_ingest_on_spark,
)
from bridge_downstream_adapters.sqs import SqsInvalidSink

log = logging.getLogger("s3_to_json")


def main(argv=None, spark=None, glue_client=None, sqs_client=None) -> dict:
    args = resolve_options(
        argv if argv is not None else sys.argv,
        ["WORKFLOW_NAME", "WORKFLOW_RUN_ID", "json-root", "registry-uri", "profile", "invalid-queue-url"],
        {"app-id": None, "ssm-parameter-name": None, "synapse-endpoint": None},
    )
    glue = glue_client or boto3.client("glue")
    properties = glue.get_workflow_run_properties(Name=args["WORKFLOW_NAME"], RunId=args["WORKFLOW_RUN_ID"])[
        "RunProperties"
    ]
    messages = messages_from_run_properties(properties)
    if spark is None:
        from pyspark.sql import SparkSession

        spark = SparkSession.builder.getOrCreate()
    # resolve_options raised MissingJobArgument unless every required argument is a str.
    config = IngestJobConfig(
        cast(str, args["json_root"]),
        cast(str, args["registry_uri"]),
        cast(str, args["profile"]),
        args["app_id"],
        synapse_token_parameter=args["ssm_parameter_name"] or None,
        synapse_endpoint=args["synapse_endpoint"] or None,
    )
    report = run_ingest_on_spark(
        spark, messages, config, SqsInvalidSink(cast(str, args["invalid_queue_url"]), sqs_client)
    )
    # The JSON-to-Parquet jobs of the same workflow run read which datasets changed.
    glue.put_workflow_run_properties(
        Name=args["WORKFLOW_NAME"],
        RunId=args["WORKFLOW_RUN_ID"],
        RunProperties={"ingest_run_id": report["run_id"], "ingested_datasets": ",".join(sorted(report["datasets"]))},
    )
    log.info("ingest %s: %s", report["run_id"], json.dumps(report["archives"]))
    return report


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO)
    main()
