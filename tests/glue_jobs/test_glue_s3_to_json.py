"""The s3_to_json Glue job script on local Spark against an emulated AWS."""

import json

import boto3
import pytest

from aws_emulator import moto_server
from support import SAMPLES, build_sample_registry, ingest_folder, load_job

pytestmark = pytest.mark.spark


@pytest.fixture()
def aws(monkeypatch):
    with moto_server() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        yield endpoint


def upload_tree(s3, bucket: str, prefix: str, folder) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")


def test_job_ingests_the_messages_of_its_workflow_run_across_spark_tasks(aws, spark, tmp_path):
    s3, glue, sqs = boto3.client("s3"), boto3.client("glue"), boto3.client("sqs")
    for bucket in ("bridge-uploads", "artifacts", "intermediate"):
        s3.create_bucket(Bucket=bucket)
    build_sample_registry(tmp_path / "registry")
    upload_tree(s3, "artifacts", "BridgeDownstream/v1/registry", tmp_path / "registry")
    messages = []
    for archive in sorted((SAMPLES / "archives").glob("*.zip")):
        sidecar = archive.with_name(archive.name + ".metadata.json")
        metadata = json.loads(sidecar.read_text()) if sidecar.exists() else {}
        key = f"uploads/{archive.name}"
        s3.put_object(Bucket="bridge-uploads", Key=key, Body=archive.read_bytes(), Metadata=metadata)
        messages.append({"source_bucket": "bridge-uploads", "source_key": key, "raw_folder_id": "syn123"})
    queue_url = sqs.create_queue(QueueName="invalid")["QueueUrl"]
    glue.create_workflow(Name="sample-app-study-s3-to-json")
    run_id = glue.start_workflow_run(Name="sample-app-study-s3-to-json")["RunId"]
    glue.put_workflow_run_properties(
        Name="sample-app-study-s3-to-json", RunId=run_id, RunProperties={"messages": json.dumps(messages)}
    )

    job = load_job("s3_to_json")
    argv = [
        "s3_to_json.py",
        "--WORKFLOW_NAME",
        "sample-app-study-s3-to-json",
        "--WORKFLOW_RUN_ID",
        run_id,
        "--json-root",
        "s3://intermediate/ns/sample-app/study",
        "--registry-uri",
        "s3://artifacts/BridgeDownstream/v1/registry",
        "--profile",
        "mtb",
        "--invalid-queue-url",
        queue_url,
    ]
    report = job.main(argv, spark=spark)

    assert report["archives"] == {"total": 8, "processed": 5, "invalid": 3, "skipped": 0}
    # Work was spread over several Spark tasks, each writing its own part files.
    parts_listing = (
        s3.get_object(Bucket="intermediate", Key=f"ns/sample-app/study/{report['parts']}")["Body"].read().splitlines()
    )
    tasks = {json.loads(line)["key"].rsplit("-", 1)[-1] for line in parts_listing}
    assert len(tasks) > 1
    # Every archive is accounted for in the records file; the tasks' spools are gone.
    records = (
        s3.get_object(Bucket="intermediate", Key=f"ns/sample-app/study/{report['records']}")["Body"].read().splitlines()
    )
    statuses = [json.loads(line)["status"] for line in records]
    assert sorted(statuses) == ["invalid"] * 3 + ["processed"] * 5
    sources = [json.loads(line)["source"] for line in records]
    assert sources == sorted(sources)
    assert not s3.list_objects_v2(Bucket="intermediate", Prefix="ns/sample-app/study/reports/.spool/").get("KeyCount")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket="intermediate", Prefix="ns/sample-app/study/json/")["Contents"]]
    assert any(
        k.startswith(
            "ns/sample-app/study/json/dataset=MotionRecord_v1/assessmentid=number-match/year=2024/month=03/day=02/part-"
        )
        for k in keys
    )
    rows = 0
    for key in keys:
        if "/dataset=MotionRecord_v1/" in key:
            rows += len(s3.get_object(Bucket="intermediate", Key=key)["Body"].read().splitlines())
    assert rows == 28
    received = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10)["Messages"]
    invalid = sorted(json.loads(m["Body"])["validation_result"]["recordId"] for m in received)
    assert invalid == ["rec-0005", "rec-0006", "rec-0007-no-metadata.zip"]
    assert json.loads(received[0]["Body"])["source_bucket"] == "bridge-uploads"
    properties = glue.get_workflow_run_properties(Name="sample-app-study-s3-to-json", RunId=run_id)["RunProperties"]
    assert properties["ingest_run_id"] == report["run_id"]
    assert (
        properties["ingested_datasets"] == "ArchiveMetadata_v1,MotionRecord_v1,SurveyAnswers_v1,TaskData_v1,TaskData_v2"
    )

    # A second run of the same messages adds nothing.
    again = job.main(argv, spark=spark)
    assert again["archives"] == {"total": 8, "processed": 0, "invalid": 3, "skipped": 5}


