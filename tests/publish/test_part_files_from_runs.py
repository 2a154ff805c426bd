"""An incremental publish takes its new part files from the runs committed
since the previous version, never from a listing of ``json/`` (decision 0030):
what it finds equals what the listing finds, it falls back to the listing
when the runs cannot tell, and a part file no run recorded is read by a full
rebuild only."""

from __future__ import annotations

import json

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.config.profiles import load_profile
from bridge_downstream.publish.engines import publish_dataset_with
from bridge_downstream.publish.increments import RUNS_NAME, index_key, listed_part_files, part_files_since
from bridge_downstream.publish.manifest import current_version
from increment_fixtures import RECORD_DATASET, commit_part_files, day_partition, publish, record, write_part
from support import ListingStorage

ROOT_TABLE = f"dataset_{RECORD_DATASET.lower()}"


def history(work) -> None:
    for day in (1, 2, 3):
        rows = record(f"r{day}", day, f"2024-01-0{day}T08:00:00.000Z", "first")
        write_part(work, RECORD_DATASET, day_partition(day), f"history{day}", rows)


def test_a_delta_publish_lists_no_part_file_and_no_claim_of_the_history(request, registry, tmp_path):
    work, published = tmp_path / "work", tmp_path / "published"
    history(work)
    publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET)
    write_part(work, RECORD_DATASET, day_partition(4), "new4", record("r4", 4, "2024-01-04T08:00:00.000Z", "new"))

    recorder = ListingStorage(work)
    manifest = publish_dataset_with(
        "arrow",
        None,
        dataset_id=RECORD_DATASET,
        registry=registry,
        profile=load_profile("mtb"),
        work=recorder,
        published=LocalStorage(published),
        run_id="delta",
    ).manifest

    assert manifest.increment["mode"] == "incremental"
    assert manifest.increment["new_part_files"] == 1
    assert manifest.increment["partitions_rewritten"] == [layout.partition_path(day_partition(4))]
    assert manifest.tables[ROOT_TABLE].rows == 4
    assert recorder.listed == ["commits/"]  # one listing, of the commit records


def test_the_runs_tell_the_part_files_the_listing_finds(request, registry, tmp_path):
    work, published = tmp_path / "work", tmp_path / "published"
    history(work)
    first = publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET)
    write_part(work, RECORD_DATASET, day_partition(4), "new4", record("r4", 4, "2024-01-04T08:00:00.000Z", "new"))
    deleted = layout.json_part_key(f"{RECORD_DATASET}_Deleted", day_partition(1), "gone", 0)
    (work / deleted).parent.mkdir(parents=True)
    (work / deleted).write_text(json.dumps({"recordid": "r1"}) + "\n")
    size = (work / deleted).stat().st_size
    commit_part_files(work, [{"dataset": f"{RECORD_DATASET}_Deleted", "key": deleted, "size": size, "partition": {}}])
    # a run of another dataset only: nothing of it is taken
    commit_part_files(work, [{"dataset": "Other_v1", "key": "json/dataset=Other_v1/part-x.ndjson", "size": 3}])

    storage = LocalStorage(work)
    found = part_files_since(
        published=LocalStorage(published),
        work=storage,
        dataset_id=RECORD_DATASET,
        version=first.version,
        deleted_suffix="_Deleted",
    )
    listed = listed_part_files(storage, RECORD_DATASET, "_Deleted")

    assert found is not None
    assert sorted(found.index.to_pylist(), key=lambda r: r["key"]) == sorted(
        listed.index.to_pylist(), key=lambda r: r["key"]
    )
    assert found.runs == listed.runs and len(found.runs) == 6
    assert found.deleted_id == listed.deleted_id == f"{RECORD_DATASET}_Deleted"
    assert [info.key for info in found.deleted] == [deleted]
    assert sorted(found.new.column("key").to_pylist()) == sorted(
        [deleted, layout.json_part_key(RECORD_DATASET, day_partition(4), "new4", 0)]
    )
    assert found.index.column("partition").to_pylist()[:3] == [
        layout.partition_path(day_partition(day)) for day in (1, 2, 3)
    ]


def test_a_version_that_recorded_no_runs_is_followed_by_a_listed_increment(request, registry, tmp_path):
    work, published = tmp_path / "work", tmp_path / "published"
    history(work)
    first = publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET)
    (published / index_key(RECORD_DATASET, first.version, RUNS_NAME)).unlink()  # as made before runs were recorded
    write_part(work, RECORD_DATASET, day_partition(4), "new4", record("r4", 4, "2024-01-04T08:00:00.000Z", "new"))

    second = publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET)

    assert second.increment["mode"] == "incremental"
    assert second.increment["new_part_files"] == 1
    assert second.tables[ROOT_TABLE].rows == 4
    recorded = json.loads((published / index_key(RECORD_DATASET, second.version, RUNS_NAME)).read_text())
    assert len(recorded["runs"]) == 4


def test_a_run_that_stores_a_part_file_again_with_other_rows_rebuilds_in_full(request, registry, tmp_path):
    work, published = tmp_path / "work", tmp_path / "published"
    history(work)
    publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET)
    again = record("r1", 1, "2024-01-01T08:00:00.000Z", "rewritten", steps=5)
    write_part(work, RECORD_DATASET, day_partition(1), "history1", again)  # same key, other bytes

    manifest = publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET)

    assert manifest.increment["mode"] == "full"
    assert manifest.increment["reason"].startswith(
        f"part file {layout.json_part_key(RECORD_DATASET, day_partition(1), 'history1', 0)} changed since version"
    )
    assert manifest.tables[f"{ROOT_TABLE}_steps"].rows == 5 + 2 + 2


def test_a_run_without_a_parts_list_makes_the_publish_list(request, registry, tmp_path):
    work, published = tmp_path / "work", tmp_path / "published"
    history(work)
    publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET)
    key = layout.json_part_key(RECORD_DATASET, day_partition(4), "unlisted", 0)
    (work / key).parent.mkdir(parents=True)
    (work / key).write_text(json.dumps(record("r4", 4, "2024-01-04T08:00:00.000Z", "new")[0]) + "\n")
    from bridge_downstream.common import run_commits

    run_commits.commit(LocalStorage(work), "no-parts-list", {})

    manifest = publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET)

    assert manifest.increment["mode"] == "incremental"
    assert manifest.increment["new_part_files"] == 1
    assert manifest.tables[ROOT_TABLE].rows == 4


def test_a_part_file_no_run_recorded_is_read_by_a_full_rebuild(request, registry, tmp_path):
    work, published = tmp_path / "work", tmp_path / "published"
    history(work)
    publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET)
    key = layout.json_part_key(RECORD_DATASET, day_partition(4), "by-hand", 0)
    (work / key).parent.mkdir(parents=True)
    (work / key).write_text(json.dumps(record("r4", 4, "2024-01-04T08:00:00.000Z", "new")[0]) + "\n")

    incremental = publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET)
    assert incremental.increment["mode"] == "incremental"
    assert incremental.increment["new_part_files"] == 0
    assert incremental.tables[ROOT_TABLE].rows == 3

    rebuilt = publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET, full=True)
    assert rebuilt.tables[ROOT_TABLE].rows == 4
    assert current_version(LocalStorage(published), RECORD_DATASET) == rebuilt.version
