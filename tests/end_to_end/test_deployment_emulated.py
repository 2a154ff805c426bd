"""Emulated deployment, offline: launch the sceptre stacks against a moto server
on 127.0.0.1, complete what moto's CloudFormation skips (cfn_harness), then
drive a real flow through it:

    archive put in the input bucket -> S3 notification -> SNS -> SQS
    -> sqs_to_glue handler (in-process, playing Lambda's poller)
    -> workflow run with `messages` -> local workflow runner -> jobs
    -> datasets, Parquet/CSV and catalog tables

and a poison message ends in the dead-letter queue without blocking the rest.

The jobs are pluggable (JOB_RUNNERS below): the ``stub`` runner checks the
job-argument contract and writes placeholder outputs, so the whole deployment
path is tested today; the ``real`` runner runs src/glue/jobs/*.py through
``script_main_runner`` on local Spark and is enabled once all job scripts
exist (the lead finishes its assertions).
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest

from deploy_fixtures import ROOT, emulated_deployment, launch

pytestmark = pytest.mark.deploy

NAMESPACE = "e2e"
APP, STUDY = "mobile-toolbox", "example"
PIPELINE = "mtb-example"
ARCHIVE_METADATA = {  # Bridge's S3 object metadata of the real MTB Spelling upload
    "recordid": "OCJByUtSrVTYtqObYp7XZV_J",
    "assessmentid": "spelling",
    "assessmentrevision": "5",
    "uploadedon": "2022-02-15T18:48:15.890Z",
    "clientinfo": "ClientInfo [appName=MobileToolboxApp, appVersion=73, deviceName=iPhone 7 Plus, osName=iPhone OS, "
    "osVersion=15.1, sdkName=BridgeClientKMM, sdkVersion=0]",
}
JOB_SCRIPTS = ROOT / "src" / "glue" / "jobs"
# The rehearsal's own Synapse folder (config/ commits none for these pipelines), and the
# opt-in that lets this branch namespace see every upload (branches see none by default).
SYNAPSE_FOLDER = "syn4242"
DEVELOP_VARS = {"synapse_folder_ids.recover-pilot": SYNAPSE_FOLDER, "branch_uploads_prefix": "*"}
PROD_VARS = {"synapse_folder_ids.mtb-example": SYNAPSE_FOLDER}


def load_lambda():
    spec = importlib.util.spec_from_file_location("sqs_to_glue_e2e", ROOT / "src" / "lambda" / "sqs_to_glue" / "app.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def archive_bytes() -> bytes:
    from project_paths import SHARED_DATA

    real = SHARED_DATA / "bridge-archives" / "OCJByUtSrVTYtqObYp7XZV_J-mtbSpelling.zip"
    if real.exists():
        return real.read_bytes()
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("metadata.json", json.dumps({"appName": "MobileToolboxApp", "files": []}))
    return buffer.getvalue()


@pytest.fixture(scope="module")
def registry_dir(tmp_path_factory) -> Path:
    """The registry artifacts.py uploads: the real one (mobile-client-json and the
    MTB task-data schemas) when ../shared/data is there, else the sample one."""
    from project_paths import SHARED_DATA
    from support import build_real_registry, build_sample_registry

    reg = tmp_path_factory.mktemp("registry") / "registry"
    if all(
        (SHARED_DATA / name).exists() for name in ("mobile-client-json", "mtb-taskdata", "bridge-downstream-config")
    ):
        build_real_registry(reg)
    else:
        build_sample_registry(reg)
    return reg


@pytest.fixture(scope="module")
def deployment(tmp_path_factory, registry_dir):
    """develop, namespace e2e, on one moto server for the whole module."""
    with emulated_deployment(
        tmp_path_factory.mktemp("sceptre"), "develop", NAMESPACE, registry_dir, extra_vars=DEVELOP_VARS
    ) as deployment:
        yield deployment


@pytest.fixture(scope="module")
def handler(deployment):
    """The deployed function's handler, with the environment the stack gave it."""
    app = load_lambda()
    settings = app.Settings.from_env(deployment.lambda_environment())
    glue = deployment.client("glue")
    return lambda event, context: app.lambda_handler(event, context, glue_client=glue, settings=settings)


# ------------------------------------------------------------------ the launch


