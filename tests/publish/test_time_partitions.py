"""recover data types partitioned by the month of their own date or time
(docs/publish.md, "The table contract"; decision 0025): ``cohort`` then
``date_month`` (yyyymm, an integer for every reader; 0 where the key field
spells no instant), the same on both engines and on every child table."""

from __future__ import annotations

import io
import json

import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import Profile, ProfileError, load_profile
from bridge_downstream.publish.catalog import DuckDBCatalog
from bridge_downstream.publish.engines import publish_dataset_with
from bridge_downstream.publish.increments import PART_PARTITIONS_NAME, file_partition, index_key
from bridge_downstream.publish.manifest import PublishManifest
from bridge_downstream.relationalize.plan import NO_TIME_MONTH, time_month
from increment_fixtures import check_parity, publish, table_rows, write_part

ENGINES = ["arrow", pytest.param("spark", marks=pytest.mark.spark)]
DATASET = "FitbitDailyData"  # key [ParticipantIdentifier, Date]
ROOT = f"dataset_{DATASET.lower()}"


def daily(participant: str, date: str, export_end: str, steps: int) -> dict:
    return {
        "ParticipantIdentifier": participant,
        "Date": date,
        "Steps": steps,
        "InsertedDate": export_end,
        "cohort": "adults_v1",
        "export_end_date": export_end,
        "sourcefile": f"FitbitDailyData_{export_end[:10]}.json",
        "sourceindex": 0,
    }


@pytest.mark.parametrize(
    ("value", "month"),
    [
        ("2023-01-31", 202301),
        ("2023-12-31T23:59:59", 202312),
        ("2023-12-31T23:00:00-05:00", 202312),  # the month as written, not as UTC
        ("2023-02-30", NO_TIME_MONTH),
        ("n/a", NO_TIME_MONTH),
        (None, NO_TIME_MONTH),
        (20230101, NO_TIME_MONTH),
    ],
)
def test_the_month_of_a_value_is_the_month_it_spells(value, month):
    assert time_month(value) == month


def test_the_recover_profile_partitions_dated_data_types_by_month():
    profile = load_profile("recover")
    assert profile.time_partition_source("FitbitIntradayCombined") == "DateTime"
    assert profile.time_partition_source("FitbitDailyData_Deleted") == "Date"
    assert profile.time_partition_source("FitbitSleepLogs") is None
    assert profile.time_partition_source("HealthKitV2Samples") is None
    assert layout.partition_type(layout.TIME_PARTITION_COLUMN) == "int"


def test_a_time_partition_field_outside_the_dedup_key_is_refused():
    raw = {
        "name": "probe",
        "kind": "ndjson-export",
        "identity_fields": ["sourcefile", "sourceindex"],
        "dedup": {"keys": {"FitbitDailyData": ["ParticipantIdentifier", "Date"]}},
        "time_partitions": {"FitbitDailyData": "Steps"},
    }
    with pytest.raises(ProfileError, match="not in the data type's dedup key"):
        Profile.from_mapping(raw)


def partition_values(manifest, table: str) -> set[tuple[str, str]]:
    return {(f.partition["cohort"], f.partition["date_month"]) for f in manifest.tables[table].files_of("parquet")}


