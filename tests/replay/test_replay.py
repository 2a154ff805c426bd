"""Replay of invalid records: `bridge-downstream invalid list|show|replay`,
locally and against the invalid-records SQS queue (moto)."""

from __future__ import annotations

import argparse
import json
import shutil
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.config.registry import SchemaRegistry, build_registry
from bridge_downstream.replay.invalid_store import StorageInvalidStore
from bridge_downstream.replay.replayer import replay
from bridge_downstream.replay.selection import Selection
from bridge_downstream_cli.invalid_commands import add_invalid_commands
from support import (
    SAMPLE_REGISTRY_SOURCE,
    SAMPLES,
    build_sample_registry,
    ingest_folder,
    invalid_entries,
    read_dataset,
)

REC7 = "rec-0007-no-metadata.zip"
REC7_METADATA = {
    "recordid": "rec-0007",
    "assessmentid": "number-match",
    "assessmentrevision": "1",
    "uploadedon": "2024-03-04T09:00:00.000Z",
    "appid": "sample-app",
    "clientinfo": "ClientInfo [appName=SampleApp, appVersion=21, osName=iOS]",
}
# The registry fix for rec-0005: its client writes responseTime as a word; the
# fixed registry accepts that deviation (configuration, not a schema change).
FAST_RULE = {"when": {"appId": "sample-app"}, "file": "taskData.json", "messages": ["'fast' is not of type 'number'"]}


# ------------------------------------------------------------------ helpers


def build_fixed_registry(out: Path) -> SchemaRegistry:
    rules = json.loads((SAMPLE_REGISTRY_SOURCE / "pipeline-rules.json").read_text())
    rules["accepted_deviations"].append(FAST_RULE)
    rules_file = out.parent / f"{out.name}-rules.json"
    rules_file.write_text(json.dumps(rules))
    build_registry(
        archive_map=SAMPLE_REGISTRY_SOURCE / "archive-map.json",
        schema_dirs=[SAMPLE_REGISTRY_SOURCE / "schemas"],
        schema_mapping=SAMPLE_REGISTRY_SOURCE / "schema-mapping.json",
        dataset_mapping=SAMPLE_REGISTRY_SOURCE / "dataset-mapping.json",
        pipeline_rules=rules_file,
        out=out,
    )
    return SchemaRegistry.load(out)


def cli(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="bridge-downstream")
    add_invalid_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["invalid", *argv])
    return args.handler(args)


def cli_json(capsys, *argv: str):
    capsys.readouterr()
    assert cli(*argv, "--json") == 0
    return json.loads(capsys.readouterr().out)


def ledger_lines(output: Path) -> list[dict]:
    return [
        json.loads(line)
        for path in sorted((output / "ledger").rglob("*.jsonl"))
        for line in path.read_text().splitlines()
        if line.strip()
    ]


def dataset_rows(output: Path) -> dict[str, int]:
    return {
        p.name[len("dataset=") :]: len(read_dataset(output, p.name[len("dataset=") :]))
        for p in sorted((output / "json").iterdir())
    }


def write_sidecar(archives: Path, name: str, metadata: dict) -> None:
    (archives / f"{name}.metadata.json").write_text(json.dumps(metadata))


@pytest.fixture(scope="module")
def registries(tmp_path_factory):
    root = tmp_path_factory.mktemp("registries")
    build_sample_registry(root / "sample")
    build_fixed_registry(root / "fixed")
    return {"sample": root / "sample", "fixed": root / "fixed"}


@pytest.fixture()
def pipeline(registries, tmp_path):
    """The bundled samples copied (their sidecars get fixed) and ingested."""
    archives = tmp_path / "archives"
    shutil.copytree(SAMPLES / "archives", archives)
    output = tmp_path / "out"
    report = ingest_folder(archives, output, SchemaRegistry.load(registries["sample"]))
    assert report["archives"] == {"total": 8, "processed": 5, "invalid": 3, "skipped": 0}
    return archives, output


