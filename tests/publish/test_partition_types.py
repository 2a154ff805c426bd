"""Partition columns have one type for every reader: ``year``, ``month`` and
``day`` are integers (their folders stay zero-padded), ``assessmentid`` and
``cohort`` are text even where a value looks like a number -- in the DuckDB
views, the Glue tables, pyarrow, pandas and Spark. And every example query of
the docs runs as written."""

from __future__ import annotations

import dataclasses
import json
import re
import zipfile
from pathlib import Path

import boto3
import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.arrow_engine import publish_dataset_arrow
from bridge_downstream.publish.catalog import DuckDBCatalog
from bridge_downstream.publish.manifest import (
    PublishedFile,
    PublishedTable,
    PublishManifest,
    read_current_manifests,
)
from bridge_downstream_adapters.glue_catalog import GlueCatalog
from project_paths import PROJECT_ROOT, shared_path
from published_fixtures import publish
from support import SAMPLES, SPELLING_ARCHIVE, SPELLING_METADATA, ingest_folder

DATE_PARTS = ("year", "month", "day")


def publish_output(registry, output: Path, profile: str, datasets, nested: bool = False) -> dict[str, PublishManifest]:
    storage = LocalStorage(output)
    return {
        dataset: publish_dataset_arrow(
            dataset_id=dataset,
            registry=registry,
            profile=dataclasses.replace(load_profile(profile), nested=nested),
            work=storage,
            published=storage,
            run_id="partition-types",
            catalog=DuckDBCatalog(storage),
        ).manifest
        for dataset in datasets
    }


@pytest.fixture(scope="module")
def sample_output(registry, tmp_path_factory):
    """The bundled sample archives, ingested and published: (output folder, manifests)."""
    output = tmp_path_factory.mktemp("sample-output")
    report = ingest_folder(SAMPLES / "archives", output, registry)
    return output, publish_output(registry, output, "mtb", sorted(report["datasets"]))


def view_types(output: Path, view: str) -> dict[str, str]:
    with duckdb.connect(str(output / layout.LOCAL_CATALOG_NAME), read_only=True) as connection:
        return {row[0]: row[1] for row in connection.execute(f'DESCRIBE "{view}"').fetchall()}


def test_the_date_parts_are_the_integer_partitions():
    assert [layout.partition_type(name) for name in ("year", "month", "day")] == ["int", "int", "int"]
    assert [layout.partition_type(name) for name in ("assessmentid", "cohort", "other")] == ["string"] * 3


