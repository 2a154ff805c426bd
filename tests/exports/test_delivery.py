"""Downstream delivery and retention against moto S3 (and LocalStorage)."""

from __future__ import annotations

import hashlib
import json
import re
import sys
from datetime import UTC, datetime, timedelta

import boto3
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.exports import delivery as dl
from bridge_downstream_adapters.s3 import S3Storage
from project_paths import PROJECT_ROOT
from published_fixtures import publish, sample_tables

BUCKET, PREFIX = "pipeline-bucket", "bridge-downstream/mobile-toolbox/study1"
DROP, DROP_PREFIX = "partner-drop", "mtb/study1"
NOW = datetime(2026, 11, 23, 12, 0, 0, tzinfo=UTC)
DOCS = PROJECT_ROOT / "docs" / "delivery.md"


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.create_bucket(Bucket=DROP)
        yield client


@pytest.fixture
def source(s3):
    storage = S3Storage(BUCKET, PREFIX, client=s3)
    publish(storage, "ArchiveMetadata_v1", "v0001", sample_tables())
    publish(storage, "Other_v1", "v0003", {"Other_v1": {(): [{"a": 1}, {"a": 2}]}})
    return storage


@pytest.fixture
def dest(s3):
    return S3Storage(DROP, DROP_PREFIX, client=s3)


def target(**overrides) -> dl.DeliveryTarget:
    raw = {
        "name": "partner-a",
        "app": "mobile-toolbox",
        "study": "study1",
        "destination": f"s3://{DROP}/{DROP_PREFIX}",
        "tables": ["ArchiveMetadata_v1", "Other_v1"],
        "formats": ["parquet", "csv"],
        "retention_days": 7,
    }
    raw.update(overrides)
    return dl.DeliveryTarget.from_dict({k: v for k, v in raw.items() if v is not None})


def objects(s3, bucket, prefix) -> dict[str, bytes]:
    out = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            out[item["Key"]] = s3.get_object(Bucket=bucket, Key=item["Key"])["Body"].read()
    return out


def test_delivery_copies_chosen_tables_and_writes_manifest_last(s3, source, dest):
    result = dl.run_delivery(
        source, dest, target(tables=["ArchiveMetadata_v1"], formats=["parquet"]), now=NOW, run_id="run-42"
    )
    folder = "20261123T120000Z"
    delivered = objects(s3, DROP, f"{DROP_PREFIX}/{folder}/")
    manifest = json.loads(delivered.pop(f"{DROP_PREFIX}/{folder}/manifest.json"))
    assert sorted(k.split(folder + "/")[1] for k in delivered) == [
        "parquet/ArchiveMetadata_v1/assessmentid=spelling/year=2022/month=02/part-00000.parquet",
        "parquet/ArchiveMetadata_v1/assessmentid=vocab/year=2022/month=03/part-00000.parquet",
    ]
    assert manifest["run_id"] == "run-42" and manifest["folder"] == folder
    assert datetime.strptime(manifest["write_date"], "%Y-%m-%dT%H:%M:%SZ")
    assert manifest["sources"] == [
        {
            "dataset_id": "ArchiveMetadata_v1",
            "version": "v0001",
            "publish_run_id": "run-v0001",
            "schema_version": "2024.1",
        }
    ]
    assert {f["path"]: f["rows"] for f in manifest["files"]} == {
        "parquet/ArchiveMetadata_v1/assessmentid=spelling/year=2022/month=02/part-00000.parquet": 2,
        "parquet/ArchiveMetadata_v1/assessmentid=vocab/year=2022/month=03/part-00000.parquet": 3,
    }
    for entry in manifest["files"]:
        data = delivered[f"{DROP_PREFIX}/{folder}/{entry['path']}"]
        assert entry["size"] == len(data)
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert pq.read_table(__import__("io").BytesIO(data)).num_rows == entry["rows"]
    assert dl.verify_delivery(dest, folder) == []
    assert result.summary()["complete"] and result.removed == []


def test_manifest_is_the_last_write(s3, source, dest):
    writes = []

    class Recording(S3Storage):
        def write_bytes(self, key, data, metadata=None):
            writes.append(key)
            super().write_bytes(key, data, metadata)

    dl.run_delivery(source, Recording(DROP, DROP_PREFIX, client=s3), target(), now=NOW)
    assert writes[-1].endswith("/manifest.json") and len(writes) == 6 + 1
    assert all(not w.endswith("manifest.json") for w in writes[:-1])