# ------------------------------------------------------------------ list / show


def test_list_shows_every_invalid_record_with_its_reason(pipeline, capsys):
    _, output = pipeline
    assert cli("list", "--output", str(output)) == 0
    text = capsys.readouterr().out
    lines = text.splitlines()
    assert lines[0].split() == ["RECORD", "ID", "ASSESSMENT", "REASON", "SOURCE"]
    assert any(
        line.startswith("rec-0005 ")
        and "failed validation: taskData.json" in line
        and "rec-0005-invalid-response-time.zip" in line
        for line in lines
    )
    assert any(line.startswith("rec-0006 ") and "corrupt-archive" in line for line in lines)
    assert any(line.startswith(REC7) and "no Bridge metadata" in line for line in lines)
    assert lines[-1].startswith("3 of 3 invalid records")

    entries = cli_json(capsys, "list", "--output", str(output))
    assert sorted(e["validation_result"]["recordId"] for e in entries) == ["rec-0005", "rec-0006", REC7]
    # Filters: the reason text also matches error messages; filters combine with AND.
    assert [
        e["validation_result"]["recordId"]
        for e in cli_json(capsys, "list", "--output", str(output), "--reason", "'FAST' is not")
    ] == ["rec-0005"]
    assert len(cli_json(capsys, "list", "--output", str(output), "--assessment", "number-match")) == 2
    assert (
        cli_json(capsys, "list", "--output", str(output), "--assessment", "number-match", "--reason", "metadata") == []
    )
    assert [
        e["source_key"] for e in cli_json(capsys, "list", "--output", str(output), "--record", "rec-0006-corrupt.zip")
    ] == ["rec-0006-corrupt.zip"]


def test_show_prints_the_full_entry(pipeline, capsys):
    _, output = pipeline
    capsys.readouterr()
    assert cli("show", "rec-0005", "--output", str(output)) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == invalid_entries(output)["rec-0005"]
    assert shown["validation_result"]["errors"] == {
        "taskData.json": ["'fast' is not of type 'number' (at /steps/0/responseTime)"]
    }
    assert cli("show", "rec-9999", "--output", str(output)) == 1
    assert "no invalid record matches" in capsys.readouterr().err


# ------------------------------------------------------------------ local replay


def test_record_without_metadata_is_replayed_once_its_sidecar_exists(pipeline, registries, capsys):
    archives, output = pipeline
    # Without the sidecar a replay changes nothing: still invalid, same entry.
    before = invalid_entries(output)[REC7]
    report = cli_json(
        capsys, "replay", "--output", str(output), "--registry", str(registries["sample"]), "--record", REC7
    )
    assert report["counts"]["still_invalid"] == 1 and report["counts"]["processed"] == 0
    after = invalid_entries(output)[REC7]
    assert after["identity"] == before["identity"] and after["reason"] == before["reason"]
    assert after["replays"][0]["previous_reason"] == before["reason"]

    write_sidecar(archives, REC7, REC7_METADATA)
    report = cli_json(
        capsys, "replay", "--output", str(output), "--registry", str(registries["sample"]), "--record", REC7
    )
    assert report["counts"] == {
        "selected": 1,
        "archives": 1,
        "processed": 1,
        "still_invalid": 0,
        "skipped": 0,
        "not_replayed": 0,
        "entries_removed": 1,
    }
    assert report["processed"][0]["new_record_id"] == "rec-0007"
    assert REC7 not in invalid_entries(output) and "rec-0007" not in invalid_entries(output)
    assert set(invalid_entries(output)) == {"rec-0005", "rec-0006"}
    rows = [r for r in read_dataset(output, "TaskData_v1") if r["recordid"] == "rec-0007"]
    assert len(rows) == 1 and rows[0]["uploadedon"] == "2024-03-04T09:00:00.000Z" and rows[0]["day"] == 4
    # The replay went through the ordinary ingest: ledger, ingest report, replay report.
    assert any(line["recordid"] == "rec-0007" for line in ledger_lines(output))
    assert json.loads((output / report["ingest_report"]).read_text())["archives"]["processed"] == 1
    assert (
        json.loads((output / layout.REPORTS_PREFIX / f"replay-{report['run_id']}.json").read_text())["counts"][
            "processed"
        ]
        == 1
    )