def test_every_stack_launched_and_completed(deployment):
    cfn = deployment.client("cloudformation")
    statuses = {s["StackName"]: s["StackStatus"] for s in cfn.describe_stacks()["Stacks"]}
    for name in deployment.stacks:
        assert statuses[name] in ("CREATE_COMPLETE", "UPDATE_COMPLETE"), name
    assert len(deployment.stacks) == 8  # the alarms stack too
    created = "\n".join(deployment.report.created)
    for expected in (
        "AWS::Glue::Job",
        "AWS::Glue::Workflow",
        "AWS::Glue::Trigger",
        "AWS::Glue::Database",
        "AWS::SNS::Subscription",
        "AWS::SQS::QueuePolicy",
        "AWS::S3::BucketPolicy",
    ):
        assert expected in created

    buckets = deployment.buckets
    s3 = deployment.client("s3")
    assert s3.get_bucket_versioning(Bucket=buckets["InputBucketName"])["Status"] == "Enabled"
    assert s3.get_public_access_block(Bucket=buckets["ParquetBucketName"])["PublicAccessBlockConfiguration"][
        "BlockPublicPolicy"
    ]
    # the TLS-only statements are in the templates (test_templates) but moto would
    # apply them unconditionally, so the harness leaves them out and says so
    assert len([a for a in deployment.report.adjusted if "BucketPolicy" in a]) == 4
    config = s3.get_bucket_notification_configuration(Bucket=buckets["InputBucketName"])
    assert config["TopicConfigurations"][0]["TopicArn"] == buckets["InputTopicArn"]

    sqs = deployment.client("sqs")
    attributes = sqs.get_queue_attributes(QueueUrl=deployment.queues["InputQueueUrl"], AttributeNames=["All"])[
        "Attributes"
    ]
    assert json.loads(attributes["RedrivePolicy"])["maxReceiveCount"] == 3
    assert int(attributes["VisibilityTimeout"]) > 60  # above the Lambda timeout
    assert "sns.amazonaws.com" in attributes["Policy"]

    glue = deployment.client("glue")
    job = glue.get_job(JobName=f"{NAMESPACE}-{PIPELINE}-s3-to-json")["Job"]
    artifacts = f"s3://{buckets['ArtifactBucketName']}/BridgeDownstream/{NAMESPACE}"
    assert job["Command"]["ScriptLocation"] == f"{artifacts}/glue/jobs/s3_to_json.py"
    # the wheel and its locked dependencies (synapseclient among them), installed offline
    environment = job["DefaultArguments"]["--additional-python-modules"]
    assert environment == f"{artifacts}/glue/python/glue-environment.zip"
    head = s3.head_object(
        Bucket=buckets["ArtifactBucketName"], Key=environment.split("/", 3)[3]
    )  # uploaded before launch
    assert head["ContentLength"] > 0
    assert glue.get_database(Name=f"{NAMESPACE}_mtb_example")["Database"]["Name"] == f"{NAMESPACE}_mtb_example"
    function = deployment.client("lambda").get_function(FunctionName=f"{NAMESPACE}-sqs-to-glue")
    assert function["Configuration"]["Handler"] == "app.lambda_handler"


# ------------------------------------------------------------------ S3 event -> Lambda -> workflow run


def put_archive(deployment, key: str) -> None:
    deployment.client("s3").put_object(
        Bucket=deployment.buckets["InputBucketName"], Key=key, Body=archive_bytes(), Metadata=ARCHIVE_METADATA
    )


def test_archive_put_starts_one_workflow_run(deployment, handler):
    from bridge_downstream_adapters.cfn_harness import Harness

    # Applying the bucket's notification configuration again (harness rerun)
    # makes S3 send an s3:TestEvent, which now reaches the queue: skipped.
    Harness(session=deployment.session).emulate_stack(f"bridge-downstream-{deployment.group}-buckets")
    key = f"{APP}/{STUDY}/2022-02-15/OCJByUtSrVTYtqObYp7XZV_J-mtb Spelling.zip"  # a space: '+' in the event
    put_archive(deployment, key)
    put_archive(deployment, f"{APP}/{STUDY}/owner.txt")
    put_archive(deployment, "recover/pilot/folder/")

    responses = deployment.poll_lambda(handler)
    assert responses and all(r["batchItemFailures"] == [] for r in responses)
    glue = deployment.client("glue")
    runs = glue.get_workflow_runs(Name=f"{NAMESPACE}-{PIPELINE}-s3-to-json")["Runs"]
    assert len(runs) == 1
    messages = json.loads(runs[0]["WorkflowRunProperties"]["messages"])
    assert messages == [
        {"source_bucket": deployment.buckets["InputBucketName"], "source_key": key, "raw_folder_id": None}
    ]
    assert glue.get_workflow_runs(Name=f"{NAMESPACE}-recover-pilot-s3-to-json")["Runs"] == []


