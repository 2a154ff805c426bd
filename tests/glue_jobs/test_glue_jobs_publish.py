"""The JSON-to-Parquet stage on Glue: the job script and the Glue Data Catalog,
on local Spark against an emulated AWS."""

import json
import tempfile

import boto3
import pytest
from moto import mock_aws

from aws_emulator import moto_server
from bridge_downstream.publish.manifest import PublishedFile, PublishedTable, PublishManifest
from bridge_downstream_adapters.glue_catalog import GlueCatalog
from bridge_downstream_adapters.s3 import S3Storage
from support import SAMPLES, build_sample_registry, load_job


def manifest(version: str, days: list[str]) -> PublishManifest:
    files = [
        PublishedFile(
            f"published/D_v1/versions/{version}/parquet/dataset_d_v1/assessmentid=a/year=2024/month=03/day={d}/part-0.parquet",
            "parquet",
            10,
            "m",
            "s",
            2,
            {"assessmentid": "a", "year": "2024", "month": "03", "day": d},
        )
        for d in days
    ]
    table = PublishedTable(
        "dataset_d_v1",
        "D_v1",
        None,
        [{"name": "recordid", "type": "string"}, {"name": "score", "type": "bigint"}],
        ["assessmentid", "year", "month", "day"],
        2 * len(days),
        files,
    )
    return PublishManifest("D_v1", version, "run", "2024-03-05T00:00:00+00:00", "reg-1", {"dataset_d_v1": table})


@mock_aws
def test_glue_catalog_registers_tables_and_partitions_and_updates_in_place():
    glue = boto3.client("glue")
    boto3.client("s3").create_bucket(Bucket="parquet")
    glue.create_database(DatabaseInput={"Name": "ns_app_study"})
    catalog = GlueCatalog("ns_app_study", S3Storage("parquet", "ns/app/study"), glue)
    catalog.register(manifest("v1", ["01", "02"]))
    table = glue.get_table(DatabaseName="ns_app_study", Name="dataset_d_v1")["Table"]
    assert (
        table["StorageDescriptor"]["Location"]
        == "s3://parquet/ns/app/study/published/D_v1/versions/v1/parquet/dataset_d_v1/"
    )
    assert [c["Name"] for c in table["StorageDescriptor"]["Columns"]] == ["recordid", "score"]
    assert [k["Name"] for k in table["PartitionKeys"]] == ["assessmentid", "year", "month", "day"]
    partitions = glue.get_partitions(DatabaseName="ns_app_study", TableName="dataset_d_v1")["Partitions"]
    assert sorted(p["Values"][3] for p in partitions) == ["1", "2"]  # an int key: no padding

    catalog.register(manifest("v2", ["02", "03"]))
    table = glue.get_table(DatabaseName="ns_app_study", Name="dataset_d_v1")["Table"]
    assert "/versions/v2/" in table["StorageDescriptor"]["Location"]
    assert table["Parameters"]["bridge_downstream.version"] == "v2"
    partitions = glue.get_partitions(DatabaseName="ns_app_study", TableName="dataset_d_v1")["Partitions"]
    assert sorted(p["Values"][3] for p in partitions) == ["2", "3"]
    assert all("/versions/v2/" in p["StorageDescriptor"]["Location"] for p in partitions)


@pytest.mark.spark
def test_ingest_then_publish_jobs_on_emulated_aws(spark, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with moto_server() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        s3, glue, sqs = boto3.client("s3"), boto3.client("glue"), boto3.client("sqs")
        for bucket in ("uploads", "artifacts", "intermediate", "parquet"):
            s3.create_bucket(Bucket=bucket)
        build_sample_registry(tmp_path / "registry")
        for path in (tmp_path / "registry").rglob("*"):
            if path.is_file():
                s3.upload_file(str(path), "artifacts", f"registry/{path.relative_to(tmp_path / 'registry').as_posix()}")
        messages = []
        for archive in sorted((SAMPLES / "archives").glob("rec-000[1-4]*.zip")):
            metadata = json.loads(archive.with_name(archive.name + ".metadata.json").read_text())
            s3.put_object(Bucket="uploads", Key=archive.name, Body=archive.read_bytes(), Metadata=metadata)
            messages.append({"source_bucket": "uploads", "source_key": archive.name, "raw_folder_id": "syn1"})
        glue.create_database(DatabaseInput={"Name": "sample_db"})
        glue.create_workflow(Name="wf")
        run_id = glue.start_workflow_run(Name="wf")["RunId"]
        glue.put_workflow_run_properties(Name="wf", RunId=run_id, RunProperties={"messages": json.dumps(messages)})
        common = [
            "--WORKFLOW_NAME",
            "wf",
            "--WORKFLOW_RUN_ID",
            run_id,
            "--json-root",
            "s3://intermediate/ns/app/study",
            "--registry-uri",
            "s3://artifacts/registry",
            "--profile",
            "mtb",
        ]
        queue = sqs.create_queue(QueueName="invalid")["QueueUrl"]
        load_job("s3_to_json").main(["s3_to_json.py", *common, "--invalid-queue-url", queue], spark=spark)
        results = load_job("json_to_parquet").main(
            [
                "json_to_parquet.py",
                *common,
                "--published-root",
                "s3://parquet/ns/app/study",
                "--glue-database",
                "sample_db",
                "--datasets",
                "TaskData_v1,MotionRecord_v1",
            ],
            spark=spark,
        )
        assert set(results) == {"TaskData_v1", "MotionRecord_v1"}
        assert results["MotionRecord_v1"].tables["dataset_motionrecord_v1"].rows == 9 + 6 + 4
        tables = {t["Name"] for t in glue.get_tables(DatabaseName="sample_db")["TableList"]}
        assert tables == {
            "dataset_motionrecord_v1",
            "dataset_taskdata_v1",
            "dataset_taskdata_v1_steps",
            "dataset_taskdata_v1_steps_interactions",
        }
        partitions = glue.get_partitions(DatabaseName="sample_db", TableName="dataset_taskdata_v1_steps")["Partitions"]
        assert sorted(tuple(p["Values"]) for p in partitions) == [
            ("flanker", "2024", "3", "2"),
            ("number-match", "2024", "3", "1"),
        ]
        keys = [
            o["Key"]
            for o in s3.list_objects_v2(Bucket="parquet", Prefix="ns/app/study/published/TaskData_v1/")["Contents"]
        ]
        assert any(k.endswith(".parquet") for k in keys) and any(k.endswith(".csv") for k in keys)
        assert any(k.endswith("/manifest.json") for k in keys) and "ns/app/study/published/TaskData_v1/CURRENT" in keys
        assert not any(k.rsplit("/", 1)[-1].startswith(("_", ".")) for k in keys)
    # The local copies Spark read and wrote (the emulated endpoint) are gone.
    assert not list(scratch.glob("bridge-downstream-stage-*"))
