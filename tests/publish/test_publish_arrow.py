"""The Arrow publish path publishes exactly what the Spark path publishes:
the same tables, columns, partition keys and rows (Parquet and CSV), on the
bundled samples, on synthetic benchmark data and on real public data."""

from __future__ import annotations

import csv
import io
import json
import sys
import zipfile

import pyarrow.parquet as pq
import pytest

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish import spark_engine as publish_module
from bridge_downstream.publish.arrow_engine import publish_dataset_arrow
from bridge_downstream.publish.catalog import DuckDBCatalog
from bridge_downstream.publish.engine_steps import json_datasets
from bridge_downstream.publish.engines import publish_dataset_with
from bridge_downstream.publish.manifest import current_version, read_manifest
from bridge_downstream.publish.spark_engine import publish_dataset
from bridge_downstream_cli.pipeline_commands import add_engine_argument
from project_paths import PROJECT_ROOT, shared_path
from support import (
    SAMPLES,
    SPELLING_ARCHIVE,
    SPELLING_METADATA,
    build_real_registry,
    ingest_folder,
)

pytestmark = pytest.mark.spark


def _canonical(value):
    if isinstance(value, float):
        return repr(value)
    return value


def parquet_rows(root, manifest, table) -> list[tuple]:
    """Every row of a published table, partition values included (as strings)."""
    rows = []
    names = [c["name"] for c in table.columns]
    for file in table.files_of("parquet"):
        data = pq.read_table(io.BytesIO((root / file.key).read_bytes()))
        assert data.column_names == names, (table.name, data.column_names)
        for row in data.to_pylist():
            rows.append(
                tuple(_canonical(row[n]) for n in names) + tuple(file.partition[k] for k in table.partition_keys)
            )
    return sorted(rows, key=repr)


def csv_rows(root, table) -> tuple[set, list[tuple]]:
    """(the headers, every data row): files may split rows differently, not differently."""
    headers, rows = set(), []
    for file in table.files_of("csv"):
        header, *body = list(csv.reader(io.StringIO((root / file.key).read_text())))
        headers.add(tuple(header))
        rows.extend(tuple(r) for r in body)
    return headers, sorted(rows)


def publish_both(spark, registry, root, profile_name: str, datasets=None):
    storage = LocalStorage(root)
    profile = load_profile(profile_name)
    datasets = datasets or json_datasets(storage)
    spark_root, arrow_root = root / "spark", root / "arrow"
    manifests = {}
    for dataset_id in datasets:
        common = {
            "dataset_id": dataset_id,
            "registry": registry,
            "profile": profile,
            "work": storage,
            "run_id": "parity",
            "catalog": None,
        }
        on_spark = publish_dataset(spark, published=LocalStorage(spark_root), **common).manifest
        on_arrow = publish_dataset_arrow(published=LocalStorage(arrow_root), **common).manifest
        manifests[dataset_id] = (on_spark, on_arrow)
    return spark_root, arrow_root, manifests


def assert_same_publish(spark_root, arrow_root, manifests):
    for dataset_id, (on_spark, on_arrow) in manifests.items():
        assert list(on_arrow.tables) == list(on_spark.tables), dataset_id
        assert on_arrow.plan == on_spark.plan
        assert on_arrow.schema_id == on_spark.schema_id
        for name, table in on_spark.tables.items():
            other = on_arrow.tables[name]
            assert (other.columns, other.partition_keys, other.parent, other.rows) == (
                table.columns,
                table.partition_keys,
                table.parent,
                table.rows,
            ), name
            assert parquet_rows(arrow_root, on_arrow, other) == parquet_rows(spark_root, on_spark, table), name
            assert sorted({tuple(sorted(f.partition.items())) for f in other.files}) == sorted(
                {tuple(sorted(f.partition.items())) for f in table.files}
            ), name
            # CSV: same header and the same rows (the text of each value is the CSV writer's, shared)
            assert csv_rows(arrow_root, other) == csv_rows(spark_root, table), name


def test_samples_mtb(spark, registry, tmp_path):
    ingest_folder(SAMPLES / "archives", tmp_path, registry)
    assert_same_publish(*publish_both(spark, registry, tmp_path, "mtb"))