@pytest.mark.parametrize("engine", ENGINES)
def test_an_export_lands_in_the_months_of_its_rows_and_equals_a_full_rebuild(engine, request, registry, tmp_path):
    work = tmp_path / "work"
    first = [
        daily("P-1", "2024-01-15", "2024-02-01T00:00:00Z", 10),
        daily("P-1", "2024-02-01", "2024-02-01T00:00:00Z", 20),
    ]
    first.append(daily("P-2", "not a date", "2024-02-01T00:00:00Z", 30))
    write_part(work, DATASET, {"cohort": "adults_v1"}, "export1", first)
    version1 = check_parity(engine, request, registry, tmp_path, "recover", DATASET)
    assert version1.tables[ROOT].partition_keys == ["cohort", "date_month"]
    assert partition_values(version1, ROOT) == {
        ("adults_v1", "202401"),
        ("adults_v1", "202402"),
        ("adults_v1", "000000"),
    }

    # a weekly export: new days of March, and a newer version of a February day
    second = [
        daily("P-1", "2024-03-04", "2024-03-08T00:00:00Z", 40),
        daily("P-1", "2024-02-01", "2024-03-08T00:00:00Z", 21),
    ]
    write_part(work, DATASET, {"cohort": "adults_v1"}, "export2", second)
    version2 = check_parity(engine, request, registry, tmp_path, "recover", DATASET)
    assert version2.increment["mode"] == "incremental"
    assert version2.increment["partitions_rewritten"] == [
        "cohort=adults_v1/date_month=202402",
        "cohort=adults_v1/date_month=202403",
    ]
    storage = LocalStorage(tmp_path / "published")
    by_month: dict[str, list[tuple[str, str]]] = {}
    for file in version2.tables[ROOT].files_of("parquet"):
        rows = pq.read_table(io.BytesIO(storage.read_bytes(file.key))).to_pylist()
        by_month.setdefault(file.partition["date_month"], []).extend(
            (r["Date"], r["Steps"]) for r in rows
        )  # Steps: a string, as recover declares it
    assert {month: sorted(rows) for month, rows in by_month.items()} == {
        "202401": [("2024-01-15", "10")],
        "202402": [("2024-02-01", "21")],
        "202403": [("2024-03-04", "40")],
        "000000": [("not a date", "30")],
    }
    # the folders are zero-padded (month 0 is carried: the first version's), the values integers for a reader
    folder = layout.version_prefix(DATASET, version1.version)
    paths = sorted(
        str(p.relative_to(tmp_path / "published" / folder))
        for p in (tmp_path / "published" / folder).rglob("*.parquet")
    )
    assert any("/cohort=adults_v1/date_month=000000/" in f"/{p}" for p in paths)
    parquet = next(f for f in version2.tables[ROOT].files_of("parquet") if f.partition["date_month"] == "202403")
    base = tmp_path / "published" / layout.table_prefix(DATASET, version2.version, "parquet", ROOT)
    table = ds.dataset(
        str(tmp_path / "published" / parquet.key), format="parquet", partitioning="hive", partition_base_dir=str(base)
    ).to_table()
    assert str(table.schema.field("date_month").type) == "int32"
    assert table.column("date_month").to_pylist() == [202403]


def test_the_duckdb_catalog_types_the_month_as_an_integer(registry, tmp_path):
    import duckdb

    rows = [daily("P-1", "2024-01-15", "2024-02-01T00:00:00Z", 10), daily("P-2", "n/a", "2024-02-01T00:00:00Z", 30)]
    write_part(tmp_path, DATASET, {"cohort": "adults_v1"}, "export1", rows)
    storage = LocalStorage(tmp_path)
    publish_dataset_with(
        "arrow",
        None,
        dataset_id=DATASET,
        registry=registry,
        profile=load_profile("recover"),
        work=storage,
        published=storage,
        run_id="months",
        catalog=DuckDBCatalog(storage),
    )
    with duckdb.connect(str(tmp_path / layout.LOCAL_CATALOG_NAME), read_only=True) as connection:
        types = dict(connection.execute(f"SELECT column_name, column_type FROM (DESCRIBE {ROOT})").fetchall())
        months = connection.execute(f"SELECT date_month, count(*) FROM {ROOT} GROUP BY ALL ORDER BY 1").fetchall()
    assert types["date_month"] == "INTEGER"
    assert months == [(0, 1), (202401, 1)]


