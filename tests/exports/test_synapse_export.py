"""The Synapse export, with the real synapseclient against tests/fake_synapse.py
and the published objects in moto S3."""

from __future__ import annotations

import gc
import logging
import os
import re
import sys
import tempfile
from pathlib import Path

import boto3
import pytest
from moto import mock_aws

os.environ.setdefault("OTEL_SDK_DISABLED", "true")

from bridge_downstream.exports import synapse_plan as sp
from bridge_downstream_adapters import secrets
from bridge_downstream_adapters.s3 import S3Storage
from bridge_downstream_adapters.synapse import (
    RetryPolicy,
    SynapseExportError,
    export_published_root,
)
from fake_synapse import FILE, FOLDER, FakeSynapse
from project_paths import PROJECT_ROOT
from published_fixtures import publish, sample_tables

BUCKET = "pipeline-bucket"
PREFIX = "bridge-downstream/mobile-toolbox/study1"
ROOT = f"s3://{BUCKET}/{PREFIX}"
TOKEN = "synapse-pat-0123456789-secret"
FAST = RetryPolicy(retries=3, wait=0.05, back_off=1.0, max_wait=0.1)


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        yield client


@pytest.fixture
def storage(s3):
    return S3Storage(BUCKET, PREFIX, client=s3)


@pytest.fixture
def fake(s3):
    def head(bucket, key):
        try:
            return s3.head_object(Bucket=bucket, Key=key)["ContentLength"]
        except Exception:  # noqa: BLE001
            return None

    server = FakeSynapse(page_size=2, s3_head=head).start()
    server.owner = server.add_user(TOKEN, "bridge-exporter")
    project = server.add_project("Mobile Toolbox", server.owner)
    server.root = server.add_folder("Published", project, server.owner)
    location = server.add_external_location(BUCKET, PREFIX, server.owner)
    server.set_upload_location(server.root, location)
    server.location = location
    yield server
    server.stop()
    assert not server.unknown, f"the client called routes the fake lacks: {server.unknown}"


def run(fake, s3, **kwargs):
    token = secrets.SecretToken(kwargs.pop("token", TOKEN), "test")
    return export_published_root(
        ROOT, fake.root, token, endpoint=fake.url, retry=kwargs.pop("retry", FAST), s3_client=s3, **kwargs
    )


def tree(fake):
    """{folder name: {file name: entity}} under the export root."""
    return {f["name"]: {c["name"]: c for c in fake.children_of(f["id"])} for f in fake.children_of(fake.root)}


READS = re.compile(r"/children$|^/repo/v1/entity/syn\d+/bundle2$")


def writes(fake):
    """Calls that change something (POST is also used for some reads)."""
    return [
        r
        for r in fake.requests
        if r[0] in ("PUT", "DELETE") or (r[0] == "POST" and not (r[0] == "POST" and READS.search(r[1])))
    ]


def annotations(fake, entity_id):
    return sp.annotations_from_v2(fake.annotations[entity_id])


