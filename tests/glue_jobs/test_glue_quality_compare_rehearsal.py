"""The quality and compare jobs in the local workflow rehearsal: the rendered
pipeline template's JSON->Parquet workflow, run by the local runner with the
real job scripts on local Spark against emulated S3."""

from __future__ import annotations

import json
import tempfile

import boto3
import pytest

from aws_emulator import moto_server
from bridge_downstream.common import layout
from bridge_downstream_adapters.glue_workflow import run_workflow, script_main_runner, workflows_from_template
from bridge_downstream_adapters.s3 import S3Storage
from deploy_fixtures import ROOT, render_group, require_sceptre
from published_fixtures import publish

pytestmark = [pytest.mark.deploy, pytest.mark.spark]

BRANCH = "feat-x"
MAIN = "bridge-downstream"
WORKFLOW = "{}-recover-pilot-json-to-parquet"
TABLE = "dataset_survey_v1"


@pytest.fixture(scope="module")
def pipeline_template(tmp_path_factory) -> str:
    require_sceptre()
    rendered = render_group("develop", tmp_path_factory.mktemp("render"), namespace=BRANCH)
    return rendered[f"{BRANCH}-pipeline-recover-pilot"].read_text()


def parameters(namespace: str) -> dict[str, str]:
    return {
        "Namespace": namespace,
        "DatabasePrefix": namespace.replace("-", "_"),
        "ArtifactRef": namespace,
        "ArtifactBucketName": "art",
        "IntermediateBucketName": "int",
        "ParquetBucketName": "parquet",
        "GlueRoleArn": f"arn:aws:iam::123456789012:role/{namespace}-glue-job",
        "InvalidQueueUrl": "https://q",
    }


def _publish(namespace: str, scores: list[float]) -> None:
    root = S3Storage("parquet", f"{namespace}/recover/pilot")
    rows = [{"recordid": f"r{i}", "score": score} for i, score in enumerate(scores)]
    manifest = publish(root, "Survey_v1", "v1", {TABLE: {(): rows}})
    manifest.plan = {
        "identity_columns": ["recordid"],
        "tables": [
            {"name": TABLE, "kind": "root", "columns": [{"name": "recordid", "role": "value", "path": ["recordid"]}]}
        ],
    }
    root.write_bytes(layout.manifest_key("Survey_v1", "v1"), manifest.to_json().encode())


def test_the_default_namespace_runs_quality_but_no_compare(pipeline_template):
    workflow = workflows_from_template(pipeline_template, parameters(MAIN))[WORKFLOW.format(MAIN)]
    scripts = sorted(job.script_name for job in workflow.jobs.values())
    assert scripts.count("quality") == 1 and "compare" not in scripts


def test_a_branch_runs_quality_and_compare_after_its_publish_jobs(pipeline_template, spark, tmp_path, monkeypatch):
    workflow = workflows_from_template(pipeline_template, parameters(BRANCH))[WORKFLOW.format(BRANCH)]
    compare_job = next(j for j in workflow.jobs.values() if j.script_name == "compare")
    assert compare_job.default_arguments["--main-published-root"] == f"s3://parquet/{MAIN}/recover/pilot"
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    real = script_main_runner(ROOT / "src" / "glue" / "jobs", spark=spark)
    ran = []

    def runner(invocation):
        ran.append(invocation.job.script_name)
        return real(invocation) if invocation.job.script_name in ("quality", "compare") else None

    with moto_server() as endpoint:
        monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
        boto3.client("s3").create_bucket(Bucket="parquet")
        _publish(MAIN, [1.0, 2.0, 3.0])
        _publish(BRANCH, [1.0, 2.0, 3.5])
        result = run_workflow(workflow, runner)
        assert result.succeeded, result.summary()
        branch = S3Storage("parquet", f"{BRANCH}/recover/pilot")
        (counts_key,) = [i.key for i in branch.list("reports/compare/") if i.key.endswith("/compare.json")]
        counts = json.loads(branch.read_bytes(counts_key))
        assert branch.exists("published/Survey_v1/versions/v1/quality.html")
        assert list(S3Storage("parquet", f"{MAIN}/recover/pilot").list("reports/")) == []
    publish_jobs = [s for s in ran if s == "json_to_parquet"]
    # after every publish job; recover-pilot has no Synapse folder id in config/, hence no export job
    assert ran[: len(publish_jobs)] == publish_jobs and sorted(ran[len(publish_jobs) :]) == ["compare", "quality"]
    assert counts["tables"][0]["changed"] == {"score": 1} and counts["differs"]