def test_invalid_record_becomes_valid_after_a_registry_fix(pipeline, registries, capsys):
    _, output = pipeline
    # Still invalid with the unchanged registry...
    report = cli_json(
        capsys, "replay", "--output", str(output), "--registry", str(registries["sample"]), "--reason", "is not of type"
    )
    assert [i["record_id"] for i in report["still_invalid"]] == ["rec-0005"]
    # ...valid with the fixed one.
    report = cli_json(
        capsys, "replay", "--output", str(output), "--registry", str(registries["fixed"]), "--reason", "is not of type"
    )
    assert [i["record_id"] for i in report["processed"]] == ["rec-0005"]
    assert report["registry_version"] == SchemaRegistry.load(registries["fixed"]).version
    assert "rec-0005" not in invalid_entries(output)
    task = [r for r in read_dataset(output, "TaskData_v1") if r["recordid"] == "rec-0005"]
    assert len(task) == 1 and task[0]["steps"][0]["responseTime"] == "fast"
    assert report["processed"][0]["rows"] == {d: c["rows"] for d, c in report["datasets"].items()}
    assert any(r["recordid"] == "rec-0005" for r in read_dataset(output, "MotionRecord_v1"))


def test_record_still_invalid_stays_with_its_new_reasons(pipeline, registries, capsys):
    archives, output = pipeline
    old = invalid_entries(output)
    # A sidecar that is incomplete: rec-0007 stays invalid, for a new reason,
    # under a new identity (the metadata is part of it) -- the old entry goes.
    incomplete = {k: v for k, v in REC7_METADATA.items() if k != "uploadedon"}
    write_sidecar(archives, REC7, incomplete)
    report = cli_json(capsys, "replay", "--output", str(output), "--registry", str(registries["sample"]), "--all")
    assert report["counts"]["still_invalid"] == 3 and report["counts"]["processed"] == 0
    entries = invalid_entries(output)
    assert set(entries) == {"rec-0005", "rec-0006", "rec-0007"}  # the record id now comes from the sidecar
    new7 = entries["rec-0007"]
    assert new7["reason"] == "Bridge metadata is incomplete: missing uploadedon"
    assert new7["identity"] != old[REC7]["identity"]
    assert new7["replays"] == [
        {
            "replay_run_id": report["run_id"],
            "replayed_at": new7["replays"][0]["replayed_at"],
            "previous_reason": old[REC7]["reason"],
            "previous_errors": old[REC7]["validation_result"]["errors"],
            "previous_identity": old[REC7]["identity"],
            "previous_registry_version": old[REC7]["registry_version"],
        }
    ]
    item = next(i for i in report["still_invalid"] if i["record_id"] == REC7)
    assert item["reason"] == new7["reason"] and item["new_identity"] == new7["identity"]
    # rec-0006 (corrupt) keeps its key and errors; its history grows per replay.
    assert entries["rec-0006"]["validation_result"] == old["rec-0006"]["validation_result"]
    cli_json(capsys, "replay", "--output", str(output), "--registry", str(registries["sample"]), "--record", "rec-0006")
    assert len(invalid_entries(output)["rec-0006"]["replays"]) == 2
    assert len(list((output / "invalid").glob("*.json"))) == 3