def test_an_archive_given_twice_across_spark_tasks_is_ingested_once(aws, spark, tmp_path):
    s3, glue, sqs = boto3.client("s3"), boto3.client("glue"), boto3.client("sqs")
    for bucket in ("bridge-uploads", "artifacts", "intermediate"):
        s3.create_bucket(Bucket=bucket)
    build_sample_registry(tmp_path / "registry")
    upload_tree(s3, "artifacts", "BridgeDownstream/v1/registry", tmp_path / "registry")
    original = SAMPLES / "archives" / "rec-0001-number-match.zip"
    metadata = json.loads(original.with_name(original.name + ".metadata.json").read_text())
    # The same bytes and metadata under three keys, with other archives between them: the
    # messages are split round-robin over the job's slices, so the copies land in different tasks.
    names = ["a-copy.zip", "b-other.zip", "c-copy.zip", "d-other.zip", "e-copy.zip", "f-other.zip"]
    others = sorted((SAMPLES / "archives").glob("rec-000[234]*.zip"))
    messages = []
    for name in names:
        source = original if "copy" in name else others[names.index(name) // 2]
        given = metadata if "copy" in name else json.loads(source.with_name(source.name + ".metadata.json").read_text())
        s3.put_object(Bucket="bridge-uploads", Key=f"uploads/{name}", Body=source.read_bytes(), Metadata=given)
        messages.append({"source_bucket": "bridge-uploads", "source_key": f"uploads/{name}"})
    queue_url = sqs.create_queue(QueueName="invalid")["QueueUrl"]
    glue.create_workflow(Name="wf")
    run_id = glue.start_workflow_run(Name="wf")["RunId"]
    glue.put_workflow_run_properties(Name="wf", RunId=run_id, RunProperties={"messages": json.dumps(messages)})
    root = "s3://intermediate/ns/sample-app/study"
    argv = ["s3_to_json.py", "--WORKFLOW_NAME", "wf", "--WORKFLOW_RUN_ID", run_id, "--json-root", root]
    argv += ["--registry-uri", "s3://artifacts/BridgeDownstream/v1/registry", "--profile", "mtb"]
    argv += ["--invalid-queue-url", queue_url]

    report = load_job("s3_to_json").main(argv, spark=spark)

    records = s3.get_object(Bucket="intermediate", Key=f"ns/sample-app/study/{report['records']}")["Body"].read()
    outcome = {json.loads(line)["source"].rsplit("/", 1)[-1]: json.loads(line) for line in records.splitlines()}
    assert outcome["a-copy.zip"]["status"] == "processed", outcome["a-copy.zip"]["reason"]
    for copy in ("c-copy.zip", "e-copy.zip"):
        assert outcome[copy]["status"] == "skipped"
        assert outcome[copy]["reason"].startswith("duplicate of s3://bridge-uploads/uploads/a-copy.zip in this run")
    assert [outcome[name]["status"] for name in ("b-other.zip", "d-other.zip", "f-other.zip")].count("skipped") == 0
    # The record's rows are in the datasets once: as many as the archive gives ingested alone.
    alone = tmp_path / "alone"
    (alone / "in").mkdir(parents=True)
    for path in (original, original.with_name(original.name + ".metadata.json")):
        (alone / "in" / path.name).write_bytes(path.read_bytes())
    expected = ingest_folder(alone / "in", alone / "out", build_sample_registry(tmp_path / "registry-alone"))
    assert expected["archives"]["processed"] == 1
    listed = s3.list_objects_v2(Bucket="intermediate", Prefix="ns/sample-app/study/json/")["Contents"]
    record_rows = 0
    for key in (o["Key"] for o in listed if o["Key"].endswith(".ndjson")):
        body = s3.get_object(Bucket="intermediate", Key=key)["Body"].read().decode()
        record_rows += sum(1 for line in body.splitlines() if json.loads(line)["recordid"] == metadata["recordid"])
    assert record_rows == sum(counts["rows"] for counts in expected["datasets"].values())
