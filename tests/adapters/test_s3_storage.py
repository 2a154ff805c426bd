"""The S3 storage adapter against moto."""

import json

import boto3
import pytest
from moto import mock_aws

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.ingest.archive_ingest import prefetched
from bridge_downstream.ingest.invalid_sink import StorageInvalidSink
from bridge_downstream.ingest.listing import ArchiveInput
from bridge_downstream.ingest.outcomes import read_run_records
from bridge_downstream.ingest.run import run_ingest
from bridge_downstream_adapters.s3 import S3Storage
from support import SAMPLES, build_sample_registry


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
def test_a_folder_lists_its_own_keys_not_its_siblings_beginning_alike():
    boto3.client("s3").create_bucket(Bucket="bucket-f")
    storage = S3Storage("bucket-f", "ns")
    for key in ("published/D/versions/v1/manifest.json", "published/D/versions.json", "published/D2/CURRENT"):
        storage.write_bytes(key, b"x")
    S3Storage("bucket-f", "ns2").write_bytes("other.json", b"x")
    assert [i.key for i in storage.list("published/D/versions/")] == ["published/D/versions/v1/manifest.json"]
    assert [i.key for i in storage.list("published/D/")] == [
        "published/D/versions.json",
        "published/D/versions/v1/manifest.json",
    ]
    assert [i.key for i in storage.list("published/D/versions")] == [  # no "/": every key starting so
        "published/D/versions.json",
        "published/D/versions/v1/manifest.json",
    ]
    assert len(list(storage.list(""))) == 3  # the storage's own root, not "ns2/"


@mock_aws
def test_a_missing_upload_is_an_invalid_record_not_a_crash(tmp_path):
    boto3.client("s3").create_bucket(Bucket="uploads")
    registry = build_sample_registry(tmp_path / "registry")
    output = LocalStorage(tmp_path / "out")
    inputs = [ArchiveInput(S3Storage("uploads"), "vanished.zip", source_bucket="uploads")]
    report = run_ingest(
        inputs,
        registry=registry,
        profile=load_profile("mtb"),
        output=output,
        sink=StorageInvalidSink(output),
        workers=1,
    )
    assert report["archives"] == {"total": 1, "processed": 0, "invalid": 1, "skipped": 0}
    assert report["invalid"][0]["reason"] == "archive not found: s3://uploads/vanished.zip"


@mock_aws
def test_read_ahead_ingests_like_reading_each_archive_when_due(tmp_path):
    """Archives prefetched on threads (as the Glue job does) end exactly as
    without prefetching: same outcomes in the same order, a missing object
    included; the metadata comes with the GET."""
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="uploads")
    archives = SAMPLES / "archives"
    keys = []
    for path in sorted(archives.glob("*.zip")):
        sidecar = path.with_name(path.name + ".metadata.json")
        metadata = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
        s3.put_object(
            Bucket="uploads",
            Key=path.name,
            Body=path.read_bytes(),
            Metadata={k.lower(): str(v) for k, v in metadata.items()},
        )
        keys.append(path.name)
    keys.insert(3, "vanished.zip")
    registry = build_sample_registry(tmp_path / "registry")
    storage = S3Storage("uploads")
    stream, metadata = storage.open_read_with_metadata(keys[0])
    assert stream.read(2) == b"PK" and metadata["recordid"]
    reports = {}
    for prefetch in (0, 3):
        output = LocalStorage(tmp_path / f"out-{prefetch}")
        inputs = sorted((ArchiveInput(storage, key, source_bucket="uploads") for key in keys), key=lambda i: i.source)
        report = run_ingest(
            inputs,
            registry=registry,
            profile=load_profile("mtb"),
            output=output,
            sink=StorageInvalidSink(output),
            workers=1,
            prefetch=prefetch,
        )
        records = [
            (r["source"], r["status"], r["reason"], r["datasets"]) for r in read_run_records(output, report["run_id"])
        ]
        reports[prefetch] = (report["archives"], report["datasets"], records)
    assert reports[3] == reports[0]
    assert reports[3][0] == {"total": 9, "processed": 5, "invalid": 4, "skipped": 0}
    assert ("s3://uploads/vanished.zip", "invalid", "archive not found: s3://uploads/vanished.zip", {}) in reports[3][2]


def test_prefetch_stops_cleanly_when_the_consumer_stops(tmp_path):
    (tmp_path / "a.zip").write_bytes(b"a")
    (tmp_path / "b.zip").write_bytes(b"b")
    storage = LocalStorage(tmp_path)
    inputs = [ArchiveInput(storage, "a.zip", metadata={}), ArchiveInput(storage, "b.zip", metadata={})]
    for inp, opening in prefetched(inputs, 2):
        stream, _ = opening.result()
        assert stream.read() == b"a"
        stream.close()
        break


@mock_aws
def test_move_in_uploads_and_removes_the_local_file(tmp_path):
    boto3.client("s3").create_bucket(Bucket="bucket-m")
    storage = S3Storage("bucket-m", "ns")
    staged = tmp_path / "part.ndjson"
    staged.write_bytes(b'{"a":1}\n')
    storage.move_in(str(staged), "json/x=1/part.ndjson")
    assert storage.read_bytes("json/x=1/part.ndjson") == b'{"a":1}\n'
    assert not staged.exists()