def test_counts_are_conserved_and_a_second_replay_duplicates_nothing(pipeline, registries, capsys):
    archives, output = pipeline
    invalid_before = invalid_entries(output)
    saved_rec5 = (output / layout.invalid_key("rec-0005", invalid_before["rec-0005"]["identity"])).read_text()
    ledger_before = len(ledger_lines(output))
    rows_before = dataset_rows(output)

    write_sidecar(archives, REC7, REC7_METADATA)
    report = cli_json(
        capsys, "replay", "--output", str(output), "--registry", str(registries["fixed"]), "--all", "--workers", "2"
    )
    counts = report["counts"]
    assert counts["selected"] == len(invalid_before) == 3
    assert (
        counts["processed"] + counts["still_invalid"] + counts["skipped"] + counts["not_replayed"] == counts["selected"]
    )
    assert (counts["processed"], counts["still_invalid"]) == (2, 1)
    assert len(invalid_entries(output)) == counts["still_invalid"]
    # Processed totals grow by exactly the replayed records, rows by exactly theirs.
    assert len(ledger_lines(output)) == ledger_before + counts["processed"]
    rows_after = dataset_rows(output)
    replayed_rows: dict[str, int] = {}
    for item in report["processed"]:
        for dataset, n in item["rows"].items():
            replayed_rows[dataset] = replayed_rows.get(dataset, 0) + n
    assert {d: rows_after.get(d, 0) - rows_before.get(d, 0) for d in rows_after} == {
        d: replayed_rows.get(d, 0) for d in rows_after
    }

    # A second replay of everything: the corrupt record only; no row added.
    again = cli_json(capsys, "replay", "--output", str(output), "--registry", str(registries["fixed"]), "--all")
    assert again["counts"]["selected"] == 1 and again["counts"]["still_invalid"] == 1
    assert dataset_rows(output) == rows_after and len(ledger_lines(output)) == ledger_before + 2

    # An old entry of a record that is already in (e.g. restored from a
    # backup, or left by a crash after the ingest): skipped, and it leaves.
    (output / "invalid" / "restored-rec-0005.json").write_text(saved_rec5)
    restored = cli_json(
        capsys, "replay", "--output", str(output), "--registry", str(registries["fixed"]), "--record", "rec-0005"
    )
    assert restored["counts"]["skipped"] == 1 and restored["skipped"][0]["reason"].startswith("already ingested")
    assert set(invalid_entries(output)) == {"rec-0006"}
    assert dataset_rows(output) == rows_after


def test_a_record_whose_archive_is_gone_is_not_replayed_and_kept(pipeline, registries, capsys):
    archives, output = pipeline
    before = invalid_entries(output)["rec-0006"]
    (archives / "rec-0006-corrupt.zip").unlink()
    report = cli_json(
        capsys, "replay", "--output", str(output), "--registry", str(registries["sample"]), "--record", "rec-0006"
    )
    assert report["counts"]["not_replayed"] == 1 and report["counts"]["archives"] == 0
    assert report["not_replayed"][0]["reason"].startswith("not replayed: archive not found")
    assert invalid_entries(output)["rec-0006"] == before


def test_replay_needs_a_selection_and_dry_run_changes_nothing(pipeline, registries, capsys):
    from bridge_downstream_cli.errors import UsageError

    _, output = pipeline
    with pytest.raises(UsageError, match="choose what to replay"):
        cli("replay", "--output", str(output), "--registry", str(registries["fixed"]))
    with pytest.raises(ValueError, match="choose what to replay"):
        replay(
            StorageInvalidStore(LocalStorage(output)),
            Selection(),
            registry=SchemaRegistry.load(registries["fixed"]),
            profile=load_profile("mtb"),
            output=LocalStorage(output),
        )
    before = sorted(p.name for p in output.rglob("*"))
    capsys.readouterr()
    assert cli("replay", "--output", str(output), "--registry", str(registries["fixed"]), "--all", "--dry-run") == 0
    assert "3 selected, 3 archives would be re-ingested" in capsys.readouterr().out
    assert sorted(p.name for p in output.rglob("*")) == before


