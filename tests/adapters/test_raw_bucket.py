"""Reading uploads from Bridge's raw bucket through Synapse STS read-only
tokens: the per-folder token cache on a fake clock, the S3 client built from
a token reading moto S3, and the real synapseclient against the fake Synapse
server (login with the SSM token, renewal past synapseclient's own cache)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import boto3
import pytest
from moto import mock_aws

os.environ.setdefault("OTEL_SDK_DISABLED", "true")

from bridge_downstream.ingest.listing import ArchiveInput
from bridge_downstream_adapters import raw_bucket
from bridge_downstream_adapters.glue_ingest import IngestJobConfig, message_inputs, raw_token_cache
from bridge_downstream_adapters.raw_bucket import RawFolderStorage, StsToken, StsTokenCache, synapse_sts_fetch
from bridge_downstream_adapters.s3 import S3Storage
from bridge_downstream_adapters.secrets import SecretToken
from bridge_downstream_adapters.synapse import SynapseExportError, connect
from fake_synapse import FakeSynapse

RAW_BUCKET = "org-sagebridge-rawhealthdata-test"
TOKEN = "exporter-token"
PARAMETER = "/bridge-downstream/synapse-auth-token"
START = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


class FakeClock:
    def __init__(self, now: datetime):
        self.now = now

    def __call__(self) -> datetime:
        return self.now


class CountingFetch:
    """Synapse's STS answer, new credentials each call, valid for ``lifetime``."""

    def __init__(self, clock: FakeClock, lifetime: timedelta = timedelta(hours=1)):
        self.clock, self.lifetime, self.calls = clock, lifetime, []

    def __call__(self, folder_id: str) -> dict:
        self.calls.append(folder_id)
        number = len(self.calls)
        expires = self.clock() + self.lifetime
        return {
            "accessKeyId": f"AKIA{number}",
            "secretAccessKey": f"secret-{number}",
            "sessionToken": f"session-{number}",
            "expiration": expires.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        }


def access_key(client) -> str:
    return client._request_signer._credentials.get_frozen_credentials().access_key


@pytest.fixture
def s3():
    with mock_aws():
        client = boto3.client("s3")
        client.create_bucket(Bucket=RAW_BUCKET)
        client.put_object(
            Bucket=RAW_BUCKET, Key="mobile-toolbox/rec.zip", Body=b"PK-bytes", Metadata={"recordId": "rec"}
        )
        yield client


def test_a_token_is_fetched_once_per_folder_and_renewed_a_margin_before_it_expires():
    clock = FakeClock(START)
    fetch = CountingFetch(clock, lifetime=timedelta(hours=1))
    cache = StsTokenCache(fetch, margin=timedelta(minutes=5), clock=clock)

    first = cache.token("syn1")
    assert fetch.calls == ["syn1"]
    assert first.expiration == START + timedelta(hours=1)
    clock.now = START + timedelta(minutes=54, seconds=59)  # just before expiry minus the margin
    assert cache.token("syn1") is first
    assert fetch.calls == ["syn1"]
    assert cache.token("syn2").access_key_id == "AKIA2"  # each folder has its own token
    clock.now = START + timedelta(minutes=55)  # expiry minus the margin: renewed
    renewed = cache.token("syn1")
    assert renewed.access_key_id == "AKIA3"
    assert renewed.expiration == clock.now + timedelta(hours=1)
    assert fetch.calls == ["syn1", "syn2", "syn1"]


def test_the_s3_client_reads_with_the_current_token_and_is_rebuilt_on_renewal(s3):
    clock = FakeClock(START)
    fetch = CountingFetch(clock)
    storage = RawFolderStorage(RAW_BUCKET, "syn1", StsTokenCache(fetch, clock=clock))

    stream, metadata = storage.open_read_with_metadata("mobile-toolbox/rec.zip")
    assert stream.read() == b"PK-bytes" and metadata == {"recordid": "rec"}
    first_client = storage.client
    assert access_key(first_client) == "AKIA1"
    assert storage.client is first_client  # cached with its token
    clock.now = START + timedelta(hours=1)
    assert storage.read_bytes("mobile-toolbox/rec.zip") == b"PK-bytes"
    assert access_key(storage.client) == "AKIA2"
    assert len(fetch.calls) == 2
    with pytest.raises(FileNotFoundError):
        storage.read_bytes("mobile-toolbox/absent.zip")