# ------------------------------------------------------------------ the runner and the jobs


class StubJobs:
    """Stands in for the Glue job scripts: checks the argument contract, reads the
    run properties as the real scripts do, and writes placeholder outputs where
    the real ones write theirs."""

    def __init__(self, deployment):
        self.deployment = deployment
        self.calls: list[tuple[str, dict]] = []

    def __call__(self, invocation):
        from bridge_downstream_adapters.glue_args import resolve_options
        from bridge_downstream_adapters.s3 import S3Storage

        s3 = self.deployment.client("s3")
        glue = invocation.glue_client
        script = invocation.job.script_name
        if script == "s3_to_json":
            args = resolve_options(
                invocation.argv,
                [
                    "WORKFLOW_NAME",
                    "WORKFLOW_RUN_ID",
                    "json-root",
                    "registry-uri",
                    "profile",
                    "invalid-queue-url",
                    "app-id",
                    "study-id",
                ],
            )
            properties = glue.get_workflow_run_properties(Name=args["WORKFLOW_NAME"], RunId=args["WORKFLOW_RUN_ID"])[
                "RunProperties"
            ]
            messages = json.loads(properties["messages"])
            for message in messages:  # the archive is readable with the job's inputs
                body = s3.get_object(Bucket=message["source_bucket"], Key=message["source_key"])["Body"].read()
                assert zipfile.ZipFile(io.BytesIO(body)).namelist()
            assert S3Storage.from_uri(args["registry_uri"], s3).exists("registry.json")
            out = S3Storage.from_uri(args["json_root"], s3)
            out.write_bytes("json/dataset=ArchiveMetadata_v1/part-stub-00000.ndjson", b'{"recordid": "stub"}\n')
            glue.put_workflow_run_properties(
                Name=args["WORKFLOW_NAME"],
                RunId=args["WORKFLOW_RUN_ID"],
                RunProperties={"ingested_datasets": "ArchiveMetadata_v1"},
            )
        elif script == "json_to_parquet":
            args = resolve_options(
                invocation.argv,
                [
                    "json-root",
                    "published-root",
                    "registry-uri",
                    "profile",
                    "glue-database",
                    "datasets",
                    "catalog-table-prefix",
                ],
            )
            datasets = args["datasets"].split(",")
            source = S3Storage.from_uri(args["json_root"], s3)
            published = S3Storage.from_uri(args["published_root"], s3)
            for dataset in datasets:
                if not list(source.list(f"json/dataset={dataset}/")):
                    continue
                for fmt in ("parquet", "csv"):
                    published.write_bytes(f"published/{dataset}/versions/v1/{fmt}/{dataset}/part-0.{fmt}", b"stub")
                glue.create_table(
                    DatabaseName=args["glue_database"],
                    TableInput={
                        "Name": (args["catalog_table_prefix"] + dataset).lower(),
                        "StorageDescriptor": {
                            "Location": published.uri(f"published/{dataset}/versions/v1/parquet/{dataset}/"),
                            "Columns": [{"Name": "recordid", "Type": "string"}],
                        },
                    },
                )
        elif script in ("quality", "compare"):
            pass  # they only read what publish wrote and report it; the "real" kind runs them
        else:
            raise AssertionError(f"unexpected job script {script}")
        self.calls.append((invocation.job.name, invocation.arguments))


def real_jobs_available() -> bool:
    return all((JOB_SCRIPTS / name).exists() for name in ("s3_to_json.py", "json_to_parquet.py"))


