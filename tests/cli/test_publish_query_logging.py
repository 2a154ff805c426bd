"""``-v`` says what publish and query did (issue 24, item 6): per dataset its
engine, full or incremental and why, rows per table and seconds; per query
its SQL, the rows it returned and seconds -- as text, or with ``--log-format
json`` as ECS events."""

from __future__ import annotations

import json
import re

import pytest

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.publish.manifest import current_version, published_datasets
from bridge_downstream_cli.main import main
from support import SAMPLES, build_sample_registry


@pytest.fixture(scope="module")
def registry_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("logging") / "registry"
    build_sample_registry(folder)
    return folder


@pytest.fixture
def ingested(registry_folder, tmp_path):
    output = tmp_path / "out"
    argv = ["ingest", str(SAMPLES / "archives"), "--registry", str(registry_folder), "--output", str(output)]
    assert main([*argv, "--no-progress", "-q", "--max-invalid", "100%"]) == 0
    return output


@pytest.fixture(scope="module")
def published(registry_folder):
    output = registry_folder.parent / "published"
    argv = ["run", str(SAMPLES / "archives"), "--registry", str(registry_folder), "--output", str(output)]
    assert main([*argv, "--no-progress", "-q", "--max-invalid", "100%"]) == 0
    return output


def _events(err: str) -> list[dict]:
    return [json.loads(line) for line in err.splitlines() if line.startswith("{")]


def test_publish_logs_each_dataset_as_json_events(ingested, capsys):
    assert main(["publish", "--output", str(ingested), "-v", "--log-format", "json"]) == 0
    events = [e for e in _events(capsys.readouterr().err) if e.get("event.action") == "publish"]
    storage = LocalStorage(ingested)
    assert sorted(e["labels.dataset"] for e in events) == sorted(published_datasets(storage))
    assert len({e["labels.run_id"] for e in events}) == 1  # one publish run
    motion = next(e for e in events if e["labels.dataset"] == "MotionRecord_v1")
    assert motion["event.outcome"] == "published"
    assert f"version {current_version(storage, 'MotionRecord_v1')} on arrow, full (" in motion["message"]
    assert "dataset_motionrecord_v1 19" in motion["message"]  # the published root rows
    assert re.search(r", \d+\.\d\d s: ", motion["message"])


def test_a_second_publish_logs_its_mode_and_why(ingested, capsys):
    assert main(["publish", "--output", str(ingested), "-q"]) == 0
    assert main(["publish", "--output", str(ingested), "-v", "--datasets", "MotionRecord_v1"]) == 0
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "bridge_downstream.cli.publish" in line]
    assert line.startswith("INFO bridge_downstream.cli.publish: published MotionRecord_v1 version ")
    assert re.search(r"on arrow, (incremental on \S+|full \(.+\)), \d+\.\d\d s: dataset_motionrecord_v1 19$", line)


def test_query_logs_its_sql_rows_and_seconds(published, capsys):
    sql = "SELECT recordid FROM dataset_motionrecord_v1"
    assert main(["query", "--output", str(published), sql, "--format", "csv", "-v", "--log-format", "json"]) == 0
    captured = capsys.readouterr()
    (event,) = [e for e in _events(captured.err) if e.get("event.action") == "query"]
    assert len(captured.out.splitlines()) == 1 + 19  # header and rows
    assert re.fullmatch(rf"query returned 19 rows in \d+\.\d\d s: {sql}", event["message"])


def test_query_in_a_box_logs_every_row_it_returned(published, capsys):
    sql = "SELECT * FROM dataset_motionrecord_v1"
    assert main(["query", "--output", str(published), sql, "--max-rows", "5", "-v"]) == 0
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "bridge_downstream.cli.query" in line]
    assert re.fullmatch(
        rf"INFO bridge_downstream.cli.query: query returned 19 rows in \d+\.\d\d s: {re.escape(sql)}", line
    )


def test_without_v_query_logs_nothing(published, capsys):
    assert main(["query", "--output", str(published), "SELECT 1"]) == 0
    assert capsys.readouterr().err == ""
