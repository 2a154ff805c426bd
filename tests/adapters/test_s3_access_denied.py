"""A 403 on an input archive (no s3:ListBucket, or a policy that denies the
key) is that archive's invalid outcome saying access denied; the run goes on
with the other archives. moto serves the bucket; the denial is injected as the
ClientError S3 returns, because moto does not enforce bucket policies in-process."""

from __future__ import annotations

import json

import boto3
import pytest
from botocore.exceptions import ClientError
from botocore.stub import Stubber
from moto import mock_aws

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.ingest.invalid_sink import StorageInvalidSink
from bridge_downstream.ingest.listing import ArchiveInput
from bridge_downstream.ingest.run import run_ingest
from bridge_downstream_adapters.s3 import S3Storage
from support import SAMPLES, build_sample_registry

BUCKET = "uploads"
ALLOWED = "rec-0001-number-match.zip"
DENIED = "rec-0003-flanker-android.zip"


class DenyingClient:
    """An S3 client that answers 403 AccessDenied for one key, like a bucket policy denying it."""

    def __init__(self, client, denied_key: str):
        self._client, self._denied_key = client, denied_key

    def __getattr__(self, name):
        method = getattr(self._client, name)
        if name not in ("get_object", "head_object"):
            return method

        def call(**kwargs):
            if kwargs.get("Key") == self._denied_key:
                raise ClientError(
                    {
                        "Error": {"Code": "AccessDenied", "Message": "Access Denied"},
                        "ResponseMetadata": {"HTTPStatusCode": 403},
                    },
                    name,
                )
            return method(**kwargs)

        return call


@mock_aws
def test_an_archive_denied_403_is_invalid_and_the_others_are_processed(tmp_path):
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=BUCKET)
    for key in (ALLOWED, DENIED):
        metadata = json.loads((SAMPLES / "archives" / f"{key}.metadata.json").read_text())
        client.put_object(
            Bucket=BUCKET,
            Key=key,
            Body=(SAMPLES / "archives" / key).read_bytes(),
            Metadata={k: str(v) for k, v in metadata.items()},
        )
    storage = S3Storage(BUCKET, client=DenyingClient(client, DENIED))
    output = LocalStorage(tmp_path / "out")
    report = run_ingest(
        [ArchiveInput(storage, key, source_bucket=BUCKET) for key in (ALLOWED, DENIED)],
        registry=build_sample_registry(tmp_path / "registry"),
        profile=load_profile("mtb"),
        output=output,
        sink=StorageInvalidSink(output),
        workers=1,
    )
    assert report["archives"] == {"total": 2, "processed": 1, "invalid": 1, "skipped": 0}
    (entry,) = report["invalid"]
    assert entry["reason"] == f"archive not readable: access denied: s3://{BUCKET}/{DENIED}"


@pytest.mark.parametrize("code", ["AccessDenied", "403", "Forbidden"])
@pytest.mark.parametrize("read", ["read_bytes", "metadata", "open_read_with_metadata"])
def test_s3_storage_turns_403_into_permission_error(code, read):
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    operation = "head_object" if read == "metadata" else "get_object"
    with Stubber(client) as stubber:
        stubber.add_client_error(operation, service_error_code=code, http_status_code=403)
        with pytest.raises(PermissionError, match=r"access denied: s3://b/p/k\.zip"):
            getattr(S3Storage("b", "p", client=client), read)("k.zip")


def test_other_client_errors_are_not_translated():
    client = boto3.client("s3", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    with Stubber(client) as stubber:
        stubber.add_client_error("get_object", service_error_code="SlowDown", http_status_code=503)
        with pytest.raises(ClientError, match="SlowDown"):
            S3Storage("b", client=client).read_bytes("k.zip")
