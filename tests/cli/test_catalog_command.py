"""A published output is portable: its catalog, copied or moved, either reads
the copy's files or refuses (never the old folder's files);
``bridge-downstream catalog rebuild`` and ``query`` point it at the copy. And
what a run writes follows the umask, so colleagues can read a shared output."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from bridge_downstream.common import layout
from bridge_downstream_cli.main import main
from support import SAMPLE_REGISTRY_SOURCE, SAMPLES

COUNTS = {
    "dataset_archivemetadata_v1": 4,
    "dataset_archivemetadata_v1_files": 6,
    "dataset_motionrecord_v1": 19,
    "dataset_surveyanswers_v1": 1,
    "dataset_taskdata_v1": 2,
    "dataset_taskdata_v1_steps": 9,
    "dataset_taskdata_v1_steps_interactions": 7,
    "dataset_taskdata_v2": 1,
    "dataset_taskdata_v2_steps": 3,
    "dataset_taskdata_v2_steps_interactions": 3,
}


@pytest.fixture(scope="module")
def registry_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("catalog-cli") / "registry"
    source = SAMPLE_REGISTRY_SOURCE
    arguments = ["registry", "build", "--archive-map", str(source / "archive-map.json")]
    arguments += ["--schemas", str(source / "schemas"), "--schema-mapping", str(source / "schema-mapping.json")]
    arguments += ["--dataset-mapping", str(source / "dataset-mapping.json")]
    arguments += ["--pipeline-rules", str(source / "pipeline-rules.json"), "--out", str(out)]
    assert main(arguments) == 0
    return out


def run_samples(registry_dir: Path, output: Path) -> None:
    arguments = ["run", str(SAMPLES / "archives"), "--registry", str(registry_dir), "--output", str(output)]
    # the samples' three invalid archives are there on purpose
    assert main([*arguments, "--engine", "arrow", "--no-progress", "--max-invalid", "3"]) == 0


@pytest.fixture(scope="module")
def published(registry_dir, tmp_path_factory):
    """The samples run once; each test copies the output."""
    output = tmp_path_factory.mktemp("published") / "out"
    run_samples(registry_dir, output)
    return output


def counts(catalog: Path) -> dict[str, int]:
    """Row counts as an analyst gets them: the DuckDB file opened directly."""
    with duckdb.connect(str(catalog), read_only=True) as connection:
        views = [r[0] for r in connection.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()]
        return {view: connection.execute(f'SELECT count(*) FROM "{view}"').fetchone()[0] for view in views}


def view_sql(catalog: Path) -> str:
    with duckdb.connect(str(catalog), read_only=True) as connection:
        return "\n".join(
            r[0] for r in connection.execute("SELECT sql FROM duckdb_views() WHERE NOT internal").fetchall()
        )


def test_a_copied_output_refuses_the_old_files_and_reads_its_own_after_rebuild(
    published, tmp_path, monkeypatch, capsys
):
    original = tmp_path / "original"
    shutil.copytree(published, original)
    assert main(["catalog", "rebuild", "--output", str(original)]) == 0
    assert counts(original / layout.LOCAL_CATALOG_NAME) == COUNTS

    copy = tmp_path / "elsewhere" / "copy"
    shutil.copytree(original, copy)
    monkeypatch.chdir(tmp_path / "elsewhere")
    # The original is still there: the copy's views must not read it.
    with pytest.raises(duckdb.InvalidInputException, match="catalog rebuild"):
        counts(copy / layout.LOCAL_CATALOG_NAME)
    shutil.rmtree(original)

    capsys.readouterr()
    assert main(["catalog", "rebuild", "--output", str(copy)]) == 0
    assert capsys.readouterr().out.strip().endswith(": 10 views of the current published versions")
    monkeypatch.chdir(tmp_path)  # another working directory than the copy's
    assert counts(copy / layout.LOCAL_CATALOG_NAME) == COUNTS
    sql = view_sql(copy / layout.LOCAL_CATALOG_NAME)
    assert str(copy / "published") in sql and str(original) not in sql


def test_an_output_works_in_place_from_any_working_directory(published, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert counts(published / layout.LOCAL_CATALOG_NAME) == COUNTS


def test_query_rebuilds_a_moved_catalog_itself(published, tmp_path, capsys):
    moved = tmp_path / "moved"
    shutil.copytree(published, moved)
    capsys.readouterr()
    assert main(["query", "--output", str(moved), "SELECT count(*) AS n FROM dataset_motionrecord_v1"]) == 0
    printed = capsys.readouterr()
    assert "19" in printed.out
    assert "its views are rebuilt" in printed.err
    assert counts(moved / layout.LOCAL_CATALOG_NAME) == COUNTS
    # Once rebuilt, it is not rebuilt again.
    assert main(["query", "--output", str(moved), "SELECT 1"]) == 0
    assert "rebuilt" not in capsys.readouterr().err


def test_rebuild_drops_the_views_of_datasets_gone_and_keeps_an_analysts_own(published, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(published, copy)
    catalog = copy / layout.LOCAL_CATALOG_NAME
    with duckdb.connect(str(catalog)) as connection:
        connection.execute("CREATE VIEW my_numbers AS SELECT 42 AS answer")
    shutil.rmtree(copy / "published" / "SurveyAnswers_v1")
    assert main(["catalog", "rebuild", "--output", str(copy)]) == 0
    expected = {name: rows for name, rows in COUNTS.items() if name != "dataset_surveyanswers_v1"}
    assert counts(catalog) == {**expected, "my_numbers": 1}


def test_rebuild_refuses_a_folder_without_published_datasets(tmp_path, capsys):
    assert main(["catalog", "rebuild", "--output", str(tmp_path)]) == 2
    assert "holds no published datasets" in capsys.readouterr().err
    assert not (tmp_path / layout.LOCAL_CATALOG_NAME).exists()


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664)])
def test_a_runs_files_follow_the_umask(registry_dir, tmp_path, mask, expected):
    previous = os.umask(mask)
    try:
        run_samples(registry_dir, tmp_path / "out")
    finally:
        os.umask(previous)
    files = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    kinds = {p.suffix or p.name for p in files}
    assert {".parquet", ".csv", ".ndjson", ".json", ".jsonl", "CURRENT"} <= kinds
    assert any(p.relative_to(tmp_path / "out").parts[0] == "reports" for p in files)
    modes = {p.relative_to(tmp_path / "out").as_posix(): stat.S_IMODE(p.stat().st_mode) for p in files}
    assert modes == dict.fromkeys(modes, expected)


def _group_umask() -> None:
    os.umask(0o002)  # in the child, before it starts


@pytest.mark.spark
@pytest.mark.slow
def test_the_parquet_spark_writes_follows_the_umask(registry_dir, tmp_path):
    """Hadoop writes Spark's Parquet with its own umask (022) unless told the
    process's: a session starts with it, so the command runs in a process of its own."""
    command = [sys.executable, "-m", "bridge_downstream_cli", "run", str(SAMPLES / "archives")]
    command += ["--registry", str(registry_dir), "--output", str(tmp_path / "out"), "--engine", "spark"]
    command += ["--max-invalid", "3"]  # the samples' bad archives
    completed = subprocess.run(command, check=False, capture_output=True, text=True, preexec_fn=_group_umask)
    assert completed.returncode == 0, completed.stderr[-2000:]
    parquet = list((tmp_path / "out").rglob("*.parquet"))
    assert parquet
    assert {stat.S_IMODE(p.stat().st_mode) for p in parquet} == {0o664}