def make_job_runner(kind: str, deployment, request):
    if kind == "stub":
        return StubJobs(deployment)
    if not real_jobs_available():
        pytest.skip("needs the Glue job scripts src/glue/jobs/s3_to_json.py and json_to_parquet.py")
    from bridge_downstream_adapters.glue_workflow import script_main_runner

    spark = request.getfixturevalue("spark")
    return script_main_runner(JOB_SCRIPTS, spark=spark)


@pytest.mark.parametrize("kind", ["stub", pytest.param("real", marks=pytest.mark.spark)])
def test_workflow_runner_runs_the_lambda_started_run(deployment, handler, kind, request):
    """From an archive put to published tables. Each parameter uses its own
    archive and pipeline run; ``real`` runs the actual job scripts."""
    from bridge_downstream_adapters.glue_workflow import (
        pending_runs,
        run_pending,
        workflow_from_glue,
    )

    glue = deployment.client("glue")
    workflow_name = f"{NAMESPACE}-{PIPELINE}-s3-to-json"
    for run_id in pending_runs(glue, workflow_name):  # earlier tests' runs are not ours
        glue.put_workflow_run_properties(
            Name=workflow_name, RunId=run_id, RunProperties={"local_runner_status": "SKIPPED"}
        )
    put_archive(deployment, f"{APP}/{STUDY}/{kind}/OCJByUtSrVTYtqObYp7XZV_J-mtbSpelling.zip")
    assert all(r["batchItemFailures"] == [] for r in deployment.poll_lambda(handler))

    runner = make_job_runner(kind, deployment, request)
    workflow = workflow_from_glue(workflow_name, glue)
    results = run_pending(workflow, runner, glue)
    assert len(results) == 1, [r.summary() for r in results]
    result = results[0]
    assert result.succeeded, result.summary()
    # publish is debounced: an ingest run starts no publish job
    assert [r.job_name for r in result.job_runs] == [f"{NAMESPACE}-{PIPELINE}-s3-to-json"]
    assert pending_runs(glue, workflow_name) == []
    publish_name = f"{NAMESPACE}-{PIPELINE}-json-to-parquet"
    for run_id in pending_runs(glue, publish_name):
        glue.put_workflow_run_properties(
            Name=publish_name, RunId=run_id, RunProperties={"local_runner_status": "SKIPPED"}
        )
    glue.start_workflow_run(Name=publish_name)  # what its schedule does
    (published,) = run_pending(workflow_from_glue(publish_name, glue), runner, glue)
    assert published.succeeded, published.summary()
    publish = [r.job_name for r in published.job_runs if "-json-to-parquet-" in r.job_name]
    assert sorted(publish) == sorted(
        f"{NAMESPACE}-{PIPELINE}-json-to-parquet-{g}" for g in ("arrays", "others", "standard")
    )

    # datasets, Parquet and CSV, catalog tables
    s3 = deployment.client("s3")
    buckets = deployment.buckets
    root = f"{NAMESPACE}/{APP}/{STUDY}/"
    json_keys = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=buckets["IntermediateBucketName"], Prefix=root + "json/").get("Contents", [])
    ]
    published = [
        o["Key"]
        for o in s3.list_objects_v2(Bucket=buckets["ParquetBucketName"], Prefix=root + "published/").get("Contents", [])
    ]
    assert json_keys
    assert any("/parquet/" in k for k in published) and any("/csv/" in k for k in published)
    tables = glue.get_tables(DatabaseName=f"{NAMESPACE}_mtb_example")["TableList"]
    assert tables and all(
        t["StorageDescriptor"]["Location"].startswith(f"s3://{buckets['ParquetBucketName']}/{root}") for t in tables
    )


def test_json_to_parquet_workflow_runs_on_demand(deployment):
    """The scheduled workflow, started on demand (as StartWorkflowRun does)."""
    from bridge_downstream_adapters.glue_workflow import run_workflow, workflow_from_glue

    glue = deployment.client("glue")
    workflow = workflow_from_glue(f"{NAMESPACE}-recover-pilot-json-to-parquet", glue)
    assert [t.type for t in workflow.start_triggers] == ["SCHEDULED"]
    seen = []
    result = run_workflow(workflow, lambda invocation: seen.append(invocation.job.script_name), glue_client=glue)
    assert result.succeeded
    # the export after every publish job: the pipeline's two dataset groups and the catch-all "others"
    # and the quality job after them, the compare job too in this branch namespace
    assert seen[:3] == ["json_to_parquet", "json_to_parquet", "json_to_parquet"]
    assert sorted(seen[3:]) == ["compare", "quality", "synapse_export"]
    export = glue.get_job(JobName=f"{NAMESPACE}-recover-pilot-synapse-export")["Job"]
    assert export["DefaultArguments"]["--synapse-folder-id"] == SYNAPSE_FOLDER


