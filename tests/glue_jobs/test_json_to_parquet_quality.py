"""The JSON-to-Parquet Glue job runs the profile's data-quality expectations
at publish (issue 25), as the command line does: a failed ``block``
expectation keeps the previous version current, and the job fails naming it."""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path

import boto3
import pytest
import yaml

from aws_emulator import moto_server
from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.ingest.invalid_sink import StorageInvalidSink
from bridge_downstream.ingest.listing import ArchiveInput
from bridge_downstream.ingest.run import run_ingest
from bridge_downstream.publish.manifest import current_version, read_manifest
from bridge_downstream_adapters.s3 import S3Storage
from project_paths import PROJECT_ROOT
from support import build_sample_registry, load_job

DATASET = "FitbitSleepLogs"
JSON_ROOT, PUBLISHED_ROOT = "s3://intermediate/ns/app/study", "s3://parquet/ns/app/study"
BLOCKING = {"kind": "between", "column": "MinutesAsleep", "min": 0, "max": 1440, "policy": "block"}


def _blocking_profile(path: Path) -> Path:
    """recover, its only expectation a blocking range on sleep minutes."""
    raw = yaml.safe_load((PROJECT_ROOT / "src/bridge_downstream/config/resources/profiles/recover.yaml").read_text())
    raw["expectations"] = {DATASET: {"root": [BLOCKING]}}
    path.write_text(yaml.safe_dump(raw))
    return path


def _ingest_export(folder: Path, name: str, rows: list[dict], profile, registry) -> None:
    """One recover export of sleep logs, ingested into the emulated JSON root."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(f"{DATASET}_20230112-20230114.json", "".join(json.dumps(r) + "\n" for r in rows))
    (folder / name).write_bytes(buffer.getvalue())
    output = S3Storage.from_uri(JSON_ROOT)
    report = run_ingest(
        [ArchiveInput(LocalStorage(folder), name)],
        registry=registry,
        profile=profile,
        output=output,
        sink=StorageInvalidSink(output),
        workers=1,
    )
    assert report["archives"]["processed"] == 1


@pytest.mark.spark
def test_a_blocked_version_stays_unpublished_and_fails_the_job_naming_the_expectation(spark, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    profile_path = _blocking_profile(tmp_path / "recover-blocking.yaml")
    profile = load_profile(profile_path)
    exports = tmp_path / "exports"
    exports.mkdir()
    with moto_server() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        s3, glue = boto3.client("s3"), boto3.client("glue")
        for bucket in ("artifacts", "intermediate", "parquet"):
            s3.create_bucket(Bucket=bucket)
        registry = build_sample_registry(tmp_path / "registry")
        for path in (tmp_path / "registry").rglob("*"):
            if path.is_file():
                s3.upload_file(str(path), "artifacts", f"registry/{path.relative_to(tmp_path / 'registry').as_posix()}")
        glue.create_database(DatabaseInput={"Name": "recover_db"})
        argv = [
            "json_to_parquet.py",
            "--json-root",
            JSON_ROOT,
            "--registry-uri",
            "s3://artifacts/registry",
            "--profile",
            str(profile_path),
            "--published-root",
            PUBLISHED_ROOT,
            "--glue-database",
            "recover_db",
            "--datasets",
            DATASET,
        ]
        job = load_job("json_to_parquet")
        published = S3Storage.from_uri(PUBLISHED_ROOT)

        _ingest_export(
            exports,
            "a.zip",
            [{"ParticipantIdentifier": "RX-1", "LogId": "l1", "MinutesAsleep": "400"}],
            profile,
            registry,
        )
        first = job.main(argv, spark=spark)[DATASET]
        assert not first.blocked_by_quality
        assert current_version(published, DATASET) == first.version

        bad = {"ParticipantIdentifier": "RX-2", "LogId": "l2", "MinutesAsleep": "5000"}
        _ingest_export(exports, "b.zip", [bad], profile, registry)
        with pytest.raises(job.QualityBlocked) as raised:
            job.main(argv, spark=spark)

        message = str(raised.value)
        assert f"{DATASET} version " in message
        assert "[block] dataset_fitbitsleeplogs: MinutesAsleep between 0 and 1440: 1 unexpected" in message
        assert current_version(published, DATASET) == first.version  # the previous version stays current
        table = glue.get_table(DatabaseName="recover_db", Name="dataset_fitbitsleeplogs")["Table"]
        assert f"/versions/{first.version}/" in table["StorageDescriptor"]["Location"]
        (blocked_version,) = [v for v in published_versions(published) if v != first.version]
        blocked = read_manifest(published, DATASET, blocked_version)
        assert blocked.blocked_by_quality
        (failure,) = [r for r in blocked.quality["results"] if not r["passed"]]
        assert (failure["unexpected_count"], failure["samples"][0]["key"]) == (
            1,
            {"LogId": "l2", "ParticipantIdentifier": "RX-2"},
        )
        assert published.exists(f"{layout.version_prefix(DATASET, blocked_version)}/quality.html")


def published_versions(published: S3Storage) -> list[str]:
    prefix = f"published/{DATASET}/versions/"
    return sorted({info.key[len(prefix) :].split("/", 1)[0] for info in published.list(prefix)})
