"""The real recover export published with recover's column types (its Glue
table definitions, shipped in the recover profile): numbers are numbers, and
text that is no number is kept in ``_rescued_data``, the column keeping its type."""

from __future__ import annotations

import io
import json
import zipfile

import duckdb
import pyarrow.parquet as pq
import pytest
import yaml

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.arrow_engine import publish_dataset_arrow
from bridge_downstream.publish.catalog import DuckDBCatalog
from bridge_downstream.publish.engine_steps import json_datasets
from bridge_downstream.relationalize.plan import RESCUED_COLUMN
from project_paths import shared_path
from support import ingest_folder

pytestmark = pytest.mark.shared_data

EXPORT = "recover-2023-01-13T21--08--51Z_TESTDATA.zip"
INTRADAY = "FitbitIntradayCombined_20230112-20230114.json"
# recover's Glue types as the catalog shows them (its int: our bigint)
ATHENA_TYPES = {"string": "string", "int": "bigint", "bigint": "bigint", "double": "double", "boolean": "boolean"}


def _ingest_and_publish(archive, out, registry) -> dict:
    folder = out / "in"
    folder.mkdir(parents=True)
    (folder / archive.name).symlink_to(archive)
    (folder / f"{archive.name}.metadata.json").write_text(json.dumps({"cohort": "adults_v1"}))
    ingest_folder(folder, out / "out", registry, profile="recover")
    storage = LocalStorage(out / "out")
    catalog = DuckDBCatalog(storage)
    return {
        dataset_id: publish_dataset_arrow(
            dataset_id=dataset_id,
            registry=registry,
            profile=load_profile("recover"),
            work=storage,
            published=storage,
            run_id="types",
            catalog=catalog,
        ).manifest
        for dataset_id in json_datasets(storage)
    }


EXPORT_DATES = ("export_start_date", "export_end_date")


@pytest.fixture(scope="module")
def real_export(tmp_path_factory, real_registry):
    out = tmp_path_factory.mktemp("recover-types")
    return out, _ingest_and_publish(shared_path("bridge-archives", EXPORT), out, real_registry)


def test_root_columns_have_recover_table_types(real_export):
    _, manifests = real_export
    definitions = yaml.safe_load(shared_path("recover-config", "table_columns.yaml").read_text())["tables"]
    compared = 0
    for dataset_id, manifest in manifests.items():
        root = manifest.tables[f"dataset_{dataset_id.lower()}"]
        published = {column["name"].lower(): column["type"] for column in root.columns}
        for column in definitions[dataset_id]["columns"]:
            expected = ATHENA_TYPES.get(column["Type"])
            if column["Name"] in EXPORT_DATES:  # UTC timestamps here, recover's text there (docs/conformance.md)
                assert published[column["Name"]] == "timestamp", f"{dataset_id}.{column['Name']}"
            elif expected is not None and column["Name"].lower() in published:
                assert published[column["Name"].lower()] == expected, f"{dataset_id}.{column['Name']}"
                compared += 1
    assert set(manifests) >= {"FitbitIntradayCombined", "FitbitSleepLogs", "FitbitDailyData", "EnrolledParticipants"}
    assert compared > 100


def test_numbers_are_numbers(real_export):
    out, manifests = real_export
    assert manifests["FitbitIntradayCombined"].rescued_values == {}
    with duckdb.connect(str(out / "out" / layout.LOCAL_CATALOG_NAME), read_only=True) as db:
        level, mets, value = db.execute(
            "SELECT max(Level), max(Mets), max(Value) FROM dataset_fitbitintradaycombined"
        ).fetchone()
    assert isinstance(level, int) and isinstance(mets, float)
    assert mets > 10  # a number's order, not the text's ('10' < '9')
    assert isinstance(value, str)  # recover's tables keep Value as string (its data type varies with Type)


def test_text_that_is_no_number_is_rescued_and_the_column_keeps_its_type(tmp_path, real_registry):
    source = shared_path("bridge-archives", EXPORT)
    with zipfile.ZipFile(source) as export:
        rows = [json.loads(line) for line in export.open(INTRADAY) if line.strip()]
        listing = export.read("Manifest.csv")
    with_mets = [row for row in rows if row.get("Mets") is not None][:3]
    with_mets[0] = {**with_mets[0], "Mets": "not measured"}
    archive = tmp_path / EXPORT
    with zipfile.ZipFile(archive, "w") as export:
        export.writestr("Manifest.csv", listing)
        export.writestr(INTRADAY, "".join(json.dumps(row) + "\n" for row in with_mets))
    manifests = _ingest_and_publish(archive, tmp_path, real_registry)
    manifest = manifests["FitbitIntradayCombined"]
    root = manifest.tables["dataset_fitbitintradaycombined"]
    assert {c["name"]: c["type"] for c in root.columns}["Mets"] == "double"
    assert manifest.rescued_values == {"Mets": 1}
    storage = LocalStorage(tmp_path / "out")
    published = []
    for file in root.files_of("parquet"):
        published += pq.read_table(io.BytesIO(storage.read_bytes(file.key))).to_pylist()
    rescued = [row for row in published if row[RESCUED_COLUMN]]
    assert len(published) == 3 and len(rescued) == 1
    assert rescued[0]["Mets"] is None and json.loads(rescued[0][RESCUED_COLUMN]) == {"Mets": "not measured"}
    assert sorted(row["Mets"] for row in published if not row[RESCUED_COLUMN]) == sorted(
        float(row["Mets"]) for row in with_mets[1:]
    )


def test_real_export_record_counts_add_up(real_export):
    _, manifests = real_export
    for dataset_id, manifest in manifests.items():
        root = manifest.tables[f"dataset_{dataset_id.lower()}"]
        assert [c["data_type"] for c in manifest.record_counts] == [dataset_id]
        (counts,) = manifest.record_counts
        assert counts["export_end_date"] == "2023-01-14T00:00:00"
        assert counts["read"] == counts["duplicates_dropped"] + counts["deleted_dropped"] + counts["written"]
        assert counts["written"] == root.rows
    assert manifests["FitbitIntradayCombined"].record_counts[0]["read"] == 59_005


def test_every_column_of_recovers_tables_is_published(real_export):
    """recover's table definition of each published data type, column by
    column: a scalar column is a root column (its name as the catalog spells
    it, lower case); a struct column is flattened into ``<name>_<field>``
    columns (or, where every row holds ``{}``, as the real ``EventDates`` does,
    one column of that text); an array column is a child table."""
    _, manifests = real_export
    definitions = yaml.safe_load(shared_path("recover-config", "table_columns.yaml").read_text())["tables"]
    for dataset_id, manifest in manifests.items():
        root_name = f"dataset_{dataset_id.lower()}"
        published = {column["name"].lower() for column in manifest.tables[root_name].columns}
        for column in definitions[dataset_id]["columns"]:
            name, kind = column["Name"].lower(), column["Type"]
            if kind.startswith("array<"):
                assert f"{root_name}_{name}" in manifest.tables or name in published, f"{dataset_id}.{name}"
            elif kind.startswith("struct<"):
                assert name in published or any(p.startswith(f"{name}_") for p in published), f"{dataset_id}.{name}"
            else:
                assert name in published, f"{dataset_id}.{name}"
