"""Incremental versions (docs/publish.md, "Incremental versions"): after a
history and several deltas, the tables an incremental publish leaves equal a
full rebuild's row for row, on both engines; unchanged partitions are carried
by reference, and pruning keeps every file a kept version references.

Part files are written by hand, as ingest lays them out (one folder per
partition), so each delta holds exactly the rows it is about."""

from __future__ import annotations

import json

import pytest

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.publish.increments import KEY_INDEX_NAME, PART_INDEX_NAME, file_partition, index_key
from bridge_downstream.publish.manifest import PublishManifest, current_version, read_manifest
from bridge_downstream.publish.versions import list_versions, rollback
from increment_fixtures import (
    RECORD_DATASET,
    check_parity,
    day_partition,
    publish,
    record,
    table_rows,
    write_part,
)

ENGINES = ["arrow", pytest.param("spark", marks=pytest.mark.spark)]

EXPORT_DATASET = "FitbitDevices"  # key [ParticipantIdentifier, Date, Device], partitioned by cohort


def device(participant: str, date: str, cohort: str, inserted: str, label: str) -> dict:
    return {
        "ParticipantIdentifier": participant,
        "Device": "Versa",
        "Date": date,
        "label": label,
        "InsertedDate": inserted,
        "cohort": cohort,
        "export_end_date": "2024-01-04T00:00:00Z",
        "sourcefile": "FitbitDevices_20240104.json",
        "sourceindex": 0,
    }


def files_by_partition(manifest: PublishManifest, table: str) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for file in manifest.tables[table].files:
        found.setdefault(file_partition(file, manifest.tables[table].partition_keys), []).append(file.key)
    return {partition: sorted(keys) for partition, keys in found.items()}


@pytest.mark.parametrize("engine", ENGINES)
def test_mtb_deltas_publish_the_tables_a_full_rebuild_publishes(engine, request, registry, tmp_path):
    work = tmp_path / "work"
    history = [record(f"r{i}", 1 + i % 3, f"2024-01-0{1 + i % 3}T08:00:00.000Z", "first") for i in range(9)]
    for day in (1, 2, 3):
        rows = [row for version in history for row in version if row["day"] == day]
        write_part(work, RECORD_DATASET, day_partition(day), f"history{day}", rows)
    first = check_parity(engine, request, registry, tmp_path, "mtb", RECORD_DATASET)
    assert first.increment == {"mode": "full", "reason": "the first version"}
    root = f"dataset_{RECORD_DATASET.lower()}"
    assert first.tables[root].rows == 9

    # new records: one in a new day, one in a day that has rows already
    write_part(work, RECORD_DATASET, day_partition(4), "new4", record("r10", 4, "2024-01-04T08:00:00.000Z", "new"))
    write_part(work, RECORD_DATASET, day_partition(3), "new3", record("r11", 3, "2024-01-03T09:00:00.000Z", "new"))
    second = check_parity(engine, request, registry, tmp_path, "mtb", RECORD_DATASET)
    assert second.increment["mode"] == "incremental"
    assert second.increment["partitions_rewritten"] == [
        layout.partition_path(day_partition(3)),
        layout.partition_path(day_partition(4)),
    ]
    for table in (root, f"{root}_steps"):
        before, after = files_by_partition(first, table), files_by_partition(second, table)
        for day in (1, 2):  # untouched: the same files, where the first version wrote them
            partition = layout.partition_path(day_partition(day))
            assert after[partition] == before[partition]
            assert all(f"/versions/{first.version}/" in key for key in after[partition])
        assert all(f"/versions/{second.version}/" in key for key in after[layout.partition_path(day_partition(3))])
        folders = second.tables[table].partition_folders("parquet")
        assert folders[("probe", "2024", "01", "01")] == (
            layout.table_prefix(RECORD_DATASET, first.version, "parquet", table)
            + "/"
            + layout.partition_path(day_partition(1))
        )
        assert folders[("probe", "2024", "01", "04")].startswith(layout.version_prefix(RECORD_DATASET, second.version))
        assert sorted(
            second.tables[table].relative_key(f) for f in second.tables[table].files if f.partition["day"] == "01"
        ) == sorted(
            first.tables[table].relative_key(f) for f in first.tables[table].files if f.partition["day"] == "01"
        )

    # re-exports: r0 (day 1) uploaded again on day 5 moves there; r4 (day 2)
    # re-exported with an older upload than its own stays where it is
    write_part(work, RECORD_DATASET, day_partition(5), "move", record("r0", 5, "2024-01-05T08:00:00.000Z", "moved"))
    write_part(work, RECORD_DATASET, day_partition(1), "stale", record("r4", 1, "2023-12-31T08:00:00.000Z", "stale"))
    third = check_parity(engine, request, registry, tmp_path, "mtb", RECORD_DATASET)
    assert third.increment["mode"] == "incremental"
    assert third.increment["partitions_rewritten"] == [layout.partition_path(day_partition(day)) for day in (1, 2, 5)]
    rows = [json.loads(row) for row in table_rows(tmp_path / "published", third)[root]]
    assert {(row["recordid"], row["day"], row["label"]) for row in rows if row["recordid"] in {"r0", "r4"}} == {
        ("r0", "05", "moved"),
        ("r4", "02", "first"),
    }
    assert len(rows) == 11

    # nothing new: every partition carried
    fourth = check_parity(engine, request, registry, tmp_path, "mtb", RECORD_DATASET)
    assert fourth.increment["partitions_rewritten"] == []
    assert files_by_partition(fourth, root) == files_by_partition(third, root)


