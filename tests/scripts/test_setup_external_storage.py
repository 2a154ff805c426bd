"""setup_external_storage.py: moto S3 + the real synapseclient against the fake Synapse."""

from __future__ import annotations

import importlib.util
import json
import os
import sys

import boto3
import pytest
from moto import mock_aws

os.environ.setdefault("OTEL_SDK_DISABLED", "true")

from fake_synapse import EXTERNAL_S3, FakeSynapse
from project_paths import PROJECT_ROOT

SCRIPT = PROJECT_ROOT / "src" / "scripts" / "setup_external_storage" / "setup_external_storage.py"
spec = importlib.util.spec_from_file_location("setup_external_storage", SCRIPT)
ses = importlib.util.module_from_spec(spec)
sys.modules["setup_external_storage"] = ses
spec.loader.exec_module(ses)

BUCKET, PREFIX = "pipeline-bucket", "bridge-downstream/mobile-toolbox/study1/published"
TOKEN = "setup-token-abcdef-secret"
OTHER = {
    "Sid": "KeepMe",
    "Effect": "Deny",
    "Principal": "*",
    "Action": "s3:DeleteBucket",
    "Resource": f"arn:aws:s3:::{BUCKET}",
}


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1")
        client.create_bucket(Bucket=BUCKET)
        client.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": [OTHER]}))
        yield client


@pytest.fixture
def fake(s3):
    def read(bucket, key):
        try:
            return s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        except Exception:  # noqa: BLE001
            return None

    server = FakeSynapse(s3_read=read).start()
    server.owner = server.add_user(TOKEN, "bridge-exporter", owner_id="3412345")
    project = server.add_project("Mobile Toolbox", server.owner)
    server.folder = server.add_folder("Published", project, server.owner)
    yield server
    server.stop()
    assert not server.unknown, server.unknown


def main(fake, s3, *extra, token=TOKEN, monkeypatch=None):
    os.environ[ses_token_var()] = token
    try:
        return ses.main(
            [
                "--bucket",
                BUCKET,
                "--prefix",
                PREFIX,
                "--synapse-folder-id",
                fake.folder,
                "--synapse-endpoint",
                fake.url,
                *extra,
            ],
            s3=s3,
        )
    finally:
        os.environ.pop(ses_token_var(), None)


def ses_token_var():
    from bridge_downstream_adapters.secrets import TOKEN_ENV_VAR

    return TOKEN_ENV_VAR


def writes(fake):
    return [r for r in fake.requests if r[0] in ("POST", "PUT", "DELETE")]


def test_setup_creates_everything_then_is_idempotent(fake, s3, capsys):
    assert main(fake, s3) == 0
    out = capsys.readouterr().out
    assert "create" in out and TOKEN not in out
    assert s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/owner.txt")["Body"].read() == b"3412345\n"

    policy = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])
    assert OTHER in policy["Statement"] and len(policy["Statement"]) == 3
    objects = next(s for s in policy["Statement"] if s["Sid"].startswith("SynapseExternalStorageObjects"))
    assert objects["Principal"] == {"AWS": "arn:aws:iam::325565585839:root"}
    assert objects["Resource"] == f"arn:aws:s3:::{BUCKET}/{PREFIX}/*"
    assert "s3:GetObject" in objects["Action"] and "s3:PutObject" not in objects["Action"]

    (location,) = fake.storage_locations.values()
    assert location["concreteType"] == EXTERNAL_S3 and location["bucket"] == BUCKET
    assert location["baseKey"] == PREFIX and location["stsEnabled"] is False
    assert location["createdBy"] == "3412345"
    assert fake.project_settings[fake.folder]["locations"] == [location["storageLocationId"]]

    before_writes, before_policy = len(writes(fake)), s3.get_bucket_policy(Bucket=BUCKET)["Policy"]
    assert main(fake, s3) == 0
    assert "already in place" in capsys.readouterr().out
    assert len(writes(fake)) == before_writes  # nothing written the second time
    assert s3.get_bucket_policy(Bucket=BUCKET)["Policy"] == before_policy
    assert len(fake.storage_locations) == 1


def test_dry_run_changes_nothing(fake, s3, capsys):
    assert main(fake, s3, "--dry-run") == 0
    out = capsys.readouterr().out
    assert "would create" in out and "DRY RUN" in out
    assert "Contents" not in s3.list_objects_v2(Bucket=BUCKET)
    assert json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])["Statement"] == [OTHER]
    assert not writes(fake) and not fake.storage_locations and not fake.project_settings


