"""The s3_to_json job reading uploads where Bridge writes them: messages
naming a raw folder are read through Synapse STS read-only tokens (the fake
Synapse server, the auth token from SSM in moto), the others from the input
bucket with the job's role -- on local Spark, across executor tasks."""

import json

import boto3
import pytest

from aws_emulator import moto_server
from fake_synapse import FakeSynapse
from support import SAMPLES, build_sample_registry, load_job

pytestmark = pytest.mark.spark

RAW_BUCKET = "org-sagebridge-rawhealthdata-test"
PARAMETER = "/bridge-downstream/synapse-auth-token"
TOKEN = "exporter-token"


@pytest.fixture()
def aws(monkeypatch):
    with moto_server() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        yield endpoint


@pytest.fixture()
def synapse():
    server = FakeSynapse().start()
    owner = server.add_user(TOKEN, "bridge-downstream")
    project = server.add_project("Bridge raw data", owner)
    server.raw_folder = server.add_folder("raw", project, owner)
    server.set_upload_location(server.raw_folder, server.add_external_location(RAW_BUCKET, "", owner, sts=True))
    yield server
    server.stop()
    assert not server.unknown, f"the client called routes the fake lacks: {server.unknown}"


def put_archive(s3, bucket: str, key: str, archive) -> None:
    sidecar = archive.with_name(archive.name + ".metadata.json")
    metadata = json.loads(sidecar.read_text()) if sidecar.exists() else {}
    s3.put_object(Bucket=bucket, Key=key, Body=archive.read_bytes(), Metadata=metadata)


def test_raw_folder_messages_are_read_with_sts_tokens_and_the_others_from_the_input_bucket(
    aws, synapse, spark, tmp_path
):
    s3, glue, sqs, ssm = (boto3.client(name) for name in ("s3", "glue", "sqs", "ssm"))
    for bucket in (RAW_BUCKET, "input-bucket", "artifacts", "intermediate"):
        s3.create_bucket(Bucket=bucket)
    ssm.put_parameter(Name=PARAMETER, Value=TOKEN, Type="SecureString")
    registry = tmp_path / "registry"
    build_sample_registry(registry)
    for path in sorted(registry.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), "artifacts", f"registry/{path.relative_to(registry).as_posix()}")
    archives = sorted((SAMPLES / "archives").glob("rec-000[1234]*.zip"))
    messages = []
    for archive in archives[:3]:
        put_archive(s3, RAW_BUCKET, f"mobile-toolbox/{archive.name}", archive)
        messages.append(
            {
                "source_bucket": RAW_BUCKET,
                "source_key": f"mobile-toolbox/{archive.name}",
                "raw_folder_id": synapse.raw_folder,
            }
        )
    put_archive(s3, "input-bucket", f"app/study/{archives[3].name}", archives[3])
    messages.append(
        {"source_bucket": "input-bucket", "source_key": f"app/study/{archives[3].name}", "raw_folder_id": None}
    )
    queue_url = sqs.create_queue(QueueName="invalid")["QueueUrl"]
    glue.create_workflow(Name="wf")
    run_id = glue.start_workflow_run(Name="wf")["RunId"]
    glue.put_workflow_run_properties(Name="wf", RunId=run_id, RunProperties={"messages": json.dumps(messages)})
    argv = ["s3_to_json.py", "--WORKFLOW_NAME", "wf", "--WORKFLOW_RUN_ID", run_id]
    argv += ["--json-root", "s3://intermediate/ns/mtb/example", "--registry-uri", "s3://artifacts/registry"]
    argv += ["--profile", "mtb", "--invalid-queue-url", queue_url]
    argv += ["--ssm-parameter-name", PARAMETER, "--synapse-endpoint", synapse.url]

    report = load_job("s3_to_json").main(argv, spark=spark)

    assert report["archives"] == {"total": 4, "processed": 4, "invalid": 0, "skipped": 0}
    records = s3.get_object(Bucket="intermediate", Key=f"ns/mtb/example/{report['records']}")["Body"].read()
    sources = sorted(json.loads(line)["source"] for line in records.splitlines())
    assert sources == sorted(
        [f"s3://{RAW_BUCKET}/mobile-toolbox/{a.name}" for a in archives[:3]]
        + [f"s3://input-bucket/app/study/{archives[3].name}"]
    )
    # Only read-only tokens for the raw folder, at most one per executor process
    # (tokens are cached per folder and the test's tokens do not expire).
    issued = [(t["entity_id"], t["permission"]) for t in synapse.sts_issued]
    assert issued and set(issued) == {(synapse.raw_folder, "read_only")}
    assert len(issued) <= spark.sparkContext.defaultParallelism * 2
    assert len(issued) == len(synapse.calls("GET", r"/userProfile$"))  # one login per process that read a raw folder