def test_export_creates_folders_files_handles_and_annotations(fake, s3, storage):
    manifest = publish(storage, "ArchiveMetadata_v1", "v0001", sample_tables())
    result = run(fake, s3)

    assert result.applied and result.storage_location_id == fake.location
    folders = tree(fake)
    assert set(folders) == {"ArchiveMetadata_v1", "ArchiveMetadata_v1_files"}
    files = folders["ArchiveMetadata_v1"]
    assert set(files) == {
        "assessmentid-spelling__year-2022__month-02__part-00000.parquet",
        "assessmentid-spelling__year-2022__month-02__part-00000.csv",
        "assessmentid-vocab__year-2022__month-03__part-00000.parquet",
        "assessmentid-vocab__year-2022__month-03__part-00000.csv",
    }
    assert set(folders["ArchiveMetadata_v1_files"]) == {"part-00000.parquet", "part-00000.csv"}

    published = {f.key: f for t in manifest.tables.values() for f in t.files}
    for folder in folders.values():
        for entity in folder.values():
            assert entity["concreteType"] == FILE
            handle = fake.file_handles[str(entity["dataFileHandleId"])]
            assert handle["concreteType"] == "org.sagebionetworks.repo.model.file.S3FileHandle"
            assert handle["bucketName"] == BUCKET and handle["storageLocationId"] == fake.location
            key = handle["key"][len(PREFIX) + 1 :]
            assert handle["contentSize"] == published[key].size
            assert handle["contentMd5"] == published[key].md5

    spelling = files["assessmentid-spelling__year-2022__month-02__part-00000.parquet"]
    assert annotations(fake, spelling["id"]) == {
        "exportedBy": ["bridge-downstream"],
        "datasetId": ["ArchiveMetadata_v1"],
        "table": ["ArchiveMetadata_v1"],
        "publishVersion": ["v0001"],
        "runId": ["run-v0001"],
        "schemaVersion": ["2024.1"],
        "format": ["parquet"],
        "rowCount": [2],
        "sha256": [published[fake.file_handles[str(spelling["dataFileHandleId"])]["key"][len(PREFIX) + 1 :]].sha256],
        "assessmentid": ["spelling"],
        "year": ["2022"],
        "month": ["02"],
    }
    assert fake.annotations[spelling["id"]]["rowCount"] == {"type": "LONG", "value": ["2"]}
    folder_id = next(f["id"] for f in fake.children_of(fake.root) if f["name"] == "ArchiveMetadata_v1")
    assert fake.entities[folder_id]["concreteType"] == FOLDER
    assert annotations(fake, folder_id)["rowCount"] == [5]
    # No data went through Synapse: only file handle registrations.
    assert not fake.calls("POST", r"/file/v1/(createMultipartUpload|.*upload)")


def test_the_clients_cache_folder_goes_with_the_client(fake, s3, storage, tmp_path, monkeypatch):
    # A warm Lambda keeps /tmp across invocations: an export must not leave folders there.
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    publish(storage, "ArchiveMetadata_v1", "v0001", sample_tables())
    assert run(fake, s3).applied
    gc.collect()
    assert not list(tmp_path.glob("synapse-cache-*"))
    with pytest.raises(SynapseExportError, match="login failed"):
        run(fake, s3, token="not-a-token")
    gc.collect()
    assert not list(tmp_path.glob("synapse-cache-*"))


def test_rerun_is_idempotent_and_a_new_version_updates_in_place(fake, s3, storage):
    publish(storage, "ArchiveMetadata_v1", "v0001", sample_tables())
    run(fake, s3)
    before = {(f, n): e["id"] for f, files in tree(fake).items() for n, e in files.items()}
    writes_before = len(writes(fake))

    second = run(fake, s3)  # nothing changed
    assert second.plan.empty and second.plan.unchanged == 6
    writes_after = len(writes(fake))
    assert writes_after == writes_before

    # A new version: one table loses a partition, the other table disappears.
    tables = sample_tables(extra="-2")
    del tables["ArchiveMetadata_v1"][(("assessmentid", "vocab"), ("year", "2022"), ("month", "03"))]
    del tables["ArchiveMetadata_v1_files"]
    publish(storage, "ArchiveMetadata_v1", "v0002", tables)
    third = run(fake, s3)
    counts = third.plan.counts()
    assert counts["update_file"] == 2 and counts["delete_file"] == 2 and counts["delete_folder"] == 1
    after = tree(fake)
    assert set(after) == {"ArchiveMetadata_v1"}
    for name, entity in after["ArchiveMetadata_v1"].items():
        assert entity["id"] == before[("ArchiveMetadata_v1", name)]  # same entity, updated in place
        assert entity["versionNumber"] == 2
        handle = fake.file_handles[str(entity["dataFileHandleId"])]
        assert "/versions/v0002/" in handle["key"]
        assert annotations(fake, entity["id"])["publishVersion"] == ["v0002"]
    assert len(after["ArchiveMetadata_v1"]) == 2
    assert run(fake, s3).plan.empty