def test_duckdb_views_give_integer_dates_and_text_assessments(sample_output):
    output, manifests = sample_output
    tables = [table for manifest in manifests.values() for table in manifest.tables.values()]
    assert len(tables) == 10
    for table in tables:
        types = view_types(output, table.name)
        assert {k: types[k] for k in table.partition_keys} == {
            "assessmentid": "VARCHAR",
            "year": "INTEGER",
            "month": "INTEGER",
            "day": "INTEGER",
        }
    with duckdb.connect(str(output / layout.LOCAL_CATALOG_NAME), read_only=True) as connection:
        rows = connection.execute(
            "SELECT assessmentid, year, month, day, count(*) FROM dataset_motionrecord_v1 "
            "WHERE year = 2024 AND month = 3 GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    assert rows == [("flanker", 2024, 3, 2, 4), ("number-match", 2024, 3, 1, 9), ("number-match", 2024, 3, 2, 6)]
    # The folders keep their zero padding.
    folders = {Path(f.key).parent.name for f in manifests["MotionRecord_v1"].tables["dataset_motionrecord_v1"].files}
    assert folders == {"day=01", "day=02"}


def test_an_empty_table_view_has_the_same_types(tmp_path):
    storage = LocalStorage(tmp_path)
    manifest = PublishManifest(
        dataset_id="Empty_v1", version="v1", run_id="r", created_at="2026-11-23T12:00:00Z", registry_version="1"
    )
    manifest.tables["dataset_empty_v1"] = PublishedTable(
        name="dataset_empty_v1",
        dataset_id="Empty_v1",
        parent=None,
        columns=[{"name": "recordid", "type": "string"}, {"name": "n", "type": "bigint"}],
        partition_keys=["assessmentid", "year", "month", "day"],
        rows=0,
    )
    DuckDBCatalog(storage).register(manifest)
    assert view_types(tmp_path, "dataset_empty_v1") == {
        "recordid": "VARCHAR",
        "n": "BIGINT",
        "assessmentid": "VARCHAR",
        "year": "INTEGER",
        "month": "INTEGER",
        "day": "INTEGER",
    }


def test_an_empty_table_of_one_unpartitioned_file_has_the_same_types(tmp_path):
    """As both engines publish a table without rows: one empty file, no partition folders."""
    storage = LocalStorage(tmp_path)
    key = layout.table_prefix("Empty_v1", "v1", "parquet", "dataset_empty_v1") + "/part-00000.parquet"
    (tmp_path / key).parent.mkdir(parents=True)
    pq.write_table(pa.table({"recordid": pa.array([], pa.string())}), tmp_path / key)
    manifest = PublishManifest(
        dataset_id="Empty_v1", version="v1", run_id="r", created_at="2026-11-23T12:00:00Z", registry_version="1"
    )
    table = PublishedTable(
        name="dataset_empty_v1",
        dataset_id="Empty_v1",
        parent=None,
        columns=[{"name": "recordid", "type": "string"}],
        partition_keys=["assessmentid", "year", "month", "day"],
        rows=0,
    )
    table.files.append(PublishedFile(key=key, format="parquet", size=0, md5="", sha256="", rows=0, partition={}))
    manifest.tables[table.name] = table
    DuckDBCatalog(storage).register(manifest)
    assert view_types(tmp_path, "dataset_empty_v1") == {
        "recordid": "VARCHAR",
        "assessmentid": "VARCHAR",
        "year": "INTEGER",
        "month": "INTEGER",
        "day": "INTEGER",
    }
    assert DuckDBCatalog(storage).counts() == {"dataset_empty_v1": 0}


def numeric_looking_cohort(storage: LocalStorage) -> PublishManifest:
    """A cohort ``2024`` and an assessment ``007``: values that look like numbers and are names."""
    return publish(
        storage,
        "Numeric_v1",
        "v1",
        {
            "dataset_numeric_v1": {
                (("cohort", "2024"), ("assessmentid", "007"), ("year", "2022"), ("month", "02"), ("day", "05")): [
                    {"recordid": "r1", "value": 1}
                ],
                (("cohort", "2025"), ("assessmentid", "007"), ("year", "2023"), ("month", "11"), ("day", "30")): [
                    {"recordid": "r2", "value": 2}
                ],
            }
        },
    )


def test_a_numeric_looking_cohort_stays_text_in_duckdb(tmp_path):
    storage = LocalStorage(tmp_path)
    DuckDBCatalog(storage).register(numeric_looking_cohort(storage))
    types = view_types(tmp_path, "dataset_numeric_v1")
    assert [types[k] for k in ("cohort", "assessmentid", "year", "month", "day")] == [
        "VARCHAR",
        "VARCHAR",
        "INTEGER",
        "INTEGER",
        "INTEGER",
    ]
    with duckdb.connect(str(tmp_path / layout.LOCAL_CATALOG_NAME), read_only=True) as connection:
        rows = connection.execute(
            "SELECT cohort, assessmentid, year, month, day FROM dataset_numeric_v1 ORDER BY recordid"
        ).fetchall()
    assert rows == [("2024", "007", 2022, 2, 5), ("2025", "007", 2023, 11, 30)]


def glue_table(manifest: PublishManifest, root: Path, name: str) -> tuple[dict, list[dict]]:
    with mock_aws():
        glue = boto3.client("glue", region_name="us-east-1")
        glue.create_database(DatabaseInput={"Name": "db"})
        GlueCatalog("db", LocalStorage(root), glue).register(manifest)
        table = glue.get_table(DatabaseName="db", Name=name)["Table"]
        partitions = glue.get_partitions(DatabaseName="db", TableName=name)["Partitions"]
    return table, partitions


def test_glue_declares_int_date_partitions_and_string_names(tmp_path):
    manifest = numeric_looking_cohort(LocalStorage(tmp_path))
    table, partitions = glue_table(manifest, tmp_path, "dataset_numeric_v1")
    assert table["PartitionKeys"] == [
        {"Name": "cohort", "Type": "string"},
        {"Name": "assessmentid", "Type": "string"},
        {"Name": "year", "Type": "int"},
        {"Name": "month", "Type": "int"},
        {"Name": "day", "Type": "int"},
    ]
    # An int key's value is the integer's digits; the location keeps the folders' padding.
    assert sorted(p["Values"] for p in partitions) == [
        ["2024", "007", "2022", "2", "5"],
        ["2025", "007", "2023", "11", "30"],
    ]
    locations = sorted(p["StorageDescriptor"]["Location"] for p in partitions)
    assert locations[0].endswith("/cohort=2024/assessmentid=007/year=2022/month=02/day=05/")


def test_glue_tables_of_a_real_publish_declare_int_partitions(sample_output):
    output, manifests = sample_output
    table, partitions = glue_table(manifests["TaskData_v1"], output, "dataset_taskdata_v1_steps")
    assert [(k["Name"], k["Type"]) for k in table["PartitionKeys"]] == [
        ("assessmentid", "string"),
        ("year", "int"),
        ("month", "int"),
        ("day", "int"),
    ]
    assert sorted(p["Values"] for p in partitions) == [
        ["flanker", "2024", "3", "2"],
        ["number-match", "2024", "3", "1"],
    ]


# -- every reader sees the same table ---------------------------------------------------------------


def table_folder(output: Path, manifest: PublishManifest, table: str) -> Path:
    return output / manifest.tables[table].location(manifest.version, "parquet")


READ_TABLE = ("TaskData_v1", "dataset_taskdata_v1_steps")


def duckdb_columns(output: Path) -> dict[str, str]:
    return view_types(output, READ_TABLE[1])


def test_duckdb_pyarrow_and_pandas_read_the_same_columns_and_integer_dates(sample_output):
    output, manifests = sample_output
    folder = table_folder(output, manifests[READ_TABLE[0]], READ_TABLE[1])
    duck = duckdb_columns(output)

    arrow = pq.read_table(folder)
    dataset = ds.dataset(folder, format="parquet", partitioning="hive").to_table()
    frame = pd.read_parquet(folder)

    for schema in (arrow.schema, dataset.schema):
        assert sorted(schema.names) == sorted(duck)
        for name in DATE_PARTS:
            value_type = schema.field(name).type
            # pq.read_table dictionary-encodes partition columns; their values are integers.
            value_type = value_type.value_type if pa.types.is_dictionary(value_type) else value_type
            assert pa.types.is_integer(value_type), (name, value_type)
        assessment = schema.field("assessmentid").type
        assessment = assessment.value_type if pa.types.is_dictionary(assessment) else assessment
        assert pa.types.is_string(assessment) or pa.types.is_large_string(assessment)
    assert sorted(frame.columns) == sorted(duck)
    for name in DATE_PARTS:
        column = frame[name]
        values = column.cat.categories if isinstance(column.dtype, pd.CategoricalDtype) else column
        assert pd.api.types.is_integer_dtype(values), (name, column.dtype)
    assert sorted(zip(frame["assessmentid"].astype(str), frame["day"].astype(int))) == sorted(
        zip(arrow.column("assessmentid").to_pylist(), arrow.column("day").to_pylist())
    )
    assert frame["month"].astype(int).tolist() == [3] * len(frame) == [3] * 9


@pytest.mark.spark
def test_spark_reads_the_same_columns_and_integer_dates(spark, sample_output):
    from pyspark.sql.types import IntegerType, StringType

    output, manifests = sample_output
    folder = table_folder(output, manifests[READ_TABLE[0]], READ_TABLE[1])
    frame = spark.read.parquet(folder.as_uri())
    assert sorted(frame.columns) == sorted(duckdb_columns(output))
    fields = {field.name: field.dataType for field in frame.schema.fields}
    assert [fields[name] for name in DATE_PARTS] == [IntegerType()] * 3
    assert fields["assessmentid"] == StringType()
    assert sorted((r["assessmentid"], r["day"]) for r in frame.select("assessmentid", "day").distinct().collect()) == [
        ("flanker", 2),
        ("number-match", 1),
    ]


# -- the docs' example queries ----------------------------------------------------------------------

DOCUMENTS = sorted((PROJECT_ROOT / "docs").glob("*.md")) + [PROJECT_ROOT / "README.md"]


def documented_queries() -> list[tuple[str, str]]:
    """(document, SQL) for every statement of a ```sql block and every
    ``bridge-downstream query ... "SQL"`` or ``duckdb FILE "SQL"`` of a shell block."""
    queries = []
    for document in DOCUMENTS:
        text = document.read_text()
        for language, block in re.findall(r"```(\w*)\n(.*?)```", text, flags=re.DOTALL):
            if language == "sql":
                statements = block.split(";")
            elif language in ("sh", "bash", "shell"):
                joined = re.sub(r"\\\n\s*", " ", block)
                statements = re.findall(r'(?:bridge-downstream query|duckdb) [^"\n]*"([^"]+)"', joined)
            else:
                continue
            for statement in statements:
                code = "\n".join(line for line in statement.splitlines() if not line.strip().startswith("--"))
                # "SQL" names the argument in the usage lines; "$(...)" reads files a command lists,
                # not the catalog (tests/cli/test_path_command.py runs those)
                if code.strip() and code.strip() != "SQL" and "$(" not in code:
                    queries.append((document.name, code.strip()))
    return queries


def test_the_docs_hold_example_queries():
    queries = documented_queries()
    assert {document for document, _ in queries} >= {"README.md", "publish.md", "relationalize.md"}
    assert any("t.year = 2022" in sql for _, sql in queries)


@pytest.fixture(scope="module")
def spelling_output(real_registry, tmp_path_factory):
    """The real Spelling upload, ingested and published (skips without the shared data)."""
    source = shared_path("bridge-archives", SPELLING_ARCHIVE)
    base = tmp_path_factory.mktemp("spelling")
    (base / "in").mkdir()
    (base / "in" / source.name).symlink_to(source)
    (base / "in" / f"{source.name}.metadata.json").write_text(json.dumps(SPELLING_METADATA))
    report = ingest_folder(base / "in", base / "out", real_registry)
    publish_output(real_registry, base / "out", "mtb", sorted(report["datasets"]))
    return base / "out"


@pytest.fixture(scope="module")
def nested_output(registry, tmp_path_factory):
    """The sample archives published with their nested tables too."""
    output = tmp_path_factory.mktemp("nested-output")
    report = ingest_folder(SAMPLES / "archives", output, registry)
    publish_output(registry, output, "mtb", sorted(report["datasets"]), nested=True)
    return output


def views_of(output: Path) -> set[str]:
    return {t.name for m in read_current_manifests(LocalStorage(output)) for t in m.tables.values()}


def run_documented(output: Path, sql: str) -> list[tuple]:
    with duckdb.connect(str(output / layout.LOCAL_CATALOG_NAME), read_only=True) as connection:
        return connection.execute(sql).fetchall()


def documented_cases() -> list:
    return [pytest.param(document, sql) for document, sql in documented_queries()]


@pytest.mark.parametrize(("document", "sql"), documented_cases(), ids=lambda value: str(value)[:40])
def test_every_documented_query_runs_as_written(document, sql, sample_output, request):
    tables = set(re.findall(r"\bdataset_\w+", sql))
    output = sample_output[0]
    if not tables <= views_of(output) and any(table.endswith("_nested") for table in tables):
        output = request.getfixturevalue("nested_output")
    if not tables <= views_of(output):
        output = request.getfixturevalue("spelling_output")
    missing = tables - views_of(output)
    assert not missing, f"{document}: no published output of the samples or the real upload has {sorted(missing)}"
    rows = run_documented(output, sql)
    if tables:
        assert rows, f"{document}: {sql!r} found no rows"


@pytest.mark.shared_data
def test_the_spelling_example_finds_every_step(spelling_output):
    sql = next(sql for _, sql in documented_queries() if "t.year = 2022" in sql)
    rows = run_documented(spelling_output, sql)
    with zipfile.ZipFile(shared_path("bridge-archives", SPELLING_ARCHIVE)) as archive:
        steps = json.loads(archive.read("taskData.json"))["stepHistory"]
    assert len(rows) == len(steps) > 0
