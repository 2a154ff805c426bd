"""status, versions, locate and backfill on an output folder the bundled samples made."""

from __future__ import annotations

import json
import os
import shutil

import boto3
import pytest
from moto import mock_aws

from bridge_downstream_adapters.backfill_sources import RawArchive, WorkflowSubmitter, latest_exports, list_file_view
from bridge_downstream_adapters.secrets import SecretToken
from bridge_downstream_adapters.synapse import connect
from bridge_downstream_cli.exit_codes import ExitCode
from bridge_downstream_cli.main import main
from fake_synapse import FakeSynapse
from support import SAMPLES, build_sample_registry


@pytest.fixture(scope="module")
def registry_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("operator") / "registry"
    build_sample_registry(folder)
    return folder


@pytest.fixture(scope="module")
def sample_output(registry_dir, tmp_path_factory):
    output = tmp_path_factory.mktemp("operator") / "out"
    code = main(
        ["run", str(SAMPLES / "archives"), "--registry", str(registry_dir), "--output", str(output), "--no-progress"]
    )
    assert code == ExitCode.INVALID  # three sample archives are invalid on purpose
    return output


def json_of(capsys, argv: list[str]) -> dict:
    assert main(argv) == 0
    return json.loads(capsys.readouterr().out)


def test_status_gives_each_dataset_its_current_version_rows_and_runs(sample_output, capsys):
    status = json_of(capsys, ["status", "--output", str(sample_output), "--json"])
    report = json.loads((sample_output / "run-report.json").read_text())
    assert set(status["datasets"]) == set(report["published"])
    taskdata = status["datasets"]["TaskData_v1"]
    assert taskdata["current_version"] == report["published"]["TaskData_v1"]
    assert taskdata["rows"] == report["tables"]["dataset_taskdata_v1"]["rows"] == 2
    assert taskdata["tables"] == [
        "dataset_taskdata_v1",
        "dataset_taskdata_v1_steps",
        "dataset_taskdata_v1_steps_interactions",
    ]
    assert taskdata["last_ingest"] == report["finished_at"]
    assert taskdata["versions"] == 1
    assert status["invalid"] == 3
    assert status["runs"] == 1


def test_versions_accepts_a_table_name_and_marks_the_current_one(sample_output, capsys):
    listed = json_of(capsys, ["versions", "DATASET_TASKDATA_V1_STEPS", "--output", str(sample_output), "--json"])
    assert listed["dataset"] == "TaskData_v1"
    assert [v["current"] for v in listed["versions"]] == [True]
    assert listed["versions"][0]["rows"] == 2


def test_versions_of_an_unknown_dataset_names_the_close_ones(sample_output, capsys):
    assert main(["versions", "TaskData_v3", "--output", str(sample_output)]) == 2
    error = capsys.readouterr().err
    assert "no dataset 'TaskData_v3'; did you mean TaskData_v2 or TaskData_v1" in error


def test_locate_follows_a_reexported_record_to_its_published_rows(sample_output, capsys):
    found = json_of(capsys, ["locate", "rec-0001", "--output", str(sample_output), "--rows", "--json"])
    decisions = {a["source"].rsplit("/", 1)[-1]: a["dedup"] for a in found["archives"]}
    reexport = next(a["source"] for a in found["archives"] if a["source"].endswith("reexport.zip"))
    assert decisions == {
        "rec-0001-number-match-reexport.zip": "kept (latest exportedOn)",
        "rec-0001-number-match.zip": f"superseded by {reexport}",
    }
    assert len(found["ledger"]) == 2
    taskdata = found["published"]["TaskData_v1"]["tables"]
    assert taskdata["dataset_taskdata_v1"]["rows"] == 1
    assert taskdata["dataset_taskdata_v1_steps"]["rows"] == 4
    assert taskdata["dataset_taskdata_v1_steps"]["ids"] == ["rec-0001|taskData.json|0/steps"]
    assert {row["recordid"] for row in taskdata["dataset_taskdata_v1_steps"]["row_values"]} == {"rec-0001"}
    assert found["published"]["MotionRecord_v1"]["tables"]["dataset_motionrecord_v1"]["rows"] == 9


def test_locate_says_why_an_invalid_record_was_not_published(sample_output, capsys):
    assert main(["locate", "rec-0005", "--output", str(sample_output)]) == 0
    printed = capsys.readouterr().out
    assert "invalid (failed validation: taskData.json)" in printed
    assert "not published (invalid)" in printed


def test_locate_of_an_unknown_record_fails(sample_output, capsys):
    assert main(["locate", "rec-9999", "--output", str(sample_output)]) == 1
    assert "no committed run read an archive of this record" in capsys.readouterr().out


