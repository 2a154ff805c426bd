"""Pruning follows the versions' lineage when they form one line, reading
neither the kept nor the removed manifests' file lists, and deletes exactly
what comparing the manifests deletes; a rollback, a blocked version, a full
rebuild or a version without a lineage record compares the manifests
(publish/versions.py, ``prune_versions``)."""

from __future__ import annotations

import json
import re
import shutil

import pytest

from bridge_downstream.common import layout
from bridge_downstream.common.run_commits import commit_key, committed_runs
from bridge_downstream.common.storage import LocalStorage
from bridge_downstream.publish import engine_steps, versions
from bridge_downstream.publish.engine_steps import publishing_with_quality_check
from bridge_downstream.publish.manifest import PublishManifest
from bridge_downstream.publish.versions import (
    lineage_key,
    list_versions,
    new_version,
    prune_versions,
    read_lineage,
    rollback,
    version_log_key,
)
from increment_fixtures import RECORD_DATASET, day_partition, publish, record, table_rows, write_part

TABLE = f"dataset_{RECORD_DATASET.lower()}"
VERSIONS_ROOT = layout.published_dataset_prefix(RECORD_DATASET) + "/versions/"
_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class ReadingStorage(LocalStorage):
    """LocalStorage that remembers every key it read."""

    def __init__(self, root):
        super().__init__(root)
        self.read: list[str] = []

    def read_bytes(self, key):
        self.read.append(key)
        return super().read_bytes(key)


def publish_kept(request, registry, work, published, retention: int, **options) -> PublishManifest:
    """The record dataset published on the Arrow engine, keeping ``retention`` versions."""
    return publish("arrow", request, registry, work, published, "mtb", RECORD_DATASET, retention=retention, **options)


def history(request, registry, work, published, retention: int, day_3: str | None = None) -> list[PublishManifest]:
    """Days 1 and 2 published in full; with ``day_3``, then that tag's records of day 3 in a delta."""
    for day in (1, 2):
        add(work, day, "h")
    made = [publish_kept(request, registry, work, published, retention=retention)]
    if day_3 is not None:
        add(work, 3, day_3)
        made.append(publish_kept(request, registry, work, published, retention=retention))
    return made


def add(work, day: int, tag: str, hour: int = 8) -> None:
    write_part(
        work,
        RECORD_DATASET,
        day_partition(day),
        tag,
        record(f"{tag}-{day}", day, f"2024-01-{day:02d}T{hour:02d}:00:00.000Z", tag),
    )


def add_run(work, day: int, tag: str, hour: int) -> str:
    """:func:`add`; the id of the run that committed it."""
    before = committed_runs(LocalStorage(work))
    add(work, day, tag, hour)
    (run_id,) = committed_runs(LocalStorage(work)) - before
    return run_id


def withdraw(work, run_id: str, day: int, tag: str) -> None:
    """A run's export taken back: its part file and commit removed."""
    storage = LocalStorage(work)
    storage.delete(layout.json_part_key(RECORD_DATASET, day_partition(day), tag, 0))
    storage.delete(commit_key(run_id))


def read_lineage_files(published, manifest: PublishManifest) -> list[str]:
    lineage = read_lineage(LocalStorage(published), RECORD_DATASET, manifest.version)
    assert lineage is not None and lineage["previous_version"] == manifest.previous_version
    return lineage["replaced_files"]


def every_file(manifest: PublishManifest) -> set[str]:
    return {f.key for t in manifest.tables.values() for f in t.files}


def own_files(manifest: PublishManifest) -> set[str]:
    return {k for k in every_file(manifest) if k.startswith(layout.version_prefix(RECORD_DATASET, manifest.version))}


def tree(root) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def version_files(published) -> set[str]:
    return {info.key for info in LocalStorage(published).list(VERSIONS_ROOT)}


def complete_versions(published) -> list[str]:
    return [v for v, done in list_versions(LocalStorage(published), RECORD_DATASET).items() if done]


