"""Invalid records are kept in S3 as well as announced on the queue, so that a
replay works after the queue has dropped them (14 days): moto S3 and SQS."""

from __future__ import annotations

import json

import boto3
import pytest
from moto import mock_aws

from bridge_downstream.config.profiles import load_profile
from bridge_downstream.config.registry import SchemaRegistry
from bridge_downstream.ingest.invalid_sink import StorageInvalidSink
from bridge_downstream.ingest.listing import ArchiveInput
from bridge_downstream.ingest.run import run_ingest
from bridge_downstream.replay.invalid_store import StorageInvalidStore
from bridge_downstream.replay.replayer import replay
from bridge_downstream.replay.selection import Selection
from bridge_downstream_adapters.invalid_queue import (
    ARCHIVED,
    QueueAndArchiveInvalidStore,
    SqsInvalidStore,
    s3_input_resolver,
)
from bridge_downstream_adapters.s3 import S3Storage
from bridge_downstream_adapters.sqs import DurableInvalidSink, SqsInvalidSink
from support import SAMPLES, build_sample_registry

JSON_ROOT = "s3://intermediate/ns/mobile-toolbox/example"


@pytest.fixture
def ingested(tmp_path, monkeypatch):
    """The samples ingested on moto with the durable sink: (registry, output, queue url)."""
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    with mock_aws():
        s3, sqs = boto3.client("s3"), boto3.client("sqs")
        for bucket in ("uploads", "intermediate"):
            s3.create_bucket(Bucket=bucket)
        url = sqs.create_queue(QueueName="ns-invalid-records")["QueueUrl"]
        keys = []
        for archive in sorted((SAMPLES / "archives").glob("*.zip")):
            sidecar = archive.with_name(archive.name + ".metadata.json")
            metadata = json.loads(sidecar.read_text()) if sidecar.exists() else {}
            s3.put_object(Bucket="uploads", Key=archive.name, Body=archive.read_bytes(), Metadata=metadata)
            keys.append(archive.name)
        registry = build_sample_registry(tmp_path / "registry")
        output = S3Storage.from_uri(JSON_ROOT)
        report = run_ingest(
            [ArchiveInput(S3Storage("uploads"), key, source_bucket="uploads") for key in keys],
            registry=registry,
            profile=load_profile("mtb"),
            output=output,
            sink=DurableInvalidSink(StorageInvalidSink(output), SqsInvalidSink(url)),
            workers=1,
        )
        yield report, tmp_path / "registry", output, url


def archived_keys(output: S3Storage) -> list[str]:
    return sorted(info.key for info in output.list("invalid/"))


def queued(url: str) -> int:
    attributes = boto3.client("sqs").get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(attributes["ApproximateNumberOfMessagesNotVisible"])


def store_of(output: S3Storage, url: str) -> QueueAndArchiveInvalidStore:
    return QueueAndArchiveInvalidStore(SqsInvalidStore(url, wait_seconds=0), StorageInvalidStore(output))


def test_every_invalid_record_is_both_in_s3_and_on_the_queue(ingested):
    report, _, output, url = ingested
    invalid = report["archives"]["invalid"]
    assert invalid >= 1
    assert len(archived_keys(output)) == invalid
    assert queued(url) == invalid
    assert all(key.startswith("invalid/") and key.endswith(".json") for key in archived_keys(output))


def test_the_store_lists_each_record_once_with_both_copies(ingested):
    report, _, output, url = ingested
    loaded = store_of(output, url).load()
    assert len(loaded) == report["archives"]["invalid"]
    for stored in loaded:
        assert sum(h.startswith(ARCHIVED) for h in stored.handles) == 1
        assert sum(not h.startswith(ARCHIVED) for h in stored.handles) == 1


def test_after_the_queue_dropped_them_the_records_are_still_listed_and_replayed(ingested):
    report, registry_dir, output, url = ingested
    boto3.client("sqs").purge_queue(QueueUrl=url)  # what 14 days of retention do
    store = store_of(output, url)
    loaded = store.load()
    assert len(loaded) == report["archives"]["invalid"] and all(
        h.startswith(ARCHIVED) for s in loaded for h in s.handles
    )
    result = replay(
        store,
        Selection(all=True),
        registry=SchemaRegistry.load(registry_dir),
        profile=load_profile("mtb"),
        output=output,
        resolve_input=s3_input_resolver(),
    )
    # nothing changed for these archives: still invalid, re-announced, and still kept in S3
    assert len(result["still_invalid"]) == report["archives"]["invalid"]
    assert len(archived_keys(output)) == report["archives"]["invalid"]
    assert queued(url) == report["archives"]["invalid"]


def test_settling_a_record_removes_both_copies(ingested):
    report, _, output, url = ingested
    store = store_of(output, url)
    first, *rest = store.load()
    assert store.remove(first.handles) == 2
    store.release([h for s in rest for h in s.handles])
    assert len(archived_keys(output)) == report["archives"]["invalid"] - 1
    assert queued(url) == report["archives"]["invalid"] - 1


def test_the_invalid_command_lists_the_durable_copies_the_queue_dropped(ingested, capsys):
    from bridge_downstream_cli.main import main

    report, _, _, url = ingested
    boto3.client("sqs").purge_queue(QueueUrl=url)
    assert main(["invalid", "list", "--queue-url", url, "--wait-seconds", "0", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == []  # the queue alone: nothing left
    code = main(["invalid", "list", "--queue-url", url, "--wait-seconds", "0", "--archive-root", JSON_ROOT, "--json"])
    listed = json.loads(capsys.readouterr().out)
    assert code == 0 and len(listed) == report["archives"]["invalid"]
    assert sorted(entry["source"] for entry in listed) == sorted(entry["source"] for entry in report["invalid"])