def test_unmanaged_entities_are_left_alone(fake, s3, storage):
    publish(storage, "ArchiveMetadata_v1", "v0001", sample_tables())
    run(fake, s3)
    folder_id = next(f["id"] for f in fake.children_of(fake.root) if f["name"] == "ArchiveMetadata_v1")
    notes = fake.add_folder("analyst notes", folder_id, fake.owner)
    other = fake.add_folder("Somebody else's folder", fake.root, fake.owner)
    result = run(fake, s3)
    assert result.plan.empty
    assert notes in fake.entities and other in fake.entities
    assert any("Somebody else's folder" in line for line in result.plan.left_alone)


def test_dry_run_writes_nothing(fake, s3, storage):
    publish(storage, "ArchiveMetadata_v1", "v0001", sample_tables())
    result = run(fake, s3, dry_run=True)
    assert not result.applied and result.plan.counts()["create_file"] == 6
    assert not writes(fake)
    assert fake.children_of(fake.root) == []


def test_dataset_filter_prunes_only_that_dataset(fake, s3, storage):
    publish(storage, "ArchiveMetadata_v1", "v0001", sample_tables())
    publish(storage, "Other_v1", "v0001", {"Other_v1": {(): [{"a": 1}]}})
    run(fake, s3)
    assert set(tree(fake)) == {"ArchiveMetadata_v1", "ArchiveMetadata_v1_files", "Other_v1"}
    publish(storage, "Other_v1", "v0002", {"Other_v1": {(): [{"a": 2}]}})
    result = run(fake, s3, datasets=["Other_v1"])
    assert result.plan.counts()["update_file"] == 2
    assert set(tree(fake)) == {"ArchiveMetadata_v1", "ArchiveMetadata_v1_files", "Other_v1"}


def test_token_never_logged(fake, s3, storage, caplog, capsys):
    publish(storage, "ArchiveMetadata_v1", "v0001", sample_tables())
    caplog.set_level(logging.DEBUG)
    run(fake, s3)
    out = capsys.readouterr()
    assert TOKEN not in caplog.text and TOKEN not in out.out and TOKEN not in out.err
    assert TOKEN not in repr(secrets.SecretToken(TOKEN, "x")) and TOKEN not in str(secrets.SecretToken(TOKEN, "x"))


def test_bad_token_is_a_clear_auth_error(fake, s3, storage):
    publish(storage, "ArchiveMetadata_v1", "v0001", sample_tables())
    with pytest.raises(SynapseExportError) as caught:
        run(fake, s3, token="not-a-valid-token")
    assert caught.value.status == 401
    assert "auth token" in str(caught.value) and "not-a-valid-token" not in str(caught.value)
    assert fake.children_of(fake.root) == []


def test_rate_limit_is_retried(fake, s3, storage):
    publish(storage, "ArchiveMetadata_v1", "v0001", sample_tables())
    fake.fail("POST", r"^/repo/v1/entity/bundle2/create$", 429, times=2, retry_after=0, reason="Too many requests")
    fake.fail("POST", r"/externalFileHandle/s3$", 429, times=1, retry_after=0, reason="Too many requests")
    run(fake, s3)
    assert len(fake.calls("POST", r"^/repo/v1/entity/bundle2/create$")) == 8 + 2  # 2 folders + 6 files, 2 throttled
    assert sum(len(f) for f in tree(fake).values()) == 6