def assert_exactly_what_kept_versions_list(published, kept: list[PublishManifest]) -> None:
    """Every file a kept manifest lists is there, and outside the kept
    versions' folders nothing else is: no file any kept version lists was
    deleted, and none that no kept version lists was left behind."""
    kept_folders = tuple(layout.version_prefix(RECORD_DATASET, m.version) + "/" for m in kept)
    listed = set().union(*(every_file(m) for m in kept))
    on_disk = version_files(published)
    assert listed <= on_disk
    assert {k for k in on_disk if not k.startswith(kept_folders)} == {
        k for k in listed if not k.startswith(kept_folders)
    }
    assert complete_versions(published) == sorted(m.version for m in kept)


@pytest.fixture
def followed(monkeypatch) -> list[bool]:
    """Per prune that removes a version: whether it followed the lineage."""
    calls: list[bool] = []
    original = versions._lineage_removal

    def spy(*args):
        result = original(*args)
        calls.append(result is not None)
        return result

    monkeypatch.setattr(versions, "_lineage_removal", spy)
    return calls


def manifests_unread(monkeypatch) -> None:
    def unread(*_args, **_kwargs):
        raise AssertionError("a prune following the lineage read a manifest's file list")

    monkeypatch.setattr(versions, "_listed_files", unread)
    monkeypatch.setattr(versions, "listed_file_key_bytes", unread)


def by_manifests(monkeypatch) -> None:
    monkeypatch.setattr(versions, "_lineage_removal", lambda *_args: None)


def line_of_deltas(request, registry, root, retention: int) -> list[PublishManifest]:
    """A full version, then deltas: new partitions, and partitions written
    before rewritten (their files in removed and kept folders replaced)."""
    work, published = root / "work", root / "published"
    made = history(request, registry, work, published, retention=retention)
    for day, tag in ((3, "a"), (3, "b"), (1, "c"), (4, "d"), (2, "e"), (4, "f")):
        add(work, day, tag, hour=9)
        made.append(publish_kept(request, registry, work, published, retention=retention))
    assert made[0].increment["mode"] == "full"
    assert all(m.increment["mode"] == "incremental" for m in made[1:])
    return made


def normalized_tree(root, made: list[PublishManifest]) -> list[str]:
    """The output's files, each version named by its place in the sequence
    and the random part of a part file's name left out."""
    names = {m.version: f"v{i}" for i, m in enumerate(made)}
    version = re.compile("|".join(map(re.escape, names)))
    return sorted(_UUID.sub("*", version.sub(lambda m: names[m.group()], key)) for key in tree(root))


@pytest.mark.parametrize("retention", [2, 3])
def test_a_line_of_deltas_is_pruned_from_its_lineage_as_from_its_manifests(
    request, registry, tmp_path, monkeypatch, retention
):
    with monkeypatch.context() as patched:
        manifests_unread(patched)
        fast = line_of_deltas(request, registry, tmp_path / "lineage", retention)
    with monkeypatch.context() as patched:
        by_manifests(patched)
        slow = line_of_deltas(request, registry, tmp_path / "manifests", retention)
    lineage_out, manifests_out = tmp_path / "lineage" / "published", tmp_path / "manifests" / "published"
    assert normalized_tree(lineage_out, fast) == normalized_tree(manifests_out, slow)
    kept = fast[-retention:]
    assert_exactly_what_kept_versions_list(lineage_out, kept)
    for mine, theirs in zip(kept, slow[-retention:], strict=True):
        assert table_rows(lineage_out, mine) == table_rows(manifests_out, theirs)
    assert len(table_rows(lineage_out, fast[-1])[TABLE]) == 8
    # the first version's files of day 1, carried until the fourth version rewrote day 1, are gone
    day_1 = {k for k in own_files(fast[0]) if "/day=01/" in k}
    assert day_1 and not any(k in version_files(lineage_out) for k in day_1)


