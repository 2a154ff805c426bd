"""The compare and quality Glue jobs on emulated S3: reports under the
namespace's root, a link in the log, --fail-on-diff failing the job."""

from __future__ import annotations

import json
import logging
import tempfile

import boto3
import pytest
from moto import mock_aws

from aws_emulator import moto_server
from bridge_downstream.common import layout
from bridge_downstream_adapters.s3 import S3Storage
from published_fixtures import publish
from support import load_job

DATASET, TABLE = "Survey_v1", "dataset_survey_v1"
MAIN, BRANCH = "s3://parquet/bridge-downstream/app/study", "s3://parquet/feature-x/app/study"


def _publish(root: str, scores: list[float]) -> None:
    storage = S3Storage.from_uri(root)
    rows = [{"recordid": f"r{i}", "score": score} for i, score in enumerate(scores)]
    manifest = publish(storage, DATASET, "v1", {TABLE: {(("year", "2024"),): rows}})
    manifest.plan = {
        "identity_columns": ["recordid"],
        "tables": [
            {"name": TABLE, "kind": "root", "columns": [{"name": "recordid", "role": "value", "path": ["recordid"]}]}
        ],
    }
    storage.write_bytes(layout.manifest_key(DATASET, "v1"), manifest.to_json().encode())


def _objects(root: str, prefix: str) -> list[str]:
    return sorted(info.key for info in S3Storage.from_uri(root).list(prefix))


@mock_aws
def test_compare_job_writes_its_reports_under_the_branch_and_logs_the_link(caplog):
    boto3.client("s3").create_bucket(Bucket="parquet")
    _publish(MAIN, [1.0, 2.0, 3.0])
    _publish(BRANCH, [1.0, 2.5, 3.0])
    job = load_job("compare")
    argv = ["--published-root", BRANCH, "--main-published-root", MAIN, "--engine", "pandas", "--JOB_RUN_ID", "jr_1"]
    with caplog.at_level(logging.INFO, logger="compare"):
        report = job.main(argv)
    assert report.differs
    (table,) = report.tables
    assert table.changed_values()[["recordid", "a", "b"]].values.tolist() == [["r1", 2.0, 2.5]]
    assert _objects(BRANCH, "reports/compare/") == [
        "reports/compare/jr_1/Survey_v1/dataset_survey_v1.changed.csv",
        "reports/compare/jr_1/compare.json",
        "reports/compare/jr_1/report.html",
        "reports/compare/jr_1/summary.txt",
    ]
    counts = json.loads(S3Storage.from_uri(BRANCH).read_bytes("reports/compare/jr_1/compare.json"))
    assert counts["a"] == MAIN and counts["b"] == BRANCH and counts["tables"][0]["changed"] == {"score": 1}
    assert f"compare report: {BRANCH}/reports/compare/jr_1/report.html" in caplog.text
    assert _objects(MAIN, "reports/") == []  # main's root is only read

    with pytest.raises(job.DataDiffers):
        job.main([*argv, "--fail-on-diff", "true"])
    assert not job.main([*argv, "--abs-tol", "1", "--fail-on-diff", "true"]).differs


@mock_aws
def test_quality_job_checks_every_current_version(caplog):
    boto3.client("s3").create_bucket(Bucket="parquet")
    _publish(BRANCH, [1.0, 2.0])
    with caplog.at_level(logging.INFO, logger="quality"):
        summary = load_job("quality").main(
            ["--published-root", BRANCH, "--profile", "mtb", "--engine", "pandas", "--JOB_RUN_ID", "jr_2"]
        )
    assert list(summary) == [DATASET] and summary[DATASET]["version"] == "v1"
    assert summary[DATASET]["report"] == "published/Survey_v1/versions/v1/quality.html"
    assert _objects(BRANCH, "reports/quality/") == ["reports/quality/jr_2.html", "reports/quality/jr_2.json"]
    assert S3Storage.from_uri(BRANCH).exists("published/Survey_v1/versions/v1/quality.html")
    assert f"quality report: {BRANCH}/reports/quality/jr_2.html" in caplog.text


@pytest.mark.spark
def test_compare_job_on_spark_reads_emulated_s3_through_a_staged_copy(spark, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with moto_server() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        boto3.client("s3").create_bucket(Bucket="parquet")
        _publish(MAIN, [1.0, 2.0, 3.0])
        _publish(BRANCH, [1.0, 2.0])
        report = load_job("compare").main(
            ["--published-root", BRANCH, "--main-published-root", MAIN, "--WORKFLOW_RUN_ID", "wr_1"], spark=spark
        )
    assert report.engine == "spark"
    (table,) = report.tables
    assert (table.rows_a, table.rows_b, table.only_in_a["recordid"].tolist()) == (3, 2, ["r2"])


@pytest.mark.spark
def test_quality_job_on_spark_checks_emulated_s3_through_a_staged_copy(spark, tmp_path, monkeypatch):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    with moto_server() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        boto3.client("s3").create_bucket(Bucket="parquet")
        _publish(BRANCH, [1.0, 2.0])
        summary = load_job("quality").main(
            ["--published-root", BRANCH, "--profile", "mtb", "--JOB_RUN_ID", "jr_3"], spark=spark
        )
        assert _objects(BRANCH, "reports/quality/") == ["reports/quality/jr_3.html", "reports/quality/jr_3.json"]
    results = summary[DATASET]["results"]
    # mtb's recordid not null, counted by Spark on the two published rows read from the staged copy
    [recordid] = [r for r in results if r["expectation"] == "recordid not null"]
    assert (recordid["passed"], recordid["element_count"], recordid["unexpected_count"]) == (True, 2, 0)
    assert list(scratch.iterdir()) == []  # the staged copy is removed