def test_token_repr_hides_the_credentials():
    token = StsToken("AKIASECRET", "very-secret", "session-secret", START)
    assert "SECRET" not in repr(token) and "secret" not in repr(token)


def test_messages_naming_a_raw_folder_read_through_its_token_the_others_with_the_job_role(s3):
    clock = FakeClock(START)
    tokens = StsTokenCache(CountingFetch(clock), clock=clock)
    messages = [
        {"source_bucket": RAW_BUCKET, "source_key": "mobile-toolbox/rec.zip", "raw_folder_id": "syn1"},
        {"source_bucket": RAW_BUCKET, "source_key": "mobile-toolbox/rec2.zip", "raw_folder_id": "syn1"},
        {"source_bucket": "input-bucket", "source_key": "app/study/a.zip", "raw_folder_id": None},
        {"source_bucket": "input-bucket", "source_key": "app/study/b.zip"},
    ]

    inputs = message_inputs(messages, raw_tokens=tokens)

    assert [type(i.storage) for i in inputs] == [RawFolderStorage, RawFolderStorage, S3Storage, S3Storage]
    assert inputs[0].storage is inputs[1].storage and inputs[2].storage is inputs[3].storage
    assert [i.raw_folder_id for i in inputs] == ["syn1", "syn1", None, None]
    # Without a Synapse token (no --ssm-parameter-name) every message is read with the job role, as before.
    plain = message_inputs(messages)
    assert all(type(i.storage) is S3Storage for i in plain)
    assert plain[0] == ArchiveInput(plain[0].storage, "mobile-toolbox/rec.zip", RAW_BUCKET, "syn1")
    assert raw_token_cache(IngestJobConfig("s3://i/ns", "s3://a/r", "mtb")) is None


@pytest.fixture
def synapse():
    server = FakeSynapse().start()
    owner = server.add_user(TOKEN, "bridge-downstream")
    project = server.add_project("Bridge raw data", owner)
    server.raw_folder = server.add_folder("raw", project, owner)
    location = server.add_external_location(RAW_BUCKET, "", owner, sts=True)
    server.set_upload_location(server.raw_folder, location)
    yield server
    server.stop()
    assert not server.unknown, f"the client called routes the fake lacks: {server.unknown}"


def test_synapseclient_sts_call_is_read_only_and_renewal_gets_a_new_token(synapse, s3):
    syn = connect(SecretToken(TOKEN, "test"), endpoint=synapse.url)
    clock = FakeClock(datetime.now(UTC))
    synapse.sts_lifetime = timedelta(hours=12)
    cache = StsTokenCache(synapse_sts_fetch(syn), clock=clock)
    storage = RawFolderStorage(RAW_BUCKET, synapse.raw_folder, cache)

    assert storage.read_bytes("mobile-toolbox/rec.zip") == b"PK-bytes"
    assert storage.read_bytes("mobile-toolbox/rec.zip") == b"PK-bytes"
    assert [(t["entity_id"], t["permission"]) for t in synapse.sts_issued] == [(synapse.raw_folder, "read_only")]
    assert access_key(storage.client) == synapse.sts_issued[0]["accessKeyId"]
    # Our clock passes the renewal point while synapseclient's real clock has not:
    # its own cache must not hand back the token being replaced.
    clock.now += timedelta(hours=11, minutes=56)
    synapse.sts_lifetime = timedelta(hours=24)  # the next token outlives the advanced clock
    assert storage.read_bytes("mobile-toolbox/rec.zip") == b"PK-bytes"
    assert len(synapse.sts_issued) == 2
    assert access_key(storage.client) == synapse.sts_issued[1]["accessKeyId"] != synapse.sts_issued[0]["accessKeyId"]