def test_records_of_another_profile_are_not_replayed_with_this_one(pipeline, registries, capsys):
    _, output = pipeline
    report = cli_json(
        capsys,
        "replay",
        "--output",
        str(output),
        "--registry",
        str(registries["fixed"]),
        "--all",
        "--profile",
        "recover",
    )
    assert report["counts"]["not_replayed"] == 3 and report["counts"]["archives"] == 0
    assert len(invalid_entries(output)) == 3


# ------------------------------------------------------------------ publish


@pytest.mark.spark
def test_replayed_record_appears_in_the_published_tables(pipeline, registries, spark, capsys):
    import duckdb

    archives, output = pipeline
    write_sidecar(archives, REC7, REC7_METADATA)
    capsys.readouterr()
    assert (
        cli("replay", "--output", str(output), "--registry", str(registries["sample"]), "--record", REC7, "--publish")
        == 0
    )
    printed = capsys.readouterr().out
    assert "1 processed, 0 still invalid" in printed and "published 2 datasets" in printed
    report = json.loads(max((output / "reports").glob("replay-*.json")).read_text())
    # Only the datasets the replay wrote are published, as `run` does.
    assert set(report["publish"]["published"]) == set(report["datasets"]) == {"ArchiveMetadata_v1", "TaskData_v1"}
    assert report["publish"]["run_id"] == report["run_id"]
    with duckdb.connect(str(output / layout.LOCAL_CATALOG_NAME), read_only=True) as connection:
        rows = connection.execute("SELECT recordid, uploadedon FROM dataset_taskdata_v1 ORDER BY recordid").fetchall()
        metadata = connection.execute(
            "SELECT count(*) FROM dataset_archivemetadata_v1 WHERE recordid = 'rec-0007'"
        ).fetchone()[0]
    # rec-0001 is twice in the JSON dataset, once after dedup (the re-export wins).
    assert rows == [
        ("rec-0001", datetime(2024, 3, 1, 17, 10, tzinfo=UTC)),
        ("rec-0003", datetime(2024, 3, 2, 9, 30, tzinfo=UTC)),
        ("rec-0007", datetime(2024, 3, 4, 9, 0, tzinfo=UTC)),
    ]
    assert metadata == 1
    assert report["publish"]["tables"]["dataset_taskdata_v1"]["rows"] == 3


# ------------------------------------------------------------------ SQS


@pytest.fixture()
def aws():
    from moto import mock_aws

    with mock_aws():
        yield


def upload_samples(s3, bucket: str) -> list[str]:
    keys = []
    for archive in sorted((SAMPLES / "archives").glob("*.zip")):
        sidecar = archive.with_name(archive.name + ".metadata.json")
        metadata = json.loads(sidecar.read_text()) if sidecar.exists() else {}
        key = f"uploads/{archive.name}"
        s3.put_object(Bucket=bucket, Key=key, Body=archive.read_bytes(), Metadata=metadata)
        keys.append(key)
    return keys


def drain(sqs, url: str) -> list[dict]:
    bodies = []
    while messages := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, VisibilityTimeout=30).get(
        "Messages", []
    ):
        bodies.extend(json.loads(m["Body"]) for m in messages)
    return bodies