@pytest.mark.parametrize("engine", ENGINES)
def test_recover_deletions_in_a_later_export_rewrite_the_partitions_holding_them(engine, request, registry, tmp_path):
    work = tmp_path / "work"
    for cohort in ("adults_v1", "pediatric_v1"):
        rows = [device(f"P-{cohort}-{i}", "2024-01-01", cohort, "2024-01-02T00:00:00Z", "first") for i in range(3)]
        write_part(work, EXPORT_DATASET, {"cohort": cohort}, "history", rows)
    check_parity(engine, request, registry, tmp_path, "recover", EXPORT_DATASET)

    # a newer insert of an adult's row, and a new participant
    newer = [
        device("P-adults_v1-0", "2024-01-01", "adults_v1", "2024-01-05T00:00:00Z", "newer"),
        device("P-adults_v1-9", "2024-01-01", "adults_v1", "2024-01-05T00:00:00Z", "new"),
    ]
    write_part(work, EXPORT_DATASET, {"cohort": "adults_v1"}, "delta", newer)
    second = check_parity(engine, request, registry, tmp_path, "recover", EXPORT_DATASET)
    assert second.increment["partitions_rewritten"] == ["cohort=adults_v1"]

    # a later export deletes a pediatric row
    deleted = [device("P-pediatric_v1-1", "2024-01-01", "pediatric_v1", "2024-01-06T00:00:00Z", "gone")]
    write_part(work, f"{EXPORT_DATASET}_Deleted", {"cohort": "pediatric_v1"}, "deleted", deleted)
    third = check_parity(engine, request, registry, tmp_path, "recover", EXPORT_DATASET)
    assert third.increment["partitions_rewritten"] == ["cohort=pediatric_v1"]
    root = f"dataset_{EXPORT_DATASET.lower()}"
    rows = [json.loads(row) for row in table_rows(tmp_path / "published", third)[root]]
    assert sorted((row["ParticipantIdentifier"], row["label"]) for row in rows) == [
        ("P-adults_v1-0", "newer"),
        ("P-adults_v1-1", "first"),
        ("P-adults_v1-2", "first"),
        ("P-adults_v1-9", "new"),
        ("P-pediatric_v1-0", "first"),
        ("P-pediatric_v1-2", "first"),
    ]
    assert files_by_partition(third, root)["cohort=adults_v1"] == files_by_partition(second, root)["cohort=adults_v1"]


