"""A document holding both ``Type`` and ``type`` (real HealthKit documents
do): Parquet keeps both keys' values, ``Type`` under its own spelling and
``type`` as ``type_2`` (naming rule 3), whatever the order of the rows and on
both engines; DuckDB sees both columns; the Glue table's names are lower
case and unique; the run report lists the rename."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import boto3
import duckdb
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.catalog import DuckDBCatalog
from bridge_downstream.publish.engines import publish_dataset_with
from bridge_downstream_adapters.glue_catalog import GlueCatalog
from bridge_downstream_cli.main import main
from support import build_sample_registry, ingest_folder

ENGINES = ["arrow", pytest.param("spark", marks=pytest.mark.spark)]
ROWS = [
    {"ParticipantIdentifier": "p1", "n": 1, "Type": "HKWorkout", "type": "walking"},
    {"ParticipantIdentifier": "p2", "n": 2, "type": "running"},
    {"ParticipantIdentifier": "p3", "n": 3, "Type": "HKSample"},
    {"ParticipantIdentifier": "p4", "n": 4, "type": "cycling", "Type": "HKWorkout"},
]
EXPECTED = [  # (n, Type, type_2)
    (1, "HKWorkout", "walking"),
    (2, None, "running"),
    (3, "HKSample", None),
    (4, "HKWorkout", "cycling"),
]
TABLE = "dataset_custom"


def export_archive(folder: Path, rows: list[dict]) -> None:
    """A recover-style export of one data type without a schema (its columns are inferred)."""
    path = folder / "export.zip"
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("Custom_20240101.json", "".join(json.dumps(row) + "\n" for row in rows))
    Path(f"{path}.metadata.json").write_text(json.dumps({"cohort": "adults"}))


@pytest.fixture(scope="module")
def registry_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("case-clash") / "registry"
    build_sample_registry(out)
    return out


@pytest.fixture(params=ENGINES)
def publish(request, registry_dir):
    """``publish(root, rows)``: ingest ``rows`` as one export and publish them on the engine under test."""
    from bridge_downstream.config import SchemaRegistry

    engine = request.param
    spark_factory = (lambda: request.getfixturevalue("spark")) if engine == "spark" else None
    registry = SchemaRegistry.load(registry_dir)

    def run(root: Path, rows: list[dict]):
        export_archive(root / "in", rows)
        assert ingest_folder(root / "in", root / "out", registry, profile="recover")["archives"]["processed"] == 1
        storage = LocalStorage(root / "out")
        return publish_dataset_with(
            engine,
            spark_factory,
            dataset_id="Custom",
            registry=registry,
            profile=load_profile("recover"),
            work=storage,
            published=storage,
            run_id="case-clash",
            catalog=DuckDBCatalog(storage),
        ).manifest

    return run


def parquet_rows(root: Path, manifest) -> tuple[list[str], list[tuple]]:
    table = manifest.tables[TABLE]
    (file,) = table.files_of("parquet")
    data = pq.read_table(root / "out" / file.key)
    rows = sorted((row["n"], row["Type"], row["type_2"]) for row in data.to_pylist())
    return data.column_names, rows


def test_both_keys_keep_their_values_whatever_the_row_order(publish, tmp_path):
    published = {}
    for order, rows in {"in-order": ROWS, "reversed": list(reversed(ROWS))}.items():
        manifest = publish(tmp_path / order, rows)
        names, values = parquet_rows(tmp_path / order, manifest)
        assert values == EXPECTED, order
        published[order] = names, manifest.plan["renamed_columns"], manifest.tables[TABLE].columns
    assert published["in-order"] == published["reversed"]
    names, renamed, columns = published["in-order"]
    assert {"Type", "type_2"} <= set(names) and "type" not in names
    assert renamed == {TABLE: {"type_2": "type"}}
    lowered = [c["name"].lower() for c in columns]
    assert len(lowered) == len(set(lowered))


def test_duckdb_sees_both_columns(publish, tmp_path):
    publish(tmp_path, ROWS)
    with duckdb.connect(str(tmp_path / "out" / layout.LOCAL_CATALOG_NAME), read_only=True) as connection:
        described = [row[0] for row in connection.execute(f"DESCRIBE {TABLE}").fetchall()]
        values = connection.execute(f'SELECT n, "Type", type_2 FROM {TABLE} ORDER BY n').fetchall()
    assert {"Type", "type_2"} <= set(described)
    assert values == EXPECTED


def test_glue_names_are_lower_case_and_unique(publish, tmp_path):
    manifest = publish(tmp_path, ROWS)
    with mock_aws():
        glue = boto3.client("glue", region_name="us-east-1")
        glue.create_database(DatabaseInput={"Name": "db"})
        GlueCatalog("db", LocalStorage(tmp_path / "out"), glue).register(manifest)
        columns = glue.get_table(DatabaseName="db", Name=TABLE)["Table"]["StorageDescriptor"]["Columns"]
    names = [c["Name"] for c in columns]
    assert {"type", "type_2"} <= set(names)
    assert names == [name.lower() for name in names] and len(names) == len(set(names))


def test_the_run_report_lists_the_renamed_columns(registry_dir, tmp_path, capsys):
    export_archive(tmp_path / "in", ROWS)
    output = tmp_path / "out"
    arguments = ["--registry", str(registry_dir), "--output", str(output), "--profile", "recover", "--no-progress"]
    assert main(["run", str(tmp_path / "in"), *arguments]) == 0
    report = json.loads((output / "run-report.json").read_text())
    assert report["renamed_columns"] == {"Custom": {TABLE: {"type_2": "type"}}}
    assert "Custom: 1 columns renamed" in capsys.readouterr().out