def test_glue_types_the_month_as_an_integer_partition(registry, tmp_path):
    import boto3
    from moto import mock_aws

    from bridge_downstream_adapters.glue_catalog import GlueCatalog

    rows = [daily("P-1", "2024-01-15", "2024-02-01T00:00:00Z", 10), daily("P-2", "n/a", "2024-02-01T00:00:00Z", 30)]
    write_part(tmp_path, DATASET, {"cohort": "adults_v1"}, "export1", rows)
    storage = LocalStorage(tmp_path)
    manifest = publish_dataset_with(
        "arrow",
        None,
        dataset_id=DATASET,
        registry=registry,
        profile=load_profile("recover"),
        work=storage,
        published=storage,
        run_id="months",
        catalog=None,
    ).manifest
    with mock_aws():
        glue = boto3.client("glue", region_name="us-east-1")
        glue.create_database(DatabaseInput={"Name": "db"})
        GlueCatalog("db", storage, glue).register(manifest)
        keys = glue.get_table(DatabaseName="db", Name=ROOT)["Table"]["PartitionKeys"]
        values = sorted(p["Values"] for p in glue.get_partitions(DatabaseName="db", TableName=ROOT)["Partitions"])
    assert [(k["Name"], k["Type"]) for k in keys] == [("cohort", "string"), ("date_month", "int")]
    assert values == [["adults_v1", "0"], ["adults_v1", "202401"]]


def in_cohort(cohort: str, participant: str, date: str, export_end: str, steps: int) -> dict:
    return {**daily(participant, date, export_end, steps), "cohort": cohort}