def test_replay_from_the_invalid_queue(aws, registries, capsys):
    import boto3

    from bridge_downstream.ingest.listing import ArchiveInput
    from bridge_downstream.ingest.run import run_ingest
    from bridge_downstream_adapters.s3 import S3Storage
    from bridge_downstream_adapters.sqs import SqsInvalidSink

    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    s3.create_bucket(Bucket="bridge-uploads")
    s3.create_bucket(Bucket="intermediate")
    url = sqs.create_queue(QueueName="ns-invalid-records")["QueueUrl"]
    json_root = "s3://intermediate/ns/sample-app/study"
    keys = upload_samples(s3, "bridge-uploads")
    uploads, output = S3Storage("bridge-uploads"), S3Storage.from_uri(json_root)
    sink = SqsInvalidSink(url)
    report = run_ingest(
        [ArchiveInput(uploads, key, source_bucket="bridge-uploads", raw_folder_id="syn123") for key in keys],
        registry=SchemaRegistry.load(registries["sample"]),
        profile=load_profile("mtb"),
        output=output,
        sink=sink,
        workers=1,
    )
    assert report["archives"]["invalid"] == 3
    # The same invalid record sent twice (a rerun): one record, two messages.
    rec6 = next(b for b in drain(sqs, url) if b["validation_result"]["recordId"] == "rec-0006")
    sqs.purge_queue(QueueUrl=url)
    run_ingest(
        [ArchiveInput(uploads, k, source_bucket="bridge-uploads", raw_folder_id="syn123") for k in keys],
        registry=SchemaRegistry.load(registries["sample"]),
        profile=load_profile("mtb"),
        output=output,
        sink=sink,
        workers=1,
    )
    sink.send(rec6)

    queue = ("--queue-url", url, "--wait-seconds", "0")
    listed = cli_json(capsys, "list", *queue)
    assert sorted(e["validation_result"]["recordId"] for e in listed) == ["rec-0005", "rec-0006", REC7]
    assert all(e["source"].startswith("s3://bridge-uploads/uploads/") for e in listed)
    # Listing hides nothing: every message is visible again, and a second listing sees the same.
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]) == (
        "4",
        "0",
    )
    assert len(cli_json(capsys, "list", *queue)) == 3
    capsys.readouterr()
    assert cli("list", *queue) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"3 of 3 invalid records (4 messages) in queue {url}"
    assert cli("show", "rec-0005", *queue) == 0
    assert json.loads(capsys.readouterr().out)["source_key"] == "uploads/rec-0005-invalid-response-time.zip"

    # Fixes: rec-0007's object gets its Bridge metadata; the registry accepts
    # rec-0005's deviation; rec-0006 stays corrupt.
    s3.copy_object(
        Bucket="bridge-uploads",
        Key=f"uploads/{REC7}",
        CopySource={"Bucket": "bridge-uploads", "Key": f"uploads/{REC7}"},
        Metadata=REC7_METADATA,
        MetadataDirective="REPLACE",
    )
    result = cli_json(
        capsys, "replay", *queue, "--json-root", json_root, "--registry", str(registries["fixed"]), "--all"
    )
    assert sorted(i["record_id"] for i in result["processed"]) == ["rec-0005", REC7]
    assert [i["record_id"] for i in result["still_invalid"]] == ["rec-0006"]
    assert result["counts"]["selected"] == 3 and result["counts"]["entries_removed"] == 4

    # The queue now holds exactly one message: rec-0006 re-sent with its new reasons and history.
    remaining = drain(sqs, url)
    assert [m["validation_result"]["recordId"] for m in remaining] == ["rec-0006"]
    assert (
        remaining[0]["reason"].startswith("corrupt-archive")
        and remaining[0]["replays"][0]["previous_reason"] == rec6["reason"]
    )
    assert remaining[0]["registry_version"] == SchemaRegistry.load(registries["fixed"]).version
    # The replayed records' rows are in the S3 datasets; the ledger grew by two.
    task_rows = [
        json.loads(line)
        for info in output.list("json/dataset=TaskData_v1/")
        for line in output.read_bytes(info.key).splitlines()
    ]
    assert sorted({r["recordid"] for r in task_rows}) == ["rec-0001", "rec-0003", "rec-0005", "rec-0007"]
    ledger = [
        json.loads(line)
        for info in output.list(layout.LEDGER_PREFIX + "/")
        if info.key.endswith(".jsonl")
        for line in output.read_bytes(info.key).splitlines()
    ]
    assert len(ledger) == 5 + 2
    assert output.exists(f"reports/replay-{result['run_id']}.json")


