"""The Glue JSON-to-Parquet job publishes nested tables when its profile asks
(no job argument): written through Spark's staged view of emulated S3 and
registered in the Glue catalog with struct and array types."""

from __future__ import annotations

import tempfile
from importlib.resources import files

import boto3
import pytest
import yaml

from aws_emulator import moto_server
from support import SAMPLES, build_sample_registry, ingest_folder, load_job


@pytest.mark.spark
def test_the_job_publishes_the_nested_tables_its_profile_names(spark, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    profile = yaml.safe_load((files("bridge_downstream.config") / "resources" / "profiles" / "mtb.yaml").read_text())
    profile["nested_datasets"] = ["TaskData_v1"]
    profile_path = tmp_path / "mtb-nested.yaml"
    profile_path.write_text(yaml.safe_dump(profile))
    registry = build_sample_registry(tmp_path / "registry")
    ingest_folder(SAMPLES / "archives", tmp_path / "work", registry)
    with moto_server() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        s3, glue = boto3.client("s3"), boto3.client("glue")
        for bucket in ("artifacts", "intermediate", "parquet"):
            s3.create_bucket(Bucket=bucket)
        for folder, bucket, prefix in (
            (tmp_path / "registry", "artifacts", "registry"),
            (tmp_path / "work", "intermediate", "ns"),
        ):
            for path in folder.rglob("*"):
                if path.is_file():
                    s3.upload_file(str(path), bucket, f"{prefix}/{path.relative_to(folder).as_posix()}")
        glue.create_database(DatabaseInput={"Name": "db"})
        results = load_job("json_to_parquet").main(
            [
                "json_to_parquet.py",
                "--json-root",
                "s3://intermediate/ns",
                "--registry-uri",
                "s3://artifacts/registry",
                "--profile",
                str(profile_path),
                "--published-root",
                "s3://parquet/ns",
                "--glue-database",
                "db",
                "--datasets",
                "TaskData_v1,MotionRecord_v1",
            ],
            spark=spark,
        )
        tables = {t["Name"]: t for t in glue.get_tables(DatabaseName="db")["TableList"]}
        nested_keys = [
            o["Key"]
            for o in s3.list_objects_v2(
                Bucket="parquet",
                Prefix=f"ns/published/TaskData_v1/versions/{results['TaskData_v1'].version}/parquet/dataset_taskdata_v1_nested/",
            ).get("Contents", [])
        ]
    assert "dataset_motionrecord_v1_nested" not in tables  # not named by the profile
    nested = results["TaskData_v1"].tables["dataset_taskdata_v1_nested"]
    assert nested.rows == results["TaskData_v1"].tables["dataset_taskdata_v1"].rows > 0
    columns = {c["Name"]: c["Type"] for c in tables["dataset_taskdata_v1_nested"]["StorageDescriptor"]["Columns"]}
    assert columns["steps"].startswith("array<struct<identifier:string,")
    assert columns["scores"] == "struct<rawscore:bigint,theta:double>"
    assert nested_keys and all(key.endswith(".parquet") for key in nested_keys)  # no CSVs, no bookkeeping
    assert sorted(nested_keys) == sorted(f"ns/{f.key}" for f in nested.files_of("parquet"))
