"""Pruning decides from manifests and the version log what to delete, never
by listing the history's files: rollback, blocked versions and crashed ones
stay correct (publish/versions.py, docs/decisions/0029-pruning-from-manifests.md)."""

from __future__ import annotations

import json
import random

from bridge_downstream.common import layout
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.publish.engine_steps import publishing_with_quality_check
from bridge_downstream.publish.manifest import PublishManifest, current_version, listed_file_keys, read_manifest
from bridge_downstream.publish.versions import (
    _name_prefixes,
    list_versions,
    new_version,
    prune_versions,
    rollback,
    set_current,
    version_log_key,
)
from increment_fixtures import RECORD_DATASET, day_partition, publish, record, table_rows, write_part
from support import ListingStorage

TABLE = f"dataset_{RECORD_DATASET.lower()}"


def add_day(work, day: int, tag: str) -> None:
    write_part(
        work,
        RECORD_DATASET,
        day_partition(day),
        tag,
        record(f"{tag}-{day}", day, f"2024-01-{day:02d}T08:00:00.000Z", tag),
    )


def every_file(manifest: PublishManifest) -> set[str]:
    return {f.key for t in manifest.tables.values() for f in t.files}


def test_listed_file_keys_are_the_manifests_files(request, registry, tmp_path):
    work, published = tmp_path / "work", tmp_path / "published"
    for day in (1, 2):
        add_day(work, day, "h")
    first = publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET)
    add_day(work, 3, "d")
    second = publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET)
    storage = LocalStorage(published)
    keys = listed_file_keys(storage, RECORD_DATASET, second.version)
    assert keys == every_file(read_manifest(storage, RECORD_DATASET, second.version))
    assert len(keys) == len(every_file(second)) and any(f"/versions/{first.version}/" in k for k in keys)
    # a manifest written by the indenting encoder is read in full
    storage.write_bytes(layout.manifest_key(RECORD_DATASET, second.version), second.to_json().encode())
    assert listed_file_keys(storage, RECORD_DATASET, second.version) == keys


def test_a_rolled_back_current_keeps_its_files_while_newer_versions_are_pruned(request, registry, tmp_path):
    work, published = tmp_path / "work", tmp_path / "published"
    storage = LocalStorage(published)
    for day in (1, 2):
        add_day(work, day, "h")
    versions = [publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET, retention=2)]
    for day in (3, 4):
        add_day(work, day, "d")
        versions.append(publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET, retention=2))
    back = rollback(storage, RECORD_DATASET, to_version=versions[1].version)
    expected = table_rows(published, back)
    for day in (5, 6, 7):  # built on the rolled-back version; three more versions push it out of retention
        add_day(work, day, "n")
        versions.append(publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET, retention=2))
    assert versions[3].previous_version == versions[1].version
    complete = [v for v, done in list_versions(storage, RECORD_DATASET).items() if done]
    assert complete == [versions[4].version, versions[5].version]
    for manifest in versions[4:]:
        assert all(storage.exists(key) for key in every_file(manifest))
    # the abandoned branch (the version rolled back from) is gone, files and all
    abandoned = {k for k in every_file(versions[2]) if f"/versions/{versions[2].version}/" in k}
    assert abandoned and not any(storage.exists(k) for k in abandoned)
    # rolling back within retention still reads every row: days 1-6 (day 4's part file was read after the rollback)
    back = rollback(storage, RECORD_DATASET)
    assert back.version == versions[4].version
    assert len(expected[TABLE]) == 3 and len(table_rows(published, back)[TABLE]) == 6


def test_current_outside_retention_and_blocked_versions_keep_every_file_they_list(request, registry, tmp_path):
    work, published = tmp_path / "work", tmp_path / "published"
    storage = LocalStorage(published)
    for day in (1, 2):
        add_day(work, day, "h")
    good = publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET, retention=1)
    blocked = []
    with publishing_with_quality_check(lambda _storage, _manifest: {"passed": False, "blocked": True}):
        for day in (3, 4, 5):
            add_day(work, day, "b")
            blocked.append(publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET, retention=1))
    assert all(m.blocked_by_quality for m in blocked)
    assert current_version(storage, RECORD_DATASET) == good.version
    add_day(work, 6, "n")
    latest = publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET, retention=1)
    assert latest.previous_version == good.version
    # retention 1 keeps the current only: the blocked versions (found since the last prune) and the first go
    assert [v for v, done in list_versions(storage, RECORD_DATASET).items() if done] == [latest.version]
    assert all(storage.exists(key) for key in every_file(latest))
    assert json.loads(storage.read_bytes(version_log_key(RECORD_DATASET)))["complete"] == [latest.version]
    blocked_own = {k for m in blocked for k in every_file(m) if f"/versions/{m.version}/" in k}
    assert blocked_own and not any(storage.exists(k) for k in blocked_own)
    assert len(table_rows(published, latest)[TABLE]) == 6  # the blocked versions' part files are read again


