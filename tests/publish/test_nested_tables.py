"""Nested tables in a publish (docs/publish.md, "Nested tables"): on request,
both engines publish the same nested table per dataset (same Parquet schema,
same rows, same partitions, no CSVs); its rows, unnested in DuckDB, are the
child tables' rows; the DuckDB catalog and Glue (moto) register it with
struct and array types."""

from __future__ import annotations

import dataclasses
import io
import json
from collections import Counter

import boto3
import duckdb
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from moto import mock_aws

from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import Profile, ProfileError, load_profile
from bridge_downstream.publish.arrow_engine import publish_dataset_arrow
from bridge_downstream.publish.catalog import DuckDBCatalog
from bridge_downstream.publish.engine_steps import json_datasets
from bridge_downstream.publish.spark_engine import publish_dataset
from bridge_downstream.relationalize import RelationalizePlan
from bridge_downstream.relationalize.nested import plan_nested_table
from bridge_downstream.relationalize.plan import ROLE_LINK
from bridge_downstream.relationalize.types import Struct
from bridge_downstream_adapters.glue_catalog import GlueCatalog
from project_paths import shared_path
from support import SAMPLES, SPELLING_ARCHIVE, SPELLING_METADATA, ingest_folder


def nested_profile(name: str = "mtb") -> Profile:
    return dataclasses.replace(load_profile(name), nested=True)


def publish(engine: str, spark, registry, work, out, profile: Profile, datasets=None, catalog=None) -> dict:
    """``{dataset: manifest}`` of every dataset of ``work`` published into ``out`` on ``engine``."""
    manifests = {}
    for dataset_id in datasets or json_datasets(work):
        common = {
            "dataset_id": dataset_id,
            "registry": registry,
            "profile": profile,
            "work": work,
            "published": out,
            "run_id": f"nested-{engine}",
            "catalog": catalog,
        }
        if engine == "spark":
            manifests[dataset_id] = publish_dataset(spark, **common).manifest
        else:
            manifests[dataset_id] = publish_dataset_arrow(**common).manifest
    return manifests


def nested_name(manifest) -> str:
    return plan_nested_table(RelationalizePlan.from_json(manifest.plan)).name


def table_content(storage: LocalStorage, table) -> tuple[pa.Schema, list]:
    """(the Parquet schema every file shares, every row with its partition values), rows sorted."""
    schemas, rows = set(), []
    for file in table.files_of("parquet"):
        data = pq.read_table(io.BytesIO(storage.read_bytes(file.key)))
        schemas.add(data.schema.remove_metadata())
        for row in data.to_pylist():
            rows.append((repr(sorted(file.partition.items())), repr(row)))
    (schema,) = schemas
    return schema, sorted(rows)


def assert_same_nested_tables(spark_out, arrow_out, on_spark: dict, on_arrow: dict) -> int:
    """Both engines' nested tables are equal; returns their rows."""
    rows = 0
    for dataset_id, spark_manifest in on_spark.items():
        arrow_manifest = on_arrow[dataset_id]
        name = nested_name(spark_manifest)
        plan = RelationalizePlan.from_json(spark_manifest.plan)
        assert list(spark_manifest.tables) == [*plan.table_names, name]  # after the plan's tables
        mine, theirs = arrow_manifest.tables[name], spark_manifest.tables[name]
        assert (mine.columns, mine.partition_keys, mine.rows) == (theirs.columns, theirs.partition_keys, theirs.rows)
        assert mine.rows == spark_manifest.tables[plan.root.name].rows  # the root table's rows
        assert not mine.files_of("csv") and not theirs.files_of("csv")
        assert table_content(arrow_out, mine) == table_content(spark_out, theirs), name
        rows += mine.rows
    return rows


@pytest.mark.spark
def test_both_engines_publish_the_same_nested_tables_for_the_samples(spark, registry, tmp_path):
    ingest_folder(SAMPLES / "archives", tmp_path / "work", registry)
    work = LocalStorage(tmp_path / "work")
    spark_out, arrow_out = LocalStorage(tmp_path / "spark"), LocalStorage(tmp_path / "arrow")
    on_spark = publish("spark", spark, registry, work, spark_out, nested_profile())
    on_arrow = publish("arrow", None, registry, work, arrow_out, nested_profile())
    assert assert_same_nested_tables(spark_out, arrow_out, on_spark, on_arrow) > 0
    steps = on_arrow["TaskData_v1"].tables["dataset_taskdata_v1_nested"]
    types = {c["name"]: c["type"] for c in steps.columns}
    assert types["steps"].startswith("array<struct<") and "interactions:array<struct<" in types["steps"]
    assert types["scores"] == "struct<rawscore:bigint,theta:double>"
    assert types["uploadedon"] == "timestamp"
    schema, _ = table_content(arrow_out, steps)
    assert pa.types.is_list(schema.field("steps").type)
    assert schema.field("uploadedon").type == pa.timestamp("us", tz="UTC")