def files_by_partition(manifest: PublishManifest, table: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for file in manifest.tables[table].files:
        found.setdefault(file_partition(file, manifest.tables[table].partition_keys), []).append(file.key)
    return {partition: sorted(keys) for partition, keys in found.items()}


def published_days(tmp_path, manifest: PublishManifest) -> set[tuple]:
    rows = (json.loads(row) for row in table_rows(tmp_path / "published", manifest)[ROOT])
    return {(r["cohort"], r["date_month"], r["ParticipantIdentifier"], r["Date"], r["Steps"]) for r in rows}


ADULTS, CHILDREN = "adults_v1", "pediatric_v1"


@pytest.mark.parametrize("engine", ENGINES)
def test_weekly_exports_rewrite_only_their_months_and_equal_a_full_rebuild(engine, request, registry, tmp_path):
    work = tmp_path / "work"
    history = "2024-02-01T00:00:00Z"
    adults = [
        in_cohort(ADULTS, "P-1", "2024-01-10", history, 1),
        in_cohort(ADULTS, "P-1", "2024-01-20", history, 2),
        in_cohort(ADULTS, "P-1", "2024-02-05", history, 3),
        in_cohort(ADULTS, "P-2", "2024-02-05", history, 4),
        in_cohort(ADULTS, "P-3", "n/a", history, 5),
    ]
    write_part(work, DATASET, {"cohort": ADULTS}, "history", adults)
    children = [
        in_cohort(CHILDREN, "P-9", "2024-01-10", history, 6),
        in_cohort(CHILDREN, "P-9", "2024-02-05", history, 7),
    ]
    write_part(work, DATASET, {"cohort": CHILDREN}, "history", children)
    first = check_parity(engine, request, registry, tmp_path, "recover", DATASET)
    assert first.increment == {"mode": "full", "reason": "the first version"}

    # a week of new days, all in March: only March is written, from the new part file alone
    march = "2024-03-08T00:00:00Z"
    new_days = [in_cohort(ADULTS, "P-1", "2024-03-01", march, 8), in_cohort(ADULTS, "P-2", "2024-03-02", march, 9)]
    write_part(work, DATASET, {"cohort": ADULTS}, "march", new_days)
    second = check_parity(engine, request, registry, tmp_path, "recover", DATASET)
    assert second.increment["mode"] == "incremental"
    assert second.increment["partitions_rewritten"] == ["cohort=adults_v1/date_month=202403"]
    assert second.increment["part_files_read"] == 1  # the history's part files hold no March row
    before, after = files_by_partition(first, ROOT), files_by_partition(second, ROOT)
    assert set(after) == set(before) | {"cohort=adults_v1/date_month=202403"}
    for partition, keys in before.items():  # carried by reference: the first version's own files
        assert after[partition] == keys
        assert all(f"/versions/{first.version}/" in key for key in keys)
    march_files = after["cohort=adults_v1/date_month=202403"]
    assert march_files and all(f"/versions/{second.version}/" in key for key in march_files)

    # a re-export of a January day with a newer insert: January is rewritten, from the part files holding it
    write_part(work, DATASET, {"cohort": ADULTS}, "again", [in_cohort(ADULTS, "P-1", "2024-01-10", march, 10)])
    third = check_parity(engine, request, registry, tmp_path, "recover", DATASET)
    assert third.increment["partitions_rewritten"] == ["cohort=adults_v1/date_month=202401"]
    assert third.increment["part_files_read"] == 2  # the new one, and the adults' history (January rows)
    assert {p: k for p, k in files_by_partition(third, ROOT).items() if "202401" not in p} == {
        p: k for p, k in after.items() if "202401" not in p
    }

    # P-2's February day re-exported in another cohort: the record leaves the adults' February
    write_part(work, DATASET, {"cohort": CHILDREN}, "moved", [in_cohort(CHILDREN, "P-2", "2024-02-05", march, 11)])
    fourth = check_parity(engine, request, registry, tmp_path, "recover", DATASET)
    assert fourth.increment["partitions_rewritten"] == [
        "cohort=adults_v1/date_month=202402",
        "cohort=pediatric_v1/date_month=202402",
    ]

    # a later export deletes a January day
    deleted = [in_cohort(ADULTS, "P-1", "2024-01-20", march, 0)]
    write_part(work, f"{DATASET}_Deleted", {"cohort": ADULTS}, "deleted", deleted)
    fifth = check_parity(engine, request, registry, tmp_path, "recover", DATASET)
    assert fifth.increment["partitions_rewritten"] == ["cohort=adults_v1/date_month=202401"]
    assert published_days(tmp_path, fifth) == {
        (ADULTS, "202401", "P-1", "2024-01-10", "10"),
        (ADULTS, "202402", "P-1", "2024-02-05", "3"),
        (ADULTS, "202403", "P-1", "2024-03-01", "8"),
        (ADULTS, "202403", "P-2", "2024-03-02", "9"),
        (ADULTS, "000000", "P-3", "n/a", "5"),
        (CHILDREN, "202401", "P-9", "2024-01-10", "6"),
        (CHILDREN, "202402", "P-9", "2024-02-05", "7"),
        (CHILDREN, "202402", "P-2", "2024-02-05", "11"),
    }

    # nothing new: every partition carried, nothing read
    sixth = check_parity(engine, request, registry, tmp_path, "recover", DATASET)
    assert sixth.increment["mode"] == "incremental"
    assert (sixth.increment["partitions_rewritten"], sixth.increment["part_files_read"]) == ([], 0)
    assert files_by_partition(sixth, ROOT) == files_by_partition(fifth, ROOT)


def test_a_version_without_an_index_of_its_months_is_followed_by_a_full_rebuild(request, registry, tmp_path):
    work, published = tmp_path / "work", tmp_path / "published"
    write_part(work, DATASET, {"cohort": ADULTS}, "e1", [in_cohort(ADULTS, "P-1", "2024-01-10", "2024-02-01", 1)])
    first = publish("arrow", request, registry, work, published, "recover", DATASET)
    # as a version published before the months were indexed
    (published / index_key(DATASET, first.version, PART_PARTITIONS_NAME)).unlink()
    write_part(work, DATASET, {"cohort": ADULTS}, "e2", [in_cohort(ADULTS, "P-1", "2024-02-10", "2024-03-01", 2)])
    second = publish("arrow", request, registry, work, published, "recover", DATASET)
    assert second.increment == {
        "mode": "full",
        "reason": f"version {first.version} has no index of its part files' months",
    }
    assert second.tables[ROOT].rows == 2
    third_rows = [in_cohort(ADULTS, "P-1", "2024-03-10", "2024-04-01", 3)]
    write_part(work, DATASET, {"cohort": ADULTS}, "e3", third_rows)
    third = publish("arrow", request, registry, work, published, "recover", DATASET)
    assert third.increment["partitions_rewritten"] == ["cohort=adults_v1/date_month=202403"]
    assert third.tables[ROOT].rows == 3
