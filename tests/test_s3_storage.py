"""The S3 storage adapter against moto."""

import boto3
import pytest
from moto import mock_aws

from bridge_downstream.ingest import ArchiveInput, run_ingest
from bridge_downstream.profiles import load_profile
from bridge_downstream.sinks import StorageInvalidSink
from bridge_downstream.storage import LocalStorage
from bridge_downstream_adapters.s3 import S3Storage

from support import build_sample_registry


@mock_aws
def test_round_trip_listing_metadata_and_missing_objects():
    boto3.client("s3").create_bucket(Bucket="bucket-b")
    storage = S3Storage("bucket-b", "ns/app")
    storage.write_bytes("json/x=1/a.ndjson", b"{}\n", metadata={"recordid": "r1"})
    storage.write_bytes("json/x=2/b.ndjson", b"[]\n")
    assert [i.key for i in storage.list("json/")] == ["json/x=1/a.ndjson", "json/x=2/b.ndjson"]
    assert storage.metadata("json/x=1/a.ndjson") == {"recordid": "r1"}
    assert storage.uri("json/x=1/a.ndjson") == "s3://bucket-b/ns/app/json/x=1/a.ndjson"
    storage.copy("json/x=1/a.ndjson", "copy.ndjson")
    assert storage.read_bytes("copy.ndjson") == b"{}\n" and storage.exists("copy.ndjson")
    storage.delete("copy.ndjson")
    assert not storage.exists("copy.ndjson")
    with pytest.raises(FileNotFoundError, match="s3://bucket-b/ns/app/gone.zip"):
        storage.read_bytes("gone.zip")
    with pytest.raises(FileNotFoundError):
        storage.metadata("gone.zip")


@mock_aws
def test_a_missing_upload_is_an_invalid_record_not_a_crash(tmp_path):
    boto3.client("s3").create_bucket(Bucket="uploads")
    registry = build_sample_registry(tmp_path / "registry")
    output = LocalStorage(tmp_path / "out")
    inputs = [ArchiveInput(S3Storage("uploads"), "vanished.zip", source_bucket="uploads")]
    report = run_ingest(inputs, registry=registry, profile=load_profile("mtb"), output=output, sink=StorageInvalidSink(output), workers=1)
    assert report["archives"] == {"total": 1, "processed": 0, "invalid": 1, "skipped": 0}
    assert report["invalid"][0]["reason"] == "archive not found: s3://uploads/vanished.zip"