def test_interrupted_delivery_leaves_no_manifest(s3, source, dest):
    class Failing(S3Storage):
        writes = 0

        def write_bytes(self, key, data, metadata=None):
            Failing.writes += 1
            if Failing.writes == 4:
                raise ConnectionError("network dropped mid-delivery")
            super().write_bytes(key, data, metadata)

    with pytest.raises(ConnectionError):
        dl.run_delivery(source, Failing(DROP, DROP_PREFIX, client=s3), target(), now=NOW)
    delivered = objects(s3, DROP, DROP_PREFIX)
    assert len(delivered) == 3 and not any(k.endswith("manifest.json") for k in delivered)
    assert dl.verify_delivery(dest, "20261123T120000Z") == ["20261123T120000Z: no manifest.json (incomplete delivery)"]
    assert dl.list_deliveries(dest) == [dl.DeliveryFolder("20261123T120000Z", NOW, False)]

    # The same folder is never reused; the next run completes in its own folder.
    with pytest.raises(dl.DeliveryError, match="already exists"):
        dl.run_delivery(source, dest, target(), now=NOW)
    later = NOW + timedelta(minutes=5)
    dl.run_delivery(source, dest, target(), now=later)
    assert dl.verify_delivery(dest, dl.folder_name(later)) == []


def test_corrupt_source_stops_before_the_manifest(s3, source, dest):
    key = next(k for k in objects(s3, BUCKET, PREFIX) if k.endswith(".csv"))
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"tampered")
    with pytest.raises(dl.DeliveryError, match="does not match its publish manifest"):
        dl.run_delivery(source, dest, target(), now=NOW)
    assert not any(k.endswith("manifest.json") for k in objects(s3, DROP, DROP_PREFIX))


def test_dry_run_writes_nothing(s3, source, dest):
    result = dl.run_delivery(source, dest, target(), now=NOW, dry_run=True)
    assert len(result.plan.copies) == 6 and result.manifest is None
    assert objects(s3, DROP, "") == {}


def test_unknown_table_is_an_error(source, dest):
    with pytest.raises(dl.DeliveryError, match="Nope_v1"):
        dl.run_delivery(source, dest, target(tables=["Nope_v1"]), now=NOW)


def test_pinned_version(s3, source, dest):
    publish(source, "Other_v1", "v0004", {"Other_v1": {(): [{"a": 9}]}})
    result = dl.run_delivery(source, dest, target(tables=["Other_v1"]), now=NOW, versions={"Other_v1": "v0003"})
    assert result.manifest["sources"][0]["version"] == "v0003"
    assert result.manifest["files"][0]["rows"] == 2
    with pytest.raises(dl.DeliveryError, match="no complete published version"):
        dl.run_delivery(source, dest, target(tables=["Other_v1"]), now=NOW, versions={"Other_v1": "v9999"})


def test_retention_removes_old_folders_but_never_the_newest(s3, source, dest):
    days = [30, 20, 10, 3, 1]
    for age in days:
        dl.run_delivery(source, dest, target(retention_days=None), now=NOW - timedelta(days=age))
    # An interrupted, old delivery (no manifest):
    dest.write_bytes(f"{dl.folder_name(NOW - timedelta(days=15))}/csv/x.csv", b"partial")
    dest.write_bytes("README.txt", b"not a delivery folder")

    removed = dl.apply_retention(dest, 7, NOW)
    assert removed == [dl.folder_name(NOW - timedelta(days=d)) for d in (30, 20, 15, 10)]
    assert [f.name for f in dl.list_deliveries(dest)] == [dl.folder_name(NOW - timedelta(days=d)) for d in (3, 1)]
    assert dest.exists("README.txt")

    # Even when every delivery is older than N days, the newest complete one stays.
    assert dl.apply_retention(dest, 7, NOW + timedelta(days=60)) == [dl.folder_name(NOW - timedelta(days=3))]
    assert [f.name for f in dl.list_deliveries(dest)] == [dl.folder_name(NOW - timedelta(days=1))]
    assert dl.verify_delivery(dest, dl.folder_name(NOW - timedelta(days=1))) == []


def test_retention_runs_after_a_delivery(s3, source, dest):
    dl.run_delivery(source, dest, target(), now=NOW - timedelta(days=9))
    result = dl.run_delivery(source, dest, target(retention_days=7), now=NOW)
    assert result.removed == [dl.folder_name(NOW - timedelta(days=9))]
    assert [f.name for f in dl.list_deliveries(dest)] == [dl.folder_name(NOW)]


def test_retention_deletes_the_manifest_first(s3, source, dest):
    dl.run_delivery(source, dest, target(retention_days=None), now=NOW - timedelta(days=9))
    dl.run_delivery(source, dest, target(retention_days=None), now=NOW)
    deleted = []

    class Recording(S3Storage):
        def delete(self, key):
            deleted.append(key)
            super().delete(key)

    dl.apply_retention(Recording(DROP, DROP_PREFIX, client=s3), 7, NOW)
    assert deleted[0].endswith("/manifest.json") and len(deleted) == 7


def test_delivery_on_local_storage(tmp_path):
    source = LocalStorage(tmp_path / "root")
    publish(source, "ArchiveMetadata_v1", "v0001", sample_tables())
    dest = LocalStorage(tmp_path / "drop")
    result = dl.run_delivery(source, dest, target(tables=None), now=NOW)
    assert len(result.manifest["files"]) == 6
    assert dl.verify_delivery(dest, "20261123T120000Z") == []