@pytest.mark.spark
def test_quality_and_compare_jobs_run_after_publish_in_a_branch(deployment, spark):
    """The real quality and compare scripts, as the JSON->Parquet workflow runs
    them after its publish jobs: the branch's current versions checked, and
    compared with the default namespace's; their reports land under the
    branch's root."""
    from bridge_downstream.common import layout
    from bridge_downstream_adapters.glue_workflow import run_workflow, script_main_runner, workflow_from_glue
    from bridge_downstream_adapters.s3 import S3Storage
    from published_fixtures import publish

    s3 = deployment.client("s3")
    bucket = deployment.buckets["ParquetBucketName"]
    table = "dataset_survey_v1"
    for namespace, scores in (("bridge-downstream", [1.0, 2.0]), (NAMESPACE, [1.0, 2.5])):
        root = S3Storage(bucket, f"{namespace}/recover/pilot", client=s3)
        rows = [{"recordid": f"r{i}", "score": score} for i, score in enumerate(scores)]
        manifest = publish(root, "Survey_v1", "v1", {table: {(): rows}})
        manifest.plan = {
            "identity_columns": ["recordid"],
            "tables": [
                {
                    "name": table,
                    "kind": "root",
                    "columns": [{"name": "recordid", "role": "value", "path": ["recordid"]}],
                }
            ],
        }
        root.write_bytes(layout.manifest_key("Survey_v1", "v1"), manifest.to_json().encode())

    real = script_main_runner(JOB_SCRIPTS, spark=spark)
    ran = []

    def runner(invocation):
        ran.append(invocation.job.script_name)
        if invocation.job.script_name in ("quality", "compare"):
            return real(invocation)
        return None

    glue = deployment.client("glue")
    result = run_workflow(
        workflow_from_glue(f"{NAMESPACE}-recover-pilot-json-to-parquet", glue), runner, glue_client=glue
    )
    assert result.succeeded, result.summary()
    assert {"quality", "compare"} <= set(ran)

    branch = S3Storage(bucket, f"{NAMESPACE}/recover/pilot", client=s3)
    compare_json = [i.key for i in branch.list("reports/compare/") if i.key.endswith("/compare.json")]
    assert len(compare_json) == 1
    counts = json.loads(branch.read_bytes(compare_json[0]))
    assert counts["a"] == f"s3://{bucket}/bridge-downstream/recover/pilot"
    assert counts["tables"][0]["changed"] == {"score": 1}
    assert [i.key for i in branch.list("reports/quality/") if i.key.endswith(".html")]
    assert branch.exists("published/Survey_v1/versions/v1/quality.html")
    main_root = S3Storage(bucket, "bridge-downstream/recover/pilot", client=s3)
    assert list(main_root.list("reports/")) == []  # main's data is only read


# ------------------------------------------------------------------ poison message