def test_a_changed_plan_rebuilds_in_full_and_a_removed_part_file_needs_full(request, registry, tmp_path):
    work = tmp_path / "work"
    write_part(work, RECORD_DATASET, day_partition(1), "a", record("r1", 1, "2024-01-01T08:00:00.000Z", "first"))
    publish("arrow", request, registry, work, tmp_path / "published", "mtb", RECORD_DATASET)

    widened = record("r2", 2, "2024-01-02T08:00:00.000Z", "second")
    widened[0]["extra"] = "a new column"
    write_part(work, RECORD_DATASET, day_partition(2), "b", widened)
    manifest = publish("arrow", request, registry, work, tmp_path / "published", "mtb", RECORD_DATASET)
    assert manifest.increment == {"mode": "full", "reason": "the plan changed (new columns or types)"}
    assert manifest.tables[f"dataset_{RECORD_DATASET.lower()}"].rows == 2

    # Part files are never removed: the runs committed since tell an
    # incremental publish what is new (decision 0030), so a file removed by
    # hand is seen by a full rebuild only.
    (work / layout.json_part_key(RECORD_DATASET, day_partition(1), "a", 0)).unlink()
    manifest = publish("arrow", request, registry, work, tmp_path / "published", "mtb", RECORD_DATASET)
    assert manifest.increment["mode"] == "incremental"
    assert manifest.increment["new_part_files"] == 0
    assert manifest.tables[f"dataset_{RECORD_DATASET.lower()}"].rows == 2
    manifest = publish("arrow", request, registry, work, tmp_path / "published", "mtb", RECORD_DATASET, full=True)
    assert manifest.increment == {"mode": "full", "reason": "requested (--full)"}
    assert manifest.tables[f"dataset_{RECORD_DATASET.lower()}"].rows == 1


def test_pruning_keeps_the_files_kept_versions_reference_and_rollback_reads_them(request, registry, tmp_path):
    work, published = tmp_path / "work", tmp_path / "published"
    storage = LocalStorage(published)
    for day in (1, 2):
        write_part(
            work,
            RECORD_DATASET,
            day_partition(day),
            f"h{day}",
            record(f"r{day}", day, "2024-01-0{day}T08:00:00.000Z", "h"),
        )
    first = publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET, retention=2)
    versions = [first]
    for day in (3, 4, 5):
        write_part(
            work,
            RECORD_DATASET,
            day_partition(day),
            f"d{day}",
            record(f"r{day}", day, f"2024-01-0{day}T08:00:00.000Z", "d"),
        )
        if day > 3:  # day 3 rewritten again: the second version's files of it are left to no one
            write_part(
                work, RECORD_DATASET, day_partition(3), f"x{day}", record(f"x{day}", 3, "2024-01-03T09:00:00.000Z", "x")
            )
        versions.append(publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET, retention=2))
    assert all(v.increment["mode"] == "incremental" for v in versions[1:])
    complete = [v for v, done in list_versions(storage, RECORD_DATASET).items() if done]
    assert complete == [versions[2].version, versions[3].version]
    # the first version is gone as a version, but the files of days 1 and 2 the kept ones carry stay
    assert not storage.exists(layout.manifest_key(RECORD_DATASET, first.version))
    assert not storage.exists(index_key(RECORD_DATASET, first.version, KEY_INDEX_NAME))
    assert not storage.exists(index_key(RECORD_DATASET, first.version, PART_INDEX_NAME))
    for manifest in versions[2:]:
        for table in manifest.tables.values():
            for file in table.files:
                assert storage.exists(file.key), file.key
    carried = files_by_partition(versions[3], f"dataset_{RECORD_DATASET.lower()}")[
        layout.partition_path(day_partition(1))
    ]
    assert all(f"/versions/{first.version}/" in key for key in carried)
    # the second version's own files no kept version references are gone
    second_only = {
        f.key for t in versions[1].tables.values() for f in t.files if f"/versions/{versions[1].version}/" in f.key
    }
    referenced = {f.key for v in versions[2:] for t in v.tables.values() for f in t.files}
    assert second_only - referenced
    assert not any(storage.exists(key) for key in second_only - referenced)

    back = rollback(storage, RECORD_DATASET)
    assert back.version == versions[2].version
    assert current_version(storage, RECORD_DATASET) == versions[2].version
    assert (
        table_rows(published, back)[f"dataset_{RECORD_DATASET.lower()}"]
        == table_rows(published, read_manifest(storage, RECORD_DATASET, versions[2].version))[
            f"dataset_{RECORD_DATASET.lower()}"
        ]
    )
    assert back.tables[f"dataset_{RECORD_DATASET.lower()}"].rows == 5