def test_config_parsing():
    text = """
deliveries:
  - name: partner-a
    app: mobile-toolbox
    study: study1
    destination: s3://partner-drop/mtb/study1
    tables: [ArchiveMetadata_v1]
    retention_days: 30
  - name: partner-b
    app: mobile-toolbox
    study: study2
    destination: s3://other/drop
"""
    targets = dl.load_delivery_config(text)
    assert dl.targets_for(targets, "mobile-toolbox", "study1")[0].retention_days == 30
    assert dl.targets_for(targets, "mobile-toolbox", "study2")[0].formats == ("parquet", "csv")
    with pytest.raises(dl.DeliveryError, match="no delivery configured"):
        dl.targets_for(targets, "mobile-toolbox", "study3")
    with pytest.raises(dl.DeliveryError, match="retention_days"):
        dl.load_delivery_config(text.replace("30", "0"))
    with pytest.raises(dl.DeliveryError, match="unknown settings"):
        dl.load_delivery_config(text.replace("retention_days", "retention"))


def test_consumer_example_in_docs_verifies_a_delivery(s3, source, dest):
    """The consumer-side example in docs/delivery.md runs as written."""
    dl.run_delivery(source, dest, target(), now=NOW - timedelta(days=1))
    dl.run_delivery(source, dest, target(), now=NOW)
    dest.write_bytes("20991231T000000Z/parquet/partial.parquet", b"in progress")  # no manifest: ignored
    code = re.search(r"```python\n(# consumer-side example.*?)```", DOCS.read_text(), re.DOTALL).group(1)
    namespace = {"__name__": "docs_example"}
    exec(compile(code, str(DOCS), "exec"), namespace)  # noqa: S102 - runs the documented example
    folder, manifest = namespace["latest_complete_delivery"](s3, DROP, DROP_PREFIX)
    assert folder == "20261123T120000Z" and len(manifest["files"]) == 6
    namespace["verify"](s3, DROP, DROP_PREFIX, folder, manifest)

    key = f"{DROP_PREFIX}/{folder}/{manifest['files'][0]['path']}"
    s3.put_object(Bucket=DROP, Key=key, Body=b"corrupted")
    with pytest.raises(ValueError, match="checksum"):
        namespace["verify"](s3, DROP, DROP_PREFIX, folder, manifest)


def test_cli_and_glue_job_deliver(tmp_path, s3, source, capsys):
    import argparse
    import importlib.util

    from bridge_downstream_cli.export_commands import add_export_commands

    config = tmp_path / "deliveries.yaml"
    config.write_text(f"""
deliveries:
  - name: partner-a
    app: mobile-toolbox
    study: study1
    destination: s3://{DROP}/{DROP_PREFIX}
    tables: [Other_v1]
    retention_days: 7
  - name: local-copy
    app: mobile-toolbox
    study: study1
    destination: {tmp_path / "local-drop"}
""")
    parser = argparse.ArgumentParser(prog="bridge-downstream")
    add_export_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(
        [
            "export",
            "deliver",
            "--published-root",
            f"s3://{BUCKET}/{PREFIX}",
            "--config",
            str(config),
            "--app",
            "mobile-toolbox",
            "--study",
            "study1",
            "--run-id",
            "cli-run",
        ]
    )
    assert args.func(args) == 0
    summaries = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [s["delivery"] for s in summaries] == ["partner-a", "local-copy"]
    assert all(s["complete"] and s["run_id"] == "cli-run" for s in summaries)
    (local_folder,) = [f.name for f in dl.list_deliveries(LocalStorage(tmp_path / "local-drop"))]
    assert dl.verify_delivery(LocalStorage(tmp_path / "local-drop"), local_folder) == []

    s3.put_object(Bucket=BUCKET, Key="config/deliveries.yaml", Body=config.read_bytes())
    path = PROJECT_ROOT / "src" / "glue" / "jobs" / "delivery.py"
    spec = importlib.util.spec_from_file_location("glue_delivery", path)
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    assert not re.search(r"^\s*(import|from) awsglue", path.read_text(), re.MULTILINE)
    assert (
        job.main(
            [
                "--JOB_NAME",
                "deliver",
                "--JOB_RUN_ID",
                "jr_9",
                "--published-root",
                f"s3://{BUCKET}/{PREFIX}",
                "--config",
                f"s3://{BUCKET}/config/deliveries.yaml",
                "--app",
                "mobile-toolbox",
                "--study",
                "study1",
                "--name",
                "partner-a",
                "--retention-only",
                "true",
            ]
        )
        == 0
    )
    assert json.loads(capsys.readouterr().out)["removed_by_retention"] == []
    args = parser.parse_args(
        [
            "export",
            "deliver",
            "--published-root",
            f"s3://{BUCKET}/{PREFIX}",
            "--config",
            str(config),
            "--app",
            "other",
            "--study",
            "study1",
        ]
    )
    assert args.func(args) == 2
    assert "no delivery configured" in capsys.readouterr().err


def test_core_export_modules_import_no_boto3_or_synapseclient():
    import subprocess

    code = (
        "import sys, bridge_downstream.exports.synapse_plan, bridge_downstream.exports.delivery, "
        "bridge_downstream_adapters.export_runs; "
        "print([m for m in ('boto3', 'botocore', 'synapseclient') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