def test_a_record_moving_partition_deletes_the_files_it_replaced_and_keeps_those_carried(
    request, registry, tmp_path, followed
):
    work, published = tmp_path / "work", tmp_path / "published"
    made = history(request, registry, work, published, retention=2, day_3="d")
    # h-1, uploaded again on day 4, moves there: day 1 is rewritten without it
    write_part(work, RECORD_DATASET, day_partition(4), "move", record("h-1", 4, "2024-01-04T08:00:00.000Z", "moved"))
    made.append(publish_kept(request, registry, work, published, retention=2))
    lineage = read_lineage(LocalStorage(published), RECORD_DATASET, made[2].version)
    replaced = {k for k in own_files(made[0]) if "/day=01/" in k}
    written = own_files(made[2])  # day 4 (day 1 is left without rows)
    assert {k.split("/day=")[1][:2] for k in written} == {"04"}
    assert replaced and lineage == {
        "previous_version": made[1].version,
        "replaced_files": sorted(replaced),
        "written_files": sorted(written),
    }
    before = version_files(published)
    add(work, 5, "n")
    made.append(publish_kept(request, registry, work, published, retention=2))
    assert followed == [True, True]
    deleted = before - version_files(published)
    # the second version's folder, less its day 3 the kept ones carry, and the day 1 the third replaced
    second_folder = {k for k in before if k.startswith(layout.version_prefix(RECORD_DATASET, made[1].version) + "/")}
    assert deleted == (second_folder - own_files(made[1])) | replaced
    carried = {k for k in own_files(made[0]) if "/day=02/" in k} | own_files(made[1])
    assert carried and carried <= every_file(made[3]) and carried <= version_files(published)
    assert_exactly_what_kept_versions_list(published, made[2:])
    rows = [json.loads(row) for row in table_rows(published, made[3])[TABLE]]
    assert sorted((row["recordid"], row["day"]) for row in rows) == [
        ("d-3", "03"),
        ("h-1", "04"),
        ("h-2", "02"),
        ("n-5", "05"),
    ]


def test_a_rollback_is_pruned_by_its_manifests_until_the_line_resumes(request, registry, tmp_path, followed):
    work, published = tmp_path / "work", tmp_path / "published"
    storage = LocalStorage(published)
    made = history(request, registry, work, published, retention=2, day_3="d")
    bad = add_run(work, 1, "bad", hour=9)
    made.append(publish_kept(request, registry, work, published, retention=2))
    replaced = set(read_lineage_files(published, made[2]))
    # the bad export rolled back and withdrawn: the next versions carry the day 1 the third replaced
    rollback(storage, RECORD_DATASET, to_version=made[1].version)
    withdraw(work, bad, 1, "bad")
    for day in (5, 6, 7):
        add(work, day, "n")
        made.append(publish_kept(request, registry, work, published, retention=2))
    assert made[3].previous_version == made[1].version
    day_1 = {k for k in own_files(made[0]) if "/day=01/" in k}
    assert day_1 and day_1 <= every_file(made[-1]) and day_1 <= replaced
    assert_exactly_what_kept_versions_list(published, made[4:])
    assert own_files(made[2]) and not own_files(made[2]) & version_files(published)
    rows = [json.loads(row) for row in table_rows(published, made[-1])[TABLE]]
    assert len(rows) == 6 and not [row for row in rows if row["recordid"] == "bad-1"]
    # while the version rolled back from is complete, the versions do not form one line
    assert followed == [True, False, False, True]


def test_blocked_versions_are_pruned_by_their_manifests(request, registry, tmp_path, followed):
    work, published = tmp_path / "work", tmp_path / "published"
    made = history(request, registry, work, published, retention=2, day_3="d")
    with publishing_with_quality_check(lambda _storage, _manifest: {"passed": False, "blocked": True}):
        bad = add_run(work, 1, "bad", hour=9)  # rewrites day 1: the blocked version replaces the first one's files
        blocked = publish_kept(request, registry, work, published, retention=2)
    assert blocked.blocked_by_quality and blocked.previous_version == made[1].version
    replaced = set(read_lineage_files(published, blocked))
    withdraw(work, bad, 1, "bad")  # the next versions carry the day 1 the blocked one replaced
    for day in (4, 5, 6):
        add(work, day, "n")
        made.append(publish_kept(request, registry, work, published, retention=2))
    assert made[2].previous_version == made[1].version
    day_1 = {k for k in own_files(made[0]) if "/day=01/" in k}
    assert day_1 and day_1 <= every_file(made[-1]) and day_1 <= replaced
    assert_exactly_what_kept_versions_list(published, made[-2:])
    assert own_files(blocked) and not own_files(blocked) & version_files(published)
    assert len(table_rows(published, made[-1])[TABLE]) == 6
    # the blocked version and the next one share a predecessor: not one line until it leaves
    assert followed == [False, False, True]


