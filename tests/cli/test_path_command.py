"""``bridge-downstream path TABLE``: the current version's files, read as
docs/publish.md shows with pandas (pyarrow), DuckDB and Spark; a later
publish changes what it prints, the older version's files never mixed in."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import pytest

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.arrow_engine import publish_dataset_arrow
from bridge_downstream.publish.manifest import current_version, read_manifest
from bridge_downstream_cli.main import main
from support import ingest_folder

TABLE = "dataset_fitbitsleeplogs"


def _export(folder: Path, cohort: str, logs: list[str]) -> None:
    path = folder / "recover" / "pilot" / cohort / "2023-01-14.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = [{"ParticipantIdentifier": "RX-1", "LogId": log, "InsertedDate": "2023-01-13T00:00:00Z"} for log in logs]
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("FitbitSleepLogs_20230112-20230114.json", "".join(json.dumps(r) + "\n" for r in rows))
    path.write_bytes(buffer.getvalue())


@pytest.fixture
def published(tmp_path, registry) -> Path:
    """Two publishes: the second, current, holds three logs in two cohorts."""
    out = tmp_path / "out"
    for number, (cohort, logs) in enumerate([("adults_v1", ["l1", "l2"]), ("pediatric_v1", ["l3"])]):
        folder = tmp_path / f"in{number}"
        _export(folder, cohort, logs)
        ingest_folder(folder, out, registry, profile="recover")
        storage = LocalStorage(out)
        publish_dataset_arrow(
            dataset_id="FitbitSleepLogs",
            registry=registry,
            profile=load_profile("recover"),
            work=storage,
            published=storage,
            run_id=f"path-{number}",
        )
    return out


def _path(out: Path, fmt: str, capsys) -> str:
    capsys.readouterr()
    assert main(["path", TABLE, "--output", str(out), "--format", fmt]) == 0
    return capsys.readouterr().out


def test_list_and_json_name_the_current_files_only(published, capsys):
    listed = _path(published, "list", capsys).splitlines()
    document = json.loads(_path(published, "json", capsys))
    storage = LocalStorage(published)
    manifest = read_manifest(storage, "FitbitSleepLogs", current_version(storage, "FitbitSleepLogs"))
    # the current manifest's files: an unchanged partition's may lie in an older version's folder
    assert listed == [str(storage.path(f.key)) for f in manifest.tables[TABLE].files_of("parquet")]
    assert len(listed) == 2
    assert [f["path"] for f in document["files"]] == listed
    assert sorted(f["partition"]["cohort"] for f in document["files"]) == ["adults_v1", "pediatric_v1"]
    assert sum(f["rows"] for f in document["files"]) == 3


def test_pandas_and_duckdb_read_the_current_version(published, capsys, tmp_path):
    import duckdb
    import pyarrow as pa
    import pyarrow.dataset as ds

    document = json.loads(_path(published, "json", capsys))
    frame = pa.concat_tables(
        ds.dataset([f["path"]], format="parquet", partitioning="hive", partition_base_dir=f["base_path"]).to_table()
        for f in document["files"]
    ).to_pandas()
    assert sorted(zip(frame["LogId"], frame["cohort"])) == [
        ("l1", "adults_v1"),
        ("l2", "adults_v1"),
        ("l3", "pediatric_v1"),
    ]

    expression = _path(published, "duckdb", capsys).strip()
    rows = duckdb.sql(f"SELECT LogId, cohort FROM {expression} ORDER BY LogId").fetchall()
    assert rows == [("l1", "adults_v1"), ("l2", "adults_v1"), ("l3", "pediatric_v1")]

    written = tmp_path / "files.txt"
    assert main(["path", TABLE, "--output", str(published), "--to", str(written)]) == 0
    assert written.read_text().splitlines() == [f["path"] for f in document["files"]]


def test_an_unknown_table_is_a_usage_error(published, capsys):
    assert main(["path", "dataset_nothing", "--output", str(published)]) == 2
    assert "no current table" in capsys.readouterr().err


@pytest.mark.spark
def test_spark_reads_the_current_version(published, capsys, spark):
    line = _path(published, "spark", capsys).strip()
    frame = eval(line, {"spark": spark})  # the line docs/publish.md tells a reader to run
    rows = sorted((r["LogId"], r["cohort"]) for r in frame.select("LogId", "cohort").collect())
    assert rows == [("l1", "adults_v1"), ("l2", "adults_v1"), ("l3", "pediatric_v1")]