def test_samples_recover_export_with_deletions(spark, registry, tmp_path):
    ingest_folder(SAMPLES / "exports", tmp_path, registry, profile="recover")
    spark_root, arrow_root, manifests = publish_both(spark, registry, tmp_path, "recover")
    assert_same_publish(spark_root, arrow_root, manifests)
    steps = manifests["HealthKitV2Samples"][1].tables["dataset_healthkitv2samples"]
    assert steps.rows == 4  # hk-3 is listed in the _Deleted data type


def test_synthetic_benchmark_data_with_reexports(spark, registry, tmp_path):
    sys.path.insert(0, str(PROJECT_ROOT / "bench"))
    from generate import generate

    generate(tmp_path / "data", records=120, export_rows=600, motion=7, steps=3, per_day=40, jobs=1)
    ingest_folder(tmp_path / "data" / "archives", tmp_path / "mtb", registry, workers=2)
    assert_same_publish(*publish_both(spark, registry, tmp_path / "mtb", "mtb"))
    ingest_folder(tmp_path / "data" / "exports", tmp_path / "recover", registry, profile="recover")
    assert_same_publish(*publish_both(spark, registry, tmp_path / "recover", "recover"))


def test_spark_in_many_shuffle_tasks_gives_the_same_tables_one_file_per_partition(
    spark, registry, tmp_path, monkeypatch
):
    """A dataset larger than a Spark task's share is shuffled into more tasks
    (by record key for dedup, then by output partition): the same tables as
    Arrow's, re-exports still deduplicated, and each partition of each table
    in one file."""
    sys.path.insert(0, str(PROJECT_ROOT / "bench"))
    from generate import generate

    generate(tmp_path / "data", records=120, export_rows=0, motion=7, steps=3, per_day=40, jobs=1)
    ingest_folder(tmp_path / "data" / "archives", tmp_path / "mtb", registry, workers=2)
    work = LocalStorage(tmp_path / "mtb")
    monkeypatch.setattr(publish_module, "SHUFFLE_PARTITION_BYTES", 4096)
    tasks = publish_module.shuffle_partitions(spark, work, "MotionRecord_v1")
    assert tasks > 2 * spark.sparkContext.defaultParallelism
    spark_root, arrow_root, manifests = publish_both(spark, registry, tmp_path / "mtb", "mtb")
    assert_same_publish(spark_root, arrow_root, manifests)
    for dataset_id, (on_spark, _) in manifests.items():
        for name, table in on_spark.tables.items():
            partitions = [tuple(sorted(f.partition.items())) for f in table.files_of("parquet")]
            assert len(partitions) == len(set(partitions)) > 1, (dataset_id, name)


def test_small_chunks_give_the_same_rows(registry, tmp_path):
    """Bounded memory: chunked reading (here a few KB per chunk) changes nothing."""
    ingest_folder(SAMPLES / "archives", tmp_path, registry)
    storage = LocalStorage(tmp_path)
    for dataset_id in json_datasets(storage):
        common = {
            "dataset_id": dataset_id,
            "registry": registry,
            "profile": load_profile("mtb"),
            "work": storage,
            "run_id": "chunks",
        }
        whole = publish_dataset_arrow(published=LocalStorage(tmp_path / "whole"), **common).manifest
        chunked = publish_dataset_arrow(
            published=LocalStorage(tmp_path / "chunked"), chunk_bytes=2000, **common
        ).manifest
        for name, table in whole.tables.items():
            assert parquet_rows(tmp_path / "chunked", chunked, chunked.tables[name]) == parquet_rows(
                tmp_path / "whole", whole, table
            )


