"""The ingest stage on Glue: archives fan out across the cluster.

The driver splits the messages into deterministic slices; each Spark task
runs the core's ``process_batch`` on its slice, reading archives from S3 and
writing its own part files and outcome spool (so the driver collects
counts, not per-archive data); the driver then merges the spools, sends
invalid records, writes the ledger, commits the run and writes the report --
the same steps as the local command (``finish_run``). Nothing the job stores
is read before the driver has committed the run: a job that fails, times out
or is stopped adds no row that publish reads. Each attempt at a task claims
its part files as itself, and the commit takes the attempts whose results the
driver collected: part files of an attempt that died (its executor lost, and
Spark ran the task again) are never read, even where they differ from the
next attempt's.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import cast

from bridge_downstream.common.run_commits import attempt_claimant
from bridge_downstream.config.limits import ArchiveLimits
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.config.registry import SchemaRegistry
from bridge_downstream.ingest.context import IngestContext, default_prefetch
from bridge_downstream.ingest.invalid_sink import StorageInvalidSink
from bridge_downstream.ingest.listing import ArchiveInput
from bridge_downstream.ingest.outcomes import IngestLedger, TaskResult, finish_run, load_ledger
from bridge_downstream.ingest.run import new_run_id, process_batch, without_repeated_archives
from bridge_downstream_adapters.raw_bucket import (
    RawFolderStorage,
    StsTokenCache,
    process_token_cache,
    require_synapse_client,
)
from bridge_downstream_adapters.s3 import S3Storage
from bridge_downstream_adapters.sqs import DurableInvalidSink


@dataclass(frozen=True)
class IngestJobConfig:
    json_root: str
    registry_uri: str
    profile: str
    app_id: str | None = None
    # Captured on the driver: executors do not see the driver's later
    # environment changes (the emulated endpoint in tests).
    endpoint_url: str | None = field(default_factory=lambda: os.environ.get("AWS_ENDPOINT_URL"))
    # The SSM parameter holding the Synapse auth token: with it, messages that
    # name a raw_folder_id are read from Bridge's bucket through an STS token.
    synapse_token_parameter: str | None = None
    synapse_endpoint: str | None = None  # None: production Synapse


_EXECUTOR_CACHE: dict[str, SchemaRegistry] = {}


def _context(config: IngestJobConfig, already_ingested: IngestLedger) -> IngestContext:
    # One registry load per executor process, not per task.
    registry = _EXECUTOR_CACHE.get(config.registry_uri)
    if registry is None:
        registry = _EXECUTOR_CACHE[config.registry_uri] = SchemaRegistry.load(
            S3Storage.from_uri(config.registry_uri, endpoint_url=config.endpoint_url)
        )
    profile = load_profile(config.profile)
    return IngestContext(registry, profile, ArchiveLimits(), config.app_id, already_ingested, default_prefetch(profile))


def message_inputs(
    messages: list[dict], endpoint_url: str | None = None, raw_tokens: StsTokenCache | None = None
) -> list[ArchiveInput]:
    """The archives the messages name. With ``raw_tokens``, a message that
    names a ``raw_folder_id`` is read through that folder's STS token (where
    Bridge writes uploads); every other one with the job's own credentials."""
    storages: dict[tuple[str, str | None], S3Storage] = {}
    inputs = []
    for message in messages:
        bucket = message["source_bucket"]
        folder_id = message.get("raw_folder_id") or None
        reader = (bucket, folder_id if raw_tokens is not None else None)
        if reader not in storages:
            storages[reader] = (
                S3Storage(bucket, endpoint_url=endpoint_url)
                if raw_tokens is None or folder_id is None
                else RawFolderStorage(bucket, folder_id, raw_tokens)
            )
        inputs.append(
            ArchiveInput(storages[reader], message["source_key"], source_bucket=bucket, raw_folder_id=folder_id)
        )
    return inputs


def raw_token_cache(config: IngestJobConfig) -> StsTokenCache | None:
    if not config.synapse_token_parameter:
        return None
    return process_token_cache(config.synapse_token_parameter, config.synapse_endpoint, config.endpoint_url)


def process_slice(
    task: int,
    messages: list[dict],
    config: IngestJobConfig,
    already_ingested: IngestLedger,
    run_id: str,
    kept_copies: Mapping[str, tuple[int, str]] | None = None,
) -> TaskResult:
    ctx = dataclasses.replace(_context(config, already_ingested), kept_copies=kept_copies or {})
    output = S3Storage.from_uri(config.json_root, endpoint_url=config.endpoint_url)
    named = message_inputs(messages, config.endpoint_url, raw_token_cache(config))
    inputs = sorted(named, key=lambda i: i.source)  # the outcome spool's order
    # Spark attempts a task again when an executor is lost: each attempt claims
    # its own part files, and the run's commit takes only the attempt whose
    # result the driver collected.
    attempt = attempt_claimant(run_id)
    return cast(TaskResult, process_batch(task, inputs, ctx, output, run_id, attempt=attempt))  # a finished task


def split_messages(messages: list[dict], slices: int) -> list[list[dict]]:
    ordered = sorted(messages, key=lambda m: (m["source_bucket"], m["source_key"]))
    count = max(1, min(len(ordered), slices))
    return [ordered[i::count] for i in range(count)]


def run_ingest_on_spark(
    spark, messages: list[dict], config: IngestJobConfig, invalid_sink, run_id: str | None = None
) -> dict:
    if config.synapse_token_parameter and any(m.get("raw_folder_id") for m in messages):
        require_synapse_client()
    started = datetime.now(UTC)
    run_id = run_id or new_run_id()
    output = S3Storage.from_uri(config.json_root, endpoint_url=config.endpoint_url)
    already = load_ledger(output)
    slices = split_messages(messages, spark.sparkContext.defaultParallelism * 2)

    def run_slices(tasks: list[int], kept_copies: Mapping[str, tuple[int, str]]) -> list[TaskResult]:
        chosen = [(task, slices[task]) for task in tasks]
        rdd = spark.sparkContext.parallelize(chosen, len(chosen) or 1)
        return rdd.map(lambda item: process_slice(item[0], item[1], config, already, run_id, kept_copies)).collect()

    results = run_slices(list(range(len(slices))), {})
    results, ctx = without_repeated_archives(
        results, _context(config, already), output, lambda again, settled: run_slices(again, settled.kept_copies)
    )
    durable = DurableInvalidSink(StorageInvalidSink(output), invalid_sink)  # <json root>/invalid/, beside the queue
    return finish_run(run_id, ctx, results, started, output, durable)


def messages_from_run_properties(properties: dict) -> list[dict]:
    raw = properties.get("messages")
    if not raw:
        return []
    messages = json.loads(raw)
    for message in messages:
        missing = [k for k in ("source_bucket", "source_key") if not message.get(k)]
        if missing:
            raise ValueError(f"workflow message {message!r} lacks {', '.join(missing)}")
    return messages