def test_a_version_without_lineage_and_the_one_after_a_full_rebuild_are_pruned_by_manifests(
    request, registry, tmp_path, followed
):
    work, published = tmp_path / "work", tmp_path / "published"
    storage = LocalStorage(published)
    made = history(request, registry, work, published, retention=2, day_3="a")
    storage.delete(lineage_key(RECORD_DATASET, made[1].version))  # as a version made before lineage was recorded
    add(work, 1, "b", hour=9)
    made.append(publish_kept(request, registry, work, published, retention=2))
    assert followed == [False]
    assert_exactly_what_kept_versions_list(published, made[1:])
    made.append(publish_kept(request, registry, work, published, retention=2, full=True))
    add(work, 4, "c")
    made.append(publish_kept(request, registry, work, published, retention=2))
    # the full version is the oldest kept: which files of the one before no kept version lists, only manifests tell
    assert followed == [False, True, False]
    assert_exactly_what_kept_versions_list(published, made[3:])
    # the full version lists no file of the versions before it
    assert not {k for m in made[:3] for k in own_files(m)} & version_files(published)
    add(work, 5, "d")
    made.append(publish_kept(request, registry, work, published, retention=2))
    assert followed == [False, True, False, True]  # a full version removed: its successor is incremental
    assert_exactly_what_kept_versions_list(published, made[4:])
    assert len(table_rows(published, made[-1])[TABLE]) == 6


def manifests_read(storage: ReadingStorage) -> list[str]:
    return [key for key in storage.read if key.endswith("/" + layout.MANIFEST_NAME)]


def pruned_both_ways(
    monkeypatch, source, target, retention: int, follows: bool = True
) -> tuple[list[str], list[str], ReadingStorage]:
    """``source``'s output pruned in two copies, as it is (following the
    lineage when ``follows``) and by the manifests: the versions removed,
    the files left, and the storage of the first."""
    shutil.copytree(source, target / "lineage")
    shutil.copytree(source, target / "manifests")
    storage = ReadingStorage(target / "lineage")
    with monkeypatch.context() as patched:
        if follows:
            manifests_unread(patched)
        removed = prune_versions(storage, RECORD_DATASET, retention)
    with monkeypatch.context() as patched:
        by_manifests(patched)
        assert prune_versions(LocalStorage(target / "manifests"), RECORD_DATASET, retention) == removed
    assert tree(target / "lineage") == tree(target / "manifests")
    return removed, tree(target / "lineage"), storage


def test_a_crashed_version_is_deleted_by_a_prune_following_the_lineage(request, registry, tmp_path, monkeypatch):
    work, published = tmp_path / "work", tmp_path / "published"
    made = history(request, registry, work, published, retention=3, day_3="d")
    crashed = new_version()  # a publish killed before its manifest
    crashed_file = layout.join_key(layout.version_prefix(RECORD_DATASET, crashed), "parquet", TABLE, "part-0.parquet")
    LocalStorage(published).write_bytes(crashed_file, b"half")
    add(work, 4, "n")
    with monkeypatch.context() as patched:  # its prune is made below, in two copies of the output
        patched.setattr(engine_steps, "prune_versions", lambda *_args: [])
        made.append(publish_kept(request, registry, work, published, retention=3))
    assert LocalStorage(published).exists(crashed_file)

    # retention 3: only the crashed version goes, reading the oldest kept version's manifest alone
    removed, left, storage = pruned_both_ways(monkeypatch, published, tmp_path / "keep3", 3)
    assert removed == [crashed] and not any(crashed in key for key in left)
    assert manifests_read(storage) == [layout.manifest_key(RECORD_DATASET, made[0].version)]
    # retention 2: the first version goes too, its files kept where the second carries them (all of them)
    removed, left, storage = pruned_both_ways(monkeypatch, published, tmp_path / "keep2", 2)
    assert removed == [made[0].version, crashed] and not any(crashed in key for key in left)
    assert manifests_read(storage) == [layout.manifest_key(RECORD_DATASET, made[1].version)]
    first_left = {k for k in left if k.startswith(layout.version_prefix(RECORD_DATASET, made[0].version) + "/")}
    assert first_left == own_files(made[0]) and first_left <= every_file(made[1])
    assert len(table_rows(tmp_path / "keep2" / "lineage", made[1])[TABLE]) == 3