@pytest.mark.parametrize(("profile_name", "source"), [("mtb", "archives"), ("recover", "exports")])
def test_a_part_file_per_chunk_gives_the_same_tables(registry, tmp_path, profile_name, source):
    """A dataset read one part file per chunk publishes the same tables as read
    in one chunk: dedup decides across chunks (the versions of a re-exported
    record are in different part files) as within one."""
    sys.path.insert(0, str(PROJECT_ROOT / "bench"))
    from generate import generate

    generate(tmp_path / "data", records=120, export_rows=600, per_export=200, motion=7, steps=3, per_day=40, jobs=1)
    ingest_folder(tmp_path / "data" / source, tmp_path / "work", registry, profile=profile_name, workers=2)
    work = LocalStorage(tmp_path / "work")
    one_root, many_root = tmp_path / "one-chunk", tmp_path / "many-chunks"
    duplicates_dropped = 0
    for dataset_id in json_datasets(work):
        parts = [
            info.key for info in work.list(layout.dataset_prefix(dataset_id) + "/") if info.key.endswith(".ndjson")
        ]
        assert len(parts) > 1, dataset_id  # so that one part file per chunk is several chunks
        common = {
            "dataset_id": dataset_id,
            "registry": registry,
            "profile": load_profile(profile_name),
            "work": work,
            "run_id": "chunks",
        }
        one = publish_dataset_arrow(published=LocalStorage(one_root), chunk_bytes=1 << 40, **common).manifest
        many = publish_dataset_arrow(published=LocalStorage(many_root), chunk_bytes=1, **common).manifest
        assert list(many.tables) == list(one.tables)
        for name, table in one.tables.items():
            other = many.tables[name]
            assert other.rows == table.rows, name
            assert parquet_rows(many_root, many, other) == parquet_rows(one_root, one, table), name
            assert csv_rows(many_root, other) == csv_rows(one_root, table), name
        lines = sum(1 for key in parts for line in work.read_bytes(key).splitlines() if line.strip())
        duplicates_dropped += lines - next(iter(one.tables.values())).rows  # the root table: a row per surviving line
    if profile_name == "mtb":
        assert duplicates_dropped > 0  # the re-exports: dedup across chunks was exercised


def test_arrow_publish_is_versioned_current_and_catalogued(registry, tmp_path):
    ingest_folder(SAMPLES / "archives", tmp_path, registry)
    storage = LocalStorage(tmp_path)
    catalog = DuckDBCatalog(storage)
    result = publish_dataset_with(
        "arrow",
        None,
        dataset_id="TaskData_v1",
        registry=registry,
        profile=load_profile("mtb"),
        work=storage,
        published=storage,
        run_id="r1",
        catalog=catalog,
    )
    assert current_version(storage, "TaskData_v1") == result.manifest.version
    assert read_manifest(storage, "TaskData_v1", result.manifest.version).tables.keys() == result.manifest.tables.keys()
    assert (tmp_path / layout.LOCAL_CATALOG_NAME).is_file()
    with pytest.raises(RuntimeError, match="interrupted"):
        publish_dataset_with(
            "arrow",
            None,
            dataset_id="TaskData_v1",
            registry=registry,
            profile=load_profile("mtb"),
            work=storage,
            published=storage,
            run_id="r2",
            fail_after_tables=1,
        )
    assert current_version(storage, "TaskData_v1") == result.manifest.version


def test_engine_argument():
    import argparse

    parser = argparse.ArgumentParser()
    add_engine_argument(parser)
    assert parser.parse_args([]).engine == "arrow"
    assert parser.parse_args(["--engine", "spark"]).engine == "spark"
    with pytest.raises(ValueError, match="spark_factory"):
        publish_dataset_with("spark", None)


@pytest.mark.shared_data
def test_real_data(spark, tmp_path):
    registry = build_real_registry(tmp_path / "registry")
    spelling = shared_path("bridge-archives", SPELLING_ARCHIVE)
    export = shared_path("bridge-archives", "recover-2023-01-13T21--08--51Z_TESTDATA.zip")
    for folder, source, metadata in (
        (tmp_path / "in-mtb", spelling, SPELLING_METADATA),
        (tmp_path / "in-recover", export, {"cohort": "adults_v1"}),
    ):
        folder.mkdir()
        (folder / source.name).symlink_to(source)
        (folder / f"{source.name}.metadata.json").write_text(json.dumps(metadata))
    ingest_folder(tmp_path / "in-mtb", tmp_path / "mtb", registry)
    assert_same_publish(*publish_both(spark, registry, tmp_path / "mtb", "mtb"))
    ingest_folder(tmp_path / "in-recover", tmp_path / "recover", registry, profile="recover")
    spark_root, arrow_root, manifests = publish_both(spark, registry, tmp_path / "recover", "recover")
    assert_same_publish(spark_root, arrow_root, manifests)
    with zipfile.ZipFile(export) as archive:
        intraday = sum(1 for line in archive.open("FitbitIntradayCombined_20230112-20230114.json") if line.strip())
    assert manifests["FitbitIntradayCombined"][1].tables["dataset_fitbitintradaycombined"].rows == intraday