def test_poison_message_ends_in_dead_letter_queue_without_blocking(deployment, handler):
    sns = deployment.client("sns")
    sqs = deployment.client("sqs")
    topic = deployment.buckets["InputTopicArn"]
    glue = deployment.client("glue")
    workflow_name = f"{NAMESPACE}-recover-pilot-s3-to-json"
    before = len(glue.get_workflow_runs(Name=workflow_name)["Runs"])

    # not an S3 event nor a Bridge notification: the handler rejects it every time
    sns.publish(TopicArn=topic, Message=json.dumps({"unexpected": "shape"}))
    bridge = {
        "appId": "recover",
        "recordId": "r1",
        "record": {"s3Bucket": "raw", "s3Key": "recover/r1.zip", "rawFolderId": "syn9"},
        "studyRecords": {"pilot": {"s3Bucket": "raw", "s3Key": "recover/pilot/r1.zip", "rawFolderId": "syn9"}},
    }
    sns.publish(TopicArn=topic, Message=json.dumps(bridge))

    for _ in range(5):  # Lambda keeps polling; each pass is one receive
        deployment.poll_lambda(handler, max_batches=1)
    dlq = deployment.queues["DeadLetterQueueUrl"]
    dead = sqs.receive_message(QueueUrl=dlq, MaxNumberOfMessages=10).get("Messages", [])
    assert len(dead) == 1
    assert json.loads(json.loads(dead[0]["Body"])["Message"]) == {"unexpected": "shape"}
    remaining = sqs.get_queue_attributes(
        QueueUrl=deployment.queues["InputQueueUrl"],
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    assert remaining == {"ApproximateNumberOfMessages": "0", "ApproximateNumberOfMessagesNotVisible": "0"}
    runs = glue.get_workflow_runs(Name=workflow_name)["Runs"]
    assert len(runs) == before + 1  # the good message was not blocked (and ran once)
    assert json.loads(runs[-1]["WorkflowRunProperties"]["messages"])[0]["raw_folder_id"] == "syn9"


# ------------------------------------------------------------------ runner CLI


def test_runner_cli_shows_a_deployed_workflow(deployment):
    env = dict(os.environ, AWS_ENDPOINT_URL=deployment.endpoint, PYTHONPATH=str(ROOT / "src"))
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "bridge_downstream_adapters.glue_workflow",
            "show",
            "--workflow",
            f"{NAMESPACE}-{PIPELINE}-s3-to-json",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "[ON_DEMAND]" in result.stdout and f"-> {NAMESPACE}-{PIPELINE}-s3-to-json (s3_to_json" in result.stdout


def test_moto_would_deny_everything_with_the_tls_only_policy(deployment):
    """Why the harness leaves conditional Deny statements out (docs/deployment.md)."""
    from botocore.exceptions import ClientError

    s3 = deployment.client("s3")
    s3.create_bucket(Bucket="tls-probe")
    s3.put_object(Bucket="tls-probe", Key="k", Body=b"x")
    s3.put_bucket_policy(
        Bucket="tls-probe",
        Policy=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Deny",
                        "Principal": "*",
                        "Action": "s3:*",
                        "Resource": ["arn:aws:s3:::tls-probe", "arn:aws:s3:::tls-probe/*"],
                        "Condition": {"Bool": {"aws:SecureTransport": "false"}},
                    }
                ],
            }
        ),
    )
    with pytest.raises(ClientError):
        s3.get_object(Bucket="tls-probe", Key="k")
    s3.delete_bucket_policy(Bucket="tls-probe")


def test_a_branch_launch_leaves_the_shared_stacks_alone(deployment, tmp_path):
    """`sceptre --var namespace=<branch> launch develop` skips buckets and the
    GitHub role (ignore: true), but resolves their outputs."""
    from deploy_fixtures import sceptre

    result = sceptre(
        ["launch", "-y", "develop"],
        cwd=tmp_path,
        namespace=NAMESPACE,
        endpoint=deployment.endpoint,
        extra_vars=DEVELOP_VARS,
    )
    skipped = result.stdout.split("will be skipped", 1)[1].split("*", 1)[0]
    assert "develop/buckets" in skipped and "develop/github-oidc" in skipped


def test_prod_group_launches_too(deployment, tmp_path, registry_dir):
    """The prod stack group launches on the same emulated account (its own
    shared stacks; a rehearsal namespace so names do not collide)."""
    started = time.monotonic()
    prod = launch(deployment.endpoint, "prod", "prod-rehearsal", tmp_path, registry=registry_dir, extra_vars=PROD_VARS)
    cfn = deployment.client("cloudformation")
    statuses = {s["StackName"]: s["StackStatus"] for s in cfn.describe_stacks()["Stacks"]}
    assert all(statuses[name].endswith("_COMPLETE") for name in prod.stacks)
    assert len(prod.stacks) == 7
    glue = deployment.client("glue")
    assert (
        glue.get_trigger(Name="prod-rehearsal-mtb-example-synapse-export-after-publish")["Trigger"]["Type"]
        == "CONDITIONAL"
    )
    assert time.monotonic() - started < 120