def test_queue_replay_keeps_records_whose_archive_is_gone(aws, registries, capsys):
    import boto3

    from bridge_downstream.ingest.listing import ArchiveInput
    from bridge_downstream.ingest.run import run_ingest
    from bridge_downstream_adapters.s3 import S3Storage
    from bridge_downstream_adapters.sqs import SqsInvalidSink

    s3, sqs = boto3.client("s3"), boto3.client("sqs")
    s3.create_bucket(Bucket="bridge-uploads")
    s3.create_bucket(Bucket="intermediate")
    url = sqs.create_queue(QueueName="ns-invalid-records")["QueueUrl"]
    keys = upload_samples(s3, "bridge-uploads")
    run_ingest(
        [ArchiveInput(S3Storage("bridge-uploads"), k, source_bucket="bridge-uploads") for k in keys],
        registry=SchemaRegistry.load(registries["sample"]),
        profile=load_profile("mtb"),
        output=S3Storage.from_uri("s3://intermediate/root"),
        sink=SqsInvalidSink(url),
        workers=1,
    )
    s3.delete_object(Bucket="bridge-uploads", Key="uploads/rec-0006-corrupt.zip")
    result = cli_json(
        capsys,
        "replay",
        "--queue-url",
        url,
        "--wait-seconds",
        "0",
        "--json-root",
        "s3://intermediate/root",
        "--registry",
        str(registries["sample"]),
        "--record",
        "rec-0006",
        "--record",
        "rec-0005",
    )
    assert result["counts"]["not_replayed"] == 1 and result["counts"]["still_invalid"] == 1
    assert (
        result["not_replayed"][0]["reason"]
        == "not replayed: archive not found: s3://bridge-uploads/uploads/rec-0006-corrupt.zip"
    )
    # Nothing is hidden or lost: all three records are still listed.
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["ApproximateNumberOfMessagesNotVisible"] == "0"
    assert sorted(
        e["validation_result"]["recordId"] for e in cli_json(capsys, "list", "--queue-url", url, "--wait-seconds", "0")
    ) == [
        "rec-0005",
        "rec-0006",
        REC7,
    ]
    with pytest.raises(Exception, match="--publish works on local pipeline roots"):
        cli(
            "replay",
            "--queue-url",
            url,
            "--json-root",
            "s3://intermediate/root",
            "--registry",
            str(registries["sample"]),
            "--all",
            "--publish",
        )


def test_listing_a_queue_of_more_than_ten_messages_sees_all_and_hides_none(aws, capsys):
    import boto3

    from bridge_downstream_adapters.invalid_queue import SqsInvalidStore

    sqs = boto3.client("sqs")
    url = sqs.create_queue(QueueName="ns-invalid-records")["QueueUrl"]
    for n in range(23):
        entry = {
            "identity": f"{n:064d}",
            "reason": "failed validation: taskData.json",
            "source": f"s3://b/k{n}.zip",
            "validation_result": {"recordId": f"rec-{n:04d}", "assessmentId": "a", "errors": {}},
        }
        sqs.send_message(QueueUrl=url, MessageBody=json.dumps(entry))
        if n == 5:  # a duplicate, slimmed (no metadata) and full: one record, the full entry shown
            sqs.send_message(QueueUrl=url, MessageBody=json.dumps({**entry, "metadata": {"recordid": "rec-0005"}}))
    sqs.send_message(QueueUrl=url, MessageBody="not json")
    store = SqsInvalidStore(url, wait_seconds=0)
    stored = store.load()
    assert len(stored) == 23 and store.messages == 25
    rec5 = next(s for s in stored if s.record_id == "rec-0005")
    assert len(rec5.handles) == 2 and rec5.entry["metadata"] == {"recordid": "rec-0005"}
    store.release(h for s in stored for h in s.handles)
    entries = cli_json(capsys, "list", "--queue-url", url, "--wait-seconds", "0")
    assert sorted(e["validation_result"]["recordId"] for e in entries) == [f"rec-{n:04d}" for n in range(23)]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (attributes["ApproximateNumberOfMessages"], attributes["ApproximateNumberOfMessagesNotVisible"]) == (
        "25",
        "0",
    )