def test_files_of_a_version_left_without_manifest_are_kept_while_the_oldest_kept_one_lists_them(
    request, registry, tmp_path, monkeypatch, followed
):
    work, published = tmp_path / "work", tmp_path / "published"
    storage = LocalStorage(published)
    made = history(request, registry, work, published, retention=3)
    for day, tag in ((3, "a"), (1, "b")):
        add(work, day, tag, hour=9)
        made.append(publish_kept(request, registry, work, published, retention=3))
    # a prune killed after deleting the first version's manifest, in an output from before the version log
    storage.delete(layout.manifest_key(RECORD_DATASET, made[0].version))
    storage.delete(version_log_key(RECORD_DATASET))
    removed, left, _ = pruned_both_ways(monkeypatch, published, tmp_path / "pruned", 3)
    assert removed == [made[0].version] and followed == [True]
    first_left = {k for k in left if k.startswith(layout.version_prefix(RECORD_DATASET, made[0].version) + "/")}
    assert first_left == own_files(made[0]) & every_file(made[1]) and first_left
    assert len(table_rows(tmp_path / "pruned" / "lineage", made[1])[TABLE]) == 3


def test_a_manifest_written_with_spaces_is_searched_for_the_files_it_keeps(request, registry, tmp_path, monkeypatch):
    work, published = tmp_path / "work", tmp_path / "published"
    made = history(request, registry, work, published, retention=3)
    for day in (3, 4):
        add(work, day, "d")
        made.append(publish_kept(request, registry, work, published, retention=3))
    # the oldest kept version's manifest as json's indenting encoder writes it ("key": "...")
    LocalStorage(published).write_bytes(
        layout.manifest_key(RECORD_DATASET, made[1].version), made[1].to_json().encode()
    )
    removed, left, storage = pruned_both_ways(monkeypatch, published, tmp_path / "pruned", 2)
    assert removed == [made[0].version]
    assert manifests_read(storage) == [layout.manifest_key(RECORD_DATASET, made[1].version)]
    first_left = {k for k in left if k.startswith(layout.version_prefix(RECORD_DATASET, made[0].version) + "/")}
    assert first_left == own_files(made[0]) and first_left <= every_file(made[1])


def test_a_current_rolled_back_behind_removed_versions_is_pruned_by_manifests(
    request, registry, tmp_path, monkeypatch, followed
):
    work, published = tmp_path / "work", tmp_path / "published"
    made = history(request, registry, work, published, retention=5)
    for day, tag in ((3, "a"), (1, "b"), (4, "c")):
        add(work, day, tag, hour=9)
        made.append(publish_kept(request, registry, work, published, retention=5))
    rollback(LocalStorage(published), RECORD_DATASET, to_version=made[1].version)
    # one line still, but the third version goes while the second (current) stays, carrying the day 1 the third replaced
    removed, left, _ = pruned_both_ways(monkeypatch, published, tmp_path / "pruned", 1, follows=False)
    assert removed == [made[0].version, made[2].version] and followed == [False]
    day_1 = {k for k in own_files(made[0]) if "/day=01/" in k}
    assert day_1 and day_1 <= set(left) and day_1 <= every_file(made[1])
    pruned = tmp_path / "pruned" / "lineage"
    assert len(table_rows(pruned, made[1])[TABLE]) == 3 and len(table_rows(pruned, made[3])[TABLE]) == 5


def test_a_prune_of_deltas_reads_no_manifest(request, registry, tmp_path, monkeypatch):
    work, published = tmp_path / "work", tmp_path / "published"
    made = history(request, registry, work, published, retention=4)
    for day, tag in ((3, "a"), (1, "b"), (4, "c"), (2, "d")):  # the fourth delta prunes the full version
        add(work, day, tag, hour=9)
        made.append(publish_kept(request, registry, work, published, retention=4))
    removed, _, storage = pruned_both_ways(monkeypatch, published, tmp_path / "pruned", 2)
    assert removed == [made[1].version, made[2].version]
    # each removed delta recorded the files it wrote, and its successors those they replaced
    assert manifests_read(storage) == []
    assert_exactly_what_kept_versions_list(tmp_path / "pruned" / "lineage", made[3:])