def test_sts_enabled_with_explicit_principals(fake, s3, capsys):
    assert main(fake, s3, "--sts-enabled", "--principal-id", "3412345", "--principal-id", "3399999") == 0
    assert s3.get_object(Bucket=BUCKET, Key=f"{PREFIX}/owner.txt")["Body"].read() == b"3412345\n3399999\n"
    (location,) = fake.storage_locations.values()
    assert location["stsEnabled"] is True
    assert "STS read-only credentials: checked" in capsys.readouterr().out
    assert fake.calls("GET", rf"/entity/{fake.folder}/sts$")


def test_switching_to_another_location_updates_the_setting(fake, s3):
    assert main(fake, s3) == 0
    assert main(fake, s3, "--read-write") == 0  # same location, broader policy
    policy = json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"])
    assert len(policy["Statement"]) == 3
    objects = next(s for s in policy["Statement"] if s["Sid"].startswith("SynapseExternalStorageObjects"))
    assert "s3:*Object*" in objects["Action"]
    global PREFIX
    old, PREFIX = PREFIX, PREFIX + "-v2"
    try:
        assert main(fake, s3) == 0
    finally:
        PREFIX = old
    assert len(fake.storage_locations) == 2
    first = fake.project_settings[fake.folder]["locations"][0]
    assert fake.storage_locations[first]["baseKey"] == PREFIX + "-v2"


def test_errors_are_clear(fake, s3, capsys):
    assert main(fake, s3, token="wrong-token") == 2
    err = capsys.readouterr().err
    assert "auth token" in err and "wrong-token" not in err

    fake.add_folder("already here", fake.folder, fake.owner)
    assert main(fake, s3, "--sts-enabled") == 2
    assert "STS" in capsys.readouterr().err

    os.environ.pop(ses_token_var(), None)
    assert (
        ses.main(["--bucket", BUCKET, "--synapse-folder-id", fake.folder, "--synapse-endpoint", fake.url], s3=s3) == 2
    )
    assert "BRIDGE_DOWNSTREAM_SYNAPSE_AUTH_TOKEN" in capsys.readouterr().err


def test_token_from_ssm(fake, s3, capsys):
    ssm = boto3.client("ssm", region_name="us-east-1")
    ssm.put_parameter(Name="/bridge-downstream/synapse-token", Value=TOKEN, Type="SecureString")
    assert (
        ses.main(
            [
                "--bucket",
                BUCKET,
                "--prefix",
                PREFIX,
                "--synapse-folder-id",
                fake.folder,
                "--synapse-endpoint",
                fake.url,
                "--ssm-parameter-name",
                "/bridge-downstream/synapse-token",
            ],
            s3=s3,
            ssm=ssm,
        )
        == 0
    )
    assert (
        ses.main(
            [
                "--bucket",
                BUCKET,
                "--prefix",
                PREFIX,
                "--synapse-folder-id",
                fake.folder,
                "--synapse-endpoint",
                fake.url,
                "--ssm-parameter-name",
                "/missing",
            ],
            s3=s3,
            ssm=ssm,
        )
        == 2
    )
    assert "does not exist" in capsys.readouterr().err


def test_bucket_policy_managed_by_cloudformation_is_only_checked(fake, s3, capsys):
    # What templates/buckets.yaml writes when SynapseEnabled is true.
    managed = {
        "Version": "2012-10-17",
        "Statement": [
            OTHER,
            {
                "Sid": "SynapseListBucket",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::325565585839:root"},
                "Action": ["s3:ListBucket", "s3:GetBucketLocation"],
                "Resource": f"arn:aws:s3:::{BUCKET}",
            },
            {
                "Sid": "SynapseReadObjects",
                "Effect": "Allow",
                "Principal": {"AWS": "arn:aws:iam::325565585839:root"},
                "Action": ["s3:GetObject", "s3:GetObjectVersion"],
                "Resource": f"arn:aws:s3:::{BUCKET}/*",
            },
        ],
    }
    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps(managed))
    assert main(fake, s3, "--skip-bucket-policy") == 0
    assert "managed elsewhere" in capsys.readouterr().out
    assert json.loads(s3.get_bucket_policy(Bucket=BUCKET)["Policy"]) == managed  # untouched

    s3.put_bucket_policy(Bucket=BUCKET, Policy=json.dumps({"Version": "2012-10-17", "Statement": [OTHER]}))
    assert main(fake, s3, "--skip-bucket-policy") == 2
    assert "does not grant" in capsys.readouterr().err