def test_a_crashed_version_is_removed_by_the_next_prune_without_listing_the_history(request, registry, tmp_path):
    work, published = tmp_path / "work", tmp_path / "published"
    for day in (1, 2):
        add_day(work, day, "h")
    first = publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET)
    add_day(work, 3, "d")
    second = publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET)
    storage = ListingStorage(published)
    crashed = new_version()  # a publish killed before its manifest
    crashed_file = layout.join_key(layout.version_prefix(RECORD_DATASET, crashed), "parquet", TABLE, "part-0.parquet")
    storage.write_bytes(crashed_file, b"half")
    third = new_version()  # a later publish, made current (its manifest: the second's, as a copy)
    storage.copy(layout.manifest_key(RECORD_DATASET, second.version), layout.manifest_key(RECORD_DATASET, third))
    set_current(storage, RECORD_DATASET, third)
    storage.listed.clear()
    assert prune_versions(storage, RECORD_DATASET, 3) == [crashed]
    assert not storage.exists(crashed_file)
    assert all(storage.exists(k) for k in every_file(first) | every_file(second))
    versions_root = layout.published_dataset_prefix(RECORD_DATASET) + "/versions/"
    listed_versions = [p[len(versions_root) :] for p in storage.listed if p.startswith(versions_root)]
    listed_versions.remove(crashed + "/")  # the removed version's own folder
    # the listings name versions after the last prune's only: never the first's or the second's folder
    assert listed_versions and all(p > second.version for p in listed_versions)
    assert not any(v.startswith(p) for p in listed_versions for v in (first.version, second.version))
    assert json.loads(storage.read_bytes(version_log_key(RECORD_DATASET))) == {
        "complete": [first.version, second.version, third],
        "checked_through": third,
    }


def test_an_output_from_before_the_log_is_pruned_by_one_listing_then_by_the_log(request, registry, tmp_path):
    work, published = tmp_path / "work", tmp_path / "published"
    storage = LocalStorage(published)
    for day in (1, 2):
        add_day(work, day, "h")
    versions = [publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET, full=True)]
    versions.append(publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET, full=True))
    storage.delete(version_log_key(RECORD_DATASET))
    assert prune_versions(storage, RECORD_DATASET, 1) == [versions[0].version]
    assert list(list_versions(storage, RECORD_DATASET)) == [versions[1].version]
    assert json.loads(storage.read_bytes(version_log_key(RECORD_DATASET))) == {
        "complete": [versions[1].version],
        "checked_through": versions[1].version,
    }


def test_name_prefixes_cover_every_name_between_two_versions():
    names = sorted(
        f"2026{m:02d}{d:02d}T{h:02d}{mi:02d}{s:02d}{us:06d}Z"
        for m, d, h, mi, s, us in (
            (
                random.Random(n).randint(1, 12),
                *(random.Random(n * k).randint(1, 28) % c for k, c in ((2, 28), (3, 24), (5, 60), (7, 60))),
                n,
            )
            for n in range(400)
        )
    )
    rng = random.Random(7)
    for _ in range(200):
        low, high = sorted(rng.sample(names, 2))
        prefixes = _name_prefixes(low, high)
        covered = [n for n in names if any(n.startswith(p) for p in prefixes)]
        assert [n for n in names if low < n <= high] == [n for n in covered if n <= high]
        assert all(n > low for n in covered)
        assert len(prefixes) <= 16 + 9 * len(low)
    assert _name_prefixes("20261205T010559962158Z", "20261205T010626947773Z")[-3:] == [
        "20261205T01060",
        "20261205T01061",
        "20261205T01062",
    ]
    assert _name_prefixes("20261205T010559962158Z", "20261205T010559962158Z") == []
    assert _name_prefixes("v-1", "v-2") == ["v-"]