def test_the_job_logs_in_with_the_ssm_token_once_per_process(synapse, s3, monkeypatch):
    monkeypatch.setattr(raw_bucket, "_PROCESS_CACHES", {})
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value=TOKEN, Type="SecureString")
    config = IngestJobConfig(
        "s3://i/ns", "s3://a/r", "mtb", synapse_token_parameter=PARAMETER, synapse_endpoint=synapse.url
    )
    tokens = raw_token_cache(config)
    assert tokens is raw_token_cache(config)  # one cache per process and login
    message = {"source_bucket": RAW_BUCKET, "source_key": "mobile-toolbox/rec.zip", "raw_folder_id": synapse.raw_folder}

    assert synapse.calls("GET", r"/userProfile$") == []  # no login before a raw folder is read
    for _ in range(2):  # two tasks of the same executor
        (archive,) = message_inputs([message], raw_tokens=tokens)
        assert archive.storage.read_bytes(archive.key) == b"PK-bytes"
    assert len(synapse.calls("GET", r"/userProfile$")) == 1
    assert len(synapse.sts_issued) == 1


def test_a_failed_login_fails_each_read_without_logging_in_again(synapse, s3, monkeypatch):
    monkeypatch.setattr(raw_bucket, "_PROCESS_CACHES", {})
    boto3.client("ssm").put_parameter(Name=PARAMETER, Value="revoked-token", Type="SecureString")
    tokens = raw_bucket.process_token_cache(PARAMETER, synapse.url)
    storage = RawFolderStorage(RAW_BUCKET, synapse.raw_folder, tokens)

    with pytest.raises(SynapseExportError, match="rejected the auth token"):
        storage.read_bytes("mobile-toolbox/rec.zip")
    logins = len(synapse.calls("GET", r"/userProfile$"))
    assert logins >= 1
    with pytest.raises(SynapseExportError, match="rejected the auth token"):
        storage.read_bytes("mobile-toolbox/rec.zip")
    assert len(synapse.calls("GET", r"/userProfile$")) == logins
    assert synapse.sts_issued == []


def test_a_folder_without_sts_fails_its_read(synapse, s3):
    owner = synapse.users[TOKEN]
    plain = synapse.add_folder("plain", synapse.raw_folder, owner)
    synapse.project_settings.pop(synapse.raw_folder)
    syn = connect(SecretToken(TOKEN, "test"), endpoint=synapse.url)
    storage = RawFolderStorage(RAW_BUCKET, plain, StsTokenCache(synapse_sts_fetch(syn)))
    with pytest.raises(Exception, match="does not have STS enabled"):
        storage.read_bytes("mobile-toolbox/rec.zip")


def test_the_pipeline_template_gives_the_ingest_job_the_token_parameter_only_when_set(tmp_path):
    from bridge_downstream_adapters.glue_workflow import workflows_from_template
    from deploy_fixtures import render_group

    namespace = "feat-raw-1"
    rendered = render_group("develop", tmp_path, namespace=namespace)[f"{namespace}-pipeline-recover-pilot"]
    parameters = {
        "Namespace": namespace,
        "DatabasePrefix": "feat_raw_1",
        "ArtifactRef": namespace,
        "ArtifactBucketName": "art",
        "IntermediateBucketName": "int",
        "ParquetBucketName": "pq",
        "GlueRoleArn": "arn:aws:iam::123456789012:role/x",
        "InvalidQueueUrl": "https://q",
    }
    name = f"{namespace}-recover-pilot-s3-to-json"

    without = workflows_from_template(rendered.read_text(), parameters)[name].jobs[name].default_arguments
    with_token = (
        workflows_from_template(rendered.read_text(), {**parameters, "SynapseAuthTokenParameterName": PARAMETER})[name]
        .jobs[name]
        .default_arguments
    )

    assert "--ssm-parameter-name" not in without
    assert with_token["--ssm-parameter-name"] == PARAMETER


def test_a_run_that_needs_sts_reads_stops_before_reading_when_synapseclient_is_missing(monkeypatch):
    from bridge_downstream_adapters.glue_ingest import run_ingest_on_spark

    monkeypatch.setattr(raw_bucket, "find_spec", lambda name: None)
    config = IngestJobConfig("s3://i/ns", "s3://a/r", "mtb", synapse_token_parameter=PARAMETER)
    message = {"source_bucket": RAW_BUCKET, "source_key": "mobile-toolbox/rec.zip", "raw_folder_id": "syn1"}
    with pytest.raises(RuntimeError, match="needs synapseclient: add synapseclient~=4.14"):
        run_ingest_on_spark(None, [message], config, invalid_sink=None)