def test_persistent_rate_limit_and_server_errors_fail_clearly(fake, s3, storage):
    publish(storage, "ArchiveMetadata_v1", "v0001", sample_tables())
    fake.fail("POST", r"^/repo/v1/entity/bundle2/create$", 429, times=100, retry_after=0, reason="Too many requests")
    with pytest.raises(SynapseExportError) as caught:
        run(fake, s3)
    assert caught.value.status == 429 and "rate-limiting" in str(caught.value)
    assert len(fake.calls("POST", r"^/repo/v1/entity/bundle2/create$")) == FAST.retries + 1

    fake.faults.clear()
    fake.fail("POST", r"/externalFileHandle/s3$", 503, times=100, reason="Service Unavailable")
    with pytest.raises(SynapseExportError) as caught:
        run(fake, s3)
    assert caught.value.status == 503 and "server error" in str(caught.value)
    assert set(tree(fake)) == {"ArchiveMetadata_v1", "ArchiveMetadata_v1_files"}  # folders made, no files

    # A transient server error is retried and the rerun converges, every
    # entity carrying its annotations (they travel with the create).
    fake.faults.clear()
    fake.fail("POST", r"^/repo/v1/entity/syn\d+/bundle2$", 500, times=2)
    run(fake, s3)
    entities = [e for f in tree(fake).values() for e in f.values()]
    assert len(entities) == 6
    assert all(annotations(fake, e["id"])["exportedBy"] == ["bridge-downstream"] for e in entities)
    assert run(fake, s3).plan.empty


def test_folder_without_external_storage_is_refused(fake, s3, storage):
    publish(storage, "ArchiveMetadata_v1", "v0001", sample_tables())
    fake.project_settings.clear()
    with pytest.raises(SynapseExportError, match="setup_external_storage"):
        run(fake, s3)


def test_forbidden_is_explained(fake, s3, storage):
    publish(storage, "ArchiveMetadata_v1", "v0001", sample_tables())
    fake.fail("POST", r"^/repo/v1/entity/bundle2/create$", 403, times=1, reason="You lack CREATE access")
    with pytest.raises(SynapseExportError) as caught:
        run(fake, s3)
    assert caught.value.status == 403 and "CREATE" in str(caught.value)


def test_plan_is_pure_and_collision_safe():
    from bridge_downstream.publish.manifest import PublishedFile, PublishedTable, PublishManifest

    manifest = PublishManifest("D", "v1", "run", "now", "r1")
    files = [
        PublishedFile(f"published/D/versions/v1/parquet/T/{p}/part-0.parquet", "parquet", 1, "m", "s", 1)
        for p in ("a=x:y", "a=x;y", "a=z")
    ]
    manifest.tables["T"] = PublishedTable("T", "D", None, [], ["a"], 3, files)
    desired = sp.desired_tree([manifest], lambda k: sp.ObjectLocation("b", k))
    names = sorted(desired.folders["T"].files)
    assert len(names) == 3 and "a-z__part-0.parquet" in names
    hashed = [n for n in names if n.endswith("-a-x_y__part-0.parquet")]
    assert len(hashed) == 2 and hashed[0] != hashed[1]
    assert desired.folders["T"].annotations["fileCount"] == [3]
    assert sp.safe_name("a=b/c") == "a_b_c"
    assert len(sp.safe_name("x" * 400)) <= 256
    assert sp.annotation_key("table") == "partition_table"
    assert sp.annotations_from_v2(sp.annotations_to_v2({"a": [1], "b": ["x"], "c": [1.5], "d": [True]})) == {
        "a": [1],
        "b": ["x"],
        "c": [1.5],
        "d": [True],
    }


def test_nothing_published_refuses_to_prune(fake, s3, storage):
    publish(storage, "ArchiveMetadata_v1", "v0001", sample_tables())
    run(fake, s3)
    with pytest.raises(SynapseExportError, match="nothing published"):
        export_published_root(
            f"s3://{BUCKET}/wrong/prefix",
            fake.root,
            secrets.SecretToken(TOKEN, "t"),
            endpoint=fake.url,
            retry=FAST,
            s3_client=s3,
        )
    assert len(tree(fake)) == 2