def test_no_nested_table_unless_asked(registry, tmp_path):
    ingest_folder(SAMPLES / "archives", tmp_path / "work", registry)
    work, out = LocalStorage(tmp_path / "work"), LocalStorage(tmp_path / "out")
    plain = publish("arrow", None, registry, work, out, load_profile("mtb"))
    assert not [name for m in plain.values() for name in m.tables if name.endswith("_nested")]
    only = dataclasses.replace(load_profile("mtb"), nested_datasets=("TaskData_v1",))
    chosen = publish("arrow", None, registry, work, out, only)
    assert [name for m in chosen.values() for name in m.tables if name.endswith("_nested")] == [
        "dataset_taskdata_v1_nested"
    ]


def test_the_profile_setting_is_read_from_yaml(tmp_path):
    assert load_profile("mtb").nested is False and load_profile("recover").nested_datasets == ()
    raw = tmp_path / "p.yaml"
    text = "name: x\nkind: bridge-archive\nidentity_fields: [recordid]\nnested_datasets: [TaskData_v1]\n"
    raw.write_text(text)
    profile = load_profile(raw)
    assert profile.publishes_nested("TaskData_v1") and not profile.publishes_nested("MotionRecord_v1")
    raw.write_text(text + "nested: true\n")
    assert load_profile(raw).publishes_nested("MotionRecord_v1")
    raw.write_text(text + "nested: 'yes'\n")
    with pytest.raises(ProfileError, match="nested is true or false"):
        load_profile(raw)


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def unnested_counts(connection, manifest) -> dict[str, tuple[Counter, Counter]]:
    """For every child table of a root array or map (also inside objects):
    (elements per record unnested from the nested table, rows per record of the child table)."""
    plan = RelationalizePlan.from_json(manifest.plan)
    nested = plan_nested_table(plan)
    by_key = {c.key: c for c in nested.columns if c.key is not None}
    found = {}
    for link in plan.root.columns:
        if link.role != ROLE_LINK:
            continue
        column = by_key[link.path[0]]
        expression = _quoted(column.name)
        source, published = plan.row_type.get(link.path[0]), column.type
        for key in link.path[1:]:  # through objects: the published field at the key's position
            assert isinstance(source, Struct) and isinstance(published, Struct)
            i = source.index_of(key)
            expression += "." + _quoted(published.fields[i][0])
            source, published = source.fields[i][1], published.fields[i][1]
        unnest = "map_entries" if source.__class__.__name__ == "Map" else ""
        values = f"{unnest}({expression})" if unnest else expression
        nested_counts = connection.execute(
            f"SELECT recordid, count(*) FROM (SELECT recordid, unnest({values}) FROM {_quoted(nested.name)}) GROUP BY 1"
        ).fetchall()
        child_counts = connection.execute(f"SELECT recordid, count(*) FROM {_quoted(link.child)} GROUP BY 1").fetchall()
        found[link.child] = (Counter(dict(nested_counts)), Counter(dict(child_counts)))
    return found