def test_backfill_ingests_only_what_the_output_never_read(sample_output, registry_dir, tmp_path, capsys):
    output = tmp_path / "out"
    shutil.copytree(sample_output, output)
    source = tmp_path / "bucket"
    shutil.copytree(SAMPLES / "archives", source)
    assert main(["backfill", str(source), "--output", str(output), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert "8 archives listed, 8 never read" in printed  # another folder: other sources
    assert main(["backfill", str(SAMPLES / "archives"), "--output", str(output), "--dry-run"]) == 0
    assert "8 archives listed, 0 never read" in capsys.readouterr().out
    assert (
        main(["backfill", str(source), "--output", str(output), "--limit", "2", "--registry", str(registry_dir)]) == 0
    )
    printed = capsys.readouterr().out
    assert "8 archives listed, 2 never read" in printed
    assert "2 archives -- 0 processed, 0 invalid, 2 skipped" in printed  # same content: already ingested
    assert main(["backfill", str(source), "--output", str(output), "--dry-run"]) == 0
    assert "8 archives listed, 6 never read" in capsys.readouterr().out


def test_backfill_since_keeps_only_newer_archives(sample_output, tmp_path, capsys):
    source = tmp_path / "bucket"
    source.mkdir()
    for name, stamp in (("old.zip", 1_600_000_000), ("new.zip", 1_800_000_000)):
        (source / name).write_bytes(b"PK")
        os.utime(source / name, (stamp, stamp))
    assert main(["backfill", str(source), "--output", str(sample_output), "--dry-run", "--since", "2025-01-01"]) == 0
    printed = capsys.readouterr().out
    assert "2 archives listed, 1 never read" in printed
    assert "new.zip" in printed and "old.zip" not in printed


def test_backfill_of_a_missing_folder_is_a_usage_error(sample_output, tmp_path, capsys):
    assert main(["backfill", str(tmp_path / "nowhere"), "--output", str(sample_output)]) == 2
    assert "is no folder, s3://bucket/prefix or Synapse file view" in capsys.readouterr().err


@mock_aws
def test_backfill_submits_an_s3_prefix_to_the_workflow_in_batches(sample_output, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="raw")
    for index in range(5):
        s3.put_object(Bucket="raw", Key=f"uploads/rec-{index}.zip", Body=b"PK")
    s3.put_object(Bucket="raw", Key="uploads/notes.txt", Body=b"not an archive")
    glue = boto3.client("glue")
    glue.create_workflow(Name="ingest", MaxConcurrentRuns=10)
    argv = ["backfill", "s3://raw/uploads/", "--output", str(sample_output), "--workflow", "ingest"]
    assert main([*argv, "--batch-size", "2"]) == 0
    printed = capsys.readouterr().out
    assert "submitted 5 archives to ingest in 3 workflow runs" in printed
    runs = glue.get_workflow_runs(Name="ingest")["Runs"]
    assert len(runs) == 3
    messages = [
        message
        for run in runs
        for message in json.loads(
            glue.get_workflow_run_properties(Name="ingest", RunId=run["WorkflowRunId"])["RunProperties"]["messages"]
        )
    ]
    assert sorted(m["source_key"] for m in messages) == [f"uploads/rec-{i}.zip" for i in range(5)]
    assert {m["source_bucket"] for m in messages} == {"raw"}


class FakeGlue:
    """A workflow whose runs finish only when the clock moves on: to check the submitter waits for a slot."""

    def __init__(self, max_runs: int):
        self.max_runs, self.running_runs, self.started, self.waits = max_runs, 0, 0, 0

    def get_workflow(self, Name):
        return {"Workflow": {"Name": Name, "MaxConcurrentRuns": self.max_runs}}

    def get_workflow_runs(self, Name, MaxResults):
        return {"Runs": [{"Status": "RUNNING"}] * self.running_runs}

    def start_workflow_run(self, Name):
        assert self.running_runs < self.max_runs, "a run started beyond the workflow's concurrency"
        self.running_runs += 1
        self.started += 1
        return {"RunId": f"run-{self.started}"}

    def put_workflow_run_properties(self, Name, RunId, RunProperties):
        pass

    def sleep(self, seconds):
        self.waits += 1
        self.running_runs = 0  # every run finished meanwhile


def test_submitter_waits_for_a_free_slot_before_each_run():
    glue = FakeGlue(max_runs=2)
    submitter = WorkflowSubmitter(glue, "ingest", batch_size=1, sleep=glue.sleep)
    archives = [RawArchive(f"s3://raw/{i}.zip", "raw", f"{i}.zip") for i in range(5)]
    assert submitter.submit(archives) == [f"run-{i}" for i in range(1, 6)]
    assert glue.waits == 2  # after runs 2 and 4


def test_latest_exports_keeps_the_latest_export_of_each_record():
    rows = [
        {"id": "syn1", "recordId": "a", "exportedOn": "100"},
        {"id": "syn2", "recordId": "a", "exportedOn": "300"},
        {"id": "syn3", "recordId": "b", "exportedOn": "200"},
        {"id": "syn4", "recordId": "a", "exportedOn": "200"},
    ]
    assert sorted(row["id"] for row in latest_exports(rows)) == ["syn2", "syn3"]


def test_file_view_query_filters_dedups_and_names_each_files_object():
    server = FakeSynapse().start()
    try:
        owner = server.add_user("token-1", "bridge-downstream")
        project = server.add_project("Bridge raw data", owner)
        folder = server.add_folder("raw", project, owner)
        files = {name: server.add_raw_file("raw-bucket", f"app/{name}.zip", folder, owner) for name in "abcd"}
        view = server.add_file_view(
            [
                {"id": files["a"], "recordId": "r1", "exportedOn": "100", "assessmentid": "flanker"},
                {"id": files["b"], "recordId": "r1", "exportedOn": "200", "assessmentid": "flanker"},
                {"id": files["c"], "recordId": "r2", "exportedOn": "150", "assessmentid": "flanker"},
                {"id": files["d"], "recordId": "r3", "exportedOn": "150", "assessmentid": "dccs"},
            ]
        )
        syn = connect(SecretToken("token-1", "test"), endpoint=server.url)
        query = "SELECT * FROM {source_table} WHERE assessmentid = 'flanker'"
        found = list_file_view(syn, view, "syn-raw", query=query)
        assert sorted((a.key, a.recordid, a.raw_folder_id) for a in found) == [
            ("app/b.zip", "r1", "syn-raw"),
            ("app/c.zip", "r2", "syn-raw"),
        ]
        every_export = list_file_view(syn, view, None, query=query, drop_duplicates=False)
        assert sorted(a.source for a in every_export) == [f"s3://raw-bucket/app/{n}.zip" for n in "abc"]
    finally:
        server.stop()
    assert not server.unknown, f"the client called routes the fake lacks: {server.unknown}"


@mock_aws
def test_backfill_of_a_file_view_submits_the_latest_export_of_each_record(sample_output, capsys, monkeypatch):
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    glue = boto3.client("glue")
    glue.create_workflow(Name="ingest", MaxConcurrentRuns=2)
    server = FakeSynapse().start()
    try:
        owner = server.add_user("token-2", "bridge-downstream")
        folder = server.add_folder("raw", server.add_project("Bridge raw data", owner), owner)
        old = server.add_raw_file("raw-bucket", "app/r1-old.zip", folder, owner)
        new = server.add_raw_file("raw-bucket", "app/r1-new.zip", folder, owner)
        view = server.add_file_view(
            [
                {"id": old, "recordId": "r1", "exportedOn": "1700000000000"},
                {"id": new, "recordId": "r1", "exportedOn": "1800000000000"},
            ]
        )
        monkeypatch.setenv("SYNAPSE_AUTH_TOKEN", "token-2")
        monkeypatch.setenv("BRIDGE_DOWNSTREAM_SYNAPSE_ENDPOINT", server.url)
        argv = ["backfill", view, "--output", str(sample_output), "--workflow", "ingest", "--raw-folder-id", folder]
        assert main(argv) == 0
    finally:
        server.stop()
    assert "1 archives listed, 1 never read" in capsys.readouterr().out
    (run,) = glue.get_workflow_runs(Name="ingest")["Runs"]
    properties = glue.get_workflow_run_properties(Name="ingest", RunId=run["WorkflowRunId"])["RunProperties"]
    assert json.loads(properties["messages"]) == [
        {"source_bucket": "raw-bucket", "source_key": "app/r1-new.zip", "raw_folder_id": folder}
    ]


def test_backfill_of_a_file_view_without_a_token_is_a_usage_error(sample_output, capsys, monkeypatch):
    monkeypatch.delenv("SYNAPSE_AUTH_TOKEN", raising=False)
    assert main(["backfill", "syn123", "--output", str(sample_output), "--dry-run"]) == 2
    assert "SYNAPSE_AUTH_TOKEN is empty: set it to a Synapse personal access token" in capsys.readouterr().err