def _load(path: Path, name: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def test_glue_job_reads_the_token_from_ssm(fake, s3, storage, caplog):
    publish(storage, "ArchiveMetadata_v1", "v0001", sample_tables())
    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.put_parameter(Name="/bridge-downstream/synapse-auth-token", Value=TOKEN, Type="SecureString")
    job = _load(PROJECT_ROOT / "src" / "glue" / "jobs" / "synapse_export.py", "glue_synapse_export")
    caplog.set_level(logging.DEBUG)
    argv = [
        "--JOB_NAME",
        "synapse-export",
        "--JOB_RUN_ID",
        "jr_1",
        "--published-root",
        ROOT,
        "--synapse-folder-id",
        fake.root,
        "--ssm-parameter-name",
        "/bridge-downstream/synapse-auth-token",
        "--synapse-endpoint",
        fake.url,
        "--dry-run",
        "false",
    ]
    assert (
        "import awsglue" not in Path(job.__file__).read_text() and "from awsglue" not in Path(job.__file__).read_text()
    )
    assert job.main(argv) == 0
    assert sum(len(f) for f in tree(fake).values()) == 6
    assert TOKEN not in caplog.text


def test_cli_export_synapse_uses_the_env_token(fake, s3, storage, monkeypatch, capsys):
    import argparse

    from bridge_downstream_cli.export_commands import add_export_commands

    publish(storage, "ArchiveMetadata_v1", "v0001", sample_tables())
    parser = argparse.ArgumentParser(prog="bridge-downstream")
    add_export_commands(parser.add_subparsers(dest="command", required=True))
    argv = [
        "export",
        "synapse",
        "--published-root",
        ROOT,
        "--synapse-folder-id",
        fake.root,
        "--synapse-endpoint",
        fake.url,
        "--dry-run",
    ]

    monkeypatch.delenv(secrets.TOKEN_ENV_VAR, raising=False)
    args = parser.parse_args(argv)
    assert args.func(args) == 2
    assert secrets.TOKEN_ENV_VAR in capsys.readouterr().err

    monkeypatch.setenv(secrets.TOKEN_ENV_VAR, TOKEN)
    args = parser.parse_args(argv)
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "would create_file" in out and '"create_file": 6' in out and TOKEN not in out
    assert fake.children_of(fake.root) == []


def test_edited_annotations_are_restored(fake, s3, storage):
    publish(storage, "ArchiveMetadata_v1", "v0001", sample_tables())
    run(fake, s3)
    folders = {f["name"]: f["id"] for f in fake.children_of(fake.root)}
    file_entity = fake.children_of(folders["ArchiveMetadata_v1_files"])[0]
    wanted_file = dict(fake.annotations[file_entity["id"]])
    wanted_folder = dict(fake.annotations[folders["ArchiveMetadata_v1"]])
    fake.annotations[file_entity["id"]]["rowCount"] = {"type": "LONG", "value": ["999"]}
    fake.annotations[folders["ArchiveMetadata_v1"]]["note"] = {"type": "STRING", "value": ["hand edit"]}
    result = run(fake, s3)
    counts = result.plan.counts()
    assert counts["update_file_annotations"] == 1 and counts["update_folder_annotations"] == 1
    assert fake.annotations[file_entity["id"]] == wanted_file
    assert fake.annotations[folders["ArchiveMetadata_v1"]] == wanted_folder
    assert fake.entities[file_entity["id"]]["versionNumber"] == 1  # annotations only: no new version


def test_unreachable_synapse_fails_fast(s3, storage):
    import socket
    import time

    publish(storage, "ArchiveMetadata_v1", "v0001", sample_tables())
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(SynapseExportError, match="cannot reach Synapse"):
        export_published_root(
            ROOT,
            "syn1",
            secrets.SecretToken(TOKEN, "test"),
            endpoint=f"http://127.0.0.1:{port}",
            retry=FAST,
            s3_client=s3,
        )
    assert time.monotonic() - started < 10


def test_server_error_on_login_is_clear(fake, s3, storage):
    publish(storage, "ArchiveMetadata_v1", "v0001", sample_tables())
    fake.fail("GET", r"^/repo/v1/version$", 503, times=100, reason="Service Unavailable")
    with pytest.raises(SynapseExportError) as caught:
        run(fake, s3)
    assert caught.value.status == 503