def test_unnested_rows_are_the_child_tables_rows_in_the_duckdb_catalog(registry, tmp_path):
    ingest_folder(SAMPLES / "archives", tmp_path / "work", registry)
    work = LocalStorage(tmp_path / "work")
    catalog = DuckDBCatalog(work)
    manifests = publish("arrow", None, registry, work, work, nested_profile(), catalog=catalog)
    with duckdb.connect(str(catalog.path), read_only=True) as connection:
        views = {
            row[0] for row in connection.execute("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
        }
        assert {nested_name(m) for m in manifests.values()} <= views
        compared = {}
        for manifest in manifests.values():
            compared.update(unnested_counts(connection, manifest))
        assert compared["dataset_taskdata_v1_steps"][0] == compared["dataset_taskdata_v1_steps"][1]
        assert sum(compared["dataset_taskdata_v1_steps"][0].values()) > 0
        for child, (nested_counts, child_counts) in compared.items():
            assert nested_counts == child_counts, child
        # the steps' values, and the grandchildren through two levels of lists
        steps = connection.execute(
            "SELECT recordid, s.identifier, s.response, s.responseTime FROM "
            "(SELECT recordid, unnest(steps) AS s FROM dataset_taskdata_v1_nested) ORDER BY ALL"
        ).fetchall()
        assert (
            steps
            == connection.execute(
                "SELECT recordid, identifier, response, responseTime FROM dataset_taskdata_v1_steps ORDER BY ALL"
            ).fetchall()
        )
        interactions = connection.execute(
            "SELECT count(*) FROM (SELECT unnest(s.interactions) FROM "
            "(SELECT unnest(steps) AS s FROM dataset_taskdata_v1_nested))"
        ).fetchone()
        assert (
            interactions == connection.execute("SELECT count(*) FROM dataset_taskdata_v1_steps_interactions").fetchone()
        )
        assert interactions[0] > 0
        # a struct's field, and integer partition columns, as in the root table
        assert (
            connection.execute(
                "SELECT n.scores.rawScore, n.year FROM dataset_taskdata_v1_nested n ORDER BY recordid"
            ).fetchall()
            == connection.execute("SELECT scores_rawScore, year FROM dataset_taskdata_v1 ORDER BY recordid").fetchall()
        )
        # the docs' examples (docs/publish.md, "Nested tables"), as written
        assert connection.execute(
            "SELECT recordid, s.identifier, s.responseTime "
            "FROM (SELECT recordid, unnest(steps) AS s FROM dataset_taskdata_v1_nested)"
        ).fetchall()
        per_record = connection.execute(
            "SELECT recordid, scores.rawScore, len(steps) AS steps FROM dataset_taskdata_v1_nested"
        ).fetchall()
        assert Counter({r: n for r, _, n in per_record if n}) == compared["dataset_taskdata_v1_steps"][1]
        year_type = connection.execute(
            "SELECT data_type FROM duckdb_columns() WHERE table_name = 'dataset_taskdata_v1_nested' AND column_name = 'year'"
        ).fetchone()
        assert year_type == ("INTEGER",)


def test_glue_registers_struct_and_array_types(registry, tmp_path):
    ingest_folder(SAMPLES / "archives", tmp_path / "work", registry)
    work = LocalStorage(tmp_path / "work")
    manifests = publish("arrow", None, registry, work, work, nested_profile(), datasets=["TaskData_v1"])
    with mock_aws():
        glue = boto3.client("glue", region_name="us-east-1")
        glue.create_database(DatabaseInput={"Name": "db"})
        GlueCatalog("db", work, glue).register(manifests["TaskData_v1"])
        table = glue.get_table(DatabaseName="db", Name="dataset_taskdata_v1_nested")["Table"]
        partitions = glue.get_partitions(DatabaseName="db", TableName="dataset_taskdata_v1_nested")["Partitions"]
    columns = {c["Name"]: c["Type"] for c in table["StorageDescriptor"]["Columns"]}
    assert columns["steps"] == (
        "array<struct<identifier:string,response:string,responsetime:double,"
        "interactions:array<struct<controlevent:string,timestamp:string>>>>"
    )
    assert columns["scores"] == "struct<rawscore:bigint,theta:double>"
    assert columns["uploadedon"] == "timestamp"
    assert [(k["Name"], k["Type"]) for k in table["PartitionKeys"]] == [
        ("assessmentid", "string"),
        ("year", "int"),
        ("month", "int"),
        ("day", "int"),
    ]
    assert partitions and all(p["StorageDescriptor"]["Location"].endswith("/") for p in partitions)


@pytest.fixture(scope="module")
def spelling_work(real_registry, tmp_path_factory):
    source = shared_path("bridge-archives", SPELLING_ARCHIVE)
    folder = tmp_path_factory.mktemp("spelling-nested")
    (folder / "in").mkdir()
    (folder / "in" / source.name).symlink_to(source)
    (folder / "in" / f"{source.name}.metadata.json").write_text(json.dumps(SPELLING_METADATA))
    assert ingest_folder(folder / "in", folder / "work", real_registry)["archives"]["processed"] == 1
    return LocalStorage(folder / "work")


@pytest.mark.shared_data
@pytest.mark.spark
def test_real_upload_nested_tables_on_both_engines(spark, real_registry, spelling_work, tmp_path):
    spark_out, arrow_out = LocalStorage(tmp_path / "spark"), LocalStorage(tmp_path / "arrow")
    catalog = DuckDBCatalog(arrow_out)
    on_spark = publish("spark", spark, real_registry, spelling_work, spark_out, nested_profile())
    on_arrow = publish("arrow", None, real_registry, spelling_work, arrow_out, nested_profile(), catalog=catalog)
    assert assert_same_nested_tables(spark_out, arrow_out, on_spark, on_arrow) > 0
    with duckdb.connect(str(catalog.path), read_only=True) as connection:
        compared = {}
        for manifest in on_arrow.values():
            compared.update(unnested_counts(connection, manifest))
    assert compared, "the real upload has arrays"
    assert sum(sum(nested.values()) for nested, _ in compared.values()) > 0
    for child, (nested_counts, child_counts) in compared.items():
        assert nested_counts == child_counts, child
